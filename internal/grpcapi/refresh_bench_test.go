package grpcapi_test

import (
	"context"
	"testing"

	"github.com/placebrain/auth/proto/authpb"
)

// BenchmarkRefreshTokens rotates one token chain over a real gRPC
// connection (each request presents the token the previous one returned).
func BenchmarkRefreshTokens(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	e.VerifiedUser(b, "r", "r@example.com", pw)
	rt := e.Login(b, "r@example.com", pw).RefreshToken
	b.ResetTimer()
	for b.Loop() {
		r, err := e.Client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: rt})
		if err != nil {
			b.Fatal(err)
		}
		rt = r.GetRefreshToken()
	}
}
