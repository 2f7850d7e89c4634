package auth_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/ceiling"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/testutil/testdb"
	"github.com/placebrain/auth/internal/token"
)

// BenchmarkRefresh rotates refresh tokens in this process, without gRPC,
// at 1 and 8 concurrent callers, each following its own chain of fresh
// tokens as cmd/authbench's RefreshTokens scenario does:
//
//   - service: Service.Refresh (ent, database/sql, the audit event, the
//     signed access token);
//   - sql: the same transaction's statements issued directly
//     (internal/ceiling: pgx on PostgreSQL, database/sql on SQLite), the
//     load tool's ceiling (c).
//
// Their ratio is the service's own overhead on the rotation, apart from
// the gRPC round trip. TEST_BACKEND=postgres runs it on PostgreSQL:
//
//	TEST_BACKEND=postgres go test -run '^$' -bench Refresh -count 6 ./internal/auth/
//
// Results are named Refresh/sqlite/… or Refresh/postgres/….
func BenchmarkRefresh(b *testing.B) {
	db, url := testdb.OpenWithURL(b)
	ctx := context.Background()
	access, err := token.NewIssuer([]byte("refresh-benchmark-secret-0123456789"), "placebrain-auth", 15*time.Minute, nil)
	if err != nil {
		b.Fatal(err)
	}
	svc := auth.New(db, auth.Options{AccessTokens: access, RefreshTokenTTL: 30 * 24 * time.Hour})
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
	sqlRotate := sqlRotation(b, db, url)
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
					p, err := svc.Refresh(ctx, rt)
					return p.RefreshToken, err
				})
			})
			b.Run(fmt.Sprintf("sql/c=%d", conc), func(b *testing.B) {
				rotate(b, conc, newChain, sqlRotate)
			})
		}
	})
}

// sqlRotation returns a rotation through internal/ceiling on db.
func sqlRotation(b *testing.B, db *store.DB, url string) func(string) (string, error) {
	ctx := context.Background()
	r := ceiling.Rotator{DB: db.SQL}
	if db.Dialect == dialect.Postgres {
		dsn, err := store.NormalizeURL(url)
		if err != nil {
			b.Fatal(err)
		}
		if r.Pool, err = ceiling.OpenPG(ctx, dsn); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(r.Pool.Close)
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt := chains[i]
			for left.Add(-1) >= 0 {
				next, err := fn(rt)
				if err != nil {
					b.Error(err)
					return
				}
				rt = next
			}
		}()
	}
	wg.Wait()
}
