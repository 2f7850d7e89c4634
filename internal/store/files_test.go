package store_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"entgo.io/ent/dialect"

	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/testutil/testdb"
)

// withUmask runs the rest of the test under the umask most systems use,
// which leaves new files readable by everyone (0644): the database's
// privacy must not depend on a stricter one.
func withUmask(t *testing.T) {
	t.Helper()
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
}

// openSQLite opens the SQLite file at path with the service's settings and
// writes to it, so that SQLite has made its -wal and -shm files; they stay
// while its connection stays open, until the test ends.
func openSQLite(t *testing.T, path string, log *slog.Logger) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.Config{URL: "sqlite:" + path, Pool: store.PoolConfig{MaxIdleConns: 1}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.SQL.Exec("CREATE TABLE IF NOT EXISTS t (x text); INSERT INTO t VALUES ('row')"); err != nil {
		t.Fatal(err)
	}
	return db
}

// wantModes checks that each of the SQLite files at path exists with mode
// SQLiteFileMode.
func wantModes(t *testing.T, path string) {
	t.Helper()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(p), err)
			continue
		}
		if got := fi.Mode().Perm(); got != store.SQLiteFileMode {
			t.Errorf("%s mode = %04o, want %04o", filepath.Base(p), got, store.SQLiteFileMode)
		}
	}
}

// A new SQLite database is created 0600 before SQLite opens it, and SQLite
// gives its -wal and -shm files the same mode.
func TestNewSQLiteFilesArePrivate(t *testing.T) {
	testdb.SkipUnless(t, dialect.SQLite)
	withUmask(t)
	path := filepath.Join(t.TempDir(), "data", "authd.db")
	openSQLite(t, path, nil)
	wantModes(t, path)
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory: %v, %v; want mode 0700", fi.Mode().Perm(), err)
	}
}

// Existing SQLite files that group or others may read are set to 0600 when
// the database is opened, each with a warning naming it and nothing of the
// data.
func TestOpenMakesExistingSQLiteFilesPrivate(t *testing.T) {
	testdb.SkipUnless(t, dialect.SQLite)
	withUmask(t)
	path := filepath.Join(t.TempDir(), "authd.db")
	openSQLite(t, path, nil) // stays open: the -wal and -shm files stay
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	openSQLite(t, path, slog.New(slog.NewJSONHandler(&logs, nil)))
	wantModes(t, path)
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("log lines = %d, want one per file:\n%s", len(lines), logs.String())
	}
	for i, p := range []string{path, path + "-wal", path + "-shm"} {
		if !strings.Contains(lines[i], `"level":"WARN"`) || !strings.Contains(lines[i], `"path":"`+p+`"`) || !strings.Contains(lines[i], `"previous_mode":"0644"`) {
			t.Errorf("log line %d does not warn about %s: %s", i, p, lines[i])
		}
	}
	if strings.Contains(logs.String(), "row") {
		t.Errorf("log holds data: %s", logs.String())
	}

	// Private files are left alone, silently.
	logs.Reset()
	openSQLite(t, path, slog.New(slog.NewJSONHandler(&logs, nil)))
	if logs.Len() != 0 {
		t.Errorf("opening private files logged: %s", logs.String())
	}
}

// The service's SQLite connection runs with its settings: write-ahead
// log, NORMAL sync, foreign keys, and the checkpoint mark of 4,000 pages
// (sqliteTarget), not SQLite's default of 1,000.
func TestSQLiteConnectionSettings(t *testing.T) {
	testdb.SkipUnless(t, dialect.SQLite)
	db := openSQLite(t, filepath.Join(t.TempDir(), "authd.db"), nil)
	for pragma, want := range map[string]string{
		"journal_mode": "wal", "synchronous": "1", "foreign_keys": "1", "wal_autocheckpoint": "4000",
	} {
		var got string
		if err := db.SQL.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
}
