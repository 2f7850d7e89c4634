package token_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/token"
)

// FuzzVerify feeds arbitrary text to the access token parser: it must never
// panic, and must accept nothing but tokens this issuer signed.
func FuzzVerify(f *testing.F) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	iss, err := token.NewIssuer([]byte("fuzz-secret-0123456789-abcdefghijklm"), "placebrain-auth", time.Minute, func() time.Time { return now })
	if err != nil {
		f.Fatal(err)
	}
	good, _, err := iss.Sign(token.Subject{UserID: uuid.New(), Email: "a@b.c", Username: "a"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, "", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", good + "x", good[:len(good)/2]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sub, err := iss.Verify(s)
		if err == nil && s != good {
			// Another valid token must at least carry a UUID subject;
			// reaching here without our signature would be a forgery.
			if sub.UserID == uuid.Nil {
				t.Fatalf("accepted %q with a nil subject", s)
			}
		}
	})
}

// FuzzHashRefreshToken checks that only canonical 43-character base64url
// text of 32 bytes is accepted.
func FuzzHashRefreshToken(f *testing.F) {
	text, _, _ := token.NewRefreshToken()
	for _, s := range []string{text, "", text + "\n", text[:42] + "=", "AAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := token.HashRefreshToken(s)
		if err != nil {
			return
		}
		if len(s) != 43 || len(h) != 32 {
			t.Fatalf("accepted %q", s)
		}
		for _, c := range s {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				t.Fatalf("accepted %q with %q", s, c)
			}
		}
	})
}
