package token_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/token"
)

func benchIssuer(b *testing.B) *token.Issuer {
	iss, err := token.NewIssuer([]byte("bench-secret-0123456789-abcdefghijklmn"), "placebrain-auth", 15*time.Minute, nil)
	if err != nil {
		b.Fatal(err)
	}
	return iss
}

func BenchmarkSign(b *testing.B) {
	iss := benchIssuer(b)
	sub := token.Subject{UserID: uuid.New(), Email: "alice@example.com", Username: "Alice"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := iss.Sign(sub); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	iss := benchIssuer(b)
	tok, _, err := iss.Sign(token.Subject{UserID: uuid.New(), Email: "alice@example.com", Username: "Alice"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iss.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewRefreshToken(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := token.NewRefreshToken(); err != nil {
			b.Fatal(err)
		}
	}
}
