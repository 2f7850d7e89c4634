package main

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/placebrain/auth/internal/auth"
	authserver "github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/internal/token"
	"github.com/placebrain/auth/proto/authpb"
)

// BenchmarkCleanup measures the retention cleanup (auth.Service.Cleanup,
// default batch size) on dead rows seeded into all eight tables it deletes
// from, next to live ones (authtest.SeedDeadRows; 15,000 per table,
// 120,000 in all, unless BENCH_CLEANUP_ROWS says otherwise), while
// RefreshTokens runs over gRPC from 4 callers, each following its own
// chain. It reports the rows deleted per second and the p99 of
// RefreshTokens while the cleanup runs against its p99 without it
// (measured before and after the cleanup, merged), and their ratio, in
// one run:
//
//	go test -run '^$' -bench Cleanup -benchtime 1x ./cmd/authbench/
//	TEST_BACKEND=postgres go test -run '^$' -bench Cleanup -benchtime 1x ./cmd/authbench/
func BenchmarkCleanup(b *testing.B) {
	rows := 15_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_CLEANUP_ROWS")); err == nil && v > 0 {
		rows = v
	}
	const conc = 4
	const quiet = 3 * time.Second
	for range b.N {
		b.StopTimer()
		e := authtest.New(b, authtest.ServerOptions(authserver.Options{NoCleanup: true}))
		ctx := context.Background()
		owners, families := e.SeedLiveRows(b, 100)
		e.SeedDeadRows(b, rows, owners, families)

		// One chain of refresh tokens per caller.
		chains := make([]string, conc)
		now := e.Clock.Now()
		for w := range chains {
			f := e.DB.Ent.TokenFamily.Create().SetUserID(owners[w]).SetCreatedAt(now).SaveX(ctx)
			rt, hash, err := token.NewRefreshToken()
			if err != nil {
				b.Fatal(err)
			}
			e.DB.Ent.RefreshToken.Create().SetUserID(owners[w]).SetFamilyID(f.ID).SetTokenHash(hash).
				SetCreatedAt(now).SetExpiresAt(now.Add(24 * time.Hour)).ExecX(ctx)
			chains[w] = rt
		}
		refresh := func(ctx context.Context, w int) error {
			r, err := e.Client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: chains[w]})
			if err != nil {
				return err
			}
			chains[w] = r.GetRefreshToken()
			return nil
		}

		without := run(ctx, conc, quiet, refresh, nil)
		b.StartTimer()
		cleaning, stop := context.WithCancel(ctx)
		var cleaned auth.Cleaned
		var cleanErr error
		var took time.Duration
		go func() {
			defer stop()
			start := time.Now()
			cleaned, cleanErr = e.Service.Cleanup(ctx)
			took = time.Since(start)
		}()
		during := run(cleaning, conc, time.Hour, refresh, nil)
		b.StopTimer()
		without.merge(run(ctx, conc, quiet, refresh, nil))
		if cleanErr != nil {
			b.Fatal(cleanErr)
		}
		if want := 8 * rows; cleaned.Total() != want {
			b.Fatalf("cleanup deleted %d rows (%+v), want %d", cleaned.Total(), cleaned, want)
		}
		if without.errors+during.errors > 0 {
			b.Fatalf("RefreshTokens failed: %s", without.sample+during.sample)
		}
		p99 := func(t *tally) float64 { return float64(t.result("", conc).P99) / 1e6 }
		b.ReportMetric(float64(cleaned.Total())/took.Seconds(), "rows/s")
		b.ReportMetric(took.Seconds(), "cleanup-s")
		b.ReportMetric(p99(without), "p99-ms-without")
		b.ReportMetric(p99(during), "p99-ms-during")
		b.ReportMetric(p99(during)/p99(without), "p99-ratio")
		b.ReportMetric(float64(during.ok), "refreshes-during")
	}
}
