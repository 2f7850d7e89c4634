// Package store opens the auth database and runs units of work on it: ent
// transactions that roll back on error or panic, with an explicit way to
// commit a failure that must be recorded.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/placebrain/auth/ent"
)

// PoolConfig sizes the database/sql connection pool.
type PoolConfig struct {
	MaxOpenConns    int
	MaxIdleConns    int
	ConnMaxLifetime time.Duration
}

// NormalizeURL accepts postgres://, postgresql:// and the SQLAlchemy form
// postgresql+asyncpg:// (and +psycopg, +psycopg2) that existing PlaceBrain
// deployments use, and returns a URL that pgx understands. asyncpg's
// `ssl=` query parameter becomes `sslmode=`.
func NormalizeURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("DATABASE__URL is not a valid URL")
	}
	scheme, driver, _ := strings.Cut(u.Scheme, "+")
	if scheme != "postgres" && scheme != "postgresql" {
		return "", fmt.Errorf("DATABASE__URL scheme %q is not supported (use postgres:// or postgresql://)", u.Scheme)
	}
	switch driver {
	case "", "asyncpg", "psycopg", "psycopg2", "pg8000":
	default:
		return "", fmt.Errorf("DATABASE__URL driver %q is not supported", driver)
	}
	u.Scheme = "postgres"
	q := u.Query()
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
	return u.String(), nil
}

// Open connects to the database at rawURL (see NormalizeURL), checks that it
// answers, and returns the database/sql handle and an ent client on it.
func Open(ctx context.Context, rawURL string, pool PoolConfig) (*sql.DB, *ent.Client, error) {
	dsn, err := NormalizeURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("store: open: %w", err)
	}
	if pool.MaxOpenConns > 0 {
		db.SetMaxOpenConns(pool.MaxOpenConns)
	}
	db.SetMaxIdleConns(pool.MaxIdleConns)
	db.SetConnMaxLifetime(pool.ConnMaxLifetime)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("store: connect: %w", err)
	}
	return db, NewClient(db), nil
}

// NewClient returns an ent client on an open PostgreSQL handle.
func NewClient(db *sql.DB) *ent.Client {
	return ent.NewClient(ent.Driver(entsql.OpenDB(dialect.Postgres, db)))
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
