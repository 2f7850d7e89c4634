// Package migrate applies the Atlas versioned migrations in ../../migrations
// with the ariga.io/atlas library, recording revisions in the same
// atlas_schema_revisions table and columns as the Atlas CLI (and, on
// PostgreSQL, under its advisory lock), so that DBAs may use either tool on
// the same database. It also does what a DBA reviews before applying:
// Lint runs the library's analyzers and authd's own on new files, replayed
// on a dev database and configured by atlas.hcl's lint block; Review plans
// pending files with their locks and row estimates; Drift compares a live
// database with the end state the files build.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
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
	db      *sql.DB
	dialect string
	fsys    fs.FS
	log     *slog.Logger
	// LockTimeout is how long Apply waits for the advisory lock another
	// process (an authd, the Atlas CLI) holds while it applies; zero or
	// less waits until the context ends.
	LockTimeout time.Duration
	// Waiting, when set, is called (possibly more than once) when Apply
	// has to wait: for the lock another process holds, or for a file it
	// runs outside a transaction (which may build an index for hours). A
	// starting server answers health checks NOT_SERVING from then until
	// Apply returns.
	Waiting func(reason string)
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
	// Current is the last applied version, "" when none; the version of a
	// partially applied file when its run failed or is still going (as
	// the Atlas CLI reports it).
	Current string
	// Applied are the recorded revisions in version order.
	Applied []*migrate.Revision
	// Pending are the files not applied yet, a partially applied one
	// first.
	Pending []File
	// Partial is the last revision when its file ran outside a
	// transaction and stopped before its last statement (Applied <
	// Total): the run failed (Error and ErrorStmt say how) or is still
	// going in another process. A retry resumes at statement Applied+1.
	Partial *migrate.Revision
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
		last := revs[len(revs)-1]
		st.Current = last.Version
		if last.Applied < last.Total && !last.Type.Has(migrate.RevisionTypeResolved) {
			st.Partial = last
		}
	}
	for _, f := range pending {
		st.Pending = append(st.Pending, File{Version: f.Version(), Name: f.Name(), SQL: string(f.Bytes())})
	}
	return st, nil
}
