package grpcapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/placebrain/auth/internal/grpcapi"
	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/internal/testutil/certtest"
	"github.com/placebrain/auth/proto/authpb"
)

// API keys of the tests (at least 32 bytes each).
const (
	keyA     = "key-a-0123456789-abcdefghijklmnopqrstuvwx"
	keyB     = "key-b-0123456789-abcdefghijklmnopqrstuvwx"
	keyC     = "key-c-0123456789-abcdefghijklmnopqrstuvwx"
	wrongKey = "key-wrong-0123456789-abcdefghijklmnopqrst"
)

// The messages of refused calls.
const (
	msgUnauthenticated = "caller not authenticated"
	msgDenied          = "caller may not call this method"
)

// withKey returns ctx sending key as the gateway does.
func withKey(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}

// wantRefused checks a refused call: code and message, no details, and no
// response.
func wantRefused[R any](t *testing.T, resp *R, err error, code codes.Code, msg string) {
	t.Helper()
	wantStatus(t, err, code, msg, "")
	if st := status.Convert(err); len(st.Details()) != 0 {
		t.Errorf("refusal carries details: %v", st.Details())
	}
	if resp != nil {
		t.Errorf("refusal returned data: %v", resp)
	}
}

// sha256Prefix is what the log may say about a refused key.
func sha256Prefix(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// logLines returns the JSON log records whose msg starts with prefix.
func logLines(t *testing.T, e *authtest.Env, prefix string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(e.Log.String(), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, rec)
		}
	}
	return out
}

// noSecretsLogged fails when the log holds a key or a full key digest.
func noSecretsLogged(t *testing.T, e *authtest.Env, keys ...string) {
	t.Helper()
	logs := e.Log.String()
	for _, k := range keys {
		sum := sha256.Sum256([]byte(k))
		if strings.Contains(logs, k) || strings.Contains(logs, hex.EncodeToString(sum[:])) || strings.Contains(logs, sha256Prefix(k)+hex.EncodeToString(sum[4:5])) {
			t.Errorf("the log reveals key %q or its digest", k)
		}
	}
}

// With API keys configured, AuthService answers only callers that present
// one; each key is limited to its methods; health answers everyone; a key
// removed from the list stops working at the restart.
func TestAPIKeys(t *testing.T) {
	e := newEnv(t, authtest.Set("GRPC__API_KEYS", keyA+", "+keyB, "GRPC__REQUIRE_CALLER_AUTH", "true"))
	ctx := context.Background()
	id := e.VerifiedUser(t, "Alice", "alice@example.com", pw)
	byEmail := &authpb.GetUserByEmailRequest{Email: "alice@example.com"}

	refused := []struct {
		name string
		ctx  context.Context
	}{
		{"no metadata", ctx},
		{"wrong key", withKey(ctx, wrongKey)},
		{"not a bearer key", metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+keyA)},
		{"two keys", metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+keyA, "authorization", "Bearer "+keyB)},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			r, err := e.Client.GetUserByEmail(tt.ctx, byEmail)
			wantRefused(t, r, err, codes.Unauthenticated, msgUnauthenticated)
		})
	}
	if got := e.App.Callers.Refused().Unauthenticated; got != uint64(len(refused)) {
		t.Errorf("Refused().Unauthenticated = %d, want %d", got, len(refused))
	}
	recs := logLines(t, e, "caller refused")
	if len(recs) != len(refused) {
		t.Fatalf("%d refusals logged, want %d:\n%s", len(recs), len(refused), e.Log.String())
	}
	if recs[0]["reason"] != "no credentials" || recs[0]["sent_sha256_prefix"] != nil || recs[0]["level"] != "WARN" {
		t.Errorf("refusal without metadata logged as %v", recs[0])
	}
	if recs[1]["reason"] != "invalid key" || recs[1]["sent_sha256_prefix"] != sha256Prefix(wrongKey) ||
		recs[1]["method"] != "/auth.AuthService/GetUserByEmail" || recs[1]["peer"] == "" {
		t.Errorf("refused key logged as %v, want its SHA-256 prefix %s", recs[1], sha256Prefix(wrongKey))
	}
	noSecretsLogged(t, e, keyA, keyB, wrongKey)

	// A refused call never reaches the service: a dozen wrong passwords
	// without a key count no failure, so the login throttle (10) stays
	// open.
	for range 12 {
		r, err := e.Client.Login(ctx, &authpb.LoginRequest{Email: "alice@example.com", Password: "wrong password"})
		wantRefused(t, r, err, codes.Unauthenticated, msgUnauthenticated)
	}
	if _, err := e.Client.Login(withKey(ctx, keyA), &authpb.LoginRequest{Email: "alice@example.com", Password: pw}); err != nil {
		t.Errorf("Login with a key after refused calls: %v", err)
	}

	for _, key := range []string{keyA, keyB} {
		r, err := e.Client.GetUserByEmail(withKey(ctx, key), byEmail)
		if err != nil || r.GetUserId() != id {
			t.Errorf("GetUserByEmail with %s = %v, %v", key[:5], r, err)
		}
		// The scheme is case-insensitive.
		lower := metadata.AppendToOutgoingContext(ctx, "authorization", "bearer "+key)
		if _, err := e.Client.GetMe(lower, &authpb.GetMeRequest{UserId: id}); err != nil {
			t.Errorf("GetMe with %s: %v", key[:5], err)
		}
	}

	health := healthpb.NewHealthClient(e.Conn)
	for _, svc := range []string{"", "auth.AuthService"} {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health Check(%q) without a key = %v, %v", svc, r, err)
		}
	}

	// Restart with keyA removed and keyC, limited to GetUserByEmail, added.
	e2 := newEnv(t, authtest.SameDatabaseAs(e), authtest.Set("GRPC__API_KEYS", keyB+","+keyC+"=GetUserByEmail"))
	r, err := e2.Client.GetUserByEmail(withKey(ctx, keyA), byEmail)
	wantRefused(t, r, err, codes.Unauthenticated, msgUnauthenticated)
	if r, err := e2.Client.GetUserByEmail(withKey(ctx, keyB), byEmail); err != nil || r.GetUserId() != id {
		t.Errorf("GetUserByEmail with the kept key = %v, %v", r, err)
	}
	if r, err := e2.Client.GetUserByEmail(withKey(ctx, keyC), byEmail); err != nil || r.GetUserId() != id {
		t.Errorf("GetUserByEmail with the limited key = %v, %v", r, err)
	}
	me, err := e2.Client.GetMe(withKey(ctx, keyC), &authpb.GetMeRequest{UserId: id})
	wantRefused(t, me, err, codes.PermissionDenied, msgDenied)
	if got := e2.App.Callers.Refused(); got.PermissionDenied != 1 || got.Unauthenticated != 1 {
		t.Errorf("Refused() = %+v, want one of each", got)
	}
	if recs := logLines(t, e2, "caller refused"); len(recs) != 2 || recs[1]["reason"] != "method not allowed" ||
		recs[1]["caller"] != "api key 2" || recs[1]["method"] != "/auth.AuthService/GetMe" {
		t.Errorf("refusals logged as %v", recs)
	}
	noSecretsLogged(t, e2, keyA, keyB, keyC)
}

// pki is a test deployment's certificates: the server's, signed by
// serverCA, and a client CA, in files as the configuration names them.
type pki struct {
	serverCA, clientCA          *certtest.CA
	server                      *certtest.Leaf
	certFile, keyFile, caFile   string
	clientAuthVars              []string
	gateway, places, other, bad *certtest.Leaf
}

// Client certificate identities of the tests.
const (
	gatewayID = "spiffe://placebrain/gateway"
	placesID  = "places.placebrain.internal"
	otherID   = "spiffe://placebrain/other"
)

// newPKI writes a server certificate and a client CA to files and issues
// client certificates: gateway (a URI SAN), places (a DNS SAN) and other
// from the client CA, bad from a CA authd does not trust.
func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{serverCA: certtest.NewCA(t, "server CA"), clientCA: certtest.NewCA(t, "client CA")}
	dir := t.TempDir()
	p.certFile, p.keyFile, p.caFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "client-ca.crt")
	p.server = p.serverCA.Server(t, nil)
	certtest.WriteFile(t, p.certFile, p.server.CertPEM)
	certtest.WriteFile(t, p.keyFile, p.server.KeyPEM)
	certtest.WriteFile(t, p.caFile, p.clientCA.PEM)
	p.clientAuthVars = []string{"GRPC__TLS_CERT_FILE", p.certFile, "GRPC__TLS_KEY_FILE", p.keyFile, "GRPC__CLIENT_CA_FILE", p.caFile}
	p.gateway = p.clientCA.Client(t, gatewayID)
	p.places = p.clientCA.Client(t, placesID)
	p.other = p.clientCA.Client(t, otherID)
	p.bad = certtest.NewCA(t, "another CA").Client(t, gatewayID)
	return p
}

// creds returns TLS credentials trusting the server CA and presenting
// leaf (none when nil), even when the server's request names other CAs
// (Go's client would otherwise keep it to itself).
func (p *pki) creds(t *testing.T, leaf *certtest.Leaf) credentials.TransportCredentials {
	t.Helper()
	cfg := &tls.Config{RootCAs: p.serverCA.Pool(), ServerName: "localhost"}
	if leaf != nil {
		cert := leaf.TLS(t)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return credentials.NewTLS(cfg)
}

// dial opens a new connection to addr with creds.
func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// With mutual TLS, client certificates must chain to the client CA; an
// allowed identity may call its methods, a limited one only those, an
// unlisted one nothing; health answers every certificate.
func TestClientCertificates(t *testing.T) {
	p := newPKI(t)
	e := newEnv(t, authtest.Set(p.clientAuthVars...),
		authtest.Set("GRPC__ALLOWED_CLIENTS", gatewayID+","+placesID+"=GetUserByEmail", "GRPC__REQUIRE_CALLER_AUTH", "true"),
		authtest.Dial(grpc.WithTransportCredentials(p.creds(t, p.gateway))))
	ctx := context.Background()
	id := e.VerifiedUser(t, "Alice", "alice@example.com", pw)
	byEmail := &authpb.GetUserByEmailRequest{Email: "alice@example.com"}
	client := func(leaf *certtest.Leaf) authpb.AuthServiceClient {
		return authpb.NewAuthServiceClient(dial(t, e.Addr, p.creds(t, leaf)))
	}

	// Handshakes that fail: a certificate from another CA, none at all,
	// or plain text.
	for _, tt := range []struct {
		name  string
		creds credentials.TransportCredentials
	}{
		{"another CA", p.creds(t, p.bad)},
		{"no certificate", p.creds(t, nil)},
		{"plain text", insecure.NewCredentials()},
	} {
		c := authpb.NewAuthServiceClient(dial(t, e.Addr, tt.creds))
		r, err := c.GetUserByEmail(withKey(ctx, keyA), byEmail)
		if status.Code(err) != codes.Unavailable || r != nil {
			t.Errorf("%s: GetUserByEmail = %v, %v; want the handshake to fail (UNAVAILABLE)", tt.name, r, err)
		}
	}

	// The gateway's identity (a URI SAN) may call everything.
	if r, err := e.Client.GetUserByEmail(ctx, byEmail); err != nil || r.GetUserId() != id {
		t.Errorf("gateway GetUserByEmail = %v, %v", r, err)
	}
	if r, err := e.Client.GetMe(ctx, &authpb.GetMeRequest{UserId: id}); err != nil || r.GetUserId() != id {
		t.Errorf("gateway GetMe = %v, %v", r, err)
	}
	// places (a DNS SAN) only GetUserByEmail.
	places := client(p.places)
	if r, err := places.GetUserByEmail(ctx, byEmail); err != nil || r.GetUserId() != id {
		t.Errorf("places GetUserByEmail = %v, %v", r, err)
	}
	me, err := places.GetMe(ctx, &authpb.GetMeRequest{UserId: id})
	wantRefused(t, me, err, codes.PermissionDenied, msgDenied)
	// A certificate the CA signed for an identity not listed.
	other := client(p.other)
	r, err := other.GetUserByEmail(ctx, byEmail)
	wantRefused(t, r, err, codes.Unauthenticated, msgUnauthenticated)
	if recs := logLines(t, e, "caller refused"); len(recs) != 2 || recs[0]["caller"] != placesID ||
		recs[1]["reason"] != "certificate identity not allowed" || !strings.Contains(e.Log.String(), otherID) {
		t.Errorf("refusals logged as %v", recs)
	}
	// Health answers any certificate the handshake accepts.
	if h, err := healthpb.NewHealthClient(dial(t, e.Addr, p.creds(t, p.other))).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health Check with an unlisted identity = %v, %v", h, err)
	}

	// Without GRPC__ALLOWED_CLIENTS every certificate the CA signed may
	// call every method.
	anyCert := newEnv(t, authtest.SameDatabaseAs(e), authtest.Set(p.clientAuthVars...),
		authtest.Dial(grpc.WithTransportCredentials(p.creds(t, p.other))))
	if r, err := anyCert.Client.GetMe(ctx, &authpb.GetMeRequest{UserId: id}); err != nil || r.GetUserId() != id {
		t.Errorf("any certificate: GetMe = %v, %v", r, err)
	}
	if len(logLines(t, anyCert, "every client certificate GRPC__CLIENT_CA_FILE signed may call every method")) != 1 {
		t.Errorf("no start log line says that every certificate may call:\n%s", anyCert.Log.String())
	}
}

// With a client CA and API keys, a caller may use either: the handshake
// accepts a connection without a certificate, whose calls then need a key.
func TestClientCertificatesOrKeys(t *testing.T) {
	p := newPKI(t)
	e := newEnv(t, authtest.Set(p.clientAuthVars...), authtest.Set("GRPC__ALLOWED_CLIENTS", gatewayID, "GRPC__API_KEYS", keyA+"=GetUserByEmail"),
		authtest.Dial(grpc.WithTransportCredentials(p.creds(t, nil))))
	ctx := context.Background()
	id := e.VerifiedUser(t, "Alice", "alice@example.com", pw)
	byEmail := &authpb.GetUserByEmailRequest{Email: "alice@example.com"}

	if r, err := e.Client.GetUserByEmail(withKey(ctx, keyA), byEmail); err != nil || r.GetUserId() != id {
		t.Errorf("no certificate, a key: GetUserByEmail = %v, %v", r, err)
	}
	me, err := e.Client.GetMe(withKey(ctx, keyA), &authpb.GetMeRequest{UserId: id})
	wantRefused(t, me, err, codes.PermissionDenied, msgDenied)
	r, err := e.Client.GetUserByEmail(ctx, byEmail)
	wantRefused(t, r, err, codes.Unauthenticated, msgUnauthenticated)
	gateway := authpb.NewAuthServiceClient(dial(t, e.Addr, p.creds(t, p.gateway)))
	if r, err := gateway.GetMe(ctx, &authpb.GetMeRequest{UserId: id}); err != nil || r.GetUserId() != id {
		t.Errorf("gateway certificate, no key: GetMe = %v, %v", r, err)
	}
	// An unlisted certificate with a valid key is the key's caller.
	other := authpb.NewAuthServiceClient(dial(t, e.Addr, p.creds(t, p.other)))
	if r, err := other.GetUserByEmail(withKey(ctx, keyA), byEmail); err != nil || r.GetUserId() != id {
		t.Errorf("unlisted certificate, a key: GetUserByEmail = %v, %v", r, err)
	}
	bad := authpb.NewAuthServiceClient(dial(t, e.Addr, p.creds(t, p.bad)))
	if r, err := bad.GetUserByEmail(withKey(ctx, keyA), byEmail); status.Code(err) != codes.Unavailable {
		t.Errorf("certificate from another CA, a key: GetUserByEmail = %v, %v; want the handshake to fail", r, err)
	}
	if len(logLines(t, e, "GRPC__API_KEYS without GRPC__TLS_CERT_FILE")) != 0 {
		t.Errorf("clear-text warning with TLS configured")
	}
}

// servedCert returns the certificate a new TLS connection to addr is
// served; the client presents leaf.
func servedCert(t *testing.T, addr string, roots *x509.CertPool, leaf *certtest.Leaf) (*x509.Certificate, error) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"h2"},
		Certificates: []tls.Certificate{leaf.TLS(t)}})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// eventually polls cond every 20 ms until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The server certificate, its key and the client CA replaced on disk take
// effect for new connections without a restart.
func TestTLSFilesReloaded(t *testing.T) {
	p := newPKI(t)
	e := newEnv(t, authtest.Set(p.clientAuthVars...), authtest.Set("GRPC__ALLOWED_CLIENTS", gatewayID),
		authtest.ServerOptions(server.Options{TLSRefresh: 50 * time.Millisecond}))
	ctx := context.Background()
	roots := p.serverCA.Pool()
	served := func() *x509.Certificate {
		c, err := servedCert(t, e.Addr, roots, p.gateway)
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		return c
	}
	if got := served(); !got.Equal(p.server.Cert) {
		t.Fatalf("served certificate %v, want the configured one", got.SerialNumber)
	}

	// A new certificate for the same key.
	renewed := p.serverCA.Server(t, p.server.Key)
	certtest.WriteFile(t, p.certFile, renewed.CertPEM)
	eventually(t, "renewed certificate served", func() bool { return served().Equal(renewed.Cert) })

	// A new key and its certificate.
	rekeyed := p.serverCA.Server(t, nil)
	certtest.WriteFile(t, p.keyFile, rekeyed.KeyPEM)
	certtest.WriteFile(t, p.certFile, rekeyed.CertPEM)
	eventually(t, "new key served", func() bool { return served().PublicKey.(*ecdsa.PublicKey).Equal(rekeyed.Key.Public()) })

	// A new client CA: its certificates are accepted, the old CA's no
	// longer.
	newCA := certtest.NewCA(t, "new client CA")
	newGateway := newCA.Client(t, gatewayID)
	byEmail := &authpb.GetUserByEmailRequest{Email: "nobody@example.com"}
	call := func(leaf *certtest.Leaf) error {
		conn := dial(t, e.Addr, p.creds(t, leaf))
		defer conn.Close()
		_, err := authpb.NewAuthServiceClient(conn).GetUserByEmail(ctx, byEmail)
		return err
	}
	if err := call(newGateway); status.Code(err) != codes.Unavailable {
		t.Fatalf("certificate of the new CA before the rotation: %v, want the handshake to fail", err)
	}
	certtest.WriteFile(t, p.caFile, newCA.PEM)
	eventually(t, "new client CA trusted", func() bool { return status.Code(call(newGateway)) == codes.NotFound })
	if err := call(p.gateway); status.Code(err) != codes.Unavailable {
		t.Errorf("certificate of the old CA after the rotation: %v, want the handshake to fail", err)
	}
}

// listServices lists the services through server reflection.
func listServices(ctx context.Context, conn *grpc.ClientConn) ([]string, error) {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	// A refused stream fails Send with io.EOF; Recv returns its status.
	_ = stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"},
	})
	r, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names, nil
}

// Server reflection is registered only on request outside development
// mode (development mode: cmd/authd's TestDevelopmentModeZeroSetup), and
// with caller authentication it needs an authenticated caller.
func TestReflection(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if names, err := listServices(ctx, e.Conn); status.Code(err) != codes.Unimplemented {
		t.Errorf("reflection by default = %v, %v; want UNIMPLEMENTED (not registered)", names, err)
	}

	on := newEnv(t, authtest.Set("GRPC__REFLECTION", "true"))
	if names, err := listServices(ctx, on.Conn); err != nil || !strings.Contains(strings.Join(names, " "), "auth.AuthService") {
		t.Errorf("GRPC__REFLECTION=true: services %v, %v", names, err)
	}

	keys := newEnv(t, authtest.Set("GRPC__REFLECTION", "true", "GRPC__API_KEYS", keyA+"=GetMe"))
	if names, err := listServices(ctx, keys.Conn); status.Code(err) != codes.Unauthenticated {
		t.Errorf("reflection without a key = %v, %v; want UNAUTHENTICATED", names, err)
	}
	if names, err := listServices(withKey(ctx, keyA), keys.Conn); err != nil || len(names) == 0 {
		t.Errorf("reflection with a key: services %v, %v", names, err)
	}
	// Health Watch (a stream) answers without a key.
	w, err := healthpb.NewHealthClient(keys.Conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if err != nil {
		t.Errorf("health Watch without a key: %v", err)
	}
}

// What a start says about caller authentication: a production start
// with none warns what any process can do; API keys without TLS warn that
// they travel in clear text; the log never holds a key.
func TestStartLogsCallerAuth(t *testing.T) {
	off := newEnv(t)
	recs := logLines(t, off, "CALLER AUTHENTICATION IS OFF")
	if len(recs) != 1 || recs[0]["level"] != "WARN" {
		t.Fatalf("no WARN that caller authentication is off:\n%s", off.Log.String())
	}
	for _, s := range []string{"GetMe", "GetUserByEmail", "e-mail address and name", "Login and SendOtp past the gateway's rate limits", "log anyone out"} {
		if !strings.Contains(recs[0]["msg"].(string), s) {
			t.Errorf("warning %q does not say %q", recs[0]["msg"], s)
		}
	}

	clear := newEnv(t, authtest.Set("GRPC__API_KEYS", keyA+","+keyB+"=GetMe"))
	if recs := logLines(t, clear, "GRPC__API_KEYS without GRPC__TLS_CERT_FILE: API keys travel in clear text"); len(recs) != 1 || recs[0]["level"] != "WARN" {
		t.Errorf("no WARN that keys travel in clear text:\n%s", clear.Log.String())
	}
	if recs := logLines(t, clear, "caller authentication on"); len(recs) != 1 || recs[0]["api_keys"] != float64(2) {
		t.Errorf("start log = %v", recs)
	}
	if len(logLines(t, clear, "CALLER AUTHENTICATION IS OFF")) != 0 {
		t.Errorf("off warning with keys configured")
	}
	noSecretsLogged(t, clear, keyA, keyB)
}

// With no caller authentication configured every caller may call every
// method, as before, and address metadata is ignored (even malformed).
func TestCallerAuthOff(t *testing.T) {
	e := newEnv(t)
	id := e.VerifiedUser(t, "Alice", "alice@example.com", pw)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-real-ip", "not an address", "authorization", "Bearer "+wrongKey)
	if r, err := e.Client.GetMe(ctx, &authpb.GetMeRequest{UserId: id}); err != nil || r.GetUserId() != id {
		t.Errorf("GetMe = %v, %v", r, err)
	}
	if e.App.Callers.Enabled() || e.App.Callers.Refused() != (grpcapi.Refusals{}) {
		t.Errorf("callers enabled %v, refused %+v", e.App.Callers.Enabled(), e.App.Callers.Refused())
	}
}

// A stranger calling in a loop cannot fill the log: past
// RefusalLogBurst refusals at once, one warning per RefusalLogEvery is
// written, and it says how many were left out; every refusal is still
// counted.
func TestRefusalLogsBounded(t *testing.T) {
	e := newEnv(t, authtest.Set("GRPC__API_KEYS", keyA, "GRPC__REQUIRE_CALLER_AUTH", "true"))
	ctx := context.Background()
	byEmail := &authpb.GetUserByEmailRequest{Email: "alice@example.com"}
	const extra = 30
	for range grpcapi.RefusalLogBurst + extra {
		r, err := e.Client.GetUserByEmail(withKey(ctx, wrongKey), byEmail)
		wantRefused(t, r, err, codes.Unauthenticated, msgUnauthenticated)
	}
	if got := e.App.Callers.Refused().Unauthenticated; got != grpcapi.RefusalLogBurst+extra {
		t.Errorf("Refused().Unauthenticated = %d, want %d", got, grpcapi.RefusalLogBurst+extra)
	}
	recs := logLines(t, e, "caller refused")
	if len(recs) != grpcapi.RefusalLogBurst {
		t.Fatalf("%d refusals logged, want the burst of %d", len(recs), grpcapi.RefusalLogBurst)
	}
	for _, r := range recs {
		if r["suppressed"] != nil {
			t.Fatalf("a warning within the burst says %v suppressed", r["suppressed"])
		}
	}

	e.Clock.Advance(grpcapi.RefusalLogEvery)
	r, err := e.Client.GetUserByEmail(ctx, byEmail)
	wantRefused(t, r, err, codes.Unauthenticated, msgUnauthenticated)
	recs = logLines(t, e, "caller refused")
	if len(recs) != grpcapi.RefusalLogBurst+1 {
		t.Fatalf("%d refusals logged after %v, want %d", len(recs), grpcapi.RefusalLogEvery, grpcapi.RefusalLogBurst+1)
	}
	last := recs[len(recs)-1]
	if last["suppressed"] != float64(extra) || last["reason"] != "no credentials" {
		t.Errorf("the warning after the flood is %v, want reason no credentials and suppressed %d", last, extra)
	}
	// The next one within the second is left out again.
	r, err = e.Client.GetUserByEmail(ctx, byEmail)
	wantRefused(t, r, err, codes.Unauthenticated, msgUnauthenticated)
	if n := len(logLines(t, e, "caller refused")); n != grpcapi.RefusalLogBurst+1 {
		t.Errorf("%d refusals logged, want %d: one per %v after the burst", n, grpcapi.RefusalLogBurst+1, grpcapi.RefusalLogEvery)
	}
	// The next second's warning counts only what was left out since the
	// last one.
	e.Clock.Advance(grpcapi.RefusalLogEvery)
	e.Client.GetUserByEmail(ctx, byEmail)
	recs = logLines(t, e, "caller refused")
	if len(recs) != grpcapi.RefusalLogBurst+2 || recs[len(recs)-1]["suppressed"] != float64(1) {
		t.Errorf("%d refusals logged, the last %v; want %d, suppressed 1", len(recs), recs[len(recs)-1], grpcapi.RefusalLogBurst+2)
	}
	noSecretsLogged(t, e, keyA, wrongKey)
}
