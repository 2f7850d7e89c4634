package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect"

	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/internal/token"
)

// BenchmarkRefresh rotates refresh tokens in this process, without gRPC,
// at 1 and 8 concurrent callers, each following its own chain of fresh
// tokens as the RefreshTokens scenario does:
//
//   - service: Service.Refresh of a service assembled as production does
//     (server.New: ent, database/sql, the audit event, the signed access
//     token);
//   - sql: the same transaction's statements issued directly (rotation.go:
//     pgx on PostgreSQL, database/sql on SQLite), the load tool's ceiling
//     (c).
//
// Their ratio is the service's own overhead on the rotation, apart from
// the gRPC round trip. TEST_BACKEND=postgres runs it on PostgreSQL:
//
//	TEST_BACKEND=postgres go test -run '^$' -bench Refresh -count 6 ./cmd/authbench/
//
// Results are named Refresh/sqlite/… or Refresh/postgres/….
func BenchmarkRefresh(b *testing.B) {
	e := authtest.New(b)
	db := e.DB
	ctx := context.Background()
	now := time.Now().UTC()
	u, err := db.Ent.User.Create().SetUsername("bench").SetEmail("bench@example.com").SetEmailNormalized("bench@example.com").
		SetPasswordHash("x").SetIsVerified(true).SetCreatedAt(now).SetUpdatedAt(now).Save(ctx)
	if err != nil {
		b.Fatal(err)
	}
	// newChain stores the first token of a new family and returns its text.
	newChain := func() (string, error) {
		fam, err := db.Ent.TokenFamily.Create().SetUserID(u.ID).SetCreatedAt(now).Save(ctx)
		if err != nil {
			return "", err
		}
		rt, hash, err := token.NewRefreshToken()
		if err != nil {
			return "", err
		}
		return rt, db.Ent.RefreshToken.Create().SetUserID(u.ID).SetFamilyID(fam.ID).SetTokenHash(hash).
			SetCreatedAt(now).SetExpiresAt(now.Add(time.Hour)).Exec(ctx)
	}
	sqlRotate := sqlRotation(b, db, e.URL)
	// The backend is part of the name, so that benchstat keeps SQLite's
	// and PostgreSQL's results apart.
	backend := "sqlite"
	if db.Dialect == dialect.Postgres {
		backend = "postgres"
	}
	b.Run(backend, func(b *testing.B) {
		for _, conc := range []int{1, 8} {
			b.Run(fmt.Sprintf("service/c=%d", conc), func(b *testing.B) {
				rotate(b, conc, newChain, func(rt string) (string, error) {
					p, err := e.Service.Refresh(ctx, rt)
					return p.RefreshToken, err
				})
			})
			b.Run(fmt.Sprintf("sql/c=%d", conc), func(b *testing.B) {
				rotate(b, conc, newChain, sqlRotate)
			})
		}
	})
}

// sqlRotation returns the direct rotation (ceiling (c)) on db.
func sqlRotation(b *testing.B, db *store.DB, url string) func(string) (string, error) {
	ctx := context.Background()
	r := rotator{db: db.SQL}
	if db.Dialect == dialect.Postgres {
		dsn, err := store.NormalizeURL(url)
		if err != nil {
			b.Fatal(err)
		}
		if r.pool, err = openPG(ctx, dsn); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(r.pool.Close)
	}
	return func(rt string) (string, error) { return r.Rotate(ctx, rt) }
}

// rotate runs b.N rotations spread over conc goroutines, each on its own
// chain from newChain.
func rotate(b *testing.B, conc int, newChain func() (string, error), fn func(string) (string, error)) {
	chains := make([]string, conc)
	for i := range chains {
		rt, err := newChain()
		if err != nil {
			b.Fatal(err)
		}
		chains[i] = rt
	}
	// One rotation per chain, all at once, before the clock starts: the
	// pools open their connections and prepare their statements here.
	var warm sync.WaitGroup
	for i := range chains {
		warm.Go(func() {
			next, err := fn(chains[i])
			if err != nil {
				b.Error(err)
				return
			}
			chains[i] = next
		})
	}
	warm.Wait()
	if b.Failed() {
		return
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range conc {
		wg.Go(func() {
			rt := chains[i]
			for left.Add(-1) >= 0 {
				next, err := fn(rt)
				if err != nil {
					b.Error(err)
					return
				}
				rt = next
			}
		})
	}
	wg.Wait()
}
