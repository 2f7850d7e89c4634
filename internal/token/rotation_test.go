package token_test

import (
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/token"
)

var (
	k1 = []byte("k1-secret-0123456789-abcdefghijklmnop")
	k2 = []byte("k2-secret-0123456789-abcdefghijklmnop")
)

// Secret rotation: k1 signs; k2 becomes the signing secret with k1 kept as
// previous; once k1 is removed its tokens are refused.
func TestSecretRotation(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	sub := token.Subject{UserID: uuid.New(), Email: "a@b.co", Username: "a"}

	old, err := token.NewIssuer(k1, "placebrain-auth", time.Hour, clock)
	if err != nil {
		t.Fatal(err)
	}
	t1, _, err := old.Sign(sub)
	if err != nil {
		t.Fatal(err)
	}

	rotated, err := token.NewIssuer(k2, "placebrain-auth", time.Hour, clock, token.Options{Previous: [][]byte{k1}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.Verify(t1); err != nil || got != sub {
		t.Fatalf("old token after rotation: %v, %v", got, err)
	}
	t2, _, err := rotated.Sign(sub)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(t2, jwt.MapClaims{})
	if err != nil || parsed.Header["kid"] != token.KeyID(k2) || token.KeyID(k2) == token.KeyID(k1) {
		t.Fatalf("new token kid = %v, want %s", parsed.Header["kid"], token.KeyID(k2))
	}

	retired, err := token.NewIssuer(k2, "placebrain-auth", time.Hour, clock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := retired.Verify(t1); !errors.Is(err, token.ErrInvalid) {
		t.Errorf("token of a removed secret: %v, want ErrInvalid", err)
	}
	if _, err := retired.Verify(t2); err != nil {
		t.Errorf("current token: %v", err)
	}
	if _, err := token.NewIssuer(k2, "x", time.Hour, clock, token.Options{Previous: [][]byte{[]byte("short")}}); err == nil {
		t.Errorf("short previous secret accepted")
	}
}

// A token with an unknown kid is refused even when signed with the current
// secret; one without kid (as the platform's previous service issued them)
// is checked against the current secret only.
func TestKeyIDSelection(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	iss, err := token.NewIssuer(k2, "placebrain-auth", time.Hour, func() time.Time { return now }, token.Options{Previous: [][]byte{k1}})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{"sub": uuid.NewString(), "token_type": "access", "iss": "placebrain-auth", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	sign := func(kid any, key []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
		if kid != nil {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for name, tc := range map[string]struct {
		tok string
		ok  bool
	}{
		"no kid, current secret":  {sign(nil, k2), true},
		"no kid, previous secret": {sign(nil, k1), false},
		"unknown kid":             {sign("nope", k2), false},
		"kid of k1, signed by k2": {sign(token.KeyID(k1), k2), false},
		"kid of k1, signed by k1": {sign(token.KeyID(k1), k1), true},
		"non-string kid":          {sign(42, k2), false},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := iss.Verify(tc.tok); (err == nil) != tc.ok {
				t.Errorf("Verify = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// The leeway admits a token that expired within it, and no more.
func TestLeeway(t *testing.T) {
	issued := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	now := issued
	clock := func() time.Time { return now }
	signer, _ := token.NewIssuer(k1, "placebrain-auth", time.Minute, clock)
	tok, _, _ := signer.Sign(token.Subject{UserID: uuid.New()})
	lenient, _ := token.NewIssuer(k1, "placebrain-auth", time.Minute, clock, token.Options{Leeway: 5 * time.Second})
	now = issued.Add(time.Minute + 3*time.Second)
	if _, err := lenient.Verify(tok); err != nil {
		t.Errorf("3 s past exp with 5 s leeway: %v", err)
	}
	if _, err := signer.Verify(tok); err == nil {
		t.Errorf("3 s past exp without leeway accepted")
	}
	now = issued.Add(time.Minute + 6*time.Second)
	if _, err := lenient.Verify(tok); err == nil {
		t.Errorf("6 s past exp with 5 s leeway accepted")
	}
}

// The verification cache returns what a full verification would: a cached
// token still expires on time, and only byte-identical tokens hit.
func TestVerifyCache(t *testing.T) {
	issued := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	now := issued
	clock := func() time.Time { return now }
	iss, err := token.NewIssuer(k1, "placebrain-auth", time.Minute, clock, token.Options{CacheSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	sub := token.Subject{UserID: uuid.New(), Email: "a@b.co", Username: "a"}
	tok, _, _ := iss.Sign(sub)
	for range 3 {
		if got, err := iss.Verify(tok); err != nil || got != sub {
			t.Fatalf("Verify = %v, %v", got, err)
		}
	}
	// Change a character inside the signature (the last one partly holds
	// padding bits a decoder ignores).
	i := len(tok) - 10
	alt := "A"
	if tok[i] == 'A' {
		alt = "B"
	}
	if _, err := iss.Verify(tok[:i] + alt + tok[i+1:]); err == nil {
		t.Errorf("a tampered token hit the cache")
	}
	now = issued.Add(time.Minute)
	if _, err := iss.Verify(tok); !errors.Is(err, token.ErrInvalid) {
		t.Errorf("cached token after exp: %v, want ErrInvalid", err)
	}
}
