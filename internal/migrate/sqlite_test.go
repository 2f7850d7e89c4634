package migrate_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	atlasmigrate "ariga.io/atlas/sql/migrate"
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

// usersRebuild rebuilds users (adding a nullable column) the way Atlas
// writes it for SQLite: users is referenced ON DELETE CASCADE by
// otp_requests, token_families and refresh_tokens.
const usersRebuild = "-- Disable the enforcement of foreign-keys constraints\nPRAGMA foreign_keys = off;\n" +
	"CREATE TABLE `new_users` (`id` uuid NOT NULL, `created_at` datetime NOT NULL, `username` text NOT NULL, `email` text NOT NULL, `email_normalized` text NOT NULL, `password_hash` text NOT NULL, `is_verified` bool NOT NULL DEFAULT (false), `verified_at` datetime NULL, `updated_at` datetime NOT NULL, `imported_at` datetime NULL, `deleted_at` datetime NULL, `nickname` text NULL, PRIMARY KEY (`id`));\n" +
	"INSERT INTO `new_users` (`id`, `created_at`, `username`, `email`, `email_normalized`, `password_hash`, `is_verified`, `verified_at`, `updated_at`, `imported_at`, `deleted_at`) SELECT `id`, `created_at`, `username`, `email`, `email_normalized`, `password_hash`, `is_verified`, `verified_at`, `updated_at`, `imported_at`, `deleted_at` FROM `users`;\n" +
	"DROP TABLE `users`;\n" +
	"ALTER TABLE `new_users` RENAME TO `users`;\n" +
	"CREATE UNIQUE INDEX `users_email_normalized_key` ON `users` (`email_normalized`);\n" +
	"-- Enable back the enforcement of foreign-keys constraints\nPRAGMA foreign_keys = on;\n"

// sqliteWithSession returns a migrated SQLite database holding one user
// with a token family and a refresh token.
func sqliteWithSession(t *testing.T) *sql.DB {
	t.Helper()
	db := sqliteDB(t, filepath.Join(t.TempDir(), "s.db"))
	if _, err := migrate.New(db, dialect.SQLite, migrations.SQLite(), nil).Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO users (id, created_at, username, email, email_normalized, password_hash, updated_at) VALUES ('u1', datetime('now'), 'a', 'a@x.io', 'a@x.io', 'h', datetime('now'))`,
		`INSERT INTO token_families (id, created_at, user_id) VALUES ('f1', datetime('now'), 'u1')`,
		`INSERT INTO refresh_tokens (id, created_at, token_hash, expires_at, family_id, user_id) VALUES ('r1', datetime('now'), x'01', datetime('now'), 'f1', 'u1')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

func countRows(t *testing.T, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func foreignKeysOn(t *testing.T, db *sql.DB) bool {
	t.Helper()
	var on bool
	if err := db.QueryRow("PRAGMA foreign_keys").Scan(&on); err != nil {
		t.Fatal(err)
	}
	return on
}

// TestSQLiteRebuildKeepsReferencingRows: rebuilding users in a file's
// transaction deletes every session with foreign keys on (the file's
// PRAGMA is a no-op there: the control below), so authd, like the Atlas
// CLI, turns them off around the transaction and checks them before it
// commits; and a `-- atlas:txmode none` file runs statement by statement,
// where the file's own PRAGMA works. Either way the sessions survive and
// the connection has foreign keys on again afterwards.
func TestSQLiteRebuildKeepsReferencingRows(t *testing.T) {
	testdb.SkipUnless(t, dialect.SQLite)
	ctx := context.Background()

	t.Run("control: in a transaction with foreign keys on", func(t *testing.T) {
		db := sqliteWithSession(t)
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		stmts, err := atlasmigrate.NewLocalFile("x.sql", []byte(usersRebuild)).Stmts()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stmts {
			if _, err := tx.Exec(s); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if countRows(t, db, "token_families") != 0 || countRows(t, db, "refresh_tokens") != 0 {
			t.Fatal("the control kept the sessions: the hazard this test guards against is gone")
		}
	})
	for _, mode := range []string{"", "-- atlas:txmode none\n\n"} {
		name := "in a transaction"
		if mode != "" {
			name = "txmode none"
		}
		t.Run(name, func(t *testing.T) {
			db := sqliteWithSession(t)
			dir := copyDirOf(t, migrations.SQLite())
			dir["99990101000000_nickname.sql"] = &fstest.MapFile{Data: []byte(mode + usersRebuild), Mode: 0o644}
			rehash(t, dir)
			got, err := migrate.New(db, dialect.SQLite, dir, nil).Apply(ctx)
			if err != nil || len(got) != 1 {
				t.Fatalf("Apply = %v, %v", got, err)
			}
			if countRows(t, db, "users") != 1 || countRows(t, db, "token_families") != 1 || countRows(t, db, "refresh_tokens") != 1 {
				t.Errorf("rows after the rebuild: users %d, token_families %d, refresh_tokens %d; want 1 each",
					countRows(t, db, "users"), countRows(t, db, "token_families"), countRows(t, db, "refresh_tokens"))
			}
			if !foreignKeysOn(t, db) {
				t.Error("foreign keys are off after the migration")
			}
			var applied, total int
			if err := db.QueryRow(`SELECT applied, total FROM atlas_schema_revisions WHERE version = '99990101000000'`).Scan(&applied, &total); err != nil || applied != total || total != 7 {
				t.Errorf("revision applied/total = %d/%d, %v", applied, total, err)
			}
			// Cascades work again: deleting the user deletes its session.
			if _, err := db.Exec(`DELETE FROM users WHERE id = 'u1'`); err != nil {
				t.Fatal(err)
			}
			if countRows(t, db, "refresh_tokens") != 0 {
				t.Error("ON DELETE CASCADE no longer works after the rebuild")
			}
		})
	}
}

// TestSQLiteForeignKeyViolationRollsBack: with foreign keys off during a
// file, a row the file leaves without its parent fails the file (as the
// Atlas CLI's check before commit does) and nothing of it stays.
func TestSQLiteForeignKeyViolationRollsBack(t *testing.T) {
	testdb.SkipUnless(t, dialect.SQLite)
	db := sqliteWithSession(t)
	dir := copyDirOf(t, migrations.SQLite())
	dir["99990101000000_orphan.sql"] = &fstest.MapFile{Mode: 0o644,
		Data: []byte("INSERT INTO token_families (id, created_at, user_id) VALUES ('f2', datetime('now'), 'nobody');\n")}
	rehash(t, dir)
	_, err := migrate.New(db, dialect.SQLite, dir, nil).Apply(context.Background())
	if err == nil || !strings.Contains(err.Error(), "violate foreign keys") {
		t.Fatalf("Apply = %v, want a foreign key violation", err)
	}
	if countRows(t, db, "token_families") != 1 || !foreignKeysOn(t, db) {
		t.Errorf("token_families %d rows, foreign keys on %v", countRows(t, db, "token_families"), foreignKeysOn(t, db))
	}
}
