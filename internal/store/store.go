// Package store opens the auth database, PostgreSQL or embedded SQLite, and
// runs units of work on it: ent transactions that roll back on error or
// panic, with an explicit way to commit a failure that must be recorded.
// The differences between the two databases live here and nowhere else.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	pgxuuid "github.com/vgarvardt/pgx-google-uuid/v5"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver (pure Go)

	"github.com/placebrain/auth/ent"
)

// SQLiteFile is the database file's name in the data directory when
// DATABASE__URL is unset.
const SQLiteFile = "authd.db"

// PoolConfig sizes the database/sql connection pool.
type PoolConfig struct {
	MaxOpenConns    int
	MaxIdleConns    int
	ConnMaxLifetime time.Duration
}

// Config says which database to open.
type Config struct {
	// URL is DATABASE__URL: postgres://, postgresql://,
	// postgresql+asyncpg:// (PostgreSQL) or sqlite:PATH (SQLite). Empty
	// means SQLite at DataDir/authd.db.
	URL string
	// DataDir holds the SQLite file when URL is empty.
	DataDir string
	Pool    PoolConfig
}

// DB is an open database: the database/sql handle, an ent client on it and
// its dialect (dialect.Postgres or dialect.SQLite).
type DB struct {
	SQL     *sql.DB
	Ent     *ent.Client
	Dialect string
	// Location describes where the data is, without credentials, for logs.
	Location string
}

// Close closes the database.
func (db *DB) Close() error { return db.SQL.Close() }

// Target is a parsed DATABASE__URL.
type Target struct {
	// Dialect is dialect.Postgres or dialect.SQLite.
	Dialect string
	// DSN is what the database/sql driver opens.
	DSN string
	// Location names the server or file without credentials.
	Location string
	// Path is the SQLite file path.
	Path string
}

// ParseURL resolves DATABASE__URL. PostgreSQL accepts postgres://,
// postgresql:// and the SQLAlchemy forms postgresql+asyncpg:// (and
// +psycopg, +psycopg2, +pg8000) that existing PlaceBrain deployments use;
// asyncpg's `ssl=` query parameter becomes `sslmode=`, and without a
// search_path (or options) parameter search_path=public is added. SQLite accepts
// sqlite:PATH and sqlite://PATH (sqlite:///abs/path for an absolute path);
// an empty URL means SQLite at dataDir/authd.db.
func ParseURL(raw, dataDir string) (Target, error) {
	if raw == "" {
		if dataDir == "" {
			dataDir = "data"
		}
		return sqliteTarget(filepath.Join(dataDir, SQLiteFile))
	}
	if rest, ok := strings.CutPrefix(raw, "sqlite:"); ok {
		rest = strings.TrimPrefix(rest, "//")
		rest, _, _ = strings.Cut(rest, "?")
		if rest == "" {
			return Target{}, errors.New("DATABASE__URL sqlite: URL names no file")
		}
		return sqliteTarget(rest)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, errors.New("DATABASE__URL is not a valid URL")
	}
	scheme, driver, _ := strings.Cut(u.Scheme, "+")
	if scheme != "postgres" && scheme != "postgresql" {
		return Target{}, fmt.Errorf("DATABASE__URL scheme %q is not supported (use postgres://, postgresql:// or sqlite:)", u.Scheme)
	}
	switch driver {
	case "", "asyncpg", "psycopg", "psycopg2", "pg8000":
	default:
		return Target{}, fmt.Errorf("DATABASE__URL driver %q is not supported", driver)
	}
	u.Scheme = "postgres"
	q := u.Query()
	if q.Get("search_path") == "" && q.Get("options") == "" {
		// The tables and atlas_schema_revisions live in public, as the
		// Atlas CLI expects with search_path=public.
		q.Set("search_path", "public")
		u.RawQuery = q.Encode()
	}
	if v := q.Get("ssl"); v != "" && q.Get("sslmode") == "" {
		switch strings.ToLower(v) {
		case "true", "require":
			v = "require"
		case "false", "disable":
			v = "disable"
		}
		q.Set("sslmode", v)
		q.Del("ssl")
		u.RawQuery = q.Encode()
	}
	return Target{Dialect: dialect.Postgres, DSN: u.String(), Location: "postgres://" + u.Host + u.Path}, nil
}

// sqliteTarget builds the SQLite DSN. Every connection gets foreign keys,
// WAL journaling (readers do not block the writer), a busy timeout so a
// writer waits for another instead of failing, and BEGIN IMMEDIATE for
// transactions: each transaction holds the database's single write lock
// from its start, which serializes read-modify-write units of work the way
// SELECT ... FOR UPDATE does on PostgreSQL. Times are written in SQLite's
// own sortable format (always UTC here), so comparisons in SQL hold.
func sqliteTarget(path string) (Target, error) {
	q := url.Values{}
	// busy_timeout first: switching a new file to WAL takes a lock that a
	// second process opening the file at the same moment must wait for.
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	q.Set("_time_format", "sqlite")
	return Target{Dialect: dialect.SQLite, DSN: "file:" + path + "?" + q.Encode(), Location: "sqlite:" + path, Path: path}, nil
}

// NormalizeURL returns the driver DSN for a PostgreSQL DATABASE__URL (see
// ParseURL).
func NormalizeURL(raw string) (string, error) {
	t, err := ParseURL(raw, "")
	if err != nil {
		return "", err
	}
	if t.Dialect != dialect.Postgres {
		return "", errors.New("DATABASE__URL is not a PostgreSQL URL")
	}
	return t.DSN, nil
}

// Open opens the database c names, creating the SQLite file and its
// directory (mode 0700) if needed, and checks that it answers.
func Open(ctx context.Context, c Config) (*DB, error) {
	t, err := ParseURL(c.URL, c.DataDir)
	if err != nil {
		return nil, err
	}
	db, err := openSQL(t)
	if err != nil {
		return nil, err
	}
	if c.Pool.MaxOpenConns > 0 {
		db.SetMaxOpenConns(c.Pool.MaxOpenConns)
	}
	if t.Dialect == dialect.SQLite {
		// SQLite runs one writer at a time; more connections only make
		// writers wait in SQLite's busy handler, which sleeps in coarse
		// steps, instead of in the pool's queue, which wakes them at once.
		// Reads are microseconds, so one connection serves them too.
		db.SetMaxOpenConns(1)
	}
	db.SetMaxIdleConns(c.Pool.MaxIdleConns)
	db.SetConnMaxLifetime(c.Pool.ConnMaxLifetime)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A new SQLite file is switched to WAL by the first connection; a
	// second process opening it at that moment gets SQLITE_BUSY (the
	// switch does not wait in the busy handler), so it tries again.
	_, err = backoff.Retry(pingCtx, func() (struct{}, error) {
		err := db.PingContext(pingCtx)
		if err != nil && (t.Dialect != dialect.SQLite || !strings.Contains(err.Error(), "SQLITE_BUSY")) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, backoff.WithMaxElapsedTime(10*time.Second))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: connect to %s: %w", t.Location, err)
	}
	return &DB{
		SQL:      db,
		Ent:      ent.NewClient(ent.Driver(entsql.OpenDB(t.Dialect, db))),
		Dialect:  t.Dialect,
		Location: t.Location,
	}, nil
}

// openSQL opens t's database/sql handle: pgx's stdlib driver on
// PostgreSQL, in READ COMMITTED, with google/uuid values encoded as binary
// uuids (without it pgx formats each as text and parses it back), or
// modernc's SQLite.
func openSQL(t Target) (*sql.DB, error) {
	if t.Dialect == dialect.SQLite {
		if err := os.MkdirAll(filepath.Dir(t.Path), 0o700); err != nil {
			return nil, fmt.Errorf("store: data directory: %w", err)
		}
		db, err := sql.Open("sqlite", t.DSN)
		if err != nil {
			return nil, fmt.Errorf("store: open: %w", err)
		}
		return db, nil
	}
	cfg, err := pgx.ParseConfig(t.DSN)
	if err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	// Token rotation relies on READ COMMITTED: a statement that waited for
	// a row lock reads the row's newest version (lockToken in
	// internal/auth), where REPEATABLE READ or SERIALIZABLE would fail
	// with a serialization error. A server or role default is overridden.
	cfg.RuntimeParams["default_transaction_isolation"] = "read committed"
	return stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(func(_ context.Context, c *pgx.Conn) error {
		pgxuuid.Register(c.TypeMap())
		return nil
	})), nil
}

// ForUpdate is a query modifier that locks the selected rows until the
// transaction ends: SELECT ... FOR UPDATE on PostgreSQL. SQLite has no row
// locks (ent refuses FOR UPDATE there); its transactions begin IMMEDIATE
// and so already hold the write lock, and the modifier does nothing.
func ForUpdate(opts ...entsql.LockOption) func(*entsql.Selector) {
	return func(s *entsql.Selector) {
		if s.Dialect() == dialect.Postgres {
			s.ForUpdate(opts...)
		}
	}
}

// SkipLocked is ForUpdate that skips rows other transactions hold (FOR
// UPDATE SKIP LOCKED), for claiming work from a queue.
func SkipLocked() func(*entsql.Selector) {
	return ForUpdate(entsql.WithLockAction(entsql.SkipLocked))
}

// commitError marks an error whose transaction must still be committed.
type commitError struct{ err error }

func (c commitError) Error() string { return c.err.Error() }
func (c commitError) Unwrap() error { return c.err }

// CommitAnd wraps err so that WithTx commits the transaction's writes
// before returning err. Use it for failures that must be recorded: a counted
// wrong OTP attempt, a token family revoked by reuse detection.
func CommitAnd(err error) error { return commitError{err: err} }

// WithTx runs fn in one ent transaction. It commits when fn returns nil,
// rolls back when fn returns an error or panics (re-panicking after), and
// commits then returns the inner error when fn returns CommitAnd(err).
func WithTx(ctx context.Context, client *ent.Client, fn func(tx *ent.Tx) error) (err error) {
	tx, err := client.Tx(ctx)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer func() {
		if v := recover(); v != nil {
			_ = tx.Rollback()
			panic(v)
		}
	}()
	ferr := fn(tx)
	var ce commitError
	if ferr != nil && !errors.As(ferr, &ce) {
		if rerr := tx.Rollback(); rerr != nil {
			return errors.Join(ferr, fmt.Errorf("store: rollback: %w", rerr))
		}
		return ferr
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	if ferr != nil {
		return ce.err
	}
	return nil
}
