package server_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/proto/authpb"
)

// BenchmarkObservability measures the hot path, ValidateToken and
// RefreshTokens over a real gRPC connection, with observability off (the
// default), with metrics, with metrics and the request log, and with all of
// it and every RPC traced (spans to a discarding exporter):
//
//	go test -run '^$' -bench Observability -benchmem -count 6 ./internal/server/ | benchstat -col /obs -
func BenchmarkObservability(b *testing.B) {
	modes := []struct {
		name string
		opts func(b *testing.B) []authtest.Option
	}{
		{"off", func(*testing.B) []authtest.Option { return nil }},
		{"metrics", func(*testing.B) []authtest.Option { return []authtest.Option{metricsOn} }},
		{"metrics+log", func(*testing.B) []authtest.Option {
			return []authtest.Option{metricsOn, authtest.Set("LOG__REQUESTS", "info")}
		}},
		{"all+traced", func(b *testing.B) []authtest.Option {
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			return []authtest.Option{metricsOn, authtest.Set("LOG__REQUESTS", "info"),
				authtest.ServerOptions(server.Options{TracerProvider: tp})}
		}},
	}
	for _, mode := range modes {
		b.Run("obs="+mode.name, func(b *testing.B) {
			e := authtest.New(b, append(mode.opts(b), authtest.Set("LOG__LEVEL", "info"))...)
			ctx := context.Background()
			e.VerifiedUser(b, "Bench", "bench@example.com", pw)
			p := e.Login(b, "bench@example.com", pw)
			b.Run("rpc=ValidateToken", func(b *testing.B) {
				req := &authpb.ValidateTokenRequest{AccessToken: p.AccessToken}
				for b.Loop() {
					if r, err := e.Client.ValidateToken(ctx, req); err != nil || !r.GetValid() {
						b.Fatal(r, err)
					}
				}
			})
			b.Run("rpc=RefreshTokens", func(b *testing.B) {
				rt := p.RefreshToken
				for b.Loop() {
					r, err := e.Client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: rt})
					if err != nil {
						b.Fatal(err)
					}
					rt = r.GetRefreshToken()
				}
			})
		})
	}
}
