package grpcapi_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/placebrain/auth/internal/grpcapi"
	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/proto/authpb"
)

// generatedID is what authd makes up: 16 random bytes in hex.
var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// withRequestID returns ctx sending id as x-request-id.
func withRequestID(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, grpcapi.RequestIDKey, id)
}

// echoed returns the x-request-id the response header carried.
func echoed(t *testing.T, header metadata.MD) string {
	t.Helper()
	ids := header.Get(grpcapi.RequestIDKey)
	if len(ids) != 1 {
		t.Fatalf("response x-request-id = %q, want one", ids)
	}
	return ids[0]
}

// rpcLines returns the request log's lines with request id id.
func rpcLines(t *testing.T, e *authtest.Env, id string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, rec := range logLines(t, e, grpcapi.RequestLogMessage) {
		if rec["msg"] == grpcapi.RequestLogMessage && rec["request_id"] == id {
			out = append(out, rec)
		}
	}
	return out
}

// oneRPCLine returns the one request log line of the request with id.
func oneRPCLine(t *testing.T, e *authtest.Env, id string) map[string]any {
	t.Helper()
	lines := rpcLines(t, e, id)
	if len(lines) != 1 {
		t.Fatalf("request log lines with request_id %q = %d, want 1: %v", id, len(lines), lines)
	}
	return lines[0]
}

// With LOG__REQUESTS=info every RPC logs one line with its method, code,
// duration, user id (the request's user_id, else the response's; never
// an address or a token) and request id: the caller's x-request-id,
// echoed in the response header, or a generated one. Every line logged
// while serving the request carries the request id.
func TestRequestLog(t *testing.T) {
	e := newEnv(t, authtest.Set("LOG__REQUESTS", "info"))
	ctx := context.Background()
	c := e.Client

	var header metadata.MD
	r, err := c.Register(withRequestID(ctx, "req-register-1"), &authpb.RegisterRequest{Username: "Alice", Email: "alice@example.com", Password: pw},
		grpc.Header(&header))
	if err != nil {
		t.Fatal(err)
	}
	if got := echoed(t, header); got != "req-register-1" {
		t.Errorf("x-request-id = %q, want the caller's", got)
	}
	line := oneRPCLine(t, e, "req-register-1")
	if line["method"] != "/auth.AuthService/Register" || line["code"] != "OK" || line["user_id"] != r.GetUserId() || line["level"] != "INFO" {
		t.Errorf("Register's line = %v", line)
	}
	if d, ok := line["duration_ms"].(float64); !ok || d < 0 {
		t.Errorf("duration_ms = %v", line["duration_ms"])
	}
	if recs := logLines(t, e, "user registered"); len(recs) != 1 || recs[0]["request_id"] != "req-register-1" {
		t.Errorf("the service's line during the request = %v, want request_id req-register-1", recs)
	}

	// A request's user_id, also on failure; a caller's text that is not a
	// UUID is left out.
	unknown := uuid.NewString()
	_, err = c.GetMe(withRequestID(ctx, "req-getme-unknown"), &authpb.GetMeRequest{UserId: unknown})
	wantStatus(t, err, codes.NotFound, "", "USER_NOT_FOUND")
	if line := oneRPCLine(t, e, "req-getme-unknown"); line["code"] != "NotFound" || line["user_id"] != unknown {
		t.Errorf("GetMe(unknown)'s line = %v", line)
	}
	_, err = c.GetMe(withRequestID(ctx, "req-getme-address"), &authpb.GetMeRequest{UserId: "alice@example.com"})
	wantStatus(t, err, codes.InvalidArgument, "", "INVALID_INPUT")
	if line := oneRPCLine(t, e, "req-getme-address"); line["code"] != "InvalidArgument" || line["user_id"] != nil {
		t.Errorf("GetMe(an address)'s line = %v, want no user_id", line)
	}

	// Login: no user id (it is only in the tokens); the tokens are never
	// logged. The response's subject of ValidateToken is.
	if _, err := c.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "alice@example.com", Code: e.Code(t, "alice@example.com")}); err != nil {
		t.Fatal(err)
	}
	l, err := c.Login(withRequestID(ctx, "req-login"), &authpb.LoginRequest{Email: "alice@example.com", Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	if line := oneRPCLine(t, e, "req-login"); line["code"] != "OK" || line["user_id"] != nil {
		t.Errorf("Login's line = %v", line)
	}
	if _, err := c.ValidateToken(withRequestID(ctx, "req-validate"), &authpb.ValidateTokenRequest{AccessToken: l.GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	if line := oneRPCLine(t, e, "req-validate"); line["user_id"] != r.GetUserId() {
		t.Errorf("ValidateToken's line = %v, want the token's subject", line)
	}
	var rpcs []string
	for line := range strings.SplitSeq(e.Log.String(), "\n") {
		if strings.Contains(line, `"msg":"`+grpcapi.RequestLogMessage+`"`) {
			rpcs = append(rpcs, line)
		}
	}
	if len(rpcs) < 6 {
		t.Fatalf("request log lines = %d, want one per RPC", len(rpcs))
	}
	all := strings.Join(rpcs, "\n")
	for _, secret := range []string{"alice@example.com", l.GetAccessToken(), l.GetRefreshToken(), pw} {
		if strings.Contains(all, secret) {
			t.Errorf("the request log holds %q", secret)
		}
	}
	if strings.Contains(e.Log.String(), l.GetRefreshToken()) || strings.Contains(e.Log.String(), l.GetAccessToken()) {
		t.Errorf("the log holds a token")
	}

	// Health checks (a load balancer's probes) are not logged.
	if _, err := healthpb.NewHealthClient(e.Conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, rec := range logLines(t, e, grpcapi.RequestLogMessage) {
		if rec["msg"] == grpcapi.RequestLogMessage && strings.HasPrefix(rec["method"].(string), "/grpc.health.v1.") {
			t.Errorf("health check logged: %v", rec)
		}
	}
}

// A caller's x-request-id is kept when it has 1 to 128 printable ASCII
// characters; a longer one, one with a control or non-ASCII character, or
// several are replaced by a generated id; without one an id is generated,
// a new one for each request.
func TestRequestID(t *testing.T) {
	e := newEnv(t, authtest.Set("LOG__REQUESTS", "info"))
	ctx := context.Background()
	call := func(md ...string) string {
		t.Helper()
		var header metadata.MD
		_, err := e.Client.ValidateToken(metadata.AppendToOutgoingContext(ctx, md...), &authpb.ValidateTokenRequest{AccessToken: "x"}, grpc.Header(&header))
		if err != nil {
			t.Fatal(err)
		}
		return echoed(t, header)
	}
	longest := strings.Repeat("a", grpcapi.MaxRequestIDBytes)
	printable := ` !"#$%&'()*+,-./0123456789:;<=>?@ABCXYZ[\]^_` + "`abcxyz{|}~"
	for _, id := range []string{"x", longest, printable} {
		if got := call(grpcapi.RequestIDKey, id); got != id {
			t.Errorf("x-request-id %q echoed as %q", id, got)
		}
	}
	first := call()
	for name, md := range map[string][]string{
		"none":     nil,
		"too long": {grpcapi.RequestIDKey, longest + "a"},
		"two":      {grpcapi.RequestIDKey, "a", grpcapi.RequestIDKey, "b"},
	} {
		got := call(md...)
		if !generatedID.MatchString(got) || got == first {
			t.Errorf("%s: x-request-id = %q, want a new generated id", name, got)
		}
		if line := oneRPCLine(t, e, got); line["method"] != "/auth.AuthService/ValidateToken" {
			t.Errorf("%s: line = %v", name, line)
		}
	}

	// grpc-go's client refuses to send what is not printable ASCII; a raw
	// HTTP/2 client sends it, and authd gets it.
	for _, id := range []string{"tab\tinside", "caf\u00e9"} {
		header := rawCall(t, e.Addr, "/auth.AuthService/ValidateToken", &authpb.ValidateTokenRequest{AccessToken: "x"},
			grpcapi.RequestIDKey, id)
		if got := header.Get(grpcapi.RequestIDKey); !generatedID.MatchString(got) {
			t.Errorf("x-request-id %q: response x-request-id = %q, want a generated id", id, got)
		}
	}
}

// rawCall makes a unary gRPC call over plain HTTP/2 with the header
// key: value, which grpc-go's client would refuse to send, and returns
// the response's header. The call must succeed.
func rawCall(t *testing.T, addr, method string, req proto.Message, key, value string) http.Header {
	t.Helper()
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	msg, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 5+len(msg)) // not compressed, length, message
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
	copy(frame[5:], msg)
	r, err := http.NewRequest(http.MethodPost, "http://"+addr+method, bytes.NewReader(frame))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/grpc")
	r.Header.Set("TE", "trailers")
	r.Header[key] = []string{value}
	resp, err := tr.RoundTrip(r)
	if err != nil {
		t.Fatalf("raw call with %s %q: %v", key, value, err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	if st := resp.Trailer.Get("Grpc-Status"); st != "0" {
		t.Fatalf("raw call with %s %q: grpc-status %q (%s)", key, value, st, resp.Trailer.Get("Grpc-Message"))
	}
	return resp.Header
}

// With LOG__REQUESTS=debug the lines are written at debug level, which
// LOG__LEVEL=info leaves out; ids are still echoed. Off (the default),
// no line and no header.
func TestRequestLogLevels(t *testing.T) {
	ctx := context.Background()
	req := &authpb.ValidateTokenRequest{AccessToken: "x"}

	debug := newEnv(t, authtest.Set("LOG__REQUESTS", "debug", "LOG__LEVEL", "info"))
	var header metadata.MD
	if _, err := debug.Client.ValidateToken(withRequestID(ctx, "req-debug"), req, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if got := echoed(t, header); got != "req-debug" {
		t.Errorf("x-request-id = %q", got)
	}
	if lines := logLines(t, debug, grpcapi.RequestLogMessage); len(lines) != 0 {
		t.Errorf("debug lines written at LOG__LEVEL=info: %v", lines)
	}

	atDebug := newEnv(t, authtest.Set("LOG__REQUESTS", "debug", "LOG__LEVEL", "debug"))
	if _, err := atDebug.Client.ValidateToken(withRequestID(ctx, "req-debug"), req); err != nil {
		t.Fatal(err)
	}
	if line := oneRPCLine(t, atDebug, "req-debug"); line["level"] != "DEBUG" {
		t.Errorf("line = %v, want level DEBUG", line)
	}

	off := newEnv(t)
	header = nil
	if _, err := off.Client.ValidateToken(withRequestID(ctx, "req-off"), req, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if ids := header.Get(grpcapi.RequestIDKey); len(ids) != 0 {
		t.Errorf("x-request-id %q with the request log off", ids)
	}
	if lines := logLines(t, off, grpcapi.RequestLogMessage); len(lines) != 0 {
		t.Errorf("request log lines with LOG__REQUESTS off: %v", lines)
	}
}

// ValidRequestID keeps 1 to 128 printable ASCII characters.
func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"":                         false,
		"a":                        true,
		strings.Repeat("z", 128):   true,
		strings.Repeat("z", 129):   false,
		"with space":               true,
		"tab\t":                    false,
		"nul\x00":                  false,
		"del\x7f":                  false,
		"caf\u00e9":                false,
		"0af7651916cd43dd8448eb21": true,
	} {
		if got := grpcapi.ValidRequestID(id); got != want {
			t.Errorf("ValidRequestID(%q) = %v, want %v", id, got, want)
		}
	}
}
