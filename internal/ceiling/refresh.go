// Package ceiling issues the refresh transaction's SQL statements directly,
// without gRPC, ent or the service: the rotation's cost floor. It is ceiling
// (c) of cmd/authbench and the baseline of internal/auth's
// BenchmarkRefresh. It is not linked into authd.
package ceiling

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/placebrain/auth/internal/token"
)

// ErrNotFresh means the presented token was already used, has expired or
// its family was revoked: the caller's token chain is broken.
var ErrNotFresh = errors.New("ceiling: refresh token not fresh")

// The rotation's statements, as internal/auth issues them (its
// TestCeilingStatements compares them): read the presented token (by its
// SHA-256 hash) with its family and user, locking the token's and the
// family's rows; mark it used; write the audit event; insert its child.
const (
	pgLock = `SELECT t.id, t.user_id, t.family_id, t.used_at, t.expires_at, f.revoked_at, u.email, u.username ` +
		`FROM refresh_tokens t JOIN token_families f ON t.family_id = f.id JOIN users u ON t.user_id = u.id WHERE t.token_hash = $1 FOR UPDATE OF t, f`
	pgMarkUsed = `UPDATE refresh_tokens SET used_at = $1 WHERE id = $2`
	pgAudit    = `INSERT INTO audit_events (id, created_at, event, user_id, reason) VALUES ($1, $2, $3, $4, $5)`
	pgInsert   = `INSERT INTO refresh_tokens (id, created_at, user_id, family_id, parent_id, token_hash, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`

	sqliteLock = `SELECT t.id, t.user_id, t.family_id, t.used_at, t.expires_at, f.revoked_at, u.email, u.username ` +
		`FROM refresh_tokens t JOIN token_families f ON t.family_id = f.id JOIN users u ON t.user_id = u.id WHERE t.token_hash = ?`
	sqliteMarkUsed = `UPDATE refresh_tokens SET used_at = ? WHERE id = ?`
	sqliteAudit    = `INSERT INTO audit_events (id, created_at, event, user_id, reason) VALUES (?, ?, ?, ?, ?)`
	sqliteInsert   = `INSERT INTO refresh_tokens (id, created_at, user_id, family_id, parent_id, token_hash, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`
)

// childTTL is the new token's lifetime (the service's default, 30 days).
const childTTL = 30 * 24 * time.Hour

// auditEvent is the audit event a rotation writes (its reason is NULL).
const auditEvent = "token_refreshed"

// Statements returns the rotation's statements for the ent dialect d
// ("postgres" or "sqlite3"), in the order they run: lock, mark used,
// audit event, new token.
func Statements(d string) []string {
	if d == "postgres" {
		return []string{pgLock, pgMarkUsed, pgAudit, pgInsert}
	}
	return []string{sqliteLock, sqliteMarkUsed, sqliteAudit, sqliteInsert}
}

// OpenPG opens a pgx pool on dsn (a pgx connection string) with the
// service's default pool size, 20 connections.
func OpenPG(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 20
	return pgxpool.NewWithConfig(ctx, cfg)
}

// Rotator rotates refresh tokens directly on one database: through Pool
// (pgx) when it is set, else through DB (database/sql, SQLite).
type Rotator struct {
	Pool *pgxpool.Pool
	DB   *sql.DB
}

// Rotate presents the refresh token text rt, as Service.Refresh does
// minus the access token, and returns the text of its child. Errors:
// token.ErrMalformedRefreshToken, ErrNotFresh, or the database's.
func (r Rotator) Rotate(ctx context.Context, rt string) (string, error) {
	hash, err := token.HashRefreshToken(rt)
	if err != nil {
		return "", err
	}
	next, nextHash, err := token.NewRefreshToken()
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	if r.Pool != nil {
		err = RefreshPG(ctx, r.Pool, hash, nextHash, now)
	} else {
		err = RefreshSQLite(ctx, r.DB, hash, nextHash, now)
	}
	if err != nil {
		return "", err
	}
	return next, nil
}

// RefreshPG rotates the token whose SHA-256 hash is hash to a child whose
// hash is nextHash, in one transaction on pool (pgx, no database/sql).
// It returns ErrNotFresh for a used or revoked token.
func RefreshPG(ctx context.Context, pool *pgxpool.Pool, hash, nextHash []byte, now time.Time) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var id, user, family uuid.UUID
	var used, revoked *time.Time
	var expires time.Time
	var email, username string
	if err := tx.QueryRow(ctx, pgLock, hash).Scan(&id, &user, &family, &used, &expires, &revoked, &email, &username); err != nil {
		return err
	}
	if revoked != nil || used != nil || !now.Before(expires) {
		return ErrNotFresh
	}
	if _, err := tx.Exec(ctx, pgMarkUsed, now, id); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, pgAudit, uuid.New(), now, auditEvent, user, nil); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, pgInsert, uuid.New(), now, user, family, id, nextHash, now.Add(childTTL)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// RefreshSQLite is RefreshPG for SQLite, through database/sql (the only
// way to SQLite from Go).
func RefreshSQLite(ctx context.Context, db *sql.DB, hash, nextHash []byte, now time.Time) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var id, user, family string
	var used, revoked sql.NullTime
	var expires time.Time
	var email, username string
	if err := tx.QueryRowContext(ctx, sqliteLock, hash).Scan(&id, &user, &family, &used, &expires, &revoked, &email, &username); err != nil {
		return err
	}
	if revoked.Valid || used.Valid || !now.Before(expires) {
		return ErrNotFresh
	}
	if _, err := tx.ExecContext(ctx, sqliteMarkUsed, now, id); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, sqliteAudit, uuid.NewString(), now, auditEvent, user, nil); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, sqliteInsert, uuid.NewString(), now, user, family, id, nextHash, now.Add(childTTL)); err != nil {
		return err
	}
	return tx.Commit()
}
