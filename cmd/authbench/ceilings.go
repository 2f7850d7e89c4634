package main

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"entgo.io/ent/dialect"
	"golang.org/x/crypto/bcrypt"

	"github.com/placebrain/auth/internal/store"
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

// Names of the ceilings the scenarios are measured against.
const (
	ceilHealth   = "(a) health Check"
	ceilFullPath = "(c) full-path rotation via SQL"
	ceilOneStmt  = "(d) fresh-token rotation via SQL"
	ceilGetMe    = "(e) GetMe's SELECT via SQL"
	ceilByEmail  = "(f) GetUserByEmail's SELECT via SQL"
)

// direct opens the direct connections of the SQL ceilings on first use:
// a pgx pool on PostgreSQL, the load tool's own database/sql handle on
// SQLite (the file is in this process then, as it is in authd's).
func (s *server) direct() (rotator, error) {
	s.rotatorOnce.Do(func() {
		s.rotator.db = s.db.SQL
		if s.db.Dialect == dialect.Postgres {
			s.rotator.pool, s.rotatorErr = openPG(context.Background(), s.dsn())
		}
	})
	return s.rotator, s.rotatorErr
}

// rawRefresh is ceiling (c): the full-path rotation's SQL statements
// (read and lock the token with its family and user, mark the token used,
// write the audit event and the new token, in one transaction) issued
// directly (rotation.go). Each worker follows its own chain of fresh
// tokens, as the scenario does.
func (s *server) rawRefresh(ctx context.Context, w int) error {
	return s.rawChain(ctx, s.raw, w, rotator.Rotate)
}

// rawFresh is ceiling (d): the rotation of a fresh token as the data layer
// runs it (one statement on PostgreSQL, a transaction of three on
// SQLite), issued directly.
func (s *server) rawFresh(ctx context.Context, w int) error {
	return s.rawChain(ctx, s.rawOne, w, rotator.RotateFresh)
}

func (s *server) rawChain(ctx context.Context, chains []atomic.Pointer[string], w int, rotate func(rotator, context.Context, string) (string, error)) error {
	r, err := s.direct()
	if err != nil {
		return err
	}
	// Not cut off by the slice's deadline, as in the RefreshTokens scenario.
	next, err := rotate(r, context.WithoutCancel(ctx), *chains[w].Load())
	if err != nil {
		return err
	}
	chains[w].Store(&next)
	return nil
}

// rawGetMe is ceiling (e): GetMe's SELECT (store.Reads.UserByID) issued
// directly for a random user.
func (s *server) rawGetMe(ctx context.Context, _ int) error {
	r, err := s.direct()
	if err != nil {
		return err
	}
	return r.ReadUser(ctx, store.ReadStatements(s.db.Dialect).UserByID, s.pick().ID)
}

// rawByEmail is ceiling (f): GetUserByEmail's SELECT (store.Reads.
// UserByEmail) issued directly for a random user.
func (s *server) rawByEmail(ctx context.Context, _ int) error {
	r, err := s.direct()
	if err != nil {
		return err
	}
	return r.ReadUser(ctx, store.ReadStatements(s.db.Dialect).UserByEmail, s.pick().Email)
}
