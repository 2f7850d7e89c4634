package main

import (
	"context"
	"slices"
	"time"

	"entgo.io/ent/dialect"
	"golang.org/x/crypto/bcrypt"
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

// rawRefresh is ceiling (c): the refresh transaction's SQL statements
// (read and lock the token with its family and user, mark the token used,
// write the audit event and the new token) issued directly, without gRPC
// or ent (rotation.go): through pgx on PostgreSQL, database/sql on SQLite. Each worker follows its own chain of fresh tokens, as the
// scenario does.
func (s *server) rawRefresh(ctx context.Context, w int) error {
	s.rotatorOnce.Do(func() {
		s.rotator.db = s.db.SQL
		if s.db.Dialect == dialect.Postgres {
			s.rotator.pool, s.rotatorErr = openPG(context.Background(), s.dsn())
		}
	})
	if s.rotatorErr != nil {
		return s.rotatorErr
	}
	// Not cut off by the slice's deadline, as in the RefreshTokens scenario.
	next, err := s.rotator.Rotate(context.WithoutCancel(ctx), *s.raw[w].Load())
	if err != nil {
		return err
	}
	s.raw[w].Store(&next)
	return nil
}
