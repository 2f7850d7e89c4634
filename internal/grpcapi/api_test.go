package grpcapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/placebrain/auth/ent/otprequest"
	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/ent/tokenfamily"
	"github.com/placebrain/auth/internal/testutil/smtptest"
	"github.com/placebrain/auth/proto/authpb"
)

const pw = "correct horse battery"

func TestRegisterVerifyLoginJourney(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.register(t, "Alice", "Alice@Example.COM", pw)
	if _, err := uuid.Parse(id); err != nil {
		t.Fatalf("user_id %q is not a UUID", id)
	}

	// Unverified: the correct password gets exactly "Email not verified".
	_, err := e.client.Login(ctx, &authpb.LoginRequest{Email: "alice@example.com", Password: pw})
	wantStatus(t, err, codes.FailedPrecondition, "Email not verified", "EMAIL_NOT_VERIFIED")

	me, err := e.client.GetMe(ctx, &authpb.GetMeRequest{UserId: id})
	if err != nil || me.GetIsVerified() || me.GetEmail() != "Alice@Example.COM" || me.GetUsername() != "Alice" {
		t.Fatalf("GetMe before verification = %v, %v", me, err)
	}

	code := e.mailCode(t, "Alice@Example.COM")
	msg := e.smtp.Messages()[0]
	if msg.Email.Subject == "" || !strings.Contains(msg.From, "no-reply@placebrain.test") {
		t.Errorf("mail subject %q from %q", msg.Email.Subject, msg.From)
	}
	if _, err := e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "ALICE@example.com", Code: code}); err != nil {
		t.Fatalf("VerifyOtp: %v", err)
	}
	me, err = e.client.GetMe(ctx, &authpb.GetMeRequest{UserId: id})
	if err != nil || !me.GetIsVerified() {
		t.Fatalf("GetMe after verification = %v, %v", me, err)
	}

	// The code is single-use.
	_, err = e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "nobody@example.com", Code: code})
	wantStatus(t, err, codes.InvalidArgument, "Invalid code", "OTP_INVALID")

	lr := e.login(t, "ALICE@example.com", pw)
	v, err := e.client.ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: lr.GetAccessToken()})
	if err != nil || !v.GetValid() || v.GetUserId() != id || v.GetEmail() != "Alice@Example.COM" || v.GetUsername() != "Alice" {
		t.Fatalf("ValidateToken = %v, %v", v, err)
	}

	// The e-mail's data (the code) is erased once sent.
	m, err := e.db.OutboxMessage.Query().Only(ctx)
	if err != nil || m.Status != outboxmessage.StatusSent || len(m.Data) != 0 || m.SentAt == nil {
		t.Fatalf("outbox row after send = %+v, %v", m, err)
	}

	// Nothing secret or personal reaches the log.
	logs := e.log.String()
	for _, secret := range []string{pw, code, lr.GetAccessToken(), lr.GetRefreshToken(), "Alice@Example.COM", "alice@example.com"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains %q", secret)
		}
	}
	if !strings.Contains(logs, id) {
		t.Errorf("log lacks the user id")
	}
}

func TestAccessTokenClaims(t *testing.T) {
	e := newEnv(t)
	id := e.verifiedUser(t, "bob", "bob@example.com", pw)
	lr := e.login(t, "bob@example.com", pw)

	parts := strings.Split(lr.GetAccessToken(), ".")
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
	if _, err := jwt.Parse(lr.GetAccessToken(), func(*jwt.Token) (any, error) { return testSecret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(e.clock.Now)); err != nil {
		t.Errorf("gateway-style decode: %v", err)
	}
}

func TestRegisterErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.register(t, "alice", "Alice@Example.COM", pw)
	emoji19 := strings.Repeat("😀", 19) // 76 bytes
	tests := []struct {
		name                     string
		req                      *authpb.RegisterRequest
		code                     codes.Code
		reason, field, msgSubstr string
	}{
		{"taken, other case", &authpb.RegisterRequest{Username: "a2", Email: "alice@example.com", Password: pw}, codes.AlreadyExists, "EMAIL_TAKEN", "", "Email already registered"},
		{"empty request", &authpb.RegisterRequest{}, codes.InvalidArgument, "INVALID_INPUT", "username", "username is required"},
		{"blank username", &authpb.RegisterRequest{Username: "  ", Email: "x@example.com", Password: pw}, codes.InvalidArgument, "INVALID_INPUT", "username", "username"},
		{"bad email", &authpb.RegisterRequest{Username: "x", Email: "not-an-email", Password: pw}, codes.InvalidArgument, "INVALID_INPUT", "email", "email"},
		{"email with name", &authpb.RegisterRequest{Username: "x", Email: "X <x@example.com>", Password: pw}, codes.InvalidArgument, "INVALID_INPUT", "email", "email"},
		{"short password", &authpb.RegisterRequest{Username: "x", Email: "x@example.com", Password: "1234567"}, codes.InvalidArgument, "INVALID_INPUT", "password", "8 to 72 bytes"},
		{"73-byte password", &authpb.RegisterRequest{Username: "x", Email: "x@example.com", Password: strings.Repeat("a", 73)}, codes.InvalidArgument, "INVALID_INPUT", "password", "8 to 72 bytes"},
		{"76-byte emoji password", &authpb.RegisterRequest{Username: "x", Email: "x@example.com", Password: emoji19}, codes.InvalidArgument, "INVALID_INPUT", "password", "8 to 72 bytes"},
		{"control char in username", &authpb.RegisterRequest{Username: "x\x00y", Email: "x@example.com", Password: pw}, codes.InvalidArgument, "INVALID_INPUT", "username", "control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.Register(ctx, tt.req)
			wantStatus(t, err, tt.code, "", tt.reason)
			ei := errorInfo(err)
			if tt.field != "" && ei.GetMetadata()["field"] != tt.field {
				t.Errorf("field = %q, want %q", ei.GetMetadata()["field"], tt.field)
			}
			if !strings.Contains(err.Error(), tt.msgSubstr) {
				t.Errorf("message %q lacks %q", err.Error(), tt.msgSubstr)
			}
		})
	}
	// A 72-byte password (18 four-byte emoji) is accepted.
	e.register(t, "emoji", "emoji@example.com", strings.Repeat("😀", 18))
	// Nothing half-written: one user per accepted registration.
	if n := e.db.User.Query().CountX(ctx); n != 2 {
		t.Errorf("users = %d, want 2", n)
	}
}

func TestLoginFailuresLookAlike(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.verifiedUser(t, "carol", "carol@example.com", pw)
	_, errWrong := e.client.Login(ctx, &authpb.LoginRequest{Email: "carol@example.com", Password: "wrong password"})
	_, errUnknown := e.client.Login(ctx, &authpb.LoginRequest{Email: "nobody@example.com", Password: "wrong password"})
	wantStatus(t, errWrong, codes.Unauthenticated, "Invalid email or password", "INVALID_CREDENTIALS")
	wantStatus(t, errUnknown, codes.Unauthenticated, "Invalid email or password", "INVALID_CREDENTIALS")
	if errWrong.Error() != errUnknown.Error() {
		t.Errorf("failures differ: %v vs %v", errWrong, errUnknown)
	}
	_, err := e.client.Login(ctx, &authpb.LoginRequest{Email: "carol@example.com", Password: strings.Repeat("p", 73)})
	wantStatus(t, err, codes.InvalidArgument, "", "INVALID_INPUT")
	_, err = e.client.Login(ctx, &authpb.LoginRequest{})
	wantStatus(t, err, codes.InvalidArgument, "email is required", "INVALID_INPUT")
}

func TestRefreshRotationAndReuseDetection(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.verifiedUser(t, "dave", "dave@example.com", pw)
	r0 := e.login(t, "dave@example.com", pw).GetRefreshToken()

	// R0 -> R1 -> R2, each step after the grace window.
	e.clock.Advance(refreshGrace)
	r1, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r0})
	if err != nil {
		t.Fatalf("refresh r0: %v", err)
	}
	if r1.GetRefreshToken() == r0 || r1.GetAccessToken() == "" {
		t.Fatalf("rotation returned %v", r1)
	}
	e.clock.Advance(refreshGrace)
	r2, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r1.GetRefreshToken()})
	if err != nil {
		t.Fatalf("refresh r1: %v", err)
	}
	// All three tokens are one family; r0 and r1 are used.
	all := e.db.RefreshToken.Query().AllX(ctx)
	if len(all) != 3 {
		t.Fatalf("tokens = %d, want 3", len(all))
	}
	for _, rt := range all[1:] {
		if rt.FamilyID != all[0].FamilyID {
			t.Fatalf("token outside the family")
		}
	}

	// Reuse of r0 after the grace window is refused and revokes the whole
	// family, r2 included.
	e.clock.Advance(refreshGrace)
	_, err = e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r0})
	wantStatus(t, err, codes.Unauthenticated, "", "REFRESH_TOKEN_REUSED")
	if n := e.db.TokenFamily.Query().Where(tokenfamily.RevokedAtIsNil()).CountX(ctx); n != 0 {
		t.Errorf("unrevoked token families after reuse = %d, want 0", n)
	}
	_, err = e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r2.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "", "REFRESH_TOKEN_REVOKED")

	// Another login opens a new family that the revocation did not touch.
	r3 := e.login(t, "dave@example.com", pw).GetRefreshToken()
	if _, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r3}); err != nil {
		t.Fatalf("new family: %v", err)
	}
}

func TestRefreshErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.verifiedUser(t, "erin", "erin@example.com", pw)
	r0 := e.login(t, "erin@example.com", pw).GetRefreshToken()

	_, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{})
	wantStatus(t, err, codes.InvalidArgument, "refresh_token is required", "INVALID_INPUT")
	_, err = e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: "garbage"})
	wantStatus(t, err, codes.Unauthenticated, "Invalid refresh token", "INVALID_REFRESH_TOKEN")
	_, err = e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: strings.Repeat("A", 43)})
	wantStatus(t, err, codes.Unauthenticated, "Invalid refresh token", "INVALID_REFRESH_TOKEN")

	e.clock.Advance(refreshTTL)
	_, err = e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r0})
	wantStatus(t, err, codes.Unauthenticated, "", "REFRESH_TOKEN_EXPIRED")
}

// refreshAtOnce presents the refresh token rt in n RefreshTokens calls at
// once and returns each call's answer and error, in call order.
func (e *env) refreshAtOnce(rt string, n int) ([]*authpb.RefreshTokensResponse, []error) {
	var wg sync.WaitGroup
	got := make([]*authpb.RefreshTokensResponse, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = e.client.RefreshTokens(context.Background(), &authpb.RefreshTokensRequest{RefreshToken: rt})
		})
	}
	wg.Wait()
	return got, errs
}

// Login gives R0; five RefreshTokens(R0) at the same moment all succeed
// (the grace window), and a refresh with any returned token succeeds.
func TestConcurrentRefreshWithinGrace(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.verifiedUser(t, "fay", "fay@example.com", pw)
	r0 := e.login(t, "fay@example.com", pw).GetRefreshToken()
	const n = 5
	got, errs := e.refreshAtOnce(r0, n)
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent refresh %d: %v", i, errs[i])
		}
	}
	e.clock.Advance(refreshGrace) // the follow-ups are ordinary rotations
	for i, r := range got {
		if _, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r.GetRefreshToken()}); err != nil {
			t.Errorf("refresh with returned token %d: %v", i, err)
		}
	}
	if n := e.db.TokenFamily.Query().Where(tokenfamily.RevokedAtIsNil()).CountX(ctx); n != 1 {
		t.Errorf("live families = %d, want 1", n)
	}
}

// Without a grace window, concurrent refreshes of one fresh token are
// serialized by the token's row lock: exactly one rotates it, every other
// one sees it used and revokes the family (reuse detection), and the token
// the winner got is revoked with it.
func TestConcurrentRefreshWithoutGrace(t *testing.T) {
	e := newEnv(t, withRefreshGrace(0))
	ctx := context.Background()
	e.verifiedUser(t, "gus", "gus@example.com", pw)
	for round := range 5 {
		r0 := e.login(t, "gus@example.com", pw).GetRefreshToken()
		const n = 6
		got, errs := e.refreshAtOnce(r0, n)
		var winner string
		for i := range n {
			if errs[i] == nil {
				if winner != "" {
					t.Fatalf("round %d: two refreshes of one token succeeded", round)
				}
				winner = got[i].GetRefreshToken()
				continue
			}
			wantStatus(t, errs[i], codes.Unauthenticated, "", "REFRESH_TOKEN_REUSED")
		}
		if winner == "" {
			t.Fatalf("round %d: no refresh succeeded: %v", round, errs)
		}
		_, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: winner})
		wantStatus(t, err, codes.Unauthenticated, "", "REFRESH_TOKEN_REVOKED")
	}
}

// A client that lost the response carrying R1 retries with R0 (the parent
// of the family's active token): within the grace window it gets another
// token and R1 stays valid; after the window the retry is reuse and ends
// the session.
func TestLostResponseRecovery(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.verifiedUser(t, "lost", "lost@example.com", pw)

	r0 := e.login(t, "lost@example.com", pw).GetRefreshToken()
	r1, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r0}) // response "lost"
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(refreshGrace - time.Second)
	retry, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r0})
	if err != nil {
		t.Fatalf("retry within the grace window: %v", err)
	}
	for _, tok := range []string{retry.GetRefreshToken(), r1.GetRefreshToken()} {
		if _, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: tok}); err != nil {
			t.Errorf("token after recovery: %v", err)
		}
	}

	s0 := e.login(t, "lost@example.com", pw).GetRefreshToken()
	s1, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: s0}) // lost
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(refreshGrace)
	_, err = e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: s0})
	wantStatus(t, err, codes.Unauthenticated, "", "REFRESH_TOKEN_REUSED")
	_, err = e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: s1.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "", "REFRESH_TOKEN_REVOKED")
}

func TestLogout(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.verifiedUser(t, "gus", "gus@example.com", pw)
	lr := e.login(t, "gus@example.com", pw)
	other := e.login(t, "gus@example.com", pw) // another session

	out, err := e.client.Logout(ctx, &authpb.LogoutRequest{RefreshToken: lr.GetRefreshToken()})
	if err != nil || !out.GetSuccess() {
		t.Fatalf("Logout = %v, %v", out, err)
	}
	_, err = e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: lr.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "", "REFRESH_TOKEN_REVOKED")

	// A second Logout with the same token succeeds again (RFC 7009 §2.2):
	// the token is unusable either way.
	out, err = e.client.Logout(ctx, &authpb.LogoutRequest{RefreshToken: lr.GetRefreshToken()})
	if err != nil || !out.GetSuccess() {
		t.Fatalf("second Logout = %v, %v", out, err)
	}
	out, err = e.client.Logout(ctx, &authpb.LogoutRequest{RefreshToken: "not-a-token"})
	if err != nil || !out.GetSuccess() {
		t.Fatalf("Logout(garbage) = %v, %v", out, err)
	}
	_, err = e.client.Logout(ctx, &authpb.LogoutRequest{})
	wantStatus(t, err, codes.InvalidArgument, "refresh_token is required", "INVALID_INPUT")

	// The other session is untouched.
	if _, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: other.GetRefreshToken()}); err != nil {
		t.Fatalf("other session: %v", err)
	}
}

func TestLogoutAfterRotationEndsTheSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.verifiedUser(t, "hal", "hal@example.com", pw)
	r0 := e.login(t, "hal@example.com", pw).GetRefreshToken()
	r1, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Logout(ctx, &authpb.LogoutRequest{RefreshToken: r1.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	if n := e.db.TokenFamily.Query().Where(tokenfamily.RevokedAtIsNil()).CountX(ctx); n != 0 {
		t.Errorf("unrevoked token families after logout = %d", n)
	}
}

func TestGetMeAndGetUserByEmail(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.register(t, "Ivy", "Ivy@Example.com", pw)

	got, err := e.client.GetUserByEmail(ctx, &authpb.GetUserByEmailRequest{Email: "  ivy@EXAMPLE.COM "})
	if err != nil || got.GetUserId() != id || got.GetEmail() != "Ivy@Example.com" || got.GetUsername() != "Ivy" {
		t.Fatalf("GetUserByEmail = %v, %v", got, err)
	}
	_, err = e.client.GetUserByEmail(ctx, &authpb.GetUserByEmailRequest{Email: "nobody@example.com"})
	wantStatus(t, err, codes.NotFound, "User not found", "USER_NOT_FOUND")
	_, err = e.client.GetUserByEmail(ctx, &authpb.GetUserByEmailRequest{Email: "nope"})
	wantStatus(t, err, codes.InvalidArgument, "", "INVALID_INPUT")

	_, err = e.client.GetMe(ctx, &authpb.GetMeRequest{UserId: uuid.NewString()})
	wantStatus(t, err, codes.NotFound, "User not found", "USER_NOT_FOUND")
	_, err = e.client.GetMe(ctx, &authpb.GetMeRequest{UserId: "42"})
	wantStatus(t, err, codes.InvalidArgument, "user_id must be a UUID in canonical form", "INVALID_INPUT")
	_, err = e.client.GetMe(ctx, &authpb.GetMeRequest{})
	wantStatus(t, err, codes.InvalidArgument, "user_id is required", "INVALID_INPUT")
}

func TestValidateToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.verifiedUser(t, "jo", "jo@example.com", pw)
	access := e.login(t, "jo@example.com", pw).GetAccessToken()

	sign := func(m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := e.clock.Now()
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
	if v, err := e.client.ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: sign(jwt.SigningMethodHS256, testSecret, good)}); err != nil || !v.GetValid() {
		t.Fatalf("hand-made good token: %v, %v", v, err)
	}
	bad := map[string]string{
		"garbage":            "not.a.jwt",
		"alg none":           sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good),
		"HS512 real secret":  sign(jwt.SigningMethodHS512, testSecret, good),
		"no exp":             sign(jwt.SigningMethodHS256, testSecret, without("exp")),
		"expired":            sign(jwt.SigningMethodHS256, testSecret, with("exp", now.Add(-time.Second).Unix())),
		"refresh type":       sign(jwt.SigningMethodHS256, testSecret, with("token_type", "refresh")),
		"other issuer":       sign(jwt.SigningMethodHS256, testSecret, with("iss", "evil")),
		"other secret":       sign(jwt.SigningMethodHS256, []byte("another-secret-0123456789-abcdefghijkl"), good),
		"sub not a UUID":     sign(jwt.SigningMethodHS256, testSecret, with("sub", "admin")),
		"tampered signature": access[:len(access)-2] + "xx",
	}
	for name, tok := range bad {
		t.Run(name, func(t *testing.T) {
			v, err := e.client.ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: tok})
			if err != nil || v.GetValid() || v.GetUserId() != "" {
				t.Errorf("ValidateToken = %v, %v; want valid=false, OK", v, err)
			}
		})
	}
	_, err := e.client.ValidateToken(ctx, &authpb.ValidateTokenRequest{})
	wantStatus(t, err, codes.InvalidArgument, "access_token is required", "INVALID_INPUT")

	// A real token stops validating once it expires.
	e.clock.Advance(accessTTL + time.Second)
	if v, err := e.client.ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: access}); err != nil || v.GetValid() {
		t.Errorf("expired real token: %v, %v", v, err)
	}
}

func TestSendOtpCooldownAndSupersede(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.register(t, "kim", "kim@example.com", pw)
	first := e.mailCode(t, "kim@example.com")

	// Register already sent a code: the gateway's SendOtp right after is
	// refused with a retry delay, and nothing is queued.
	e.clock.Advance(5 * time.Second)
	_, err := e.client.SendOtp(ctx, &authpb.SendOtpRequest{Email: "kim@example.com"})
	wantStatus(t, err, codes.ResourceExhausted, "", "OTP_COOLDOWN")
	if d, ok := retryDelay(err); !ok || d != 55*time.Second {
		t.Errorf("retry delay = %v (%v), want 55s", d, ok)
	}
	if n := e.db.OutboxMessage.Query().CountX(ctx); n != 1 {
		t.Errorf("outbox messages = %d, want 1", n)
	}

	e.clock.Advance(otpCooldown)
	if r, err := e.client.SendOtp(ctx, &authpb.SendOtpRequest{Email: "KIM@example.com"}); err != nil || !r.GetSuccess() {
		t.Fatalf("SendOtp after cooldown = %v, %v", r, err)
	}
	second := e.mailCode(t, "kim@example.com")
	if first == second {
		// One in a million; the supersede check below would be moot.
		t.Skip("codes collided")
	}
	// Issuing a new code invalidated the previous one.
	_, err = e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "kim@example.com", Code: first})
	wantStatus(t, err, codes.InvalidArgument, "Invalid code", "OTP_INVALID")
	if _, err := e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "kim@example.com", Code: second}); err != nil {
		t.Fatalf("new code: %v", err)
	}

	// Unknown and already verified addresses get the same success and no mail.
	for _, addr := range []string{"nobody@example.com", "kim@example.com"} {
		e.clock.Advance(otpCooldown)
		if r, err := e.client.SendOtp(ctx, &authpb.SendOtpRequest{Email: addr}); err != nil || !r.GetSuccess() {
			t.Errorf("SendOtp(%s) = %v, %v", addr, r, err)
		}
	}
	if n := e.db.OutboxMessage.Query().CountX(ctx); n != 2 {
		t.Errorf("outbox messages = %d, want 2", n)
	}
	_, err = e.client.SendOtp(ctx, &authpb.SendOtpRequest{Email: ""})
	wantStatus(t, err, codes.InvalidArgument, "email is required", "INVALID_INPUT")
}

func TestVerifyOtpAttemptCap(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.register(t, "lee", "lee@example.com", pw)
	code := e.mailCode(t, "lee@example.com")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	for i := 1; i < otpMaxAttempts; i++ {
		_, err := e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "lee@example.com", Code: wrong})
		wantStatus(t, err, codes.InvalidArgument, "Invalid code", "OTP_INVALID")
		if left := errorInfo(err).GetMetadata()["attempts_left"]; left != string(rune('0'+otpMaxAttempts-i)) {
			t.Errorf("attempt %d: attempts_left = %q", i, left)
		}
	}
	// The fifth wrong code burns it.
	_, err := e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "lee@example.com", Code: wrong})
	wantStatus(t, err, codes.ResourceExhausted, "", "OTP_ATTEMPTS_EXHAUSTED")
	// Even the right code is refused now; a new code is needed.
	_, err = e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "lee@example.com", Code: code})
	wantStatus(t, err, codes.ResourceExhausted, "", "OTP_ATTEMPTS_EXHAUSTED")
	if _, ok := retryDelay(err); !ok {
		t.Errorf("no RetryInfo on exhausted code")
	}
	e.clock.Advance(otpCooldown)
	if _, err := e.client.SendOtp(ctx, &authpb.SendOtpRequest{Email: "lee@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "lee@example.com", Code: e.mailCode(t, "lee@example.com")}); err != nil {
		t.Fatalf("fresh code: %v", err)
	}
}

func TestVerifyOtpParallelGuessesAreCapped(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.register(t, "max", "max@example.com", pw)
	code := e.mailCode(t, "max@example.com")
	var wg sync.WaitGroup
	const n = 10
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			guess := "00000" + string(rune('0'+i))
			if guess == code {
				guess = "999999"
			}
			_, errs[i] = e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "max@example.com", Code: guess})
		}()
	}
	wg.Wait()
	evaluated := 0
	for _, err := range errs {
		if r := errorInfo(err).GetReason(); r == "OTP_INVALID" {
			evaluated++
		}
	}
	o := e.db.OtpRequest.Query().OnlyX(ctx)
	if o.Attempts != otpMaxAttempts {
		t.Errorf("attempts recorded = %d, want %d", o.Attempts, otpMaxAttempts)
	}
	if evaluated > otpMaxAttempts-1 {
		t.Errorf("%d wrong guesses answered OTP_INVALID; at most %d may be evaluated before the cap", evaluated, otpMaxAttempts-1)
	}
}

func TestVerifyOtpExpiryAndInput(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.register(t, "ned", "ned@example.com", pw)
	code := e.mailCode(t, "ned@example.com")
	for _, bad := range []string{"", "12345", "1234567", "12345a", "１２３４５６"} {
		_, err := e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "ned@example.com", Code: bad})
		wantStatus(t, err, codes.InvalidArgument, "code must be 6 digits", "INVALID_INPUT")
	}
	_, err := e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "bad", Code: code})
	wantStatus(t, err, codes.InvalidArgument, "", "INVALID_INPUT")

	e.clock.Advance(otpTTL)
	_, err = e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "ned@example.com", Code: code})
	wantStatus(t, err, codes.InvalidArgument, "Code expired; request a new one", "OTP_EXPIRED")
	if o := e.db.OtpRequest.Query().Where(otprequest.ConsumedAtNotNil()).CountX(ctx); o != 0 {
		t.Errorf("expired code consumed")
	}
}

func TestOutboxSurvivesSMTPOutage(t *testing.T) {
	e := newEnv(t, withSMTPDown())
	ctx := context.Background()
	// Register does not wait for SMTP and succeeds while it is down.
	e.register(t, "olga", "olga@example.com", pw)
	if _, err := e.dispatcher.DispatchOnce(ctx); err != nil {
		t.Fatal(err)
	}
	m := e.db.OutboxMessage.Query().OnlyX(ctx)
	if m.Status != outboxmessage.StatusPending || m.Attempts != 1 || m.LastError == "" || !m.NextAttemptAt.After(e.clock.Now()) {
		t.Fatalf("after failed delivery: status=%s attempts=%d last_error=%q next=%v", m.Status, m.Attempts, m.LastError, m.NextAttemptAt)
	}
	// Not due yet: nothing is claimed.
	if n, _ := e.dispatcher.DispatchOnce(ctx); n != 0 {
		t.Errorf("claimed %d before the retry delay", n)
	}

	// SMTP comes up; after the backoff the e-mail is delivered.
	e.smtp = smtptest.StartOn(t, e.smtpPort)
	e.clock.Advance(5 * time.Second)
	code := e.mailCode(t, "olga@example.com")
	if _, err := e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "olga@example.com", Code: code}); err != nil {
		t.Fatalf("VerifyOtp: %v", err)
	}
	m = e.db.OutboxMessage.Query().OnlyX(ctx)
	if m.Status != outboxmessage.StatusSent || m.Attempts != 2 || len(m.Data) != 0 {
		t.Errorf("after delivery: status=%s attempts=%d data=%d keys", m.Status, m.Attempts, len(m.Data))
	}
	if got := len(e.smtp.Messages()); got != 1 {
		t.Errorf("messages delivered = %d, want 1", got)
	}
}

func TestOutboxGivesUpAfterMaxAttempts(t *testing.T) {
	e := newEnv(t, withSMTPDown())
	ctx := context.Background()
	e.register(t, "pia", "pia@example.com", pw)
	for range 3 { // MaxAttempts in newEnv
		if _, err := e.dispatcher.DispatchOnce(ctx); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Minute)
	}
	m := e.db.OutboxMessage.Query().OnlyX(ctx)
	if m.Status != outboxmessage.StatusFailed || m.Attempts != 3 || len(m.Data) != 0 {
		t.Fatalf("status=%s attempts=%d data=%d keys", m.Status, m.Attempts, len(m.Data))
	}
	if n, _ := e.dispatcher.DispatchOnce(ctx); n != 0 {
		t.Errorf("failed message claimed again")
	}
}

func TestInternalErrorsAreMasked(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.closeDB()
	_, err := e.client.GetUserByEmail(ctx, &authpb.GetUserByEmailRequest{Email: "x@example.com"})
	wantStatus(t, err, codes.Internal, "internal error", "")
	if !strings.Contains(e.log.String(), "internal error") || !strings.Contains(e.log.String(), "GetUserByEmail") {
		t.Errorf("cause not logged: %s", e.log.String())
	}
}

// Limits are checked in characters where the rule is in characters, and a
// valid address whose case-folded form is longer still registers: nothing
// valid reaches the database's validators and turns into INTERNAL.
func TestRegisterLongButValidInput(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.register(t, strings.Repeat("é", 64), "long-name@example.com", pw)
	_, err := e.client.Register(ctx, &authpb.RegisterRequest{Username: strings.Repeat("é", 65), Email: "x@example.com", Password: pw})
	wantStatus(t, err, codes.InvalidArgument, "username must be at most 64 characters", "INVALID_INPUT")

	// 254 bytes; İ folds to i + combining dot, so the canonical form is longer.
	addr := strings.Repeat("İ", 32) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("b", 57) + ".com"
	if len(addr) != 254 {
		t.Fatalf("len = %d", len(addr))
	}
	id := e.register(t, "fold", addr, pw)
	got, err := e.client.GetUserByEmail(ctx, &authpb.GetUserByEmailRequest{Email: addr})
	if err != nil || got.GetUserId() != id {
		t.Fatalf("GetUserByEmail = %v, %v", got, err)
	}
}
