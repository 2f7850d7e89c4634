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

// BenchmarkResetRequestTiming measures RequestPasswordReset over a real
// gRPC connection for an address without an account and for one with an
// account (a code mailed each time: every known address is asked once),
// interleaved, and reports each median and their ratio (unknown/known);
// the goal is a ratio within 0.9 to 1.1.
//
//	go test -run '^$' -bench ResetRequestTiming -benchtime 40x ./internal/grpcapi/
func BenchmarkResetRequestTiming(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	const warm = 8 // known requests before timing, so the service has durations to match
	for i := range b.N + warm {
		e.VerifiedUser(b, "bench", fmt.Sprintf("reset%d@example.com", i), pw)
	}
	request := func(addr string) time.Duration {
		start := time.Now()
		if _, err := e.Client.RequestPasswordReset(ctx, &authpb.RequestPasswordResetRequest{Email: addr}); err != nil {
			b.Fatalf("RequestPasswordReset(%s) = %v", addr, err)
		}
		return time.Since(start)
	}
	for i := range warm {
		request(fmt.Sprintf("reset%d@example.com", b.N+i))
	}
	var unknown, known []time.Duration
	b.ResetTimer()
	for i := range b.N {
		unknown = append(unknown, request(fmt.Sprintf("nobody%d@example.com", i)))
		known = append(known, request(fmt.Sprintf("reset%d@example.com", i)))
	}
	b.StopTimer()
	mu, mk := median(unknown), median(known)
	b.ReportMetric(float64(mu)/1e6, "p50-unknown-ms")
	b.ReportMetric(float64(mk)/1e6, "p50-known-ms")
	b.ReportMetric(float64(mu)/float64(mk), "p50-ratio")
}
