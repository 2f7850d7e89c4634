package migrate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"entgo.io/ent/dialect"

	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/internal/testutil/testdb"
	"github.com/placebrain/auth/migrations"
)

// TestReview: the plan of two pending files on a migrated database of the
// suite's backend: each statement's lock from authd's table (a plain
// CREATE INDEX blocks writes, CREATE INDEX CONCURRENTLY does not; SQLite's
// write lock blocks every writer), each touched table's estimated rows
// (PostgreSQL: pg_class.reltuples after ANALYZE; SQLite: none), the lint
// findings of each file, and the same as JSON. Nothing runs.
func TestReview(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t)
	d := db.Dialect
	for i := range 3 {
		insertSQL := `INSERT INTO audit_events (id, created_at, event) VALUES ($1, CURRENT_TIMESTAMP, 'login')`
		if _, err := db.SQL.ExecContext(ctx, insertSQL, fmt.Sprintf("00000000-0000-0000-0000-00000000000%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	dir := copyDirOf(t, migrations.For(d))
	first, second := scratchVersion+"_audit_event.sql", "99990102000000_drop_reason.sql"
	if d == dialect.Postgres {
		if _, err := db.SQL.ExecContext(ctx, `ANALYZE audit_events`); err != nil {
			t.Fatal(err)
		}
		dir[first] = &fstest.MapFile{Mode: 0o644, Data: []byte(`CREATE INDEX "auditevent_event" ON "audit_events" ("event");` + "\n")}
		dir[second] = &fstest.MapFile{Mode: 0o644, Data: []byte("-- atlas:txmode none\n\n" +
			`CREATE INDEX CONCURRENTLY "auditevent_created_at_event" ON "audit_events" ("created_at", "event");` + "\n" +
			`ALTER TABLE "audit_events" DROP COLUMN "reason";` + "\n")}
	} else {
		dir[first] = &fstest.MapFile{Mode: 0o644, Data: []byte("CREATE INDEX `auditevent_event` ON `audit_events` (`event`);\n")}
		dir[second] = &fstest.MapFile{Mode: 0o644, Data: []byte("ALTER TABLE `audit_events` DROP COLUMN `reason`;\n")}
	}
	rehash(t, dir)
	m := migrate.New(db.SQL, d, dir, nil)
	p, err := m.Review(ctx, migrate.PlanOptions{Dev: openDev(t, d), Rules: repoRules(t, d)})
	if err != nil {
		t.Fatal(err)
	}
	real := sqlFiles(t, migrations.For(d))
	if p.Current != versionOf(real[len(real)-1]) || len(p.Files) != 2 || p.Files[0].Name != first || p.Files[1].Name != second {
		t.Fatalf("plan: current %q, files %+v", p.Current, p.Files)
	}
	idx := p.Files[0].Statements[0]
	if !idx.Lock.Known || !idx.Lock.BlocksWrites || idx.Lock.Index != "auditevent_event" || len(idx.Tables) != 1 || idx.Tables[0].Name != "audit_events" {
		t.Errorf("CREATE INDEX statement = %+v", idx)
	}
	if d == dialect.Postgres {
		if idx.Lock.Mode != "SHARE" || idx.Lock.BlocksReads || idx.Tables[0].Rows == nil || *idx.Tables[0].Rows != 3 || idx.Tables[0].Source != "pg_class.reltuples" {
			t.Errorf("PostgreSQL CREATE INDEX: lock %+v, rows %+v", idx.Lock, idx.Tables[0])
		}
		cic := p.Files[1].Statements[0]
		if p.Files[1].TxMode != migrate.TxModeNone || cic.Lock.BlocksWrites || cic.Lock.Mode != "SHARE UPDATE EXCLUSIVE" {
			t.Errorf("CREATE INDEX CONCURRENTLY: txmode %s, lock %+v", p.Files[1].TxMode, cic.Lock)
		}
		drop := p.Files[1].Statements[1]
		if drop.Lock.Mode != "ACCESS EXCLUSIVE" || !drop.Lock.BlocksReads || drop.Lock.Long {
			t.Errorf("DROP COLUMN lock %+v", drop.Lock)
		}
	} else if idx.Lock.Mode != "database write lock" || idx.Tables[0].Rows != nil || !strings.Contains(idx.Tables[0].Source, "no estimate on SQLite") {
		t.Errorf("SQLite CREATE INDEX: lock %+v, rows %+v", idx.Lock, idx.Tables[0])
	}
	// Lint: the dropped column is the second file's error.
	if p.Files[0].Lint == nil || p.Files[1].Lint == nil {
		t.Fatalf("files not linted: %q", p.LintNote)
	}
	if got := p.Files[1].Lint.Findings; len(got) == 0 || got[len(got)-1].Code != "DS103" || got[len(got)-1].Level != migrate.LevelError {
		t.Errorf("second file's findings %+v", got)
	}

	var text, js bytes.Buffer
	if err := p.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-- file: " + first, "-- file: " + second, "blocks writes", "-- lint: ", "DS103", "DROP COLUMN"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("plan text lacks %q:\n%s", want, text.String())
		}
	}
	if err := p.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Pending []struct {
			Name       string
			Statements []struct {
				SQL  string
				Lock struct {
					BlocksWrites bool `json:"blocks_writes"`
				}
				Tables []struct {
					Name string
					Rows *int64
				}
			}
			Lint *struct {
				Findings []struct{ Code, Level string }
			}
		}
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON: %v\n%s", err, js.String())
	}
	if len(back.Pending) != 2 || !back.Pending[0].Statements[0].Lock.BlocksWrites || back.Pending[1].Lint == nil {
		t.Errorf("JSON plan:\n%s", js.String())
	}
	// Nothing ran.
	st, err := m.Status(ctx)
	if err != nil || len(st.Pending) != 2 {
		t.Errorf("after Review: %+v, %v", st, err)
	}
}

// TestClassifyStatement: authd's table of statement kinds.
func TestClassifyStatement(t *testing.T) {
	for _, tc := range []struct {
		d, stmt, kind, mode string
		tables              []string
		writes, reads, long bool
	}{
		{dialect.Postgres, `CREATE INDEX "a" ON "public"."t" ("c");`, "CREATE INDEX", "SHARE", []string{"t"}, true, false, true},
		{dialect.Postgres, `CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS a ON t (c)`, "CREATE UNIQUE INDEX CONCURRENTLY", "SHARE UPDATE EXCLUSIVE", []string{"t"}, false, false, true},
		{dialect.Postgres, `DROP INDEX CONCURRENTLY "a"`, "DROP INDEX CONCURRENTLY", "SHARE UPDATE EXCLUSIVE", nil, false, false, false},
		{dialect.Postgres, `ALTER TABLE "users" ADD COLUMN "x" text NULL, ADD COLUMN "y" bigint NOT NULL DEFAULT 0;`, "ALTER TABLE ADD COLUMN", "ACCESS EXCLUSIVE", []string{"users"}, true, true, false},
		{dialect.Postgres, `ALTER TABLE "users" ADD COLUMN "x" uuid NOT NULL DEFAULT gen_random_uuid();`, "ALTER TABLE ADD COLUMN", "ACCESS EXCLUSIVE", []string{"users"}, true, true, true},
		{dialect.Postgres, `ALTER TABLE "users" ALTER COLUMN "email" TYPE text;`, "ALTER TABLE ALTER COLUMN", "ACCESS EXCLUSIVE", []string{"users"}, true, true, true},
		{dialect.Postgres, `ALTER TABLE "users" ALTER COLUMN "email" SET NOT NULL;`, "ALTER TABLE ALTER COLUMN", "ACCESS EXCLUSIVE", []string{"users"}, true, true, true},
		{dialect.Postgres, `ALTER TABLE "a" ADD CONSTRAINT "f" FOREIGN KEY ("u") REFERENCES "users" ("id") NOT VALID;`, "ALTER TABLE ADD CONSTRAINT", "SHARE ROW EXCLUSIVE", []string{"a", "users"}, true, false, false},
		{dialect.Postgres, `ALTER TABLE "a" VALIDATE CONSTRAINT "f";`, "ALTER TABLE VALIDATE CONSTRAINT", "SHARE UPDATE EXCLUSIVE", []string{"a"}, false, false, true},
		{dialect.Postgres, `CREATE TABLE "t" ("id" uuid, "u" uuid REFERENCES "users" ("id"));`, "CREATE TABLE", "SHARE ROW EXCLUSIVE", []string{"users"}, true, false, false},
		{dialect.Postgres, `CREATE TABLE "t" ("id" uuid);`, "CREATE TABLE", "", nil, false, false, false},
		{dialect.Postgres, `UPDATE "users" SET "x" = 1;`, "UPDATE", "ROW EXCLUSIVE", []string{"users"}, false, false, true},
		{dialect.Postgres, `DROP TABLE "a", "b" CASCADE;`, "DROP TABLE", "ACCESS EXCLUSIVE", []string{"a", "b"}, true, true, false},
		{dialect.SQLite, "CREATE INDEX `a` ON `t` (`c`);", "CREATE INDEX", "database write lock", []string{"t"}, true, false, true},
		{dialect.SQLite, "PRAGMA foreign_keys = off;", "PRAGMA", "", nil, false, false, false},
	} {
		l := migrate.ClassifyStatement(tc.d, tc.stmt, nil)
		if !l.Known || l.Kind != tc.kind || l.Mode != tc.mode || strings.Join(l.Tables, ",") != strings.Join(tc.tables, ",") ||
			l.BlocksWrites != tc.writes || l.BlocksReads != tc.reads || l.Long != tc.long {
			t.Errorf("%s: %+v", tc.stmt, l)
		}
	}
	if l := migrate.ClassifyStatement(dialect.Postgres, `CLUSTER "users"`, nil); l.Known || !l.BlocksWrites {
		t.Errorf("an unknown statement: %+v, want unknown and assumed to block writes", l)
	}
}
