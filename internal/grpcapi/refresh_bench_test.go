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
	e.verifiedUser(b, "r", "r@example.com", pw)
	rt := e.login(b, "r@example.com", pw).GetRefreshToken()
	b.ResetTimer()
	for b.Loop() {
		r, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: rt})
		if err != nil {
			b.Fatal(err)
		}
		rt = r.GetRefreshToken()
	}
}
