package migrate_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/migrations"
)

// concurrentFile builds an index on a large table and a unique index on
// users concurrently, outside a transaction, as later migrations on
// refresh_tokens and audit_events will.
const (
	concurrentName    = scratchVersion + "_concurrent_indexes.sql"
	concurrentStmt1   = `CREATE INDEX CONCURRENTLY "auditevent_event" ON "audit_events" ("event");`
	concurrentStmt2   = `CREATE UNIQUE INDEX CONCURRENTLY "users_username_key" ON "users" ("username");`
	concurrentContent = "-- atlas:txmode none\n\n" +
		"-- Create index \"auditevent_event\" to table: \"audit_events\"\n" + concurrentStmt1 + "\n" +
		"-- Create index \"users_username_key\" to table: \"users\"\n" + concurrentStmt2 + "\n"
)

// insertUser adds a user row named username.
func insertUser(t *testing.T, db *sql.DB, username string) uuid.UUID {
	t.Helper()
	id := uuid.New()
	email := id.String() + "@example.com"
	if _, err := db.Exec(`INSERT INTO users (id, created_at, username, email, email_normalized, password_hash, updated_at)
VALUES ($1, now(), $2, $3, $3, 'x', now())`, id, username, email); err != nil {
		t.Fatal(err)
	}
	return id
}

// indexState returns whether the index exists and is valid.
func indexState(t *testing.T, db *sql.DB, name string) (exists, valid bool) {
	t.Helper()
	err := db.QueryRow(`SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = $1`, name).Scan(&valid)
	if errors.Is(err, sql.ErrNoRows) {
		return false, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true, valid
}

// revisionRow is a row of atlas_schema_revisions as the CLI writes it.
type revisionRow struct {
	version, description, hash, operator string
	typ, applied, total                  int64
	errText, errStmt                     sql.NullString
	partial                              []string
}

func readRevision(t *testing.T, db *sql.DB, version string) revisionRow {
	t.Helper()
	var (
		r       revisionRow
		partial []byte
	)
	err := db.QueryRow(`SELECT version, description, type, applied, total, error, error_stmt, hash, partial_hashes, operator_version
FROM public.atlas_schema_revisions WHERE version = $1`, version).Scan(
		&r.version, &r.description, &r.typ, &r.applied, &r.total, &r.errText, &r.errStmt, &r.hash, &partial, &r.operator)
	if err != nil {
		t.Fatalf("revision %s: %v", version, err)
	}
	if partial != nil {
		if err := json.Unmarshal(partial, &r.partial); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// partialHash is the Atlas executor's hash of the statements applied so
// far: "h1:" and the base64 SHA-256 of their texts written one after the
// other.
func partialHash(stmts ...string) string {
	h := sha256.New()
	for _, s := range stmts {
		h.Write([]byte(s))
	}
	return "h1:" + base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// TestTxModeNoneConcurrentIndex: a `-- atlas:txmode none` file with
// CREATE INDEX CONCURRENTLY applies on PostgreSQL, its revision row as the
// Atlas CLI writes it. A run that fails in its second statement (a
// duplicate username) leaves the revision the CLI would report: version
// current, 1 of 2 statements applied, the error and the failed statement,
// the first statement's partial hash, the file still pending; and the
// INVALID index PostgreSQL leaves. The retry resumes at the second
// statement (the first, not IF NOT EXISTS, would fail if run again),
// drops the INVALID leftover, and ends with a valid index and the row of
// a complete run.
func TestTxModeNoneConcurrentIndex(t *testing.T) {
	ctx := context.Background()
	db, _ := emptyDB(t)
	real := versionsOf(sqlFiles(t, migrations.Postgres()))
	apply(t, db, migrations.Postgres())
	ext := extendedDir(t, concurrentName, concurrentContent)
	wantHash := strings.TrimPrefix(sumEntries(t, ext[atlasmigrate.HashFileName].Data)[concurrentName], "h1:")
	insertUser(t, db, "twin")
	dup := insertUser(t, db, "twin")

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var reasons []string
	m := migrate.New(db, dialect.Postgres, ext, log)
	m.Waiting = func(r string) { reasons = append(reasons, r) }
	got, err := m.Apply(ctx)
	if err == nil {
		t.Fatal("Apply succeeded with a duplicate username")
	}
	if len(got) != 0 || !strings.Contains(err.Error(), "1 of 2 statements applied; a retry resumes at statement 2") ||
		!strings.Contains(err.Error(), "could not create unique index") {
		t.Errorf("Apply = %v, %v", got, err)
	}
	if len(reasons) == 0 || !strings.Contains(reasons[0], concurrentName+" outside a transaction") {
		t.Errorf("Waiting called with %q, want the file run outside a transaction", reasons)
	}

	// In between: what `atlas migrate status` reads from the same row.
	r := readRevision(t, db, scratchVersion)
	if r.description != "concurrent_indexes" || r.typ != 2 || r.applied != 1 || r.total != 2 || r.hash != wantHash ||
		!r.errText.Valid || !strings.Contains(r.errText.String, "could not create unique index") ||
		r.errStmt.String != concurrentStmt2 || len(r.partial) != 1 || r.partial[0] != partialHash(concurrentStmt1) ||
		r.operator != migrate.OperatorVersion {
		t.Errorf("revision after the failure = %+v", r)
	}
	if exists, valid := indexState(t, db, "auditevent_event"); !exists || !valid {
		t.Errorf("first index exists=%v valid=%v, want a valid index", exists, valid)
	}
	if exists, valid := indexState(t, db, "users_username_key"); !exists || valid {
		t.Errorf("failed index exists=%v valid=%v, want PostgreSQL's INVALID leftover", exists, valid)
	}
	st, err := migrate.New(db, dialect.Postgres, ext, nil).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Current != scratchVersion || len(st.Applied) != len(real)+1 || len(st.Pending) != 1 || st.Pending[0].Name != concurrentName ||
		st.Partial == nil || st.Partial.Applied != 1 || st.Partial.Total != 2 || st.Partial.ErrorStmt != concurrentStmt2 {
		t.Errorf("status after the failure = current %q, %d applied, pending %+v, partial %+v", st.Current, len(st.Applied), st.Pending, st.Partial)
	}
	var plan bytes.Buffer
	if err := migrate.New(db, dialect.Postgres, ext, nil).Plan(ctx, &plan); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan.String(), "partially applied: 1 of 2 statements; a retry resumes at statement 2") ||
		!strings.Contains(plan.String(), "statement 1 (line 4) [applied]") {
		t.Errorf("plan after the failure:\n%s", plan.String())
	}

	// The retry, once the duplicate is gone.
	if _, err := db.Exec(`DELETE FROM users WHERE id = $1`, dup); err != nil {
		t.Fatal(err)
	}
	got, err = migrate.New(db, dialect.Postgres, ext, log).Apply(ctx)
	if err != nil || len(got) != 1 || got[0] != scratchVersion {
		t.Fatalf("retry = %v, %v", got, err)
	}
	if exists, valid := indexState(t, db, "users_username_key"); !exists || !valid {
		t.Errorf("after the retry the index exists=%v valid=%v, want valid", exists, valid)
	}
	if !strings.Contains(logs.String(), "dropping the INVALID index") {
		t.Errorf("the retry did not say it dropped the INVALID leftover:\n%s", logs.String())
	}
	r = readRevision(t, db, scratchVersion)
	if r.applied != 2 || r.total != 2 || r.errText.Valid || r.errStmt.Valid || r.partial != nil || r.typ != 2 || r.hash != wantHash {
		t.Errorf("revision after the retry = %+v", r)
	}
	st, err = migrate.New(db, dialect.Postgres, ext, nil).Status(ctx)
	if err != nil || st.Partial != nil || len(st.Pending) != 0 || st.Current != scratchVersion {
		t.Errorf("status after the retry = %+v, %v", st, err)
	}

	// An older binary (the real directory) starts on this database: it
	// is ahead, nothing to do.
	if got, err := migrate.New(db, dialect.Postgres, migrations.Postgres(), nil).Apply(ctx); err != nil || len(got) != 0 {
		t.Errorf("Apply(real) on the newer database = %v, %v", got, err)
	}
}

// TestTxModeNoneIfNotExistsLeftover: with IF NOT EXISTS a retry would skip
// the INVALID index a failed build left (and the Atlas CLI records the file
// applied); authd drops the leftover first, so the index ends valid.
func TestTxModeNoneIfNotExistsLeftover(t *testing.T) {
	ctx := context.Background()
	db, _ := emptyDB(t)
	apply(t, db, migrations.Postgres())
	const name = scratchVersion + "_username_key.sql"
	ext := extendedDir(t, name, "-- atlas:txmode none\n\n"+
		`CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "users_username_key" ON "users" ("username");`+"\n")
	insertUser(t, db, "twin")
	dup := insertUser(t, db, "twin")
	if _, err := migrate.New(db, dialect.Postgres, ext, nil).Apply(ctx); err == nil {
		t.Fatal("Apply succeeded with a duplicate username")
	}
	if exists, valid := indexState(t, db, "users_username_key"); !exists || valid {
		t.Fatalf("index exists=%v valid=%v, want an INVALID leftover", exists, valid)
	}
	if r := readRevision(t, db, scratchVersion); r.applied != 0 || r.total != 1 || !r.errText.Valid {
		t.Errorf("revision after the failure = %+v", r)
	}
	if _, err := db.Exec(`DELETE FROM users WHERE id = $1`, dup); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.New(db, dialect.Postgres, ext, nil).Apply(ctx); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if exists, valid := indexState(t, db, "users_username_key"); !exists || !valid {
		t.Errorf("after the retry the index exists=%v valid=%v, want valid", exists, valid)
	}
}

// TestTxModeNoneFailedStatementStops: a failing statement outside a
// transaction stops the file there: the statements before it stay, those
// after it do not run; a newer file's partial revision makes an older
// directory refuse to apply rather than guess.
func TestTxModeNoneFailedStatementStops(t *testing.T) {
	ctx := context.Background()
	db, _ := emptyDB(t)
	apply(t, db, migrations.Postgres())
	const name = scratchVersion + "_three.sql"
	ext := extendedDir(t, name, "-- atlas:txmode none\n\n"+
		`CREATE TABLE "first_t" ("id" bigint NOT NULL, PRIMARY KEY ("id"));`+"\n"+
		`INSERT INTO "no_such_table" VALUES (1);`+"\n"+
		`CREATE TABLE "third_t" ("id" bigint NOT NULL, PRIMARY KEY ("id"));`+"\n")
	if _, err := migrate.New(db, dialect.Postgres, ext, nil).Apply(ctx); err == nil {
		t.Fatal("Apply succeeded")
	}
	if !tableExists(t, db, "first_t") || tableExists(t, db, "third_t") {
		t.Errorf("first_t %v third_t %v, want the first statement kept and the third not run", tableExists(t, db, "first_t"), tableExists(t, db, "third_t"))
	}
	if r := readRevision(t, db, scratchVersion); r.applied != 1 || r.total != 3 || !strings.Contains(r.errStmt.String, "no_such_table") {
		t.Errorf("revision = %+v", r)
	}
	m := migrate.New(db, dialect.Postgres, migrations.Postgres(), nil)
	m.LockTimeout = 2 * time.Second
	if _, err := m.Apply(ctx); err == nil || !strings.Contains(err.Error(), "partially applied and this authd has no such file") {
		t.Errorf("Apply(real) on a database with a newer partial file = %v", err)
	}
}

// TestTxModeDirective: the directive is read as the Atlas CLI reads it.
func TestTxModeDirective(t *testing.T) {
	for _, tc := range []struct {
		content, want, err string
	}{
		{"CREATE TABLE t (id int);\n", migrate.TxModeFile, ""},
		{"-- atlas:txmode none\n\nCREATE TABLE t (id int);\n", migrate.TxModeNone, ""},
		{"-- atlas:txmode file\n\nCREATE TABLE t (id int);\n", migrate.TxModeFile, ""},
		// Not a file directive: attached to the statement (no empty line).
		{"-- atlas:txmode none\nCREATE TABLE t (id int);\n", migrate.TxModeFile, ""},
		{"-- atlas:txmode all\n\nCREATE TABLE t (id int);\n", "", "applies to a whole run"},
		{"-- atlas:txmode sometimes\n\nCREATE TABLE t (id int);\n", "", "unknown atlas:txmode"},
		{"-- atlas:txmode none\n-- atlas:txmode file\n\nCREATE TABLE t (id int);\n", "", "2 atlas:txmode directives"},
	} {
		got, err := migrate.TxMode(atlasmigrate.NewLocalFile("1_x.sql", []byte(tc.content)))
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("TxMode(%q) = %q, %v; want %q, error with %q", tc.content, got, err, tc.want, tc.err)
		}
	}
}

// TestApplyWaitsForLockHolder: while another session holds the Atlas
// lock, Apply says who holds it (through Waiting) and waits up to
// LockTimeout; a database with nothing pending takes no lock at all.
func TestApplyWaitsForLockHolder(t *testing.T) {
	ctx := context.Background()
	db, url := emptyDB(t)
	holder, err := openDB(t, url).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	h := fnv.New32()
	h.Write([]byte(migrate.LockName))
	id := int64(h.Sum32())
	var ok bool
	if err := holder.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", id).Scan(&ok); err != nil || !ok {
		t.Fatalf("take lock: %v %v", ok, err)
	}
	var (
		mu      sync.Mutex
		reasons []string
	)
	m := migrate.New(db, dialect.Postgres, migrations.Postgres(), nil)
	m.LockTimeout = time.Second
	m.Waiting = func(r string) { mu.Lock(); reasons = append(reasons, r); mu.Unlock() }
	if _, err := m.Apply(ctx); err == nil {
		t.Fatal("Apply succeeded while the lock was held")
	}
	var pid int
	if err := holder.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if len(reasons) == 0 || !strings.Contains(reasons[0], fmt.Sprintf("held by pid %d", pid)) {
		t.Errorf("Waiting reasons %q, want the holder's pid %d", reasons, pid)
	}

	// Up to date: no lock needed.
	if _, err := holder.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", id); err != nil {
		t.Fatal(err)
	}
	apply(t, db, migrations.Postgres())
	if err := holder.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", id).Scan(&ok); err != nil || !ok {
		t.Fatalf("take lock again: %v %v", ok, err)
	}
	reasons = nil
	if got, err := m.Apply(ctx); err != nil || len(got) != 0 || len(reasons) != 0 {
		t.Errorf("Apply on an up-to-date database while the lock is held = %v, %v, waited %q", got, err, reasons)
	}
}

// TestTxModeNoneNeedsNoTransaction: the statement PostgreSQL refuses in a
// transaction block fails in a file without the directive (what lint's
// AD101 warns of) and its transaction leaves nothing behind.
func TestTxModeNoneNeedsNoTransaction(t *testing.T) {
	ctx := context.Background()
	db, _ := emptyDB(t)
	apply(t, db, migrations.Postgres())
	ext := extendedDir(t, scratchVersion+"_in_tx.sql", concurrentStmt1+"\n")
	_, err := migrate.New(db, dialect.Postgres, ext, nil).Apply(ctx)
	if err == nil || !strings.Contains(err.Error(), "cannot run inside a transaction block") {
		t.Errorf("Apply = %v", err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM atlas_schema_revisions WHERE version = $1`, scratchVersion).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d revision rows, %v", n, err)
	}
}
