package main

import (
	"context"
	"crypto/sha256"
	"slices"
	"sync"
	"time"

	"entgo.io/ent/dialect"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/bcrypt"

	"github.com/placebrain/auth/internal/ceiling"
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

// rawRefresh is ceiling (c): the refresh transaction's SQL statements
// (read and lock the token with its family and user, mark the token used,
// write the audit event and the new token) issued directly, without gRPC
// or ent: through pgx on PostgreSQL, database/sql on SQLite. Each worker
// follows its own chain of fresh tokens, as the scenario does.
func (s *server) rawRefresh(ctx context.Context, w int) error {
	ctx = context.WithoutCancel(ctx) // as in the RefreshTokens scenario
	cur := s.raw[w].Load()
	sum := sha256.Sum256([]byte(*cur))
	next, nextHash, err := token.NewRefreshToken()
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	if s.db.Dialect == dialect.Postgres {
		err = s.rawRefreshPG(ctx, sum[:], nextHash, now)
	} else {
		err = ceiling.RefreshSQLite(ctx, s.db.SQL, sum[:], nextHash, now)
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
	return ceiling.RefreshPG(ctx, pgPool, hash, nextHash, now)
}
