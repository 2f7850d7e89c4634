package migrate

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"ariga.io/atlas/schemahcl"
	"ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
)

// PlanOptions configures Migrator.Review.
type PlanOptions struct {
	// Dev, when set, is the empty database the pending files are linted
	// on (never the database being migrated).
	Dev *DevDB
	// Rules configures the analyzers (Config.LintRules).
	Rules *schemahcl.Resource
	// NoLint says why Dev is nil, for the report.
	NoLint string
}

// Plan is what applying the pending files would do, for review; nothing
// in it has run on the database.
type Plan struct {
	// Database names the database without credentials.
	Database string `json:"database,omitempty"`
	// Dialect is dialect.Postgres or dialect.SQLite.
	Dialect string `json:"dialect"`
	// Current is the current version ("" when none).
	Current string `json:"current"`
	// Files are the pending files in the order they would run.
	Files []*PlannedFile `json:"pending"`
	// LintNote says why the files were not linted, when they were not.
	LintNote string `json:"lint_note,omitempty"`
}

// PlannedFile is one pending file.
type PlannedFile struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// TxMode is TxModeFile (one transaction) or TxModeNone (statement by
	// statement outside a transaction).
	TxMode string `json:"txmode"`
	// Partial is set when an earlier run of this file stopped after some
	// statements (outside a transaction): the revision's state.
	Partial *PartialRun `json:"partial,omitempty"`
	// Statements are the file's statements.
	Statements []*PlannedStatement `json:"statements"`
	// Lint is the file's lint outcome; nil when not linted.
	Lint *FileLint `json:"lint,omitempty"`
	sql  string
}

// PartialRun is the revision row of a file whose run stopped midway.
type PartialRun struct {
	Applied int    `json:"applied"`
	Total   int    `json:"total"`
	Error   string `json:"error,omitempty"`
	// Statement is the statement that failed.
	Statement string `json:"statement,omitempty"`
}

// PlannedStatement is one statement of a pending file.
type PlannedStatement struct {
	// Line is its 1-based line in the file.
	Line int    `json:"line"`
	SQL  string `json:"sql"`
	// Applied is true for a statement an earlier partial run applied; a
	// retry skips it.
	Applied bool `json:"applied,omitempty"`
	// Lock is what authd's table of statement kinds says of its locks.
	Lock Lock `json:"lock"`
	// Tables are the tables it touches, with their estimated size.
	Tables []TableEstimate `json:"tables"`
}

// TableEstimate is a table's estimated row count.
type TableEstimate struct {
	Name string `json:"name"`
	// Rows is the estimate; nil when there is none.
	Rows *int64 `json:"rows"`
	// Source says where the estimate comes from or why there is none:
	// "pg_class.reltuples", "never analyzed", "new table", "no estimate
	// on SQLite".
	Source string `json:"source"`
}

// String is the estimate in words, e.g. `"users": about 120000 rows
// (pg_class.reltuples)`.
func (t TableEstimate) String() string {
	if t.Rows != nil {
		return fmt.Sprintf("%q: about %d rows (%s)", t.Name, *t.Rows, t.Source)
	}
	return fmt.Sprintf("%q: %s", t.Name, t.Source)
}

// Review plans the pending files without running them: for each file its
// transaction mode and statements, and for each statement the locks it
// takes (authd's table of statement kinds: which lock, whether it blocks
// writes or reads, for how long) and the tables it touches with their
// estimated row counts (PostgreSQL: pg_class.reltuples, never count(*);
// SQLite: none), and, with opts.Dev, each file's lint findings.
func (m *Migrator) Review(ctx context.Context, opts PlanOptions) (*Plan, error) {
	st, err := m.Status(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := m.openDir()
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	all, err := dir.Files()
	if err != nil {
		return nil, err
	}
	drv, err := openDriver(m.dialect, m.db)
	if err != nil {
		return nil, err
	}
	p := &Plan{Dialect: m.dialect, Current: st.Current, Files: []*PlannedFile{}}
	pendingNames := map[string]bool{}
	created := map[string]bool{} // tables an earlier pending statement creates
	est := &estimator{db: m.db, dialect: m.dialect, cache: map[string]TableEstimate{}}
	var base, feat []migrate.File
	for _, f := range st.Pending {
		pendingNames[f.Name] = true
	}
	for _, f := range all {
		if pendingNames[f.Name()] {
			feat = append(feat, f)
		} else {
			base = append(base, f)
		}
	}
	for _, f := range feat {
		pf := &PlannedFile{Name: f.Name(), Version: f.Version(), sql: string(f.Bytes()), Statements: []*PlannedStatement{}}
		if pf.TxMode, err = TxMode(f); err != nil {
			return nil, err
		}
		applied := 0
		if st.Partial != nil && st.Partial.Version == f.Version() {
			applied = st.Partial.Applied
			pf.Partial = &PartialRun{Applied: st.Partial.Applied, Total: st.Partial.Total, Error: st.Partial.Error, Statement: st.Partial.ErrorStmt}
		}
		stmts, err := migrate.FileStmtDecls(drv, f)
		if err != nil {
			return nil, fmt.Errorf("migrate: %s: scan statements: %w", f.Name(), err)
		}
		for i, s := range stmts {
			ps := &PlannedStatement{Line: lineOf(f.Bytes(), s.Pos), SQL: s.Text, Applied: i < applied, Tables: []TableEstimate{}}
			ps.Lock = ClassifyStatement(m.dialect, s.Text, func(index string) string { return est.indexTable(ctx, index) })
			for _, t := range append(append([]string(nil), ps.Lock.Tables...), ps.Lock.NewTables...) {
				ps.Tables = append(ps.Tables, est.estimate(ctx, t, created[t]))
			}
			for _, t := range ps.Lock.NewTables {
				created[t] = true
			}
			pf.Statements = append(pf.Statements, ps)
		}
		p.Files = append(p.Files, pf)
	}
	switch {
	case len(feat) == 0:
	case opts.Dev == nil:
		p.LintNote = opts.NoLint
	default:
		rep, err := lintFiles(ctx, m.dialect, opts.Dev, opts.Rules, base, feat)
		if err != nil {
			p.LintNote = "not linted: " + err.Error()
			break
		}
		for i, fl := range rep.Files {
			p.Files[i].Lint = fl
		}
	}
	return p, nil
}

// estimator estimates row counts from the catalog, once per table.
type estimator struct {
	db      *sql.DB
	dialect string
	cache   map[string]TableEstimate
}

// estimate returns table t's estimated row count; created says an earlier
// pending statement creates it.
func (e *estimator) estimate(ctx context.Context, t string, created bool) TableEstimate {
	if created {
		return TableEstimate{Name: t, Source: "new table (created by a pending statement)"}
	}
	if e.dialect == dialect.SQLite {
		return TableEstimate{Name: t, Source: "no estimate on SQLite (it keeps no statistics authd reads)"}
	}
	if x, ok := e.cache[t]; ok {
		return x
	}
	var rows float64
	err := e.db.QueryRowContext(ctx, `SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname = $1 AND c.relkind IN ('r', 'p')`, t).Scan(&rows)
	x := TableEstimate{Name: t}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		x.Source = "new table (not in the database)"
	case err != nil:
		x.Source = "no estimate: " + err.Error()
	case rows < 0:
		x.Source = "no estimate: never vacuumed or analyzed (pg_class.reltuples = -1)"
	default:
		n := int64(rows)
		x.Rows, x.Source = &n, "pg_class.reltuples"
	}
	e.cache[t] = x
	return x
}

// indexTable names the table of an existing index in the current schema.
func (e *estimator) indexTable(ctx context.Context, index string) string {
	if e.dialect != dialect.Postgres {
		return ""
	}
	var t string
	_ = e.db.QueryRowContext(ctx, `SELECT t.relname FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname = $1`, index).Scan(&t)
	return t
}

// WriteText writes the plan for people: comments describing each file and
// statement, each file's SQL as it is.
func (p *Plan) WriteText(w io.Writer) error {
	var b strings.Builder
	if len(p.Files) == 0 {
		fmt.Fprintf(&b, "-- no pending migrations (current version %q)\n", p.Current)
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "-- %s: %d pending migration file(s) after version %q; nothing below has run\n", DialectName(p.Dialect), len(p.Files), p.Current)
	if p.LintNote != "" {
		fmt.Fprintf(&b, "-- lint: %s\n", p.LintNote)
	}
	for _, f := range p.Files {
		fmt.Fprintf(&b, "\n-- file: %s\n", f.Name)
		if f.TxMode == TxModeNone {
			b.WriteString("-- txmode: none (atlas:txmode none): statement by statement outside a transaction; the revision is recorded after each, a failure stops the file there and a retry resumes at the failed statement\n")
		} else {
			b.WriteString("-- txmode: file: one transaction with its revision row; a failure rolls the whole file back\n")
		}
		if f.Partial != nil {
			fmt.Fprintf(&b, "-- partially applied: %d of %d statements; a retry resumes at statement %d\n", f.Partial.Applied, f.Partial.Total, f.Partial.Applied+1)
			if f.Partial.Error != "" {
				fmt.Fprintf(&b, "--   last attempt failed: %s\n", oneLine(f.Partial.Error, 200))
			}
		}
		for i, s := range f.Statements {
			done := ""
			if s.Applied {
				done = " [applied]"
			}
			fmt.Fprintf(&b, "-- statement %d (line %d)%s: %s\n", i+1, s.Line, done, oneLine(s.SQL, 100))
			kind := s.Lock.Kind
			if kind == "" {
				kind = "?"
			}
			fmt.Fprintf(&b, "--   %s: %s\n", kind, s.Lock.Summary())
			for _, t := range s.Tables {
				fmt.Fprintf(&b, "--   rows %s\n", t)
			}
		}
		switch {
		case f.Lint == nil:
		case f.Lint.Ignored:
			b.WriteString("-- lint: ignored (atlas:nolint file directive)\n")
		default:
			n, e := len(f.Lint.Findings), 0
			for _, x := range f.Lint.Findings {
				if x.Level == LevelError {
					e++
				}
			}
			if f.Lint.Error != "" {
				e++
			}
			fmt.Fprintf(&b, "-- lint: %d finding(s), %d error(s)\n", n, e)
			if f.Lint.Error != "" {
				fmt.Fprintf(&b, "--   error: %s\n", oneLine(f.Lint.Error, 300))
			}
			for _, x := range f.Lint.Findings {
				fmt.Fprintf(&b, "--   %s %s L%d: %s (%s)\n", x.Level, x.Code, x.Line, oneLine(x.Text, 300), x.Analyzer)
			}
		}
		b.WriteString(f.sql)
		if !strings.HasSuffix(f.sql, "\n") {
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the plan as one JSON document, for review tools.
func (p *Plan) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// Plan writes the plan of the pending files to w (without lint).
func (m *Migrator) Plan(ctx context.Context, w io.Writer) error {
	p, err := m.Review(ctx, PlanOptions{})
	if err != nil {
		return err
	}
	return p.WriteText(w)
}

// oneLine folds s onto one line of at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
