package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/placebrain/auth/internal/auth"
)

// IsUnavailable reports whether err says that the database could not serve
// a statement, rather than anything about the statement: the one
// classification of database failures, used by every unit of work and
// single query of the store (which wrap such errors with auth.Unavailable,
// answered UNAVAILABLE with a RetryInfo) and by the health check. It holds
// for:
//
//   - a connection that cannot be made: refused, reset, a dial or TLS
//     failure, a connect timeout (pgconn.ConnectError);
//   - a connection lost or closed mid-use: io.EOF, io.ErrUnexpectedEOF, a
//     network error, driver.ErrBadConn, sql.ErrConnDone,
//     pgconn.ErrConnClosed;
//   - PostgreSQL's SQLSTATE class 08 (connection exception), 57P01
//     admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
//     53300 too_many_connections and 57014 query_canceled (the server's
//     statement_timeout; a cancellation by the caller is told apart by its
//     context, see unavailable);
//   - SQLite's SQLITE_BUSY and SQLITE_LOCKED: the write lock was not
//     acquired within the busy timeout.
//
// Constraint violations, syntax errors and everything else are not: they
// are bugs or domain outcomes, answered INTERNAL or mapped by the caller.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch code := pgErr.Code; {
		case strings.HasPrefix(code, "08"),
			code == "57P01", code == "57P02", code == "57P03",
			code == "53300", code == "57014":
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		switch liteErr.Code() & 0xff { // the primary code of an extended one
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
		return false
	}
	var netErr net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed),
		errors.As(err, &netErr):
		return true
	}
	return pgconn.Timeout(err)
}

// unavailable returns err wrapped with auth.Unavailable when
// IsUnavailable(err) holds and ctx, the caller's context, has not ended
// (a request its client cancelled fails in the driver with errors that
// look like a lost connection: those stay as they are); otherwise err.
// A deadline the store set itself (bound) has passed when the caller's
// context is alive and err is a context.DeadlineExceeded: that is the
// database not answering in time, and is unavailable too. It reports
// each outcome to the availability observer.
func (db *DB) unavailable(ctx context.Context, err error) error {
	switch {
	case err == nil:
		db.observe(nil)
		return nil
	case ctx.Err() != nil:
		return err
	case auth.IsUnavailable(err):
		db.observe(err)
		return err
	case IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded):
		err = auth.Unavailable(err)
		db.observe(err)
		return err
	}
	if _, domain := auth.AsError(err); domain {
		db.observe(nil) // the database answered
	}
	return err
}

// observe reports an outcome to the observer set with
// ObserveAvailability, if any.
func (db *DB) observe(err error) {
	if f := db.observer.Load(); f != nil {
		(*f)(err)
	}
}

// ObserveAvailability sets fn to be called after every unit of work and
// single query the service runs: with the error (an auth.ErrUnavailable)
// when it failed because the database was unavailable (see
// IsUnavailable), with nil when it succeeded or ended in a domain error.
// Other errors are not reported. fn must be quick: it runs on the
// request's goroutine.
func (db *DB) ObserveAvailability(fn func(unavailable error)) { db.observer.Store(&fn) }

// Timeouts bound the waits on PostgreSQL (SQLite has its busy timeout).
// Zero leaves a wait unbounded.
type Timeouts struct {
	// Connect bounds the making of a new connection: dial, TLS and start-up
	// (pgx's ConnectTimeout).
	Connect time.Duration
	// Statement is the server's statement_timeout for every statement of
	// the service's connections (migrations lift it on their own
	// connection).
	Statement time.Duration
}

// bound returns ctx with the store's own deadline for one unit of work or
// single query on PostgreSQL: a new connection, then statements that the
// server cancels after Statement, plus a second for the cancellation to
// arrive. A connection that stopped answering (no reply, no reset) is cut
// at that deadline instead of hanging until TCP gives up. Without a
// statement timeout, or on SQLite, ctx is returned as it is.
func (db *DB) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if db.clientBound <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, db.clientBound)
}

// clientBoundFor is the deadline bound sets for timeouts t.
func clientBoundFor(t Timeouts) time.Duration {
	if t.Statement <= 0 {
		return 0
	}
	return t.Connect + t.Statement + time.Second
}

// The single queries of auth.Queries on the database outside a unit of
// work, each within the store's deadline and with its failure classified
// (see unavailable).

func (db *DB) UserByID(ctx context.Context, id uuid.UUID) (auth.Account, error) {
	bctx, cancel := db.bound(ctx)
	defer cancel()
	a, err := db.queries.UserByID(bctx, id)
	return a, db.unavailable(ctx, err)
}

func (db *DB) UserByEmail(ctx context.Context, canonical string) (auth.Account, error) {
	bctx, cancel := db.bound(ctx)
	defer cancel()
	a, err := db.queries.UserByEmail(bctx, canonical)
	return a, db.unavailable(ctx, err)
}

func (db *DB) UsersByIDs(ctx context.Context, ids []uuid.UUID) ([]auth.Account, error) {
	bctx, cancel := db.bound(ctx)
	defer cancel()
	a, err := db.queries.UsersByIDs(bctx, ids)
	return a, db.unavailable(ctx, err)
}

func (db *DB) UserVerified(ctx context.Context, id uuid.UUID) (bool, error) {
	bctx, cancel := db.bound(ctx)
	defer cancel()
	v, err := db.queries.UserVerified(bctx, id)
	return v, db.unavailable(ctx, err)
}

func (db *DB) LatestLiveOTP(ctx context.Context, userID uuid.UUID, purpose auth.CodePurpose) (auth.OTPCode, bool, error) {
	bctx, cancel := db.bound(ctx)
	defer cancel()
	c, ok, err := db.queries.LatestLiveOTP(bctx, userID, purpose)
	return c, ok, db.unavailable(ctx, err)
}

func (db *DB) Sessions(ctx context.Context, userID uuid.UUID, now time.Time) ([]auth.Session, error) {
	bctx, cancel := db.bound(ctx)
	defer cancel()
	s, err := db.queries.Sessions(bctx, userID, now)
	return s, db.unavailable(ctx, err)
}

func (db *DB) RecordAudit(ctx context.Context, e auth.AuditEvent) error {
	bctx, cancel := db.bound(ctx)
	defer cancel()
	return db.unavailable(ctx, db.queries.RecordAudit(bctx, e))
}

func (db *DB) ReadCounter(ctx context.Context, key []byte) (auth.Counter, bool, error) {
	bctx, cancel := db.bound(ctx)
	defer cancel()
	c, ok, err := db.queries.ReadCounter(bctx, key)
	return c, ok, db.unavailable(ctx, err)
}

func (db *DB) DeleteCounter(ctx context.Context, key []byte) error {
	bctx, cancel := db.bound(ctx)
	defer cancel()
	return db.unavailable(ctx, db.queries.DeleteCounter(bctx, key))
}
