// Package store is the auth database: it opens PostgreSQL or the embedded
// SQLite file, runs units of work on it (ent transactions that roll back on
// error or panic, with an explicit way to commit a failure that must be
// recorded), and owns every query and statement of the service, ent
// builders and prebuilt SQL alike, as methods that take and return domain
// types (it implements auth.Store and mail.Outbox). The differences between
// the two databases live here and nowhere else.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	pgxuuid "github.com/vgarvardt/pgx-google-uuid/v5"
	"modernc.org/sqlite"

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
	// Timeouts bound the waits on PostgreSQL.
	Timeouts Timeouts
	// WrapConnector, when set, wraps the database/sql connector: for a
	// driver wrapper that traces or counts statements.
	WrapConnector func(driver.Connector) driver.Connector
	// Log receives a warning for each SQLite file Open had to make
	// private (discarded when nil).
	Log *slog.Logger
}

// DB is an open database: the database/sql handle, an ent client on it and
// its dialect (dialect.Postgres or dialect.SQLite). Its methods are the
// service's queries and statements (see queries.go, tx.go and outbox.go).
type DB struct {
	queries
	SQL     *sql.DB
	Ent     *ent.Client
	Dialect string
	// Location describes where the data is, without credentials, for logs.
	Location string
	// clientBound is the deadline of a unit of work or single query (see
	// bound); zero: none.
	clientBound time.Duration
	// observer is ObserveAvailability's function.
	observer atomic.Pointer[func(error)]
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
			return Target{}, errors.New("DATABASE__URL is empty and so is DATA__DIR: no database to open")
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
//
// The write-ahead log is checkpointed into the database file once it holds
// 4,000 pages (about 16 MB) instead of SQLite's default 1,000: the commit
// that crosses the mark runs the checkpoint, whose two fsyncs then come
// four times less often, and a page written many times in between (an
// index's last page) is copied once. A checkpoint takes longer each time,
// which shows in the rotation's p99 at 8 and more callers (the README's
// Performance section). The -wal file keeps its largest size, about 16 MB.
// With synchronous(NORMAL) SQLite syncs the log only at a checkpoint:
// commits since the last one survive a crash of authd, not a power loss or
// a crash of the OS before the kernel writes them back (on Linux within
// about 30 s). Under load that is now up to 4,000 pages of commits rather
// than 1,000, about 330 rotations; when idle the kernel's write-back bounds
// it, as before.
func sqliteTarget(path string) (Target, error) {
	q := url.Values{}
	// busy_timeout first: switching a new file to WAL takes a lock that a
	// second process opening the file at the same moment must wait for.
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "wal_autocheckpoint(4000)")
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

// Open opens the database c names and checks that it answers. A SQLite
// database is made private first (see privateSQLite): its directory (mode
// 0700) and file (0600) are created if needed, and existing files others
// may read are set to 0600.
func Open(ctx context.Context, c Config) (*DB, error) {
	t, err := ParseURL(c.URL, c.DataDir)
	if err != nil {
		return nil, err
	}
	if t.Dialect == dialect.SQLite {
		log := c.Log
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		if err := privateSQLite(t.Path, log); err != nil {
			return nil, err
		}
	}
	db, err := openSQL(t, c.Timeouts, c.WrapConnector)
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
	client := ent.NewClient(ent.Driver(entsql.OpenDB(t.Dialect, db)))
	var clientBound time.Duration
	if t.Dialect == dialect.Postgres {
		clientBound = clientBoundFor(c.Timeouts)
	}
	return &DB{
		clientBound: clientBound,
		queries:     queries{c: client, sql: statementsFor(t.Dialect)},
		SQL:         db,
		Ent:         client,
		Dialect:     t.Dialect,
		Location:    t.Location,
	}, nil
}

// openSQL opens t's database/sql handle: pgx's stdlib driver on
// PostgreSQL, in READ COMMITTED, with google/uuid values encoded as binary
// uuids (without it pgx formats each as text and parses it back) and the
// timeouts to (unless the URL sets connect_timeout or statement_timeout
// itself), or modernc's SQLite with a cache of prepared statements per
// connection (stmtCache); wrap, when set, wraps the connector.
func openSQL(t Target, to Timeouts, wrap func(driver.Connector) driver.Connector) (*sql.DB, error) {
	var conn driver.Connector
	if t.Dialect == dialect.SQLite {
		conn = stmtCache{next: dsnConnector{dsn: t.DSN, drv: &sqlite.Driver{}}, size: stmtCacheSize}
	} else {
		cfg, err := pgx.ParseConfig(t.DSN)
		if err != nil {
			return nil, fmt.Errorf("store: open: %w", err)
		}
		// Token rotation relies on READ COMMITTED: a statement that waited
		// for a row lock reads the row's newest version (LockRefreshToken),
		// where REPEATABLE READ or SERIALIZABLE would fail with a
		// serialization error. A server or role default is overridden.
		cfg.RuntimeParams["default_transaction_isolation"] = "read committed"
		if u, err := url.Parse(t.DSN); err == nil {
			q := u.Query()
			if to.Connect > 0 && q.Get("connect_timeout") == "" {
				cfg.ConnectTimeout = to.Connect
			}
			if to.Statement > 0 && q.Get("statement_timeout") == "" {
				cfg.RuntimeParams["statement_timeout"] = fmt.Sprint(to.Statement.Milliseconds())
			}
		}
		conn = stdlib.GetConnector(*cfg, stdlib.OptionAfterConnect(func(_ context.Context, c *pgx.Conn) error {
			pgxuuid.Register(c.TypeMap())
			return nil
		}))
	}
	if wrap != nil {
		conn = wrap(conn)
	}
	return sql.OpenDB(conn), nil
}

// SQLiteFileMode is the mode of the SQLite database file, owner only
// whatever the umask, and so of the -wal, -shm and -journal files SQLite
// makes beside it: SQLite gives them the database file's mode.
const SQLiteFileMode fs.FileMode = 0o600

// privateSQLite prepares the SQLite database at path before the driver
// opens it: it creates the directory (0700) and the database file
// (SQLiteFileMode) when they do not exist, so SQLite makes the -wal and
// -shm files with that mode too, and sets an existing database, -wal,
// -shm or -journal file that group or others may access to
// SQLiteFileMode, logging a warning that names it. A file it cannot make private fails the
// start.
func privateSQLite(path string, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("store: data directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, SQLiteFileMode)
	if err != nil {
		return fmt.Errorf("store: database file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("store: database file: %w", err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("store: database file: %w", err)
		}
		was := fi.Mode().Perm()
		if was&0o077 == 0 {
			continue
		}
		if err := os.Chmod(p, SQLiteFileMode); err != nil {
			return fmt.Errorf("store: %s is open to group or others (mode %04o) and cannot be made private: %w", p, was, err)
		}
		log.Warn("database file was open to group or others; its mode is now 0600", "path", p, "previous_mode", fmt.Sprintf("%04o", was))
	}
	return nil
}

// dsnConnector opens connections of a driver that has no connector of its
// own (modernc's SQLite) with a fixed DSN.
type dsnConnector struct {
	dsn string
	drv driver.Driver
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.drv }

// forUpdate is a query modifier that locks the selected rows until the
// transaction ends: SELECT ... FOR UPDATE on PostgreSQL. SQLite has no row
// locks (ent refuses FOR UPDATE there); its transactions begin IMMEDIATE
// and so already hold the write lock, and the modifier does nothing.
func forUpdate(opts ...entsql.LockOption) func(*entsql.Selector) {
	return func(s *entsql.Selector) {
		if s.Dialect() == dialect.Postgres {
			s.ForUpdate(opts...)
		}
	}
}

// skipLocked is forUpdate that skips rows other transactions hold (FOR
// UPDATE SKIP LOCKED), for claiming work from a queue.
func skipLocked() func(*entsql.Selector) {
	return forUpdate(entsql.WithLockAction(entsql.SkipLocked))
}
