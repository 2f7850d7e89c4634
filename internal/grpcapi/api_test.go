package grpcapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/placebrain/auth/proto/authpb"
)

// One round trip per RPC, as the gateway makes them: every request field
// reaches the service and every response field comes back.
func TestRegisterVerifyLoginJourney(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.Client
	reg, err := c.Register(ctx, &authpb.RegisterRequest{Username: "Alice", Email: "Alice@Example.COM", Password: pw})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	id := reg.GetUserId()
	if _, err := uuid.Parse(id); err != nil {
		t.Fatalf("user_id %q is not a UUID", id)
	}

	// Unverified: the correct password gets exactly "Email not verified",
	// which the web client matches.
	_, err = c.Login(ctx, &authpb.LoginRequest{Email: "alice@example.com", Password: pw})
	wantStatus(t, err, codes.FailedPrecondition, "Email not verified", "EMAIL_NOT_VERIFIED")

	me, err := c.GetMe(ctx, &authpb.GetMeRequest{UserId: id})
	if err != nil || me.GetUserId() != id || me.GetIsVerified() || me.GetEmail() != "Alice@Example.COM" || me.GetUsername() != "Alice" {
		t.Fatalf("GetMe before verification = %v, %v", me, err)
	}

	code := e.Code(t, "Alice@Example.COM")
	msg := e.SMTP.Messages()[0]
	if msg.Email.Subject == "" || !strings.Contains(msg.From, "no-reply@placebrain.test") {
		t.Errorf("mail subject %q from %q", msg.Email.Subject, msg.From)
	}
	if r, err := c.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "ALICE@example.com", Code: code}); err != nil || !r.GetSuccess() {
		t.Fatalf("VerifyOtp = %v, %v", r, err)
	}
	me, err = c.GetMe(ctx, &authpb.GetMeRequest{UserId: id})
	if err != nil || !me.GetIsVerified() {
		t.Fatalf("GetMe after verification = %v, %v", me, err)
	}
	if r, err := c.SendOtp(ctx, &authpb.SendOtpRequest{Email: "alice@example.com"}); err != nil || !r.GetSuccess() {
		t.Fatalf("SendOtp (verified address) = %v, %v", r, err)
	}
	byEmail, err := c.GetUserByEmail(ctx, &authpb.GetUserByEmailRequest{Email: "alice@EXAMPLE.com"})
	if err != nil || byEmail.GetUserId() != id || byEmail.GetEmail() != "Alice@Example.COM" || byEmail.GetUsername() != "Alice" {
		t.Fatalf("GetUserByEmail = %v, %v", byEmail, err)
	}

	lr, err := c.Login(ctx, &authpb.LoginRequest{Email: "ALICE@example.com", Password: pw})
	if err != nil || lr.GetAccessToken() == "" || lr.GetRefreshToken() == "" {
		t.Fatalf("Login = %v, %v", lr, err)
	}
	v, err := c.ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: lr.GetAccessToken()})
	if err != nil || !v.GetValid() || v.GetUserId() != id || v.GetEmail() != "Alice@Example.COM" || v.GetUsername() != "Alice" {
		t.Fatalf("ValidateToken = %v, %v", v, err)
	}
	rr, err := c.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: lr.GetRefreshToken()})
	if err != nil || rr.GetAccessToken() == "" || rr.GetRefreshToken() == "" || rr.GetRefreshToken() == lr.GetRefreshToken() {
		t.Fatalf("RefreshTokens = %v, %v", rr, err)
	}
	if out, err := c.Logout(ctx, &authpb.LogoutRequest{RefreshToken: rr.GetRefreshToken()}); err != nil || !out.GetSuccess() {
		t.Fatalf("Logout = %v, %v", out, err)
	}
	_, err = c.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: rr.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "Refresh token revoked; sign in again", "REFRESH_TOKEN_REVOKED")

	// Nothing secret or personal reaches the log.
	logs := e.Log.String()
	for _, secret := range []string{pw, code, lr.GetAccessToken(), lr.GetRefreshToken(), rr.GetRefreshToken(), "Alice@Example.COM", "alice@example.com"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains %q", secret)
		}
	}
	if !strings.Contains(logs, id) {
		t.Errorf("log lacks the user id")
	}
}

// One failing round trip per RPC: the domain error arrives with its code,
// message, reason, metadata and retry delay.
func TestRPCErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.Client
	e.VerifiedUser(t, "bob", "bob@example.com", pw)
	e.Register(t, "una", "una@example.com", pw)
	e.Code(t, "una@example.com")
	e.Clock.Advance(5 * time.Second)

	_, err := c.Register(ctx, &authpb.RegisterRequest{})
	wantStatus(t, err, codes.InvalidArgument, "username is required", "INVALID_INPUT")
	if f := errorInfo(err).GetMetadata()["field"]; f != "username" {
		t.Errorf("field = %q, want username", f)
	}
	_, err = c.Register(ctx, &authpb.RegisterRequest{Username: "b", Email: "BOB@example.com", Password: pw})
	wantStatus(t, err, codes.AlreadyExists, "Email already registered", "EMAIL_TAKEN")
	_, err = c.Login(ctx, &authpb.LoginRequest{Email: "bob@example.com", Password: "wrong password"})
	wantStatus(t, err, codes.Unauthenticated, "Invalid email or password", "INVALID_CREDENTIALS")
	_, err = c.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: "garbage"})
	wantStatus(t, err, codes.Unauthenticated, "Invalid refresh token", "INVALID_REFRESH_TOKEN")
	_, err = c.Logout(ctx, &authpb.LogoutRequest{})
	wantStatus(t, err, codes.InvalidArgument, "refresh_token is required", "INVALID_INPUT")
	_, err = c.GetMe(ctx, &authpb.GetMeRequest{UserId: uuid.NewString()})
	wantStatus(t, err, codes.NotFound, "User not found", "USER_NOT_FOUND")
	_, err = c.GetUserByEmail(ctx, &authpb.GetUserByEmailRequest{Email: "nope"})
	wantStatus(t, err, codes.InvalidArgument, "", "INVALID_INPUT")
	// A failing token answers valid=false with status OK.
	if v, err := c.ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: "not.a.jwt"}); err != nil || v.GetValid() || v.GetUserId() != "" {
		t.Errorf("ValidateToken(garbage) = %v, %v", v, err)
	}
	// Within the cooldown SendOtp succeeds and sends nothing.
	if r, err := c.SendOtp(ctx, &authpb.SendOtpRequest{Email: "una@example.com"}); err != nil || !r.GetSuccess() {
		t.Errorf("SendOtp within the cooldown = %v, %v; want success", r, err)
	}
	_, err = c.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "una@example.com", Code: "000000"})
	if st := errorInfo(err); st.GetReason() == "OTP_INVALID" {
		if left := st.GetMetadata()["attempts_left"]; left != "4" {
			t.Errorf("attempts_left = %q, want 4", left)
		}
	} else {
		// The one in a million case: 000000 was the code.
		wantStatus(t, err, codes.InvalidArgument, "Invalid code", "OTP_INVALID")
	}
}

func TestInternalErrorsAreMasked(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.DB.Close()
	_, err := e.Client.GetUserByEmail(ctx, &authpb.GetUserByEmailRequest{Email: "x@example.com"})
	wantStatus(t, err, codes.Internal, "internal error", "")
	if !strings.Contains(e.Log.String(), "internal error") || !strings.Contains(e.Log.String(), "GetUserByEmail") {
		t.Errorf("cause not logged: %s", e.Log.String())
	}
}

// A request over the gRPC message limit is refused before it is parsed.
func TestRequestSizeLimit(t *testing.T) {
	e := newEnv(t)
	_, err := e.Client.Login(context.Background(), &authpb.LoginRequest{Email: strings.Repeat("a", 100<<10), Password: pw})
	wantStatus(t, err, codes.ResourceExhausted, "", "")
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
				err := e.Conn.Invoke(context.Background(), "/auth.AuthService/"+method, body, &out, grpc.ForceCodec(rawCodec{}))
				wantStatus(t, err, codes.InvalidArgument, "", "MALFORMED_REQUEST")
				if strings.Contains(err.Error(), "grpc:") {
					t.Errorf("message leaks grpc internals: %v", err)
				}
			})
		}
	}
}
