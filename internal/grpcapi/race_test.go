package grpcapi_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/placebrain/auth/ent/user"
	"github.com/placebrain/auth/proto/authpb"
)

// A logout racing a rotation of the same session leaves nothing usable:
// whatever the rotation returned is refused afterwards.
func TestLogoutRacingRefreshEndsTheSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.verifiedUser(t, "race", "race@example.com", pw)
	for round := range 10 {
		r0 := e.login(t, "race@example.com", pw).GetRefreshToken()
		var wg sync.WaitGroup
		var refreshed *authpb.RefreshTokensResponse
		var refreshErr, logoutErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			refreshed, refreshErr = e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r0})
		}()
		go func() { defer wg.Done(); _, logoutErr = e.client.Logout(ctx, &authpb.LogoutRequest{RefreshToken: r0}) }()
		wg.Wait()
		if logoutErr != nil {
			t.Fatalf("round %d: Logout: %v", round, logoutErr)
		}
		if refreshErr == nil {
			_, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: refreshed.GetRefreshToken()})
			wantStatus(t, err, codes.Unauthenticated, "", "REFRESH_TOKEN_REVOKED")
		}
	}
}

// Reuse detected while the thief rotates the current token: the thief's
// new token is refused too.
func TestReuseRacingRotationRevokesEverything(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.verifiedUser(t, "thief", "thief@example.com", pw)
	for round := range 10 {
		r0 := e.login(t, "thief@example.com", pw).GetRefreshToken()
		r1, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r0})
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(refreshGrace)
		var wg sync.WaitGroup
		var thief *authpb.RefreshTokensResponse
		var thiefErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			thief, thiefErr = e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r1.GetRefreshToken()})
		}()
		go func() {
			defer wg.Done()
			_, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: r0})
			wantStatus(t, err, codes.Unauthenticated, "", "REFRESH_TOKEN_REUSED")
		}()
		wg.Wait()
		if thiefErr == nil {
			_, err := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: thief.GetRefreshToken()})
			if err == nil {
				t.Fatalf("round %d: the family outlived reuse detection", round)
			}
		}
	}
}

// The right code sent several times at once verifies the account and
// every request succeeds.
func TestVerifyOtpSameRightCodeConcurrently(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.register(t, "twice", "twice@example.com", pw)
	code := e.mailCode(t, "twice@example.com")
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "twice@example.com", Code: code})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
}

// One user gets at most OTPDailyLimit codes in 24 hours, which caps
// guessing at OTPDailyLimit*OTPMaxAttempts a day.
func TestSendOtpDailyLimit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.register(t, "daily", "daily@example.com", pw) // code 1
	for i := 2; i <= otpDailyLimit; i++ {
		e.clock.Advance(otpCooldown)
		if _, err := e.client.SendOtp(ctx, &authpb.SendOtpRequest{Email: "daily@example.com"}); err != nil {
			t.Fatalf("code %d: %v", i, err)
		}
	}
	e.clock.Advance(otpCooldown)
	_, err := e.client.SendOtp(ctx, &authpb.SendOtpRequest{Email: "daily@example.com"})
	wantStatus(t, err, codes.ResourceExhausted, "", "OTP_DAILY_LIMIT")
	d, ok := retryDelay(err)
	want := 24*time.Hour - time.Duration(otpDailyLimit)*otpCooldown
	if !ok || d != want {
		t.Errorf("retry delay = %v, want %v", d, want)
	}
	e.clock.Advance(d)
	if _, err := e.client.SendOtp(ctx, &authpb.SendOtpRequest{Email: "daily@example.com"}); err != nil {
		t.Errorf("after the window: %v", err)
	}
}

// A successful login moves a hash made at another cost to the configured
// cost.
func TestLoginRehashesAtConfiguredCost(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.verifiedUser(t, "old", "old@example.com", pw)
	old, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost+1)
	if err != nil {
		t.Fatal(err)
	}
	e.db.User.Update().Where(user.ID(uuid.MustParse(id))).SetPasswordHash(string(old)).ExecX(ctx)
	e.login(t, "old@example.com", pw)
	u := e.db.User.GetX(ctx, uuid.MustParse(id))
	if cost, _ := bcrypt.Cost([]byte(u.PasswordHash)); cost != bcrypt.MinCost {
		t.Errorf("cost after login = %d, want %d", cost, bcrypt.MinCost)
	}
	e.login(t, "old@example.com", pw) // the new hash works
}

// rawCodec sends pre-encoded bytes, to put what a well-behaved client
// cannot (invalid UTF-8, broken protobuf) on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { return nil }
func (rawCodec) Name() string                       { return "proto" }

var _ encoding.Codec = rawCodec{}

// Requests grpc-go cannot decode get INVALID_ARGUMENT, not INTERNAL.
func TestMalformedRequestsAreInvalidArgument(t *testing.T) {
	e := newEnv(t)
	conn := e.conn
	// Field 1 is a string in every request message.
	badUTF8 := protowire.AppendTag(nil, 1, protowire.BytesType)
	badUTF8 = protowire.AppendBytes(badUTF8, []byte("ab\xff\xfe@example.com"))
	cases := map[string][]byte{
		"invalid UTF-8":  badUTF8,
		"truncated":      {0x12, 0x40, 'a'},
		"garbage varint": {0xff, 0xff, 0xff},
	}
	for _, method := range []string{"Register", "Login", "SendOtp", "VerifyOtp", "GetUserByEmail"} {
		for name, body := range cases {
			t.Run(method+"/"+name, func(t *testing.T) {
				var out []byte
				err := conn.Invoke(context.Background(), "/auth.AuthService/"+method, body, &out, grpc.ForceCodec(rawCodec{}))
				wantStatus(t, err, codes.InvalidArgument, "", "MALFORMED_REQUEST")
				if strings.Contains(err.Error(), "grpc:") {
					t.Errorf("message leaks grpc internals: %v", err)
				}
			})
		}
	}
}
