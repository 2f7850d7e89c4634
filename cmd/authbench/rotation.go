package main

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"entgo.io/ent/dialect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/token"
)

// This file is ceiling (c): a token rotation's statements issued directly,
// without gRPC, ent or the service, through pgx on PostgreSQL and
// database/sql on SQLite. The statements are the data layer's own
// (store.RotationStatements), so the ceiling and the service run the same
// SQL; BenchmarkRefresh uses it as its baseline too.

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

// Rotate presents the refresh token text rt, as Service.Refresh does
// minus the access token, and returns the text of its child. Errors:
// token.ErrMalformedRefreshToken, errNotFresh, or the database's.
func (r rotator) Rotate(ctx context.Context, rt string) (string, error) {
	hash, err := token.HashRefreshToken(rt)
	if err != nil {
		return "", err
	}
	next, nextHash, err := token.NewRefreshToken()
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	seal := func(uuid.UUID) ([]byte, error) { return token.SealChild(rt, next) }
	if r.pool != nil {
		err = rotatePG(ctx, r.pool, hash, nextHash, seal, now)
	} else {
		err = rotateSQLite(ctx, r.db, hash, nextHash, seal, now)
	}
	if err != nil {
		return "", err
	}
	return next, nil
}

// rotatePG rotates the token whose SHA-256 hash is hash to a child whose
// hash is nextHash and whose text seal seals under the token's, in one
// transaction on pool (pgx, no database/sql).
func rotatePG(ctx context.Context, pool *pgxpool.Pool, hash, nextHash []byte, seal func(uuid.UUID) ([]byte, error), now time.Time) error {
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
	sealed, err := seal(id)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, s.MarkUsed, now, sealed, id); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, s.InsertAudit, uuid.New(), now, auditEvent, user, nil); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, s.InsertToken, uuid.New(), now, user, family, id, nextHash, now.Add(childTTL)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// rotateSQLite is rotatePG for SQLite, through database/sql (the only way
// to SQLite from Go).
func rotateSQLite(ctx context.Context, db *sql.DB, hash, nextHash []byte, seal func(uuid.UUID) ([]byte, error), now time.Time) error {
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
	tokenID, err := uuid.Parse(id)
	if err != nil {
		return err
	}
	sealed, err := seal(tokenID)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.MarkUsed, now, sealed, id); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.InsertAudit, uuid.NewString(), now, auditEvent, user, nil); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.InsertToken, uuid.NewString(), now, user, family, id, nextHash, now.Add(childTTL)); err != nil {
		return err
	}
	return tx.Commit()
}
