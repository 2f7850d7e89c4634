package migrate

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	"ariga.io/atlas/sql/schema"
	"entgo.io/ent/dialect"
)

// errNextIsOutsideTx tells Apply that, inside a file's transaction, the
// next pending file turned out to be one that must run outside it
// (another process applied the one before in the meantime).
var errNextIsOutsideTx = errors.New("next file runs outside a transaction")

// Apply runs every pending file in version order, the way the Atlas CLI
// runs them: a file in its own transaction together with its revision row
// (the default), or, when the file says `-- atlas:txmode none`, statement
// by statement outside any transaction, writing the revision row before
// the first statement and after each one, so a failed run is recorded
// (applied N of M, the error and the statement) and a retry resumes at
// the statement that failed. On PostgreSQL the whole run holds the Atlas
// CLI's advisory lock, and a CREATE INDEX CONCURRENTLY outside a
// transaction is guarded (see indexGuard). On SQLite a file's transaction
// runs with foreign keys off and fails when it leaves rows that violate
// them, as the CLI runs SQLite files (PRAGMA foreign_keys inside a
// transaction is a no-op, and with them on, rebuilding a table that others
// reference ON DELETE CASCADE would delete their rows). It returns the
// applied versions; none when the database is up to date, in which case
// it takes no lock.
func (m *Migrator) Apply(ctx context.Context) ([]string, error) {
	dir, err := m.openDir()
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	// Nothing pending: no lock, so a starting instance does not queue
	// behind another process's migration that is not among its files.
	// A partially applied revision of a file this directory lacks is a
	// newer authd's (or the CLI's) file running outside a transaction:
	// wait for the lock, then look again.
	var missing *migrate.MissingMigrationError
	if _, err := m.pending(ctx, m.db, dir); errors.Is(err, migrate.ErrNoPendingFiles) {
		return nil, nil
	} else if err != nil && !errors.As(err, &missing) {
		return nil, fmt.Errorf("migrate: pending: %w", err)
	}
	// One connection does everything: it holds the advisory lock (a
	// session lock) and runs the files, so a pool of one connection
	// cannot deadlock.
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Close()
	if m.dialect == dialect.Postgres {
		// The service's connections carry a statement_timeout
		// (DATABASE__STATEMENT_TIMEOUT_SECONDS); a migration, an index
		// build say, may take far longer. RESET gives the connection its
		// start-up value back before it returns to the pool.
		if _, err := conn.ExecContext(ctx, "SET statement_timeout = 0"); err != nil {
			return nil, fmt.Errorf("migrate: lift statement_timeout: %w", err)
		}
		defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), "RESET statement_timeout") }()
		unlock, err := m.lock(ctx, conn)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	// On SQLite every transaction begins IMMEDIATE (see store), so the
	// per-file transactions below serialize concurrent appliers: each
	// computes what is pending after the previous one committed.
	var applied []string
	for {
		version, err := m.applyNext(ctx, conn, dir)
		switch {
		case errors.Is(err, errNextIsOutsideTx):
			continue
		case errors.Is(err, migrate.ErrNoPendingFiles):
			return applied, nil
		case err != nil:
			return applied, err
		}
		applied = append(applied, version)
	}
}

// lock takes the Atlas CLI's advisory lock (a session lock) on conn,
// waiting (see waitLock) while another process holds it. The returned
// function releases it; if releasing fails (say ctx ended), it discards
// the connection so the session, and with it the lock, ends.
func (m *Migrator) lock(ctx context.Context, conn *sql.Conn) (func(), error) {
	drv, err := postgres.Open(conn)
	if err != nil {
		return nil, fmt.Errorf("migrate: open driver: %w", err)
	}
	locker := drv.(schema.Locker)
	unlock, err := locker.Lock(ctx, LockName, 0) // one attempt
	if errors.Is(err, schema.ErrLocked) {
		unlock, err = m.waitLock(ctx, conn, locker)
	}
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

// lockLogEvery is how often waitLock says again who it waits for.
const lockLogEvery = 30 * time.Second

// waitLock waits for the advisory lock up to LockTimeout (forever when
// it is not positive), saying every lockLogEvery which session holds it
// and what it runs, and calling Waiting.
func (m *Migrator) waitLock(ctx context.Context, conn *sql.Conn, locker schema.Locker) (schema.UnlockFunc, error) {
	var deadline time.Time
	if m.LockTimeout > 0 {
		deadline = time.Now().Add(m.LockTimeout)
	}
	for {
		holder := lockHolder(ctx, conn)
		m.log.Warn("waiting for the migration lock another process holds: it applies migrations (authd or the Atlas CLI)",
			"lock", LockName, "holder", holder)
		if m.Waiting != nil {
			m.Waiting("waiting for the migration lock held by " + holder)
		}
		step := lockLogEvery
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return nil, schema.ErrLocked
			}
			step = min(step, left)
		}
		unlock, err := locker.Lock(ctx, LockName, step)
		if !errors.Is(err, schema.ErrLocked) {
			return unlock, err
		}
	}
}

// lockHolder describes the session holding the advisory lock: its pid,
// application, how long its statement has run and its beginning (visible
// to a superuser or the same role, "<insufficient privilege>" otherwise).
func lockHolder(ctx context.Context, conn *sql.Conn) string {
	h := fnv.New32()
	h.Write([]byte(LockName))
	var (
		pid          int64
		app, query   string
		runningFor   sql.NullString
		queryStarted sql.NullTime
	)
	err := conn.QueryRowContext(ctx, `SELECT a.pid, coalesce(a.application_name, ''), coalesce(left(a.query, 120), ''), a.query_start,
  date_trunc('second', now() - a.query_start)::text
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid::bigint = $1 AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1`, int64(h.Sum32())).Scan(&pid, &app, &query, &queryStarted, &runningFor)
	if err != nil {
		return "another session"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d", pid)
	if app != "" {
		fmt.Fprintf(&b, " (%s)", app)
	}
	if query != "" {
		fmt.Fprintf(&b, ", running for %s: %s", runningFor.String, strings.Join(strings.Fields(query), " "))
	}
	return b.String()
}

// pending lists the pending files from one snapshot of the database: the
// revisions and the tables (for the "not clean" check) are read in one
// transaction, so another applier committing in between cannot make the
// database look dirty.
func (m *Migrator) pending(ctx context.Context, db interface {
	BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
}, dir migrate.Dir) ([]migrate.File, error) {
	opts := &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	if m.dialect == dialect.SQLite {
		opts = nil // BEGIN IMMEDIATE (see store): serialized with the appliers
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	ex, err := executor(ctx, tx, m.dialect, dir)
	if err != nil {
		return nil, err
	}
	return ex.Pending(ctx)
}

// applyNext applies the first pending file: outside a transaction when
// it says `-- atlas:txmode none`, in one transaction otherwise.
func (m *Migrator) applyNext(ctx context.Context, conn *sql.Conn, dir migrate.Dir) (string, error) {
	pending, err := m.pending(ctx, conn, dir)
	var missing *migrate.MissingMigrationError
	switch {
	case errors.Is(err, migrate.ErrNoPendingFiles):
		return "", err
	case errors.As(err, &missing):
		return "", fmt.Errorf("migrate: the database's last revision %s (%s) is partially applied and this authd has no such file: a newer authd or the Atlas CLI ran it outside a transaction and it stopped; finish it with that version first: %w",
			missing.Version, missing.Description, err)
	case err != nil:
		return "", fmt.Errorf("migrate: pending: %w", err)
	}
	mode, err := TxMode(pending[0])
	if err != nil {
		return "", err
	}
	if mode == TxModeNone {
		return m.applyOutsideTx(ctx, conn, dir, pending[0])
	}
	return m.applyInTx(ctx, conn, dir)
}

// applyInTx applies the first pending file in one transaction with its
// revision row. On SQLite foreign keys are off meanwhile, and the file
// fails when it adds rows that violate them.
func (m *Migrator) applyInTx(ctx context.Context, conn *sql.Conn, dir migrate.Dir) (_ string, err error) {
	fkOff := false
	if m.dialect == dialect.SQLite {
		if fkOff, err = sqliteForeignKeysOff(ctx, conn); err != nil {
			return "", err
		}
		if fkOff {
			defer func() {
				if _, err2 := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = on"); err2 != nil && err == nil {
					err = fmt.Errorf("migrate: turn foreign keys back on: %w", err2)
				}
			}()
		}
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback()
	ex, err := executor(ctx, tx, m.dialect, dir)
	if err != nil {
		return "", err
	}
	// Again inside the transaction: on SQLite another process may have
	// applied files since applyNext looked.
	pending, err := ex.Pending(ctx)
	if err != nil {
		if errors.Is(err, migrate.ErrNoPendingFiles) {
			return "", err
		}
		return "", fmt.Errorf("migrate: pending: %w", err)
	}
	f := pending[0]
	if mode, err := TxMode(f); err != nil {
		return "", err
	} else if mode == TxModeNone {
		return "", errNextIsOutsideTx
	}
	var before map[fkViolation]bool
	if fkOff {
		if before, err = sqliteViolations(ctx, tx); err != nil {
			return "", err
		}
	}
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
	if fkOff {
		after, err := sqliteViolations(ctx, tx)
		if err != nil {
			return "", err
		}
		var added []string
		for v := range after {
			if !before[v] {
				added = append(added, v.String())
			}
		}
		if len(added) > 0 {
			return "", fmt.Errorf("migrate: apply %s: it leaves rows that violate foreign keys (rolled back): %s", f.Name(), strings.Join(added, "; "))
		}
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("migrate: commit %s: %w", f.Name(), err)
	}
	m.log.Info("migration applied", "version", f.Version(), "file", f.Name(), "duration", time.Since(start).String())
	return f.Version(), nil
}

// applyOutsideTx applies (or resumes) a `-- atlas:txmode none` file with
// the Atlas executor on conn itself, as the CLI does with its
// non-transactional client: the executor writes the revision row before
// the first statement and after each one, and on failure records the
// error and the statement, so the database says how far the file got.
func (m *Migrator) applyOutsideTx(ctx context.Context, conn *sql.Conn, dir migrate.Dir, f migrate.File) (_ string, err error) {
	if m.Waiting != nil {
		m.Waiting("applying " + f.Name() + " outside a transaction")
	}
	drv, err := openDriver(m.dialect, conn)
	if err != nil {
		return "", err
	}
	switch m.dialect {
	case dialect.Postgres:
		drv = indexGuard{Driver: drv, q: conn, log: m.log}
	case dialect.SQLite:
		// The file's own PRAGMA foreign_keys statements take effect
		// outside a transaction; leave the connection as the store
		// opened it, whatever happens.
		defer func() {
			if _, err2 := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = on"); err2 != nil && err == nil {
				err = fmt.Errorf("migrate: turn foreign keys back on: %w", err2)
			}
		}()
	}
	rrw, err := newRevisions(ctx, conn, m.dialect)
	if err != nil {
		return "", fmt.Errorf("migrate: %w", err)
	}
	ex, err := migrate.NewExecutor(drv, dir, rrw, migrate.WithOperatorVersion(OperatorVersion))
	if err != nil {
		return "", err
	}
	var resumeAt int
	if rev, err := rrw.ReadRevision(ctx, f.Version()); err == nil {
		resumeAt = rev.Applied
	}
	m.log.Info("applying a migration outside a transaction, statement by statement", "version", f.Version(), "file", f.Name(), "resume_at_statement", resumeAt+1)
	start := time.Now()
	if err := ex.Execute(ctx, f); err != nil {
		msg := "migrate: apply " + f.Name() + " (outside a transaction"
		if rev, err2 := rrw.ReadRevision(context.WithoutCancel(ctx), f.Version()); err2 == nil {
			msg += fmt.Sprintf(": %d of %d statements applied; a retry resumes at statement %d", rev.Applied, rev.Total, rev.Applied+1)
		}
		return "", fmt.Errorf("%s): %w", msg, err)
	}
	m.log.Info("migration applied", "version", f.Version(), "file", f.Name(), "outside_transaction", true, "duration", time.Since(start).String())
	return f.Version(), nil
}

// sqliteForeignKeysOff turns foreign key enforcement off on conn (outside
// any transaction, where the pragma takes effect) and reports whether it
// was on.
func sqliteForeignKeysOff(ctx context.Context, conn *sql.Conn) (bool, error) {
	var on bool
	if err := conn.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&on); err != nil {
		return false, fmt.Errorf("migrate: read foreign_keys: %w", err)
	}
	if !on {
		return false, nil
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = off"); err != nil {
		return false, fmt.Errorf("migrate: turn foreign keys off: %w", err)
	}
	return true, nil
}

// fkViolation is one row of PRAGMA foreign_key_check.
type fkViolation struct {
	table, parent string
	rowid, fkid   int64
}

func (v fkViolation) String() string {
	return fmt.Sprintf("%s row %d references a missing %s row", v.table, v.rowid, v.parent)
}

// sqliteViolations lists the rows that violate foreign keys.
func sqliteViolations(ctx context.Context, q querier) (map[fkViolation]bool, error) {
	rows, err := q.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return nil, fmt.Errorf("migrate: foreign_key_check: %w", err)
	}
	defer rows.Close()
	out := map[fkViolation]bool{}
	for rows.Next() {
		var (
			v     fkViolation
			rowid sql.NullInt64
		)
		if err := rows.Scan(&v.table, &rowid, &v.parent, &v.fkid); err != nil {
			return nil, fmt.Errorf("migrate: foreign_key_check: %w", err)
		}
		v.rowid = rowid.Int64
		out[v] = true
	}
	return out, rows.Err()
}
