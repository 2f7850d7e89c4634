package grpcapi_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/proto/authpb"
)

// BenchmarkLoginFailureTiming measures, over a real gRPC connection at the
// default bcrypt cost (12), Login for an unknown e-mail and for a known
// e-mail with a wrong password, interleaved so both see the same machine
// state. It reports each median and their ratio (unknown/wrong); the goal
// is a ratio within 0.9 to 1.1. Addresses rotate so that login throttling
// never kicks in.
//
//	go test -run '^$' -bench LoginFailureTiming -benchtime 40x ./internal/grpcapi/
func BenchmarkLoginFailureTiming(b *testing.B) {
	e := newEnv(b, authtest.Set("PASSWORD__BCRYPT_COST", "12"))
	ctx := context.Background()
	const perUser = loginMaxFails - 1
	users := (b.N + perUser - 1) / perUser
	for i := range users {
		e.VerifiedUser(b, "bench", fmt.Sprintf("bench%d@example.com", i), pw)
	}
	var unknown, wrong []time.Duration
	login := func(addr string) time.Duration {
		start := time.Now()
		_, err := e.Client.Login(ctx, &authpb.LoginRequest{Email: addr, Password: "wrong password"})
		d := time.Since(start)
		if status.Code(err) != codes.Unauthenticated {
			b.Fatalf("Login(%s) = %v", addr, err)
		}
		return d
	}
	b.ResetTimer()
	for i := range b.N {
		unknown = append(unknown, login(fmt.Sprintf("nobody%d@example.com", i)))
		wrong = append(wrong, login(fmt.Sprintf("bench%d@example.com", i/perUser)))
	}
	b.StopTimer()
	mu, mw := median(unknown), median(wrong)
	b.ReportMetric(float64(mu)/1e6, "p50-unknown-ms")
	b.ReportMetric(float64(mw)/1e6, "p50-wrong-ms")
	b.ReportMetric(float64(mu)/float64(mw), "p50-ratio")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
