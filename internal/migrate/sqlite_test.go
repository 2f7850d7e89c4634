package migrate_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"entgo.io/ent/dialect"

	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/testutil/testdb"
	"github.com/placebrain/auth/migrations"
)

// sqliteDB opens a new SQLite file with the service's settings.
func sqliteDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.Config{URL: "sqlite:" + path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db.SQL
}

func TestSQLiteApplyStatusAndRevisions(t *testing.T) {
	testdb.SkipUnless(t, dialect.SQLite)
	ctx := context.Background()
	db := sqliteDB(t, filepath.Join(t.TempDir(), "a.db"))
	m := migrate.New(db, dialect.SQLite, migrations.SQLite(), nil)
	files := sqlFiles(t, migrations.SQLite())

	st, err := m.Status(ctx)
	if err != nil || len(st.Pending) != len(files) {
		t.Fatalf("status before = %+v, %v", st, err)
	}
	got, err := m.Apply(ctx)
	if err != nil || !slices.Equal(got, versionsOf(files)) {
		t.Fatalf("Apply = %v, %v", got, err)
	}
	for _, table := range appTables {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", table).Scan(&n); err != nil || n != 1 {
			t.Errorf("table %s: %d, %v", table, n, err)
		}
	}
	var version, desc, op string
	var typ, applied, total int
	var errText sql.NullString
	if err := db.QueryRowContext(ctx, `SELECT version, description, type, applied, total, error, operator_version FROM atlas_schema_revisions ORDER BY version LIMIT 1`).
		Scan(&version, &desc, &typ, &applied, &total, &errText, &op); err != nil {
		t.Fatal(err)
	}
	if version != versionOf(files[0]) || desc != descOf(files[0]) || typ != 2 || applied != total || total == 0 || errText.Valid || op != migrate.OperatorVersion {
		t.Errorf("revision row = %s %s type=%d %d/%d err=%v op=%s", version, desc, typ, applied, total, errText, op)
	}
	// Re-apply is a no-op.
	if got, err := m.Apply(ctx); err != nil || len(got) != 0 {
		t.Errorf("second Apply = %v, %v", got, err)
	}
	if st, err := m.Status(ctx); err != nil || len(st.Pending) != 0 || st.Current != versionOf(files[len(files)-1]) || len(st.Applied) != len(files) {
		t.Errorf("status after = %+v, %v", st, err)
	}
}

func TestSQLiteTamperedDirectoryRefused(t *testing.T) {
	testdb.SkipUnless(t, dialect.SQLite)
	db := sqliteDB(t, filepath.Join(t.TempDir(), "t.db"))
	dir := copyDirOf(t, migrations.SQLite())
	name := sqlFiles(t, migrations.SQLite())[0]
	dir[name].Data = append(dir[name].Data, []byte("\nCREATE TABLE x (id integer);\n")...)
	_, err := migrate.New(db, dialect.SQLite, dir, nil).Apply(context.Background())
	if !errors.Is(err, migrate.ErrDirectoryTampered) {
		t.Fatalf("Apply = %v, want ErrDirectoryTampered", err)
	}
	var n int
	db.QueryRow("SELECT count(*) FROM sqlite_master WHERE type = 'table'").Scan(&n)
	if n != 0 {
		t.Errorf("%d tables created from a tampered directory", n)
	}
}

// Two processes (two pools) applying at once to one file apply once.
func TestSQLiteConcurrentApplyOnce(t *testing.T) {
	testdb.SkipUnless(t, dialect.SQLite)
	path := filepath.Join(t.TempDir(), "c.db")
	dbs := []*sql.DB{sqliteDB(t, path), sqliteDB(t, path), sqliteDB(t, path)}
	var wg sync.WaitGroup
	results := make([][]string, len(dbs))
	errs := make([]error, len(dbs))
	for i, db := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = migrate.New(db, dialect.SQLite, migrations.SQLite(), nil).Apply(context.Background())
		}()
	}
	wg.Wait()
	var all []string
	for i := range dbs {
		if errs[i] != nil {
			t.Errorf("applier %d: %v", i, errs[i])
		}
		all = append(all, results[i]...)
	}
	slices.Sort(all)
	if want := versionsOf(sqlFiles(t, migrations.SQLite())); !slices.Equal(all, want) {
		t.Errorf("applied %v in all, want each of %v once", all, want)
	}
}
