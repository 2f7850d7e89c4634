package auth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/placebrain/auth/ent/user"
	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/testutil/authtest"
)

func TestAccessTokenClaims(t *testing.T) {
	e := newEnv(t)
	id := e.VerifiedUser(t, "bob", "bob@example.com", pw)
	lr := e.Login(t, "bob@example.com", pw)

	parts := strings.Split(lr.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("access token has %d parts", len(parts))
	}
	var header, claims map[string]any
	decode := func(s string, v any) {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	decode(parts[0], &header)
	decode(parts[1], &claims)
	if header["alg"] != "HS256" || header["kid"] == nil {
		t.Errorf("header = %v", header)
	}
	for _, k := range []string{"sub", "email", "username", "iat", "exp", "jti", "iss", "token_type"} {
		if _, ok := claims[k]; !ok {
			t.Errorf("claim %s missing from %v", k, claims)
		}
	}
	if _, ok := claims["aud"]; ok {
		t.Errorf("access token carries aud: %v", claims["aud"])
	}
	if claims["sub"] != id || claims["token_type"] != "access" || claims["iss"] != "placebrain-auth" {
		t.Errorf("claims = %v", claims)
	}
	exp, iat := claims["exp"].(float64), claims["iat"].(float64)
	if time.Duration(exp-iat)*time.Second != accessTTL {
		t.Errorf("lifetime = %vs, want %v", exp-iat, accessTTL)
	}
	// The gateway decodes with the shared secret, HS256, no audience.
	if _, err := jwt.Parse(lr.AccessToken, func(*jwt.Token) (any, error) { return []byte(authtest.Secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(e.Clock.Now)); err != nil {
		t.Errorf("gateway-style decode: %v", err)
	}
}

func TestRegisterErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "alice", "Alice@Example.COM", pw) // verified: an unverified one takes sign-up claims
	emoji19 := strings.Repeat("😀", 19)                  // 76 bytes
	tests := []struct {
		name                      string
		username, email, password string
		want                      *auth.Error
		field, msgSubstr          string
	}{
		{"taken, other case", "a2", "alice@example.com", pw, auth.ErrEmailTaken, "", "Email already registered"},
		{"empty request", "", "", "", auth.ErrInvalidInput, "username", "username is required"},
		{"blank username", "  ", "x@example.com", pw, auth.ErrInvalidInput, "username", "username"},
		{"bad email", "x", "not-an-email", pw, auth.ErrInvalidInput, "email", "email"},
		{"email with name", "x", "X <x@example.com>", pw, auth.ErrInvalidInput, "email", "email"},
		{"short password", "x", "x@example.com", "1234567", auth.ErrInvalidInput, "password", "8 to 72 bytes"},
		{"73-byte password", "x", "x@example.com", strings.Repeat("a", 73), auth.ErrInvalidInput, "password", "8 to 72 bytes"},
		{"76-byte emoji password", "x", "x@example.com", emoji19, auth.ErrInvalidInput, "password", "8 to 72 bytes"},
		{"control char in username", "x\x00y", "x@example.com", pw, auth.ErrInvalidInput, "username", "control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Service.Register(ctx, tt.username, tt.email, tt.password)
			de := wantErr(t, err, tt.want, "")
			if tt.field != "" && de.Metadata["field"] != tt.field {
				t.Errorf("field = %q, want %q", de.Metadata["field"], tt.field)
			}
			if !strings.Contains(de.Message, tt.msgSubstr) {
				t.Errorf("message %q lacks %q", de.Message, tt.msgSubstr)
			}
		})
	}
	// A 72-byte password (18 four-byte emoji) is accepted.
	e.Register(t, "emoji", "emoji@example.com", strings.Repeat("😀", 18))
	// Nothing half-written: one user per accepted registration.
	if n := e.DB.Ent.User.Query().CountX(ctx); n != 2 {
		t.Errorf("users = %d, want 2", n)
	}
}

// Limits are checked in characters where the rule is in characters, and a
// valid address whose case-folded form is longer still registers: nothing
// valid reaches the database's validators and turns into an internal
// error.
func TestRegisterLongButValidInput(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.Register(t, strings.Repeat("é", 64), "long-name@example.com", pw)
	_, err := e.Service.Register(ctx, strings.Repeat("é", 65), "x@example.com", pw)
	wantErr(t, err, auth.ErrInvalidInput, "username must be at most 64 characters")

	// 254 bytes; İ folds to i + combining dot, so the canonical form is longer.
	addr := strings.Repeat("İ", 32) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("b", 57) + ".com"
	if len(addr) != 254 {
		t.Fatalf("len = %d", len(addr))
	}
	id := e.Register(t, "fold", addr, pw)
	// Verified as the code would (the relay takes no such address), since
	// GetUserByEmail finds verified users only.
	e.DB.Ent.User.UpdateOneID(uuid.MustParse(id)).SetIsVerified(true).ExecX(ctx)
	got, err := e.Service.GetUserByEmail(ctx, addr)
	if err != nil || got.ID.String() != id {
		t.Fatalf("GetUserByEmail = %v, %v", got, err)
	}
}

func TestLoginFailuresLookAlike(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "carol", "carol@example.com", pw)
	_, errWrong := e.Service.Login(ctx, "carol@example.com", "wrong password")
	_, errUnknown := e.Service.Login(ctx, "nobody@example.com", "wrong password")
	wantErr(t, errWrong, auth.ErrInvalidCredentials, "Invalid email or password")
	wantErr(t, errUnknown, auth.ErrInvalidCredentials, "Invalid email or password")
	if errWrong.Error() != errUnknown.Error() {
		t.Errorf("failures differ: %v vs %v", errWrong, errUnknown)
	}
	_, err := e.Service.Login(ctx, "carol@example.com", strings.Repeat("p", 73))
	wantErr(t, err, auth.ErrInvalidInput, "")
	_, err = e.Service.Login(ctx, "", "")
	wantErr(t, err, auth.ErrInvalidInput, "email is required")
}

func TestUnverifiedLogin(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.Register(t, "una", "una@example.com", pw)
	// The correct password gets exactly "Email not verified".
	_, err := e.Service.Login(ctx, "una@example.com", pw)
	wantErr(t, err, auth.ErrEmailNotVerified, "Email not verified")
}

// A successful login moves a hash made at another cost to the configured
// cost.
func TestLoginRehashesAtConfiguredCost(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.VerifiedUser(t, "old", "old@example.com", pw)
	old, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost+1)
	if err != nil {
		t.Fatal(err)
	}
	e.DB.Ent.User.Update().Where(user.ID(uuid.MustParse(id))).SetPasswordHash(string(old)).ExecX(ctx)
	e.Login(t, "old@example.com", pw)
	u := e.DB.Ent.User.GetX(ctx, uuid.MustParse(id))
	if cost, _ := bcrypt.Cost([]byte(u.PasswordHash)); cost != bcrypt.MinCost {
		t.Errorf("cost after login = %d, want %d", cost, bcrypt.MinCost)
	}
	e.Login(t, "old@example.com", pw) // the new hash works
}

func TestGetMeAndGetUserByEmail(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.Register(t, "Ivy", "Ivy@Example.com", pw)

	// Unverified: a pending sign-up claim, found by id but not by e-mail.
	me, err := e.Service.GetUser(ctx, id)
	if err != nil || me.ID.String() != id || me.Email != "Ivy@Example.com" || me.Username != "Ivy" || me.Verified {
		t.Fatalf("GetUser = %v, %v", me, err)
	}
	_, err = e.Service.GetUserByEmail(ctx, "  ivy@EXAMPLE.COM ")
	wantErr(t, err, auth.ErrUserNotFound, "User not found")

	if err := e.Service.VerifyOTP(ctx, "ivy@example.com", e.Code(t, "Ivy@Example.com")); err != nil {
		t.Fatal(err)
	}
	got, err := e.Service.GetUserByEmail(ctx, "  ivy@EXAMPLE.COM ")
	if err != nil || got.ID.String() != id || got.Email != "Ivy@Example.com" || got.Username != "Ivy" || !got.Verified {
		t.Fatalf("GetUserByEmail = %v, %v", got, err)
	}
	if me, err = e.Service.GetUser(ctx, id); err != nil || me != got {
		t.Fatalf("GetUser = %v, %v", me, err)
	}
	_, err = e.Service.GetUserByEmail(ctx, "nobody@example.com")
	wantErr(t, err, auth.ErrUserNotFound, "User not found")
	_, err = e.Service.GetUserByEmail(ctx, "nope")
	wantErr(t, err, auth.ErrInvalidInput, "")

	_, err = e.Service.GetUser(ctx, uuid.NewString())
	wantErr(t, err, auth.ErrUserNotFound, "User not found")
	_, err = e.Service.GetUser(ctx, "42")
	wantErr(t, err, auth.ErrInvalidInput, "user_id must be a UUID in canonical form")
	_, err = e.Service.GetUser(ctx, strings.ToUpper(uuid.NewString()))
	wantErr(t, err, auth.ErrInvalidInput, "user_id must be a UUID in canonical form")
	_, err = e.Service.GetUser(ctx, "")
	wantErr(t, err, auth.ErrInvalidInput, "user_id is required")
}

// Register Alice@Example.COM, then alice@example.com: taken; Login with
// ALICE@example.com works; GetUserByEmail with alice@EXAMPLE.com returns
// the same user.
func TestEmailCaseInsensitivity(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.VerifiedUser(t, "Alice", "Alice@Example.COM", pw)
	_, err := e.Service.Register(ctx, "alice", "alice@example.com", pw)
	wantErr(t, err, auth.ErrEmailTaken, "Email already registered")
	e.Login(t, "ALICE@example.com", pw)
	u, err := e.Service.GetUserByEmail(ctx, "alice@EXAMPLE.com")
	if err != nil || u.ID.String() != id || u.Email != "Alice@Example.COM" {
		t.Fatalf("GetUserByEmail = %v, %v", u, err)
	}
}

func TestValidateToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.VerifiedUser(t, "jo", "jo@example.com", pw)
	access := e.Login(t, "jo@example.com", pw).AccessToken
	secret := []byte(authtest.Secret)

	sign := func(m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := e.Clock.Now()
	good := jwt.MapClaims{"sub": id, "email": "jo@example.com", "username": "jo", "token_type": "access",
		"iss": "placebrain-auth", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	without := func(k string) jwt.MapClaims {
		c := jwt.MapClaims{}
		for kk, v := range good {
			if kk != k {
				c[kk] = v
			}
		}
		return c
	}
	with := func(k string, v any) jwt.MapClaims {
		c := without(k)
		c[k] = v
		return c
	}
	if sub, ok, err := e.Service.ValidateToken(ctx, sign(jwt.SigningMethodHS256, secret, good)); err != nil || !ok || sub.UserID.String() != id {
		t.Fatalf("hand-made good token: %v, %v, %v", sub, ok, err)
	}
	bad := map[string]string{
		"garbage":            "not.a.jwt",
		"alg none":           sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good),
		"HS512 real secret":  sign(jwt.SigningMethodHS512, secret, good),
		"no exp":             sign(jwt.SigningMethodHS256, secret, without("exp")),
		"expired":            sign(jwt.SigningMethodHS256, secret, with("exp", now.Add(-time.Second).Unix())),
		"refresh type":       sign(jwt.SigningMethodHS256, secret, with("token_type", "refresh")),
		"other issuer":       sign(jwt.SigningMethodHS256, secret, with("iss", "evil")),
		"other secret":       sign(jwt.SigningMethodHS256, []byte("another-secret-0123456789-abcdefghijkl"), good),
		"sub not a UUID":     sign(jwt.SigningMethodHS256, secret, with("sub", "admin")),
		"tampered signature": access[:len(access)-2] + "xx",
	}
	for name, tok := range bad {
		t.Run(name, func(t *testing.T) {
			sub, ok, err := e.Service.ValidateToken(ctx, tok)
			if err != nil || ok || sub.UserID != uuid.Nil {
				t.Errorf("ValidateToken = %v, %v, %v; want not ok, no error", sub, ok, err)
			}
		})
	}
	_, _, err := e.Service.ValidateToken(ctx, "")
	wantErr(t, err, auth.ErrInvalidInput, "access_token is required")
	_, _, err = e.Service.ValidateToken(ctx, strings.Repeat("a", auth.MaxAccessTokenBytes+1))
	wantErr(t, err, auth.ErrInvalidInput, "access_token must be at most 4096 bytes")

	// A real token stops validating once it expires.
	e.Clock.Advance(accessTTL + time.Second)
	if _, ok, err := e.Service.ValidateToken(ctx, access); err != nil || ok {
		t.Errorf("expired real token: %v, %v", ok, err)
	}
}
