// Package migrate applies the Atlas versioned migrations in ../../migrations
// with the ariga.io/atlas library, recording revisions in the same
// atlas_schema_revisions table and columns as the Atlas CLI (and, on
// PostgreSQL, under its advisory lock), so that DBAs may use either tool on
// the same database.
package migrate

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"time"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	"ariga.io/atlas/sql/schema"
	"ariga.io/atlas/sql/sqlite"
	"entgo.io/ent/dialect"
	"github.com/google/uuid"
)

const (
	// LockName is the advisory lock the Atlas CLI takes while applying
	// (`atlas migrate apply`); authd takes the same one, so two instances,
	// or an instance and the CLI, never apply at the same time.
	LockName = "atlas_migrate_execute"
	// OperatorVersion is written to atlas_schema_revisions.operator_version.
	OperatorVersion = "placebrain-authd"
)

// ErrDirectoryTampered reports that a migration file does not match
// atlas.sum: a file was edited, added or removed by hand.
var ErrDirectoryTampered = errors.New("migration directory does not match atlas.sum")

// Migrator applies one migration directory to one database.
type Migrator struct {
	db          *sql.DB
	dialect     string
	fsys        fs.FS
	log         *slog.Logger
	LockTimeout time.Duration
}

// New returns a Migrator for the directory fsys (SQL files and atlas.sum)
// on db of the given dialect (dialect.Postgres or dialect.SQLite).
func New(db *sql.DB, d string, fsys fs.FS, log *slog.Logger) *Migrator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Migrator{db: db, dialect: d, fsys: fsys, log: log, LockTimeout: 5 * time.Minute}
}

// File is one migration file.
type File struct {
	// Version is the file's version (its timestamp prefix).
	Version string
	// Name is the file name, e.g. 20261129120000_init.sql.
	Name string
	// SQL is the file's content.
	SQL string
}

// Status describes a database's migration state.
type Status struct {
	// Current is the last applied version, "" when none.
	Current string
	// Applied are the recorded revisions in version order.
	Applied []*migrate.Revision
	// Pending are the files not applied yet.
	Pending []File
}

// openDir copies the directory into an in-memory Atlas directory and checks
// it against atlas.sum (ErrDirectoryTampered).
func (m *Migrator) openDir() (*migrate.MemDir, error) {
	dir, err := MemDir(m.fsys)
	if err != nil {
		return nil, err
	}
	if err := validate(dir); err != nil {
		dir.Close()
		return nil, err
	}
	return dir, nil
}

// MemDir copies a migration directory (SQL files and atlas.sum) into a new
// in-memory Atlas directory; Close it when done.
func MemDir(fsys fs.FS) (*migrate.MemDir, error) {
	dir := migrate.OpenMemDir("authd-" + uuid.NewString())
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		return dir.WriteFile(path, b)
	})
	if err != nil {
		dir.Close()
		return nil, fmt.Errorf("migrate: read directory: %w", err)
	}
	return dir, nil
}

// validate checks the directory against atlas.sum.
func validate(dir migrate.Dir) error {
	err := migrate.Validate(dir)
	var ce *migrate.ChecksumError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return fmt.Errorf("%w: %s was %s after atlas.sum was written; never edit a migration file, add a new one with `make migration`",
			ErrDirectoryTampered, ce.File, ce.Reason)
	case errors.Is(err, migrate.ErrChecksumMismatch), errors.Is(err, migrate.ErrChecksumNotFound):
		return fmt.Errorf("%w: %v", ErrDirectoryTampered, err)
	default:
		return fmt.Errorf("migrate: validate directory: %w", err)
	}
}

// openDriver opens Atlas's driver for the dialect on q.
func openDriver(d string, q querier) (migrate.Driver, error) {
	var (
		drv migrate.Driver
		err error
	)
	switch d {
	case dialect.Postgres:
		drv, err = postgres.Open(q)
	case dialect.SQLite:
		drv, err = sqlite.Open(q)
	default:
		err = fmt.Errorf("unsupported dialect %q", d)
	}
	if err != nil {
		return nil, fmt.Errorf("migrate: open driver: %w", err)
	}
	return drv, nil
}

// executor builds an Atlas executor on q (a *sql.DB or a *sql.Tx).
func executor(ctx context.Context, q querier, d string, dir migrate.Dir) (*migrate.Executor, error) {
	drv, err := openDriver(d, q)
	if err != nil {
		return nil, err
	}
	rrw, err := newRevisions(ctx, q, d)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return migrate.NewExecutor(drv, dir, rrw, migrate.WithOperatorVersion(OperatorVersion))
}

// Status reads applied revisions and pending files. It fails with
// ErrDirectoryTampered when the directory does not match atlas.sum.
func (m *Migrator) Status(ctx context.Context) (*Status, error) {
	dir, err := m.openDir()
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	rrw, err := newRevisions(ctx, m.db, m.dialect)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	revs, err := rrw.ReadRevisions(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: read revisions: %w", err)
	}
	ex, err := executor(ctx, m.db, m.dialect, dir)
	if err != nil {
		return nil, err
	}
	pending, err := ex.Pending(ctx)
	if err != nil && !errors.Is(err, migrate.ErrNoPendingFiles) {
		return nil, fmt.Errorf("migrate: pending: %w", err)
	}
	st := &Status{Applied: revs}
	if len(revs) > 0 {
		st.Current = revs[len(revs)-1].Version
	}
	for _, f := range pending {
		st.Pending = append(st.Pending, File{Version: f.Version(), Name: f.Name(), SQL: string(f.Bytes())})
	}
	return st, nil
}

// Plan writes the SQL of every pending file to w without running it.
func (m *Migrator) Plan(ctx context.Context, w io.Writer) error {
	st, err := m.Status(ctx)
	if err != nil {
		return err
	}
	if len(st.Pending) == 0 {
		_, err := fmt.Fprintf(w, "-- no pending migrations (current version %q)\n", st.Current)
		return err
	}
	for _, f := range st.Pending {
		if _, err := fmt.Fprintf(w, "-- file: %s\n%s\n", f.Name, f.SQL); err != nil {
			return err
		}
	}
	return nil
}

// Apply runs every pending file, each in its own transaction together with
// its revision row, on PostgreSQL while holding the Atlas CLI's advisory
// lock. It returns the applied versions; none when the database is up to
// date.
func (m *Migrator) Apply(ctx context.Context) ([]string, error) {
	dir, err := m.openDir()
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	// One connection does everything: it holds the advisory lock (a
	// session lock) and runs the per-file transactions, so a pool of one
	// connection cannot deadlock.
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Close()
	if m.dialect == dialect.Postgres {
		unlock, err := m.lock(ctx, conn)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	// On SQLite every transaction begins IMMEDIATE (see store), so the
	// per-file transactions below already serialize concurrent appliers:
	// each computes what is pending after the previous one committed.
	var applied []string
	for {
		version, err := m.applyNext(ctx, conn, dir)
		if errors.Is(err, migrate.ErrNoPendingFiles) {
			return applied, nil
		}
		if err != nil {
			return applied, err
		}
		applied = append(applied, version)
	}
}

// lock takes the Atlas CLI's advisory lock (a session lock) on conn. The
// returned function releases it; if releasing fails (say ctx ended), it
// discards the connection so the session, and with it the lock, ends.
func (m *Migrator) lock(ctx context.Context, conn *sql.Conn) (func(), error) {
	drv, err := postgres.Open(conn)
	if err != nil {
		return nil, fmt.Errorf("migrate: open driver: %w", err)
	}
	unlock, err := drv.(schema.Locker).Lock(ctx, LockName, m.LockTimeout)
	if err != nil {
		return nil, fmt.Errorf("migrate: acquire lock %q: %w", LockName, err)
	}
	return func() {
		if err := unlock(); err != nil {
			m.log.Warn("migrate: release lock failed; closing its session", "error", err)
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}, nil
}

// applyNext applies the first pending file in one transaction.
func (m *Migrator) applyNext(ctx context.Context, conn *sql.Conn, dir migrate.Dir) (string, error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback()
	ex, err := executor(ctx, tx, m.dialect, dir)
	if err != nil {
		return "", err
	}
	pending, err := ex.Pending(ctx)
	if err != nil {
		if errors.Is(err, migrate.ErrNoPendingFiles) {
			return "", err
		}
		return "", fmt.Errorf("migrate: pending: %w", err)
	}
	f := pending[0]
	start := time.Now()
	if err := ex.Execute(ctx, f); err != nil {
		// A failed statement aborts the transaction, so the executor's
		// attempt to record the error fails too; report the statement.
		var se *migrate.StmtExecError
		if errors.As(err, &se) {
			err = se
		}
		return "", fmt.Errorf("migrate: apply %s: %w", f.Name(), err)
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("migrate: commit %s: %w", f.Name(), err)
	}
	m.log.Info("migration applied", "version", f.Version(), "file", f.Name(), "duration", time.Since(start).String())
	return f.Version(), nil
}
