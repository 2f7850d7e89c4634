package migrate

import (
	"context"
	"fmt"
	"io/fs"
	"strings"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	"ariga.io/atlas/sql/schema"
	"ariga.io/atlas/sql/sqlite"
	"entgo.io/ent/dialect"
)

// EndState replays every file of the migration directory fsys on the
// empty dev database and returns the schema they build, in Atlas HCL (the
// format `atlas schema inspect` writes and `atlas schema diff --to
// file://...` reads): what `make migration` commits next to the directory
// and authd compares live databases with.
func EndState(ctx context.Context, dev *DevDB, fsys fs.FS) ([]byte, error) {
	dir, err := MemDir(fsys)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	files, err := dir.Files()
	if err != nil {
		return nil, err
	}
	drv, err := openDriver(dev.Dialect, dev.DB)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := replay(ctx, dev, drv, f); err != nil {
			return nil, err
		}
	}
	s, err := inspectSchema(ctx, drv)
	if err != nil {
		return nil, err
	}
	return marshalHCL(dev.Dialect, s)
}

// replay runs every statement of f on the dev database, outside any
// transaction (as the Atlas CLI's dev loader does).
func replay(ctx context.Context, dev *DevDB, drv migrate.Driver, f migrate.File) error {
	stmts, err := migrate.FileStmtDecls(drv, f)
	if err != nil {
		return fmt.Errorf("%s: scan statements: %w", f.Name(), err)
	}
	for _, s := range stmts {
		if _, err := dev.DB.ExecContext(ctx, s.Text); err != nil {
			return fmt.Errorf("%s: line %d: %w", f.Name(), lineOf(f.Bytes(), s.Pos), err)
		}
	}
	return nil
}

// inspectSchema inspects the connection's schema (PostgreSQL: the current
// schema, public for authd; SQLite: main), leaving out the revision
// table, as a realm of one schema.
func inspectSchema(ctx context.Context, drv migrate.Driver) (*schema.Schema, error) {
	s, err := drv.InspectSchema(ctx, "", &schema.InspectOptions{Exclude: []string{RevisionTable}})
	if err != nil {
		return nil, fmt.Errorf("migrate: inspect schema: %w", err)
	}
	if s.Realm == nil {
		s.Realm = schema.NewRealm(s)
	}
	return s, nil
}

func marshalHCL(d string, s *schema.Schema) ([]byte, error) {
	switch d {
	case dialect.Postgres:
		return postgres.MarshalHCL(s)
	case dialect.SQLite:
		return sqlite.MarshalHCL(s)
	}
	return nil, fmt.Errorf("migrate: unsupported dialect %q", d)
}

func evalHCL(d string, b []byte) (*schema.Realm, error) {
	var r schema.Realm
	var err error
	switch d {
	case dialect.Postgres:
		err = postgres.EvalHCLBytes(b, &r, nil)
	case dialect.SQLite:
		err = sqlite.EvalHCLBytes(b, &r, nil)
	default:
		err = fmt.Errorf("unsupported dialect %q", d)
	}
	if err != nil {
		return nil, fmt.Errorf("migrate: read the end state: %w", err)
	}
	return &r, nil
}

// Drift is how a live database differs from the end state of the
// migration files.
type Drift struct {
	// Schema is the inspected schema (PostgreSQL: the connection's
	// current schema; SQLite: main).
	Schema string `json:"schema"`
	// Changes describe each difference, e.g. `add index "x" to table
	// "users"` for an index the files do not create.
	Changes []string `json:"changes"`
	// SQL are the statements that would bring the database back to the
	// end state (undo the differences); not run.
	SQL []string `json:"sql"`
}

// Drifted reports whether the database differs from the end state.
func (d *Drift) Drifted() bool { return len(d.Changes) > 0 }

// Drift inspects the database's schema (read only; the revision table
// left out) and compares it with endState, the migration directory's end
// state in Atlas HCL (migrations.EndState): no dev database is involved.
// A database with pending migrations differs by those too; see Status.
func (m *Migrator) Drift(ctx context.Context, endState []byte) (*Drift, error) {
	want, err := evalHCL(m.dialect, endState)
	if err != nil {
		return nil, err
	}
	if len(want.Schemas) != 1 {
		return nil, fmt.Errorf("migrate: the end state holds %d schemas, want 1", len(want.Schemas))
	}
	drv, err := openDriver(m.dialect, m.db)
	if err != nil {
		return nil, err
	}
	live, err := inspectSchema(ctx, drv)
	if err != nil {
		return nil, err
	}
	// Compare under the live schema's name: the end state was inspected
	// on a dev database's "public" (or "main") and the live one may be
	// bound to another schema.
	want.Schemas[0].Name = live.Name
	changes, err := drv.SchemaDiff(live, want.Schemas[0])
	if err != nil {
		return nil, fmt.Errorf("migrate: diff: %w", err)
	}
	d := &Drift{Schema: live.Name, Changes: []string{}, SQL: []string{}}
	if len(changes) == 0 {
		return d, nil
	}
	for _, c := range changes {
		d.Changes = append(d.Changes, describeChange(c)...)
	}
	unqualified := ""
	plan, err := drv.PlanChanges(ctx, "drift", changes, func(o *migrate.PlanOptions) { o.SchemaQualifier = &unqualified })
	if err != nil {
		return nil, fmt.Errorf("migrate: plan the undo: %w", err)
	}
	for _, c := range plan.Changes {
		d.SQL = append(d.SQL, c.Cmd+";")
	}
	return d, nil
}

// describeChange says in words what the database has that the files do
// not (or lacks): changes go from the live database to the end state, so
// an AddIndex is an index the database lacks.
func describeChange(c schema.Change) []string {
	switch c := c.(type) {
	case *schema.AddTable:
		return []string{fmt.Sprintf("table %q is missing", c.T.Name)}
	case *schema.DropTable:
		return []string{fmt.Sprintf("table %q is not in the migration files", c.T.Name)}
	case *schema.ModifyTable:
		var out []string
		for _, mc := range c.Changes {
			out = append(out, fmt.Sprintf("table %q: %s", c.T.Name, describeTableChange(mc)))
		}
		return out
	default:
		return []string{strings.TrimPrefix(fmt.Sprintf("%T", c), "*schema.")}
	}
}

func describeTableChange(c schema.Change) string {
	switch c := c.(type) {
	case *schema.AddColumn:
		return fmt.Sprintf("column %q is missing", c.C.Name)
	case *schema.DropColumn:
		return fmt.Sprintf("column %q is not in the migration files", c.C.Name)
	case *schema.ModifyColumn:
		return fmt.Sprintf("column %q differs", c.To.Name)
	case *schema.AddIndex:
		return fmt.Sprintf("index %q is missing", c.I.Name)
	case *schema.DropIndex:
		return fmt.Sprintf("index %q is not in the migration files", c.I.Name)
	case *schema.ModifyIndex:
		return fmt.Sprintf("index %q differs", c.To.Name)
	case *schema.AddForeignKey:
		return fmt.Sprintf("foreign key %q is missing", c.F.Symbol)
	case *schema.DropForeignKey:
		return fmt.Sprintf("foreign key %q is not in the migration files", c.F.Symbol)
	case *schema.ModifyForeignKey:
		return fmt.Sprintf("foreign key %q differs", c.To.Symbol)
	case *schema.AddCheck:
		return fmt.Sprintf("check %q is missing", c.C.Name)
	case *schema.DropCheck:
		return fmt.Sprintf("check %q is not in the migration files", c.C.Name)
	case *schema.ModifyPrimaryKey:
		return "the primary key differs"
	default:
		return strings.TrimPrefix(fmt.Sprintf("%T", c), "*schema.")
	}
}

// lineOf is the 1-based line of byte offset pos in b.
func lineOf(b []byte, pos int) int {
	if pos > len(b) {
		pos = len(b)
	}
	return strings.Count(string(b[:pos]), "\n") + 1
}
