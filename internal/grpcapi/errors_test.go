package grpcapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/placebrain/auth/internal/auth"
)

const testMethod = "/auth.AuthService/Login"

// newTestLogger returns a JSON logger writing into a buffer.
func newTestLogger() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewJSONHandler(&buf, nil)), &buf
}

// logRecords decodes the JSON lines in buf.
func logRecords(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, m)
	}
	return recs
}

// details splits a status's details into its ErrorInfo and RetryInfo.
func details(t *testing.T, st *status.Status) (*errdetails.ErrorInfo, *errdetails.RetryInfo) {
	t.Helper()
	var (
		info  *errdetails.ErrorInfo
		retry *errdetails.RetryInfo
	)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if info != nil {
				t.Errorf("two ErrorInfo details")
			}
			info = d
		case *errdetails.RetryInfo:
			if retry != nil {
				t.Errorf("two RetryInfo details")
			}
			retry = d
		case error:
			t.Errorf("undecodable detail: %v", d)
		default:
			t.Errorf("unexpected detail %T", d)
		}
	}
	return info, retry
}

// Every domain error's gRPC code, reason and message, as the gateway and
// the web client see them: this table changes only when the contract does.
func TestToStatusDomainErrors(t *testing.T) {
	tests := []struct {
		name                string
		err                 *auth.Error
		wantCode            codes.Code
		wantReason, wantMsg string
	}{
		{"ErrInvalidCredentials", auth.ErrInvalidCredentials, codes.Unauthenticated, "INVALID_CREDENTIALS", "Invalid email or password"},
		{"ErrEmailNotVerified", auth.ErrEmailNotVerified, codes.FailedPrecondition, "EMAIL_NOT_VERIFIED", "Email not verified"},
		{"ErrEmailTaken", auth.ErrEmailTaken, codes.AlreadyExists, "EMAIL_TAKEN", "Email already registered"},
		{"ErrUserNotFound", auth.ErrUserNotFound, codes.NotFound, "USER_NOT_FOUND", "User not found"},
		{"ErrSessionNotFound", auth.ErrSessionNotFound, codes.NotFound, "SESSION_NOT_FOUND", "Session not found"},
		{"ErrWrongPassword", auth.ErrWrongPassword, codes.InvalidArgument, "PASSWORD_INCORRECT", "Current password is incorrect"},
		{"ErrInvalidRefreshToken", auth.ErrInvalidRefreshToken, codes.Unauthenticated, "INVALID_REFRESH_TOKEN", "Invalid refresh token"},
		{"ErrRefreshTokenExpired", auth.ErrRefreshTokenExpired, codes.Unauthenticated, "REFRESH_TOKEN_EXPIRED", "Refresh token expired; sign in again"},
		{"ErrRefreshTokenRevoked", auth.ErrRefreshTokenRevoked, codes.Unauthenticated, "REFRESH_TOKEN_REVOKED", "Refresh token revoked; sign in again"},
		{"ErrRefreshTokenReused", auth.ErrRefreshTokenReused, codes.Unauthenticated, "REFRESH_TOKEN_REUSED", "Refresh token already used; sign in again"},
		{"ErrInvalidOTP", auth.ErrInvalidOTP, codes.InvalidArgument, "OTP_INVALID", "Invalid code"},
		{"ErrOTPExpired", auth.ErrOTPExpired, codes.InvalidArgument, "OTP_EXPIRED", "Code expired; request a new one"},
		{"ErrOTPAttemptsExhausted", auth.ErrOTPAttemptsExhausted, codes.ResourceExhausted, "OTP_ATTEMPTS_EXHAUSTED", "Too many wrong codes; request a new one"},
		{"ErrServerBusy", auth.ErrServerBusy, codes.ResourceExhausted, "SERVER_BUSY", "Server busy; try again shortly"},
		{"ErrLoginThrottled", auth.ErrLoginThrottled, codes.ResourceExhausted, "LOGIN_THROTTLED", "Too many failed sign-in attempts; try again later"},
		{"ErrRegisterThrottled", auth.ErrRegisterThrottled, codes.ResourceExhausted, "REGISTER_THROTTLED", "Too many sign-ups from your network; try again later"},
		{"ErrOTPDailyLimit", auth.ErrOTPDailyLimit, codes.ResourceExhausted, "OTP_DAILY_LIMIT", "Too many codes requested today; try again later"},
		{"ErrMalformedRequest", auth.ErrMalformedRequest, codes.InvalidArgument, "MALFORMED_REQUEST", "Malformed request: every string field must be valid UTF-8"},
		{"ErrInvalidInput", auth.ErrInvalidInput, codes.InvalidArgument, "INVALID_INPUT", "Invalid input"},
		{"ErrUnavailable", auth.ErrUnavailable, codes.Unavailable, "DATABASE_UNAVAILABLE", "Service temporarily unavailable; try again shortly"},
	}
	// The table names every domain error auth declares.
	src, err := os.ReadFile("../auth/errors.go")
	if err != nil {
		t.Fatal(err)
	}
	declared := regexp.MustCompile(`(?m)^\t(Err\w+)\s+= &Error\{`).FindAllStringSubmatch(string(src), -1)
	var names []string
	for _, tt := range tests {
		names = append(names, tt.name)
	}
	for _, d := range declared {
		if !slices.Contains(names, d[1]) {
			t.Errorf("auth.%s is not in this table", d[1])
		}
	}
	if len(declared) != len(tests) {
		t.Errorf("auth declares %d errors, the table has %d", len(declared), len(tests))
	}
	for _, tt := range tests {
		// A domain error is mapped the same way bare or wrapped.
		for _, wrapped := range []bool{false, true} {
			name := tt.name
			var err error = tt.err
			if wrapped {
				name += "/wrapped"
				err = fmt.Errorf("service: %w", tt.err)
			}
			t.Run(name, func(t *testing.T) {
				log, buf := newTestLogger()
				got := ToStatus(context.Background(), log, testMethod, err)
				st, ok := status.FromError(got)
				if !ok {
					t.Fatalf("ToStatus returned a non-status error %v", got)
				}
				if diff := cmp.Diff(tt.wantCode, st.Code()); diff != "" {
					t.Errorf("code mismatch (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.wantMsg, st.Message()); diff != "" {
					t.Errorf("message mismatch (-want +got):\n%s", diff)
				}
				info, retry := details(t, st)
				wantInfo := &errdetails.ErrorInfo{Reason: tt.wantReason, Domain: "auth.placebrain"}
				if diff := cmp.Diff(wantInfo, info, protocmp.Transform()); diff != "" {
					t.Errorf("ErrorInfo mismatch (-want +got):\n%s", diff)
				}
				if tt.wantCode == codes.Unavailable && retry.GetRetryDelay().AsDuration() <= 0 {
					t.Errorf("no RetryInfo on %v", tt.wantCode)
				}
				if tt.wantCode != codes.ResourceExhausted && tt.wantCode != codes.Unavailable && retry != nil {
					t.Errorf("unexpected RetryInfo %v on %v", retry, tt.wantCode)
				}
				if buf.Len() != 0 {
					t.Errorf("a domain error was logged: %s", buf)
				}
			})
		}
	}
}

func TestToStatusRetryInfo(t *testing.T) {
	e := *auth.ErrOTPDailyLimit
	e.RetryAfter = 55 * time.Second
	st := status.Convert(ToStatus(context.Background(), slog.New(slog.DiscardHandler), testMethod, &e))
	if diff := cmp.Diff(codes.ResourceExhausted, st.Code()); diff != "" {
		t.Errorf("code mismatch (-want +got):\n%s", diff)
	}
	info, retry := details(t, st)
	if retry == nil {
		t.Fatal("no RetryInfo detail")
	}
	if diff := cmp.Diff(55*time.Second, retry.GetRetryDelay().AsDuration()); diff != "" {
		t.Errorf("retry delay mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("OTP_DAILY_LIMIT", info.GetReason()); diff != "" {
		t.Errorf("reason mismatch (-want +got):\n%s", diff)
	}
}

func TestToStatusMetadata(t *testing.T) {
	e := &auth.Error{
		Kind:     auth.KindInvalidArgument,
		Reason:   auth.ErrInvalidInput.Reason,
		Message:  "email is not a valid address",
		Metadata: map[string]string{"field": "email"},
	}
	st := status.Convert(ToStatus(context.Background(), slog.New(slog.DiscardHandler), testMethod, e))
	if diff := cmp.Diff(codes.InvalidArgument, st.Code()); diff != "" {
		t.Errorf("code mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("email is not a valid address", st.Message()); diff != "" {
		t.Errorf("message mismatch (-want +got):\n%s", diff)
	}
	info, _ := details(t, st)
	want := &errdetails.ErrorInfo{Reason: "INVALID_INPUT", Domain: ErrorDomain, Metadata: map[string]string{"field": "email"}}
	if diff := cmp.Diff(want, info, protocmp.Transform()); diff != "" {
		t.Errorf("ErrorInfo mismatch (-want +got):\n%s", diff)
	}
}

func TestToStatusInternal(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		cause string
	}{
		{"plain error", errors.New("db exploded: secret stuff"), "db exploded: secret stuff"},
		{"wrapped", fmt.Errorf("create user: %w", errors.New("secret stuff")), "create user: secret stuff"},
		{"unknown kind", &auth.Error{Kind: auth.Kind(99), Reason: "X", Message: "secret stuff"}, "secret stuff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, buf := newTestLogger()
			got := ToStatus(context.Background(), log, testMethod, tt.err)
			st, ok := status.FromError(got)
			if !ok {
				t.Fatalf("ToStatus returned a non-status error %v", got)
			}
			if diff := cmp.Diff(codes.Internal, st.Code()); diff != "" {
				t.Errorf("code mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff("internal error", st.Message()); diff != "" {
				t.Errorf("message mismatch (-want +got):\n%s", diff)
			}
			if strings.Contains(got.Error(), "secret") {
				t.Errorf("status %q reveals the cause", got)
			}
			if len(st.Details()) != 0 {
				t.Errorf("internal status has details: %v", st.Details())
			}
			recs := logRecords(t, buf)
			if len(recs) != 1 {
				t.Fatalf("got %d log records, want 1: %s", len(recs), buf)
			}
			want := map[string]any{"level": "ERROR", "msg": "internal error", "method": testMethod, "error": tt.cause}
			delete(recs[0], "time")
			if diff := cmp.Diff(want, recs[0]); diff != "" {
				t.Errorf("log record mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestToStatusContextAndPassThrough(t *testing.T) {
	already := status.Error(codes.PermissionDenied, "nope")
	tests := []struct {
		name     string
		err      error
		wantCode codes.Code
		wantMsg  string
	}{
		{"canceled", context.Canceled, codes.Canceled, "request cancelled"},
		{"canceled wrapped", fmt.Errorf("query: %w", context.Canceled), codes.Canceled, "request cancelled"},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "deadline exceeded"},
		{"deadline wrapped", fmt.Errorf("query: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "deadline exceeded"},
		{"already a status", already, codes.PermissionDenied, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, buf := newTestLogger()
			got := ToStatus(context.Background(), log, testMethod, tt.err)
			st, ok := status.FromError(got)
			if !ok {
				t.Fatalf("ToStatus returned a non-status error %v", got)
			}
			if diff := cmp.Diff(tt.wantCode, st.Code()); diff != "" {
				t.Errorf("code mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantMsg, st.Message()); diff != "" {
				t.Errorf("message mismatch (-want +got):\n%s", diff)
			}
			if buf.Len() != 0 {
				t.Errorf("unexpected log output: %s", buf)
			}
		})
	}

	t.Run("nil", func(t *testing.T) {
		log, buf := newTestLogger()
		if got := ToStatus(context.Background(), log, testMethod, nil); got != nil {
			t.Errorf("ToStatus(nil) = %v, want nil", got)
		}
		if buf.Len() != 0 {
			t.Errorf("unexpected log output: %s", buf)
		}
	})
}

// chain calls handler through the interceptors the way grpc.ChainUnaryInterceptor
// does: interceptors[0] outermost.
func chain(ics []grpc.UnaryServerInterceptor, handler grpc.UnaryHandler) grpc.UnaryHandler {
	info := &grpc.UnaryServerInfo{FullMethod: testMethod}
	h := handler
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], h
		h = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, next) }
	}
	return h
}

func TestInterceptors(t *testing.T) {
	tests := []struct {
		name      string
		handler   grpc.UnaryHandler
		wantResp  any
		wantCode  codes.Code
		wantMsg   string
		wantLog   []string
		wantNoLog bool
	}{
		{
			name:     "ok",
			handler:  func(context.Context, any) (any, error) { return "resp", nil },
			wantResp: "resp",
			wantCode: codes.OK,
		},
		{
			name:      "domain error",
			handler:   func(context.Context, any) (any, error) { return "ignored", auth.ErrEmailNotVerified },
			wantCode:  codes.FailedPrecondition,
			wantMsg:   "Email not verified",
			wantNoLog: true,
		},
		{
			name:     "internal error",
			handler:  func(context.Context, any) (any, error) { return nil, errors.New("db exploded: secret stuff") },
			wantCode: codes.Internal,
			wantMsg:  "internal error",
			wantLog:  []string{"db exploded: secret stuff", testMethod},
		},
		{
			name:     "panic",
			handler:  func(context.Context, any) (any, error) { panic("kaboom: secret stuff") },
			wantCode: codes.Internal,
			wantMsg:  "internal error",
			wantLog:  []string{"panic in handler", "kaboom: secret stuff", "goroutine"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, buf := newTestLogger()
			ics := Interceptors(log, nil)
			if len(ics) != 2 {
				t.Fatalf("Interceptors returned %d interceptors, want 2", len(ics))
			}
			resp, err := chain(ics, tt.handler)(context.Background(), "req")
			st := status.Convert(err)
			if diff := cmp.Diff(tt.wantCode, st.Code()); diff != "" {
				t.Errorf("code mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantMsg, st.Message()); diff != "" {
				t.Errorf("message mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantResp, resp); diff != "" {
				t.Errorf("response mismatch (-want +got):\n%s", diff)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q reveals the cause", err)
			}
			logged := buf.String()
			for _, s := range tt.wantLog {
				if !strings.Contains(logged, s) {
					t.Errorf("log does not contain %q:\n%s", s, logged)
				}
			}
			if tt.wantNoLog && logged != "" {
				t.Errorf("unexpected log output: %s", logged)
			}
			if len(tt.wantLog) > 0 {
				recs := logRecords(t, buf)
				if len(recs) != 1 {
					t.Errorf("got %d log records, want 1: %s", len(recs), logged)
				}
			}
		})
	}
}

// A database failure the data layer classified (auth.Unavailable) is
// UNAVAILABLE with a RetryInfo, and its cause stays out of the status.
func TestToStatusUnavailable(t *testing.T) {
	cause := errors.New("dial tcp 10.0.0.7:5432: connect: connection refused")
	st := status.Convert(ToStatus(context.Background(), slog.New(slog.DiscardHandler), testMethod, fmt.Errorf("store: begin: %w", auth.Unavailable(cause))))
	if st.Code() != codes.Unavailable {
		t.Fatalf("code %v, want UNAVAILABLE", st.Code())
	}
	if strings.Contains(st.Message(), "10.0.0.7") {
		t.Errorf("message leaks the cause: %q", st.Message())
	}
	if _, retry := details(t, st); retry.GetRetryDelay().AsDuration() != auth.UnavailableRetry {
		t.Errorf("RetryInfo %v, want %v", retry, auth.UnavailableRetry)
	}
}
