package main_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/internal/testutil/pgtest"
	"github.com/placebrain/auth/internal/testutil/testdb"
	"github.com/placebrain/auth/migrations"
)

// runAuthd runs the authd binary with args and env (plus PATH) and returns
// its combined output and exit code.
func runAuthd(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(buildAuthd(t), args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatalf("authd %v: %v", args, err)
	}
	return string(out), 0
}

// scratchDir writes the suite's migration directory plus one file to a
// temporary directory named like the dialect's, with atlas.sum rewritten
// (`atlas migrate hash`), and returns its path.
func scratchDir(t *testing.T, d, content string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), migrations.Dirs[d])
	if err := os.CopyFS(dir, migrations.For(d)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "99990101000000_scratch.sql"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	local, err := atlasmigrate.NewLocalDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := local.Checksum()
	if err != nil {
		t.Fatal(err)
	}
	if err := atlasmigrate.WriteSumFile(local, sum); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestMigrateLintCommand: `authd migrate lint` under the repository's
// atlas.hcl reports a dropped column, a unique index and a NOT NULL column
// without a default at error level (exit status 1), and passes the same
// files with an atlas:nolint directive for that check. It replays on
// DEV_DATABASE_URL or SQLite in memory and never opens DATABASE__URL (set
// here to a server that does not exist).
func TestMigrateLintCommand(t *testing.T) {
	d := testdb.Backend()
	env := []string{"DEV_DATABASE_URL=" + pgtest.AdminURL(), "DATABASE__URL=postgres://nobody@127.0.0.1:1/nowhere", "DATA__DIR=/nonexistent"}
	config, err := filepath.Abs("../../atlas.hcl")
	if err != nil {
		t.Fatal(err)
	}
	q := func(s string) string {
		if d == dialect.SQLite {
			return strings.ReplaceAll(s, `"`, "`")
		}
		return s
	}
	notNull := q(`ALTER TABLE "audit_events" ADD COLUMN "source" character varying NOT NULL;`)
	if d == dialect.SQLite {
		// Atlas writes it as a table rebuild on SQLite, which refuses
		// ADD COLUMN ... NOT NULL without a default.
		notNull = "PRAGMA foreign_keys = off;\n" +
			"CREATE TABLE `new_audit_events` (`id` uuid NOT NULL, `created_at` datetime NOT NULL, `event` text NOT NULL, `user_id` uuid NULL, `reason` text NULL, `source` text NOT NULL, PRIMARY KEY (`id`));\n" +
			"INSERT INTO `new_audit_events` (`id`, `created_at`, `event`, `user_id`, `reason`) SELECT `id`, `created_at`, `event`, `user_id`, `reason` FROM `audit_events`;\n" +
			"DROP TABLE `audit_events`;\n" +
			"ALTER TABLE `new_audit_events` RENAME TO `audit_events`;\n" +
			"CREATE INDEX `auditevent_created_at` ON `audit_events` (`created_at`);\n" +
			"CREATE INDEX `auditevent_user_id_created_at` ON `audit_events` (`user_id`, `created_at`);\n" +
			"PRAGMA foreign_keys = on;"
	}
	for _, tc := range []struct {
		name, stmt, analyzer, code string
	}{
		{"drop column", q(`ALTER TABLE "users" DROP COLUMN "imported_at";`), "destructive", "DS103"},
		{"unique index", q(`CREATE UNIQUE INDEX "users_username_key" ON "users" ("username");`), "data_depend", "MF101"},
		{"not null column without default", notNull, "data_depend", "MF103"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runAuthd(t, env, "migrate", "lint", "--config", config, "--dir", scratchDir(t, d, tc.stmt+"\n"))
			if code != 1 || !strings.Contains(out, "error   "+tc.code+" ") || !strings.Contains(out, "migration lint found errors") {
				t.Errorf("exit %d, output:\n%s", code, out)
			}
			out, code = runAuthd(t, env, "migrate", "lint", "--config", config, "--dir", scratchDir(t, d, "-- atlas:nolint "+tc.analyzer+"\n\n"+tc.stmt+"\n"))
			if code != 0 || strings.Contains(out, tc.code) {
				t.Errorf("with atlas:nolint %s: exit %d, output:\n%s", tc.analyzer, code, out)
			}
		})
	}
	// JSON for tools; the committed directories pass (make check runs this).
	out, code := runAuthd(t, env, "migrate", "lint", "--format", "json", "--dialect", migrations.Dirs[d], "--dir", scratchDir(t, d, q(`ALTER TABLE "users" DROP COLUMN "imported_at";`)+"\n"))
	var rep migrate.LintReport
	if code != 1 || json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &rep) != nil || rep.Errors() != 1 {
		t.Errorf("--format json: exit %d, output:\n%s", code, out)
	}
	if out, code := runAuthd(t, env, "migrate", "lint", "--config", config); code != 0 {
		t.Errorf("the committed migrations fail lint: exit %d\n%s", code, out)
	}
}

// migratedURL returns the URL of a database the real files migrated.
func migratedURL(t *testing.T) string {
	t.Helper()
	url := testdb.URL(t)
	if testdb.Backend() == dialect.SQLite {
		if out, code := runAuthd(t, []string{"DATABASE__URL=" + url}, "migrate", "apply"); code != 0 {
			t.Fatalf("migrate apply: %s", out)
		}
	}
	return url
}

// openURL opens a DATABASE__URL from testdb directly.
func openURL(t *testing.T, url string) *sql.DB {
	t.Helper()
	driver, dsn := "pgx", url
	if path, ok := strings.CutPrefix(url, "sqlite:"); ok {
		driver, dsn = "sqlite", "file:"+path+"?_pragma=busy_timeout(10000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestMigrateDriftCommand: `authd migrate drift` finds nothing on a
// database the files built (exit 0); an index made by hand and one
// dropped by hand are printed with the SQL that undoes them (exit 1),
// also as JSON.
func TestMigrateDriftCommand(t *testing.T) {
	url := migratedURL(t)
	env := []string{"DATABASE__URL=" + url, "DATA__DIR=" + t.TempDir()}
	out, code := runAuthd(t, env, "migrate", "drift")
	if code != 0 || !strings.Contains(out, "-- no drift") {
		t.Fatalf("untouched database: exit %d\n%s", code, out)
	}
	db := openURL(t, url)
	for _, s := range []string{`CREATE INDEX handmade_users_created_at ON users (created_at)`, `DROP INDEX refreshtoken_user_id`} {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	out, code = runAuthd(t, env, "migrate", "drift")
	q := func(s string) string {
		if testdb.Backend() == dialect.SQLite {
			return strings.ReplaceAll(s, `"`, "`")
		}
		return s
	}
	for _, want := range []string{
		`index "handmade_users_created_at" is not in the migration files`,
		`index "refreshtoken_user_id" is missing`,
		q(`DROP INDEX "handmade_users_created_at";`),
		q(`CREATE INDEX "refreshtoken_user_id" ON "refresh_tokens" ("user_id");`),
		"drift: 2 difference(s)",
	} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("drifted database: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	out, code = runAuthd(t, env, "migrate", "drift", "--format", "json")
	var d struct {
		Drifted bool
		SQL     []string
	}
	if code != 1 || json.Unmarshal([]byte(out[strings.Index(out, "{"):strings.LastIndex(out, "}")+1]), &d) != nil || !d.Drifted || len(d.SQL) != 2 {
		t.Errorf("--format json: exit %d\n%s", code, out)
	}
}

// TestMigratePlanJSON: `authd migrate plan --format json` on a fresh
// database lists every file with its statements and locks, and lints them
// (SQLite in memory, or DEV_DATABASE_URL).
func TestMigratePlanJSON(t *testing.T) {
	env := []string{"DATABASE__URL=" + testdb.NewURL(t), "DATA__DIR=" + t.TempDir(), "DEV_DATABASE_URL=" + pgtest.AdminURL()}
	out, code := runAuthd(t, env, "migrate", "plan", "--format", "json")
	var p migrate.Plan
	if code != 0 || json.Unmarshal([]byte(out[strings.Index(out, "{"):strings.LastIndex(out, "}")+1]), &p) != nil {
		t.Fatalf("exit %d\n%s", code, out)
	}
	files, _ := fs.Glob(migrations.For(testdb.Backend()), "*.sql")
	if len(p.Files) != len(files) || len(p.Files[0].Statements) == 0 || p.Files[0].Lint == nil || p.LintNote != "" {
		t.Errorf("plan: %d files (want %d), lint note %q\n%s", len(p.Files), len(files), p.LintNote, out)
	}
	for _, s := range p.Files[0].Statements {
		if !s.Lock.Known || len(s.Tables) == 0 {
			t.Errorf("statement %q: lock %+v, tables %+v", s.SQL, s.Lock, s.Tables)
		}
	}
}

// TestStartWaitsForMigrationOutsideTx (PostgreSQL): while another process
// (here the test, with a newer directory) runs a `-- atlas:txmode none`
// file whose CREATE INDEX CONCURRENTLY waits for a transaction, a starting
// authd answers health checks NOT_SERVING and logs who holds the migration
// lock and what it runs; once the file is done it serves, and it warns
// that the schema has an index its own files do not create (drift).
func TestStartWaitsForMigrationOutsideTx(t *testing.T) {
	testdb.SkipUnless(t, dialect.Postgres)
	ctx := context.Background()
	url := testdb.NewURL(t)
	db := openURL(t, url)

	// The newer directory: the real files and one that builds an index
	// concurrently, outside a transaction.
	dir := scratchDir(t, dialect.Postgres, "-- atlas:txmode none\n\n"+
		`CREATE INDEX CONCURRENTLY "users_created_at" ON "users" ("created_at");`+"\n")
	blocker := openURL(t, url)
	txc := make(chan *sql.Tx, 1)
	var once sync.Once
	m := migrate.New(db, dialect.Postgres, os.DirFS(dir), nil)
	m.Waiting = func(reason string) {
		if !strings.Contains(reason, "outside a transaction") {
			return
		}
		once.Do(func() {
			// A transaction that wrote to users: the concurrent build
			// waits for it to end.
			tx, err := blocker.Begin()
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := tx.Exec(`INSERT INTO users (id, created_at, username, email, email_normalized, password_hash, updated_at)
VALUES ($1, now(), 'a', 'a@x.io', 'a@x.io', 'h', now())`, uuid.New()); err != nil {
				t.Error(err)
			}
			txc <- tx
		})
	}
	applied := make(chan error, 1)
	go func() { _, err := m.Apply(ctx); applied <- err }()
	// Wait until the build is waiting for the transaction.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
  AND query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event_type IS NOT NULL`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		select {
		case err := <-applied:
			t.Fatalf("the newer directory's Apply ended before its index build waited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the concurrent index build never started")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Start authd: its files are applied, but the newer file's revision
	// is partial and the lock is held.
	addr := freeAddr(t)
	cmd := exec.Command(buildAuthd(t), "serve", "--dev")
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "GRPC__LISTEN_ADDR=" + addr, "DATABASE__URL=" + url, "DATA__DIR=" + t.TempDir()}
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	waitStatus := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "auth.AuthService"})
			if err == nil && r.GetStatus() == want {
				return
			}
			if err == nil && want == healthpb.HealthCheckResponse_NOT_SERVING && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("authd serves while another process's migration runs:\n%s", logs.String())
			}
			select {
			case err := <-exited:
				t.Fatalf("authd exited: %v\n%s", err, logs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("health never %v: %v\n%s", want, err, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitStatus(healthpb.HealthCheckResponse_NOT_SERVING)
	w := logRecord(logs.String(), "waiting for the migration lock")
	if w == nil || !strings.Contains(w["holder"].(string), "CREATE INDEX CONCURRENTLY") {
		t.Errorf("no log naming the lock holder and its statement: %v\n%s", w, logs.String())
	}

	// The build finishes once the transaction ends; authd then serves.
	if err := (<-txc).Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-applied; err != nil {
		t.Fatalf("the newer directory's Apply: %v", err)
	}
	waitStatus(healthpb.HealthCheckResponse_SERVING)
	if w := logRecord(logs.String(), "the database schema has drifted"); w == nil || w["level"] != "WARN" ||
		!strings.Contains(fmt.Sprint(w["differences"]), `index "users_created_at" is not in the migration files`) {
		t.Errorf("no drift warning at start: %v\n%s", w, logs.String())
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	<-exited
}
