package token_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/token"
)

const (
	testIssuer = "placebrain-auth"
	testTTL    = 15 * time.Minute
)

var (
	testSecret  = []byte("0123456789abcdef0123456789abcdef") // 32 bytes
	otherSecret = []byte("fedcba9876543210fedcba9876543210")
	testUserID  = uuid.MustParse("7f0c1e3a-9a52-4c3e-8f41-2d7b1f6a9e10")
	// t0 has a sub-second part so that Sign's truncation is observable.
	t0 = time.Date(2026, 3, 14, 9, 26, 53, 589_000_000, time.UTC)
)

// clock is a settable time source for NewIssuer's now parameter.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newIssuer(t *testing.T, c *clock) *token.Issuer {
	t.Helper()
	iss, err := token.NewIssuer(testSecret, testIssuer, testTTL, c.now)
	if err != nil {
		t.Fatalf("NewIssuer: %v", err)
	}
	return iss
}

// decodeSegment base64url-decodes one JWT segment into a JSON object.
func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("decode segment %q: %v", seg, err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("unmarshal segment %s: %v", b, err)
	}
	return m
}

func TestSignVerifyRoundTrip(t *testing.T) {
	c := &clock{t: t0}
	iss := newIssuer(t, c)
	subj := token.Subject{UserID: testUserID, Email: "alice@example.com", Username: "Alice"}

	raw, exp, err := iss.Sign(subj)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	wantExp := t0.Truncate(time.Second).Add(testTTL)
	if !exp.Equal(wantExp) {
		t.Errorf("Sign expiry = %v, want %v", exp, wantExp)
	}

	got, err := iss.Verify(raw)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if diff := cmp.Diff(subj, got); diff != "" {
		t.Errorf("Verify subject mismatch (-want +got):\n%s", diff)
	}

	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments, want 3", len(parts))
	}

	t.Run("header", func(t *testing.T) {
		h := decodeSegment(t, parts[0])
		want := map[string]any{"alg": "HS256", "typ": "JWT", "kid": token.KeyID(testSecret)}
		if diff := cmp.Diff(want, h); diff != "" {
			t.Errorf("header mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("payload", func(t *testing.T) {
		p := decodeSegment(t, parts[1])
		keys := make([]string, 0, len(p))
		for k := range p {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		wantKeys := []string{"email", "exp", "iat", "iss", "jti", "sub", "token_type", "username"}
		if diff := cmp.Diff(wantKeys, keys); diff != "" {
			t.Errorf("payload keys mismatch (-want +got):\n%s", diff)
		}
		if _, ok := p["aud"]; ok {
			t.Errorf("payload has an aud claim: %v", p["aud"])
		}
		jti, _ := p["jti"].(string)
		if _, err := uuid.Parse(jti); err != nil {
			t.Errorf("jti %q is not a UUID: %v", jti, err)
		}
		delete(p, "jti")
		want := map[string]any{
			"sub":        testUserID.String(),
			"email":      "alice@example.com",
			"username":   "Alice",
			"iss":        testIssuer,
			"token_type": "access",
			"iat":        float64(t0.Truncate(time.Second).Unix()),
			"exp":        float64(wantExp.Unix()),
		}
		if diff := cmp.Diff(want, p); diff != "" {
			t.Errorf("payload mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("jti differs per token", func(t *testing.T) {
		raw2, _, err := iss.Sign(subj)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		p1 := decodeSegment(t, parts[1])
		p2 := decodeSegment(t, strings.Split(raw2, ".")[1])
		if p1["jti"] == p2["jti"] {
			t.Errorf("two tokens share jti %v", p1["jti"])
		}
	})
}

func TestVerifyExpiry(t *testing.T) {
	c := &clock{t: t0}
	iss := newIssuer(t, c)
	raw, exp, err := iss.Sign(token.Subject{UserID: testUserID, Email: "a@x.com", Username: "a"})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	tests := []struct {
		name    string
		now     time.Time
		wantErr bool
	}{
		{"just issued", t0, false},
		{"one second before expiry", exp.Add(-time.Second), false},
		{"at expiry", exp, true},
		{"one second after expiry", exp.Add(time.Second), true},
		{"a day later", exp.Add(24 * time.Hour), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = tt.now
			_, err := iss.Verify(raw)
			if tt.wantErr {
				if !errors.Is(err, token.ErrInvalid) {
					t.Errorf("Verify at %v: err = %v, want ErrInvalid", tt.now, err)
				}
				return
			}
			if err != nil {
				t.Errorf("Verify at %v: %v", tt.now, err)
			}
		})
	}
}

// goodClaims returns claims that Verify accepts at t0 when signed HS256
// with testSecret.
func goodClaims() jwt.MapClaims {
	now := t0.Truncate(time.Second)
	return jwt.MapClaims{
		"sub":        testUserID.String(),
		"email":      "alice@example.com",
		"username":   "Alice",
		"iss":        testIssuer,
		"iat":        now.Unix(),
		"exp":        now.Add(testTTL).Unix(),
		"jti":        uuid.NewString(),
		"token_type": "access",
	}
}

func signWith(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign test token: %v", err)
	}
	return s
}

func TestVerifyRejects(t *testing.T) {
	c := &clock{t: t0}
	iss := newIssuer(t, c)

	with := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		cl := goodClaims()
		mod(cl)
		return cl
	}

	// The control case: goodClaims signed properly must verify, or the
	// rejections below prove nothing.
	if _, err := iss.Verify(signWith(t, jwt.SigningMethodHS256, testSecret, goodClaims())); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}

	tests := []struct {
		name string
		raw  string
	}{
		{"alg none", signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, goodClaims())},
		{"HS512 with the same secret", signWith(t, jwt.SigningMethodHS512, testSecret, goodClaims())},
		{"HS384 with the same secret", signWith(t, jwt.SigningMethodHS384, testSecret, goodClaims())},
		{"no exp", signWith(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { delete(c, "exp") }))},
		{"token_type refresh", signWith(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["token_type"] = "refresh" }))},
		{"no token_type", signWith(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { delete(c, "token_type") }))},
		{"different issuer", signWith(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["iss"] = "someone-else" }))},
		{"no issuer", signWith(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { delete(c, "iss") }))},
		{"another secret", signWith(t, jwt.SigningMethodHS256, otherSecret, goodClaims())},
		{"iat in the future", signWith(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["iat"] = t0.Add(time.Hour).Unix() }))},
		{"sub not a UUID", signWith(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["sub"] = "alice" }))},
		{"no sub", signWith(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { delete(c, "sub") }))},
		{"garbage", "not a token at all"},
		{"empty", ""},
		{"two segments", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := iss.Verify(tt.raw)
			if !errors.Is(err, token.ErrInvalid) {
				t.Errorf("Verify: err = %v, want ErrInvalid", err)
			}
			if diff := cmp.Diff(token.Subject{}, got); diff != "" {
				t.Errorf("Verify returned a subject on failure (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("tampered payload", func(t *testing.T) {
		raw, _, err := iss.Sign(token.Subject{UserID: testUserID, Email: "a@x.com", Username: "a"})
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		parts := strings.Split(raw, ".")
		p := decodeSegment(t, parts[1])
		p["email"] = "admin@x.com"
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		parts[1] = base64.RawURLEncoding.EncodeToString(b)
		if _, err := iss.Verify(strings.Join(parts, ".")); !errors.Is(err, token.ErrInvalid) {
			t.Errorf("Verify tampered token: err = %v, want ErrInvalid", err)
		}
	})
}

func TestNewIssuerSecretLength(t *testing.T) {
	tests := []struct {
		name    string
		secret  []byte
		wantErr bool
	}{
		{"nil", nil, true},
		{"empty", []byte{}, true},
		{"31 bytes", []byte(strings.Repeat("s", 31)), true},
		{"32 bytes", []byte(strings.Repeat("s", 32)), false},
		{"64 bytes", []byte(strings.Repeat("s", 64)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss, err := token.NewIssuer(tt.secret, testIssuer, testTTL, nil)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("NewIssuer err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				if iss != nil {
					t.Errorf("NewIssuer returned an issuer with an error")
				}
				return
			}
			// With the default clock a fresh token verifies.
			raw, _, err := iss.Sign(token.Subject{UserID: testUserID})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if _, err := iss.Verify(raw); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestKeyID(t *testing.T) {
	sum := sha256.Sum256(testSecret)
	want := base64.RawURLEncoding.EncodeToString(sum[:8])
	if diff := cmp.Diff(want, token.KeyID(testSecret)); diff != "" {
		t.Errorf("KeyID mismatch (-want +got):\n%s", diff)
	}
	if token.KeyID(testSecret) == token.KeyID(otherSecret) {
		t.Errorf("KeyID is the same for two different secrets")
	}
	if strings.Contains(token.KeyID(testSecret), string(testSecret[:4])) {
		t.Errorf("KeyID reveals the secret")
	}
}

var urlSafe43 = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func TestNewRefreshToken(t *testing.T) {
	text, hash, err := token.NewRefreshToken()
	if err != nil {
		t.Fatalf("NewRefreshToken: %v", err)
	}
	if len(text) != 43 {
		t.Errorf("len(text) = %d, want 43", len(text))
	}
	if !urlSafe43.MatchString(text) {
		t.Errorf("text %q is not 43 URL-safe base64 characters", text)
	}
	sum := sha256.Sum256([]byte(text))
	if diff := cmp.Diff(sum[:], hash); diff != "" {
		t.Errorf("hash is not sha256(text) (-want +got):\n%s", diff)
	}
	b, err := base64.RawURLEncoding.DecodeString(text)
	if err != nil {
		t.Fatalf("text does not decode: %v", err)
	}
	if len(b) != token.RefreshTokenBytes {
		t.Errorf("decoded length = %d, want %d", len(b), token.RefreshTokenBytes)
	}

	text2, hash2, err := token.NewRefreshToken()
	if err != nil {
		t.Fatalf("NewRefreshToken: %v", err)
	}
	if text == text2 {
		t.Errorf("two calls returned the same text %q", text)
	}
	if cmp.Equal(hash, hash2) {
		t.Errorf("two calls returned the same hash")
	}
}

func TestHashRefreshToken(t *testing.T) {
	t.Run("accepts what NewRefreshToken makes", func(t *testing.T) {
		for range 100 {
			text, want, err := token.NewRefreshToken()
			if err != nil {
				t.Fatalf("NewRefreshToken: %v", err)
			}
			got, err := token.HashRefreshToken(text)
			if err != nil {
				t.Fatalf("HashRefreshToken(%q): %v", text, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("HashRefreshToken(%q) mismatch (-want +got):\n%s", text, diff)
			}
		}
	})

	// valid is a canonical token: 32 zero bytes encode to 43 'A's. Its last
	// character carries 4 payload bits and 2 unused bits, which must be 0.
	valid := strings.Repeat("A", 43)
	if _, err := token.HashRefreshToken(valid); err != nil {
		t.Fatalf("HashRefreshToken(valid): %v", err)
	}

	tests := []struct {
		name string
		text string
	}{
		{"empty", ""},
		{"42 chars", valid[:42]},
		{"44 chars", valid + "A"},
		{"padded", valid + "="},
		{"86 chars", valid + valid},
		{"plus", "+" + valid[1:]},
		{"slash", valid[:10] + "/" + valid[11:]},
		{"equals inside", valid[:20] + "=" + valid[21:]},
		{"space", valid[:20] + " " + valid[21:]},
		{"non-canonical last char B", valid[:42] + "B"}, // unused bits 01
		{"non-canonical last char D", valid[:42] + "D"}, // unused bits 11
		{"non-ASCII", valid[:41] + "é"},                 // 2 bytes: length 43
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := token.HashRefreshToken(tt.text)
			if !errors.Is(err, token.ErrMalformedRefreshToken) {
				t.Errorf("HashRefreshToken(%q): err = %v, want ErrMalformedRefreshToken", tt.text, err)
			}
			if got != nil {
				t.Errorf("HashRefreshToken(%q) returned a hash on error", tt.text)
			}
		})
	}

	t.Run("canonical last char E", func(t *testing.T) {
		// 'E' = 000100: unused low bits are 00, so it is canonical.
		if _, err := token.HashRefreshToken(valid[:42] + "E"); err != nil {
			t.Errorf("HashRefreshToken: %v", err)
		}
	})
}

// TestHashRefreshTokenRejectsLineBreaks checks that text with a CR or LF is
// refused: NewRefreshToken never makes it. encoding/base64 skips '\r' and
// '\n' even in Strict mode, so a 43-byte text made of 42 base64 characters
// and a line break passes both checks in HashRefreshToken today.
func TestHashRefreshTokenRejectsLineBreaks(t *testing.T) {
	valid := strings.Repeat("A", 43)
	tests := []struct {
		name string
		text string
	}{
		{"trailing LF", valid[:42] + "\n"},
		{"trailing CR", valid[:42] + "\r"},
		{"LF inside", valid[:20] + "\n" + valid[21:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := token.HashRefreshToken(tt.text); !errors.Is(err, token.ErrMalformedRefreshToken) {
				t.Errorf("HashRefreshToken(%q): err = %v, want ErrMalformedRefreshToken", tt.text, err)
			}
		})
	}
}
