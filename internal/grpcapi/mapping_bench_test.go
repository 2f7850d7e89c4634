package grpcapi

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/placebrain/auth/internal/auth"
)

func BenchmarkToStatus(b *testing.B) {
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	for name, err := range map[string]error{
		"domain":            auth.ErrInvalidCredentials,
		"domain with retry": &auth.Error{Kind: auth.KindResourceExhausted, Reason: "OTP_DAILY_LIMIT", Message: "wait", RetryAfter: 55 * time.Second},
		"internal":          errors.New("boom"),
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = ToStatus(ctx, log, "/auth.AuthService/Login", err)
			}
		})
	}
}
