package main

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"entgo.io/ent/dialect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/token"
)

// This file is the ceilings that issue the data layer's own statements
// directly, without gRPC, ent or the service, through pgx on PostgreSQL
// and database/sql on SQLite: (c) the full-path rotation
// (store.RotationStatements), (d) the rotation of a fresh token (one
// statement on PostgreSQL, three in a transaction on SQLite),
// (e) and (f) the hot reads (store.ReadStatements). The ceilings and the
// service run the same SQL with the same row ids (auth.NewRowID);
// BenchmarkRefresh uses (c) as its baseline too.

// errNotFresh means the presented token was already used, has expired or
// its family was revoked: the caller's token chain is broken.
var errNotFresh = errors.New("rotation: refresh token not fresh")

// childTTL is the new token's lifetime (the service's default, 30 days).
const childTTL = 30 * 24 * time.Hour

// auditEvent is the audit event a rotation writes (its reason is NULL).
const auditEvent = "token_refreshed"

// openPG opens a pgx pool on dsn (a pgx connection string) with the
// service's default pool size, 20 connections.
func openPG(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 20
	return pgxpool.NewWithConfig(ctx, cfg)
}

// rotator rotates refresh tokens directly on one database: through pool
// (pgx) when it is set, else through db (database/sql, SQLite).
type rotator struct {
	pool *pgxpool.Pool
	db   *sql.DB
}

// Rotate presents the refresh token text rt, as the service's full path
// does minus the access token, and returns the text of its child. Errors:
// token.ErrMalformedRefreshToken, errNotFresh, or the database's.
func (r rotator) Rotate(ctx context.Context, rt string) (string, error) {
	hash, next, nextHash, sealed, err := child(rt)
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	if r.pool != nil {
		err = rotatePG(ctx, r.pool, hash, nextHash, sealed, now)
	} else {
		err = rotateSQLite(ctx, r.db, hash, nextHash, sealed, now)
	}
	if err != nil {
		return "", err
	}
	return next, nil
}

// child hashes the presented token text rt and makes its child: the
// child's text and hash, and its text sealed under rt's, as the service
// does before it reads any row.
func child(rt string) (hash []byte, next string, nextHash, sealed []byte, err error) {
	if hash, err = token.HashRefreshToken(rt); err != nil {
		return nil, "", nil, nil, err
	}
	if next, nextHash, err = token.NewRefreshToken(); err != nil {
		return nil, "", nil, nil, err
	}
	sealed, err = token.SealChild(rt, next)
	return hash, next, nextHash, sealed, err
}

// sessionMax is the service's default session lifetime (90 days).
const sessionMax = 90 * 24 * time.Hour

// RotateFresh presents rt as the service's path for fresh tokens does
// (store.DB.RotateFresh: on PostgreSQL the one statement
// Rotation.RotateFresh, on SQLite Rotation.MarkFresh and the two inserts
// in one transaction) and returns its child's text; errNotFresh when the
// token is not fresh.
func (r rotator) RotateFresh(ctx context.Context, rt string) (string, error) {
	hash, next, nextHash, sealed, err := child(rt)
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	if r.pool == nil {
		return next, markFreshSQLite(ctx, r.db, hash, nextHash, sealed, now)
	}
	var id, user, family uuid.UUID
	var started time.Time
	var email, username string
	err = r.pool.QueryRow(ctx, store.RotationStatements(dialect.Postgres).RotateFresh, hash, now, now.Add(-sessionMax), sealed,
		auth.NewRowID(), auth.NewRowID(), nextHash, now.Add(childTTL), sessionMax.Microseconds()).
		Scan(&id, &user, &family, &started, &email, &username)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", errNotFresh
	}
	if err != nil {
		return "", err
	}
	return next, nil
}

// rotatePG rotates the token whose SHA-256 hash is hash to a child whose
// hash is nextHash and whose sealed text is sealed, in one transaction on
// pool (pgx, no database/sql): the service's full path.
func rotatePG(ctx context.Context, pool *pgxpool.Pool, hash, nextHash, sealed []byte, now time.Time) error {
	s := store.RotationStatements(dialect.Postgres)
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var id, user, family uuid.UUID
	var used, revoked, childUsed *time.Time
	var expires, started time.Time
	var child []byte
	var email, username string
	if err := tx.QueryRow(ctx, s.LockToken, hash).Scan(&id, &user, &family, &used, &expires, &child,
		&revoked, &started, &childUsed, &email, &username); err != nil {
		return err
	}
	if revoked != nil || used != nil || !now.Before(expires) {
		return errNotFresh
	}
	if _, err := tx.Exec(ctx, s.MarkUsed, now, sealed, id); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, s.InsertAudit, auth.NewRowID(), now, auditEvent, user, nil); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, s.InsertToken, auth.NewRowID(), now, user, family, id, nextHash, now.Add(childTTL)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// rotateSQLite is rotatePG for SQLite, through database/sql (the only way
// to SQLite from Go).
func rotateSQLite(ctx context.Context, db *sql.DB, hash, nextHash, sealed []byte, now time.Time) error {
	s := store.RotationStatements(dialect.SQLite)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var id, user, family string
	var used, revoked, childUsed sql.NullTime
	var expires, started time.Time
	var child []byte
	var email, username string
	if err := tx.QueryRowContext(ctx, s.LockToken, hash).Scan(&id, &user, &family, &used, &expires, &child,
		&revoked, &started, &childUsed, &email, &username); err != nil {
		return err
	}
	if revoked.Valid || used.Valid || !now.Before(expires) {
		return errNotFresh
	}
	if _, err := tx.ExecContext(ctx, s.MarkUsed, now, sealed, id); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.InsertAudit, auth.NewRowID().String(), now, auditEvent, user, nil); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.InsertToken, auth.NewRowID().String(), now, user, family, id, nextHash, now.Add(childTTL)); err != nil {
		return err
	}
	return tx.Commit()
}

// markFreshSQLite is RotateFresh on SQLite.
func markFreshSQLite(ctx context.Context, db *sql.DB, hash, nextHash, sealed []byte, now time.Time) error {
	s := store.RotationStatements(dialect.SQLite)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var id, user, family string
	var started time.Time
	var email, username string
	after := now.Add(-sessionMax)
	err = tx.QueryRowContext(ctx, s.MarkFresh, now, sealed, hash, now, after, after).Scan(&id, &user, &family, &started, &email, &username)
	if errors.Is(err, sql.ErrNoRows) {
		return errNotFresh
	}
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.InsertAudit, auth.NewRowID().String(), now, auditEvent, user, nil); err != nil {
		return err
	}
	expires := now.Add(childTTL)
	if end := started.Add(sessionMax); end.Before(expires) {
		expires = end
	}
	if _, err := tx.ExecContext(ctx, s.InsertToken, auth.NewRowID().String(), now, user, family, id, nextHash, expires); err != nil {
		return err
	}
	return tx.Commit()
}

// ReadUser runs one of store.Reads' statements with arg, as the service
// does for GetMe (by id) and GetUserByEmail (by canonical address), and
// scans its columns; sql.ErrNoRows or pgx.ErrNoRows when there is none.
func (r rotator) ReadUser(ctx context.Context, query string, arg any) error {
	var (
		id                                   uuid.UUID
		username, email, canonical, pwHash   string
		verified                             bool
		created                              time.Time
		deleted, imported, claimed, contests sql.NullTime
		claimUser, claimHash                 sql.NullString
	)
	dest := []any{&id, &username, &email, &canonical, &pwHash, &verified, &deleted, &imported, &created, &claimed, &claimUser, &claimHash, &contests}
	if r.pool != nil {
		return r.pool.QueryRow(ctx, query, arg).Scan(dest...)
	}
	return r.db.QueryRowContext(ctx, query, arg).Scan(dest...)
}
