package main

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"fmt"
	"slices"
	"sync"
	"time"

	"entgo.io/ent/dialect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/bcrypt"

	"github.com/placebrain/auth/internal/token"
)

// timeBcrypt is ceiling (b)'s unit: the time of one bcrypt comparison at
// cost, timed on one core (one goroutine, nothing else running): the
// median of eleven.
func timeBcrypt(cost int) time.Duration {
	hash, _ := bcrypt.GenerateFromPassword([]byte(benchPassword), cost)
	var ds []time.Duration
	for range 11 {
		t0 := time.Now()
		_ = bcrypt.CompareHashAndPassword(hash, []byte(benchPassword))
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// bcryptCeiling is ceiling (b): logins per second the CPUs can hash.
func bcryptCeiling(cpus int, one time.Duration) float64 {
	return float64(cpus) / one.Seconds()
}

var (
	pgPoolOnce sync.Once
	pgPool     *pgxpool.Pool
	pgPoolErr  error
)

// The refresh transaction's first statement: read the presented token, its
// family and its user, locking the token's and the family's rows.
const (
	sqliteLock = `SELECT t.id, t.user_id, t.family_id, t.used_at, t.expires_at, f.revoked_at, u.email, u.username ` +
		`FROM refresh_tokens t JOIN token_families f ON t.family_id = f.id JOIN users u ON t.user_id = u.id WHERE t.token_hash = ?`
	pgLock = `SELECT t.id, t.user_id, t.family_id, t.used_at, t.expires_at, f.revoked_at, u.email, u.username ` +
		`FROM refresh_tokens t JOIN token_families f ON t.family_id = f.id JOIN users u ON t.user_id = u.id WHERE t.token_hash = $1 FOR UPDATE OF t, f`
)

// rawRefresh is ceiling (c): the refresh transaction's SQL statements
// (read and lock the token with its family and user, mark the token used,
// write the audit event and the new token) issued directly, without gRPC
// or ent: through pgx on PostgreSQL, database/sql on SQLite. Each worker
// follows its own chain of fresh tokens, as the scenario does.
func (s *server) rawRefresh(ctx context.Context, w int) error {
	ctx = context.WithoutCancel(ctx) // as in the RefreshTokens scenario
	cur := s.raw[w].Load()
	sum := sha256.Sum256([]byte(*cur))
	b := make([]byte, token.RefreshTokenBytes)
	_, _ = randRead(b)
	next := base64.RawURLEncoding.EncodeToString(b)
	nextSum := sha256.Sum256([]byte(next))
	now := time.Now().UTC()
	var err error
	if s.db.Dialect == dialect.Postgres {
		err = s.rawRefreshPG(ctx, sum[:], nextSum[:], now)
	} else {
		err = s.rawRefreshSQL(ctx, sum[:], nextSum[:], now)
	}
	if err == nil {
		s.raw[w].Store(&next)
	}
	return err
}

func (s *server) rawRefreshPG(ctx context.Context, hash, nextHash []byte, now time.Time) error {
	pgPoolOnce.Do(func() {
		cfg, err := pgxpool.ParseConfig(s.dsn())
		if err != nil {
			pgPoolErr = err
			return
		}
		cfg.MaxConns = 20 // the service's default pool size
		pgPool, pgPoolErr = pgxpool.NewWithConfig(context.Background(), cfg)
	})
	if pgPoolErr != nil {
		return pgPoolErr
	}
	tx, err := pgPool.Begin(ctx)
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
	if revoked != nil || used != nil {
		return fmt.Errorf("token not fresh")
	}
	if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET used_at = $1 WHERE id = $2`, now, id); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO audit_events (id, created_at, event, user_id) VALUES ($1, $2, 'token_refreshed', $3)`, uuid.New(), now, user); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (id, created_at, user_id, family_id, parent_id, token_hash, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		uuid.New(), now, user, family, id, nextHash, now.Add(30*24*time.Hour)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (s *server) rawRefreshSQL(ctx context.Context, hash, nextHash []byte, now time.Time) error {
	tx, err := s.db.SQL.BeginTx(ctx, nil)
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
	if revoked.Valid || used.Valid {
		return fmt.Errorf("token not fresh")
	}
	if _, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET used_at = ? WHERE id = ?`, now, id); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_events (id, created_at, event, user_id) VALUES (?, ?, 'token_refreshed', ?)`, uuid.NewString(), now, user); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO refresh_tokens (id, created_at, user_id, family_id, parent_id, token_hash, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		uuid.NewString(), now, user, family, id, nextHash, now.Add(30*24*time.Hour)); err != nil {
		return err
	}
	return tx.Commit()
}

func randRead(b []byte) (int, error) { return crand.Read(b) }
