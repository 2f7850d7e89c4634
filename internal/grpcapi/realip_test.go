package grpcapi_test

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/grpcapi"
	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/proto/authpb"
)

// sourceProbe is an AuthService whose GetMe answers, as the username, the
// source its context carries ("none" without one).
type sourceProbe struct {
	authpb.UnimplementedAuthServiceServer
}

func (sourceProbe) GetMe(ctx context.Context, _ *authpb.GetMeRequest) (*authpb.GetMeResponse, error) {
	src, ok := auth.SourceFrom(ctx)
	if !ok {
		return &authpb.GetMeResponse{Username: "none"}, nil
	}
	return &authpb.GetMeResponse{Username: src.String()}, nil
}

// startProbe serves sourceProbe with the server options authd uses
// (grpcapi.ServerOptions with callers) over a real connection.
func startProbe(t *testing.T, callers *grpcapi.Callers) authpb.AuthServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpcapi.ServerOptions(slog.New(slog.DiscardHandler), callers)...)
	gs.RegisterService(grpcapi.ServiceDesc(), sourceProbe{})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return authpb.NewAuthServiceClient(dial(t, lis.Addr().String(), insecure.NewCredentials()))
}

// An authenticated caller's x-real-ip reaches the request's context as its
// source: IPv4 per address, IPv6 per /64; x-forwarded-for is not read; a
// malformed one is INVALID_ARGUMENT; without caller authentication it is
// ignored.
func TestRealIP(t *testing.T) {
	probe := startProbe(t, grpcapi.NewCallers(grpcapi.CallerOptions{Keys: []grpcapi.Grant{{Caller: keyA}}}))
	tests := []struct {
		name string
		md   []string
		want string
	}{
		{"IPv4", []string{"x-real-ip", "203.0.113.7"}, "203.0.113.7/32"},
		{"IPv4 with spaces", []string{"x-real-ip", " 203.0.113.7 "}, "203.0.113.7/32"},
		{"IPv4-mapped IPv6", []string{"x-real-ip", "::ffff:203.0.113.7"}, "203.0.113.7/32"},
		{"IPv6", []string{"x-real-ip", "2001:db8:1:2:3:4:5:6"}, "2001:db8:1:2::/64"},
		{"IPv6 with a zone", []string{"x-real-ip", "fe80::1:2%eth0"}, "fe80::/64"},
		{"none", nil, "none"},
		{"x-forwarded-for alone", []string{"x-forwarded-for", "198.51.100.1"}, "none"},
		{"x-forwarded-for and x-real-ip", []string{"x-forwarded-for", "198.51.100.1, 198.51.100.2", "x-real-ip", "2001:db8::9"}, "2001:db8::/64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(withKey(context.Background(), keyA), tt.md...)
			r, err := probe.GetMe(ctx, &authpb.GetMeRequest{})
			if err != nil || r.GetUsername() != tt.want {
				t.Errorf("source = %q, %v; want %q", r.GetUsername(), err, tt.want)
			}
		})
	}

	malformed := [][]string{
		{"x-real-ip", "203.0.113.7:443"},
		{"x-real-ip", "[2001:db8::1]"},
		{"x-real-ip", "203.0.113.0/24"},
		{"x-real-ip", "not an address"},
		{"x-real-ip", ""},
		{"x-real-ip", "203.0.113.7", "x-real-ip", "203.0.113.8"},
	}
	for i, md := range malformed {
		t.Run("malformed "+strconv.Itoa(i), func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(withKey(context.Background(), keyA), md...)
			r, err := probe.GetMe(ctx, &authpb.GetMeRequest{})
			wantStatus(t, err, codes.InvalidArgument, "x-real-ip metadata must be a single IP address", "INVALID_INPUT")
			if got := errorInfo(err).GetMetadata()["field"]; got != "x-real-ip" || r != nil {
				t.Errorf("field = %q, response %v", got, r)
			}
			// Without a key the caller is refused before its address is read.
			_, err = probe.GetMe(metadata.AppendToOutgoingContext(context.Background(), md...), &authpb.GetMeRequest{})
			wantStatus(t, err, codes.Unauthenticated, msgUnauthenticated, "")
		})
	}

	// Without caller authentication address metadata is ignored, even
	// malformed.
	open := startProbe(t, grpcapi.NewCallers(grpcapi.CallerOptions{}))
	for _, md := range append(malformed, []string{"x-real-ip", "203.0.113.7"}) {
		r, err := open.GetMe(metadata.AppendToOutgoingContext(context.Background(), md...), &authpb.GetMeRequest{})
		if err != nil || r.GetUsername() != "none" {
			t.Errorf("no caller authentication, %q: source = %q, %v; want none", md, r.GetUsername(), err)
		}
	}
}

// The source reaches the service's limiter: with x-real-ip from an
// authenticated caller, failed logins lock one source (an IPv4 address, an
// IPv6 /64) and not the others, whatever x-forwarded-for says; without
// caller authentication x-real-ip is ignored and failures lock the
// address for every source.
func TestRealIPReachesTheLimiter(t *testing.T) {
	noSleep := authtest.ServerOptions(server.Options{Sleep: func(context.Context, time.Duration) error { return nil }})
	login := func(e *authtest.Env, key string, md ...string) error {
		ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
		if key != "" {
			ctx = withKey(ctx, key)
		}
		_, err := e.Client.Login(ctx, &authpb.LoginRequest{Email: "alice@example.com", Password: "wrong password"})
		return err
	}
	const throttled, invalid = "LOGIN_THROTTLED", "INVALID_CREDENTIALS"
	wantReason := func(t *testing.T, err error, reason string) {
		t.Helper()
		if got := errorInfo(err).GetReason(); got != reason {
			t.Errorf("Login: %v (reason %q), want %s", err, got, reason)
		}
	}

	e := newEnv(t, noSleep, authtest.Set("GRPC__API_KEYS", keyA, "LOGIN__MAX_FAILURES", "2"))
	e.VerifiedUser(t, "Alice", "alice@example.com", pw)
	for range 2 {
		wantReason(t, login(e, keyA, "x-real-ip", "2001:db8:1:2::1"), invalid)
	}
	wantReason(t, login(e, keyA, "x-real-ip", "2001:db8:1:2::ffff"), throttled) // the same /64
	wantReason(t, login(e, keyA, "x-real-ip", "2001:db8:1:3::1", "x-forwarded-for", "2001:db8:1:2::1"), invalid)
	for range 2 {
		wantReason(t, login(e, keyA, "x-real-ip", "198.51.100.1"), invalid)
	}
	wantReason(t, login(e, keyA, "x-real-ip", "198.51.100.1"), throttled)
	wantReason(t, login(e, keyA, "x-real-ip", "198.51.100.2", "x-forwarded-for", "198.51.100.1"), invalid)

	off := newEnv(t, noSleep, authtest.Set("LOGIN__MAX_FAILURES", "2"))
	off.VerifiedUser(t, "Alice", "alice@example.com", pw)
	wantReason(t, login(off, "", "x-real-ip", "198.51.100.1"), invalid)
	wantReason(t, login(off, "", "x-real-ip", "198.51.100.2"), invalid)
	wantReason(t, login(off, "", "x-real-ip", "2001:db8:1:3::1"), throttled)
}
