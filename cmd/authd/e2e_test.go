package main_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	_ "modernc.org/sqlite"

	"github.com/placebrain/auth/internal/testutil/smtptest"
	"github.com/placebrain/auth/internal/testutil/testdb"
	"github.com/placebrain/auth/migrations"
	"github.com/placebrain/auth/proto/authpb"
)

// buildAuthd builds the binary once per test run.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func buildAuthd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "authd-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "authd")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return binPath
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a running authd.
type proc struct {
	cmd    *exec.Cmd
	logs   *lockedBuffer
	exited chan error
	conn   *grpc.ClientConn
	client authpb.AuthServiceClient
}

// start runs `authd serve args...` in dir with env (plus PATH and HOME),
// listening on a free port, and waits until health reports SERVING.
func start(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(buildAuthd(t), append([]string{"serve"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "GRPC__LISTEN_ADDR=" + addr}, env...)
	p := &proc{cmd: cmd, logs: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.exited
		}
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p.conn, p.client = conn, authpb.NewAuthServiceClient(conn)
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "auth.AuthService"})
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return p
		}
		select {
		case err := <-p.exited:
			t.Fatalf("authd exited: %v\n%s", err, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not SERVING within 60s: %v\n%s", err, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and checks a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, p.logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("authd did not stop after SIGTERM\n%s", p.logs.String())
	}
	if !strings.Contains(p.logs.String(), `"stopped"`) {
		t.Errorf("no clean-stop log line:\n%s", p.logs.String())
	}
}

var codeRE = regexp.MustCompile(`\b\d{6}\b`)

// TestEndToEnd builds authd, starts it on a fresh database of the suite's
// backend (migrating it itself) with an SMTP server in the test, runs the
// user journey over gRPC, and stops it with SIGTERM.
func TestEndToEnd(t *testing.T) {
	dbURL := testdb.NewURL(t)
	if testdb.Backend() == dialect.Postgres {
		// Existing deployments give the SQLAlchemy form of the URL.
		dbURL = strings.Replace(dbURL, "postgres://", "postgresql+asyncpg://", 1)
	}
	mailSrv := smtptest.Start(t)
	const password = "e2e password 123"
	p := start(t, t.TempDir(), []string{
		"DATABASE__URL=" + dbURL,
		"JWT__SECRET=e2e-secret-0123456789-abcdefghijklmnopq",
		"SMTP__HOST=" + mailSrv.Host,
		"SMTP__PORT=" + strconv.Itoa(mailSrv.Port),
		"SMTP__FROM=PlaceBrain <no-reply@placebrain.test>",
		"SMTP__TLS=none",
		"PASSWORD__BCRYPT_COST=4",
		"OUTBOX__POLL_INTERVAL_MILLIS=100",
	})
	c, ctx := p.client, context.Background()

	reg, err := c.Register(ctx, &authpb.RegisterRequest{Username: "Eve", Email: "Eve@Example.com", Password: password})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	// The gateway calls SendOtp after Register: within the cooldown it
	// succeeds and sends nothing (counted at the end).
	if r, err := c.SendOtp(ctx, &authpb.SendOtpRequest{Email: "eve@example.com"}); err != nil || !r.GetSuccess() {
		t.Errorf("SendOtp right after Register = %v, %v; want success", r, err)
	}
	msg := mailSrv.WaitFor(t, "Eve@Example.com", 20*time.Second)
	code := codeRE.FindString(string(msg.Email.Text))
	if code == "" {
		t.Fatalf("no code in %q", msg.Email.Text)
	}
	if _, err := c.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "eve@example.com", Code: code}); err != nil {
		t.Fatalf("VerifyOtp: %v", err)
	}
	login, err := c.Login(ctx, &authpb.LoginRequest{Email: "EVE@example.com", Password: password})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	refreshed, err := c.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: login.GetRefreshToken()})
	if err != nil {
		t.Fatalf("RefreshTokens: %v", err)
	}
	me, err := c.GetMe(ctx, &authpb.GetMeRequest{UserId: reg.GetUserId()})
	if err != nil || !me.GetIsVerified() || me.GetUsername() != "Eve" {
		t.Fatalf("GetMe = %v, %v", me, err)
	}
	byEmail, err := c.GetUserByEmail(ctx, &authpb.GetUserByEmailRequest{Email: "eve@EXAMPLE.com"})
	if err != nil || byEmail.GetUserId() != reg.GetUserId() {
		t.Fatalf("GetUserByEmail = %v, %v", byEmail, err)
	}
	v, err := c.ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: refreshed.GetAccessToken()})
	if err != nil || !v.GetValid() || v.GetUserId() != reg.GetUserId() {
		t.Fatalf("ValidateToken = %v, %v", v, err)
	}
	out, err := c.Logout(ctx, &authpb.LogoutRequest{RefreshToken: refreshed.GetRefreshToken()})
	if err != nil || !out.GetSuccess() {
		t.Fatalf("Logout = %v, %v", out, err)
	}
	for _, old := range []string{login.GetRefreshToken(), refreshed.GetRefreshToken()} {
		_, err = c.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: old})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("old refresh token: %v, want UNAUTHENTICATED", err)
		}
	}
	// A load balancer watching health does not hold up the shutdown.
	watch, err := healthpb.NewHealthClient(p.conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: "auth.AuthService"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch = %v, %v", r, err)
	}
	// Production: no server reflection unless GRPC__REFLECTION=true.
	if names, err := listServices(ctx, p.conn); status.Code(err) != codes.Unimplemented {
		t.Errorf("reflection in production = %v, %v; want UNIMPLEMENTED", names, err)
	}
	p.stop(t)
	if strings.Contains(p.logs.String(), "grace period over") {
		t.Errorf("shutdown waited out the grace period")
	}
	if n := len(mailSrv.To("Eve@Example.com")); n != 1 {
		t.Errorf("e-mails to Eve = %d, want 1 (Register's; SendOtp within the cooldown sends none)", n)
	}
	// Nothing configured: everything works as before, and authd says
	// loudly what any process reaching the port can do.
	if w := logRecord(p.logs.String(), "CALLER AUTHENTICATION IS OFF"); w == nil || w["level"] != "WARN" ||
		!strings.Contains(w["msg"].(string), "GetMe, GetUserByEmail") || !strings.Contains(w["msg"].(string), "log anyone out") {
		t.Errorf("no WARN that caller authentication is off: %v\n%s", w, p.logs.String())
	}

	// Logs are JSON lines and hold no secrets or addresses.
	logs := p.logs.String()
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %q", line)
		}
	}
	// Without OTP__SECRET the keys of codes and queued e-mails come from
	// JWT__SECRET, which the gateway holds too: a production start says so.
	if !strings.Contains(logs, `"level":"WARN","msg":"OTP__SECRET is not set`) {
		t.Errorf("no OTP__SECRET warning:\n%s", logs)
	}
	for _, secret := range []string{password, code, login.GetRefreshToken(), login.GetAccessToken(), "Eve@Example.com", "eve@example.com"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
}

// logRecord returns the first JSON log record in logs whose msg starts
// with prefix, or nil.
func logRecord(logs, prefix string) map[string]any {
	for line := range strings.SplitSeq(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && strings.HasPrefix(fmt.Sprint(m["msg"]), prefix) {
			return m
		}
	}
	return nil
}

// listServices lists the services through server reflection, as grpcurl
// list does.
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

// TestAPIKeysEndToEnd starts authd with GRPC__API_KEYS and
// GRPC__REQUIRE_CALLER_AUTH from the environment: health answers without
// a key (start waits on it), AuthService only with one.
func TestAPIKeysEndToEnd(t *testing.T) {
	const key = "e2e-key-0123456789-abcdefghijklmnopqrstu"
	mailSrv := smtptest.Start(t)
	p := start(t, t.TempDir(), []string{
		"DATABASE__URL=" + testdb.NewURL(t),
		"JWT__SECRET=e2e-secret-0123456789-abcdefghijklmnopq",
		"SMTP__HOST=" + mailSrv.Host,
		"SMTP__PORT=" + strconv.Itoa(mailSrv.Port),
		"SMTP__FROM=PlaceBrain <no-reply@placebrain.test>",
		"SMTP__TLS=none",
		"GRPC__API_KEYS=" + key + "=GetUserByEmail",
		"GRPC__REQUIRE_CALLER_AUTH=true",
	})
	ctx := context.Background()
	req := &authpb.GetUserByEmailRequest{Email: "nobody@example.com"}
	if _, err := p.client.GetUserByEmail(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("GetUserByEmail without a key: %v, want UNAUTHENTICATED", err)
	}
	withKey := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
	if _, err := p.client.GetUserByEmail(withKey, req); status.Code(err) != codes.NotFound {
		t.Errorf("GetUserByEmail with the key: %v, want NOT_FOUND", err)
	}
	if _, err := p.client.GetMe(withKey, &authpb.GetMeRequest{UserId: "00000000-0000-0000-0000-000000000000"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("GetMe with a key limited to GetUserByEmail: %v, want PERMISSION_DENIED", err)
	}
	p.stop(t)
	logs := p.logs.String()
	if w := logRecord(logs, "GRPC__API_KEYS without GRPC__TLS_CERT_FILE"); w == nil || w["level"] != "WARN" {
		t.Errorf("no WARN that keys travel in clear text:\n%s", logs)
	}
	if logRecord(logs, "CALLER AUTHENTICATION IS OFF") != nil || logRecord(logs, "caller refused") == nil {
		t.Errorf("start and refusal logs:\n%s", logs)
	}
	if strings.Contains(logs, key) {
		t.Errorf("the log holds the key")
	}
}

// devCode returns the code of the newest development-mode e-mail in logs.
func devCode(t *testing.T, logs string) string {
	t.Helper()
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var m map[string]any
		if json.Unmarshal([]byte(lines[i]), &m) != nil || !strings.Contains(fmt.Sprint(m["msg"]), "e-mail written to the log") {
			continue
		}
		if c := codeRE.FindString(fmt.Sprint(m["text"])); c != "" {
			return c
		}
	}
	return ""
}

// waitDevCode waits for a development-mode e-mail in p's log.
func waitDevCode(t *testing.T, p *proc) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c := devCode(t, p.logs.String()); c != "" {
			return c
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no e-mail in the log:\n%s", p.logs.String())
	return ""
}

// TestDevelopmentModeZeroSetup runs `authd serve --dev` with no
// configuration at all, as `make run` does on a fresh clone: SQLite in
// ./data, a generated secret, e-mails in the log. A restart keeps users,
// tokens and the secret.
func TestDevelopmentModeZeroSetup(t *testing.T) {
	testdb.SkipUnless(t, dialect.SQLite)
	dir := t.TempDir()
	p := start(t, dir, nil, "--dev")
	if !strings.Contains(p.logs.String(), "DEVELOPMENT MODE") {
		t.Errorf("no development-mode warning:\n%s", p.logs.String())
	}
	c, ctx := p.client, context.Background()
	// Development mode serves reflection (grpcurl list) and does not warn
	// about caller authentication.
	if names, err := listServices(ctx, p.conn); err != nil || !slices.Contains(names, "auth.AuthService") {
		t.Errorf("reflection in development mode: %v, %v", names, err)
	}
	if logRecord(p.logs.String(), "CALLER AUTHENTICATION IS OFF") != nil {
		t.Errorf("development mode warns about caller authentication")
	}
	reg, err := c.Register(ctx, &authpb.RegisterRequest{Username: "dev", Email: "dev@example.com", Password: "dev password"})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	code := waitDevCode(t, p)
	if _, err := c.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "dev@example.com", Code: code}); err != nil {
		t.Fatalf("VerifyOtp with the code from the log: %v", err)
	}
	login, err := c.Login(ctx, &authpb.LoginRequest{Email: "dev@example.com", Password: "dev password"})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	p.stop(t)
	if strings.Contains(p.logs.String(), "dev@example.com") {
		t.Errorf("log holds the e-mail address")
	}
	for _, f := range []string{"data/authd.db", "data/dev-jwt-secret"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}

	// Restart: the user, the refresh token and the access token's secret
	// survive.
	p2 := start(t, dir, nil, "--dev")
	c2 := p2.client
	me, err := c2.GetMe(ctx, &authpb.GetMeRequest{UserId: reg.GetUserId()})
	if err != nil || !me.GetIsVerified() {
		t.Fatalf("GetMe after restart = %v, %v", me, err)
	}
	if v, err := c2.ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: login.GetAccessToken()}); err != nil || !v.GetValid() {
		t.Errorf("access token after restart: %v, %v", v, err)
	}
	if _, err := c2.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: login.GetRefreshToken()}); err != nil {
		t.Errorf("refresh after restart: %v", err)
	}
	p2.stop(t)
}

// TestTwoProcessesShareOneSQLiteFile starts two instances on the same
// database file; concurrent registrations and logins through both succeed
// and the file stays intact.
func TestTwoProcessesShareOneSQLiteFile(t *testing.T) {
	testdb.SkipUnless(t, dialect.SQLite)
	dir := t.TempDir()
	env := []string{"JWT__SECRET=shared-secret-0123456789-abcdefghijklm", "PASSWORD__BCRYPT_COST=4"}
	// Both start at once: migrations must apply once.
	var ps [2]*proc
	var wg sync.WaitGroup
	for i := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); ps[i] = start(t, dir, env, "--dev") }()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	ctx := context.Background()
	const perProc = 15
	errs := make(chan error, 2*perProc)
	for i, p := range ps {
		for j := range perProc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				addr := fmt.Sprintf("u%d-%d@example.com", i, j)
				first, err := p.client.Register(ctx, &authpb.RegisterRequest{Username: "u", Email: addr, Password: "password123"})
				if err != nil {
					errs <- fmt.Errorf("register %s: %w", addr, err)
					return
				}
				// The same address through the other process is a sign-up
				// claim on the same (unverified) account.
				again, err := ps[1-i].client.Register(ctx, &authpb.RegisterRequest{Username: "u", Email: addr, Password: "password123"})
				if err != nil || again.GetUserId() != first.GetUserId() {
					errs <- fmt.Errorf("claim %s = %v, %v; want the account's id %s", addr, again, err, first.GetUserId())
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, p := range ps {
		p.stop(t)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "data", "authd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	var users, otps, mails, revisions int
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check = %q, %v", check, err)
	}
	db.QueryRow("SELECT count(*) FROM users").Scan(&users)
	db.QueryRow("SELECT count(*) FROM otp_requests").Scan(&otps)
	db.QueryRow("SELECT count(*) FROM outbox_messages").Scan(&mails)
	db.QueryRow("SELECT count(*) FROM atlas_schema_revisions").Scan(&revisions)
	if users != 2*perProc || otps != 2*users || mails != 2*users {
		t.Errorf("users=%d otp_requests=%d outbox=%d, want %d users with two codes and e-mails each", users, otps, mails, 2*perProc)
	}
	if files, _ := fs.Glob(migrations.SQLite(), "*.sql"); revisions != len(files) {
		t.Errorf("revision rows = %d, want %d", revisions, len(files))
	}
}

// TestConfigErrorsStopTheStart checks that outside development mode a
// missing or weak secret, or a missing SMTP host, stops authd with an error
// naming the variable.
func TestConfigErrorsStopTheStart(t *testing.T) {
	bin := buildAuthd(t)
	base := []string{"PATH=" + os.Getenv("PATH"), "DATABASE__URL=postgres://127.0.0.1:1/x"}
	valid := []string{"JWT__SECRET=0123456789abcdef0123456789abcdef", "SMTP__HOST=localhost", "SMTP__FROM=a@b.c"}
	tests := []struct {
		name  string
		extra []string
		want  string
	}{
		{"missing secret", []string{"SMTP__HOST=localhost", "SMTP__FROM=a@b.c"}, "JWT__SECRET"},
		{"short secret", []string{"JWT__SECRET=short", "SMTP__HOST=localhost", "SMTP__FROM=a@b.c"}, "JWT__SECRET must be at least 32 bytes"},
		{"missing SMTP host", []string{"JWT__SECRET=0123456789abcdef0123456789abcdef"}, "SMTP__HOST"},
		{"caller authentication required, none configured", slices.Concat(valid, []string{"GRPC__REQUIRE_CALLER_AUTH=true"}),
			"GRPC__REQUIRE_CALLER_AUTH=true needs GRPC__CLIENT_CA_FILE (mutual TLS) or GRPC__API_KEYS"},
		{"short API key", slices.Concat(valid, []string{"GRPC__API_KEYS=short"}), "GRPC__API_KEYS: entry 1: a key must be at least 32 bytes"},
		{"missing certificate file", slices.Concat(valid, []string{"GRPC__TLS_CERT_FILE=/nonexistent/tls.crt", "GRPC__TLS_KEY_FILE=/nonexistent/tls.key"}),
			"GRPC__TLS_CERT_FILE and GRPC__TLS_KEY_FILE: open /nonexistent/tls.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, "serve")
			cmd.Dir = t.TempDir()
			cmd.Env = append(append([]string{}, base...), tt.extra...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("authd started; output:\n%s", out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output %q lacks %q", out, tt.want)
			}
			if strings.Contains(string(out), "=short") {
				t.Errorf("output reveals the secret")
			}
		})
	}
}

// TestMigrateCommand runs `authd migrate plan|apply|status` on a fresh
// database of the suite's backend, with nothing configured but
// DATABASE__URL and DATA__DIR: no secret, no SMTP relay.
func TestMigrateCommand(t *testing.T) {
	bin := buildAuthd(t)
	env := []string{"PATH=" + os.Getenv("PATH"), "DATABASE__URL=" + testdb.NewURL(t), "DATA__DIR=" + t.TempDir()}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"migrate"}, args...)...)
		cmd.Dir = t.TempDir()
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("authd migrate %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	files, err := fs.Glob(migrations.For(testdb.Backend()), "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatal(files, err)
	}
	n := strconv.Itoa(len(files))
	if out := run("status"); !strings.Contains(out, "pending: "+n) {
		t.Errorf("status before:\n%s", out)
	}
	if out := run("plan"); !strings.Contains(out, "-- file: ") || !strings.Contains(out, "CREATE TABLE") {
		t.Errorf("plan:\n%s", out)
	}
	if out := run("status"); !strings.Contains(out, "pending: "+n) {
		t.Errorf("plan applied something:\n%s", out)
	}
	if out := run("apply"); !strings.Contains(out, "applied "+n+" migrations") {
		t.Errorf("apply:\n%s", out)
	}
	if out := run("status"); !strings.Contains(out, "pending: 0") || !strings.Contains(out, "applied: "+n) {
		t.Errorf("status after:\n%s", out)
	}
	if out := run("plan"); !strings.Contains(out, "no pending migrations") {
		t.Errorf("plan after:\n%s", out)
	}

	// DATA__DIR alone: the embedded SQLite file there.
	dir := t.TempDir()
	env = []string{"PATH=" + os.Getenv("PATH"), "DATA__DIR=" + dir}
	sqliteFiles, _ := fs.Glob(migrations.SQLite(), "*.sql")
	if out := run("status"); !strings.Contains(out, "pending: "+strconv.Itoa(len(sqliteFiles))) || !strings.Contains(out, filepath.Join(dir, "authd.db")) {
		t.Errorf("status on DATA__DIR's SQLite file:\n%s", out)
	}
}

// sqliteFiles are the SQLite files in a data directory while authd runs.
var sqliteFiles = []string{"data/authd.db", "data/authd.db-wal", "data/authd.db-shm"}

// wantPrivate checks that each of the SQLite files in dir has mode 0600.
func wantPrivate(t *testing.T, dir string) {
	t.Helper()
	for _, f := range sqliteFiles {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %04o, want 0600", f, fi.Mode().Perm())
		}
	}
}

// madePrivate returns the paths of the warnings that a database file was
// made private in logs.
func madePrivate(logs string) []string {
	var paths []string
	for _, line := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["level"] == "WARN" && strings.Contains(fmt.Sprint(m["msg"]), "database file was open to group or others") {
			paths = append(paths, fmt.Sprint(m["path"]))
		}
	}
	return paths
}

// TestSQLiteFilesArePrivate starts authd on its embedded SQLite file under
// the usual umask (new files readable by everyone), in development and in
// production mode: the database and its -wal and -shm files are 0600. Files
// left readable (here by a crash and a chmod) are made 0600 at the next
// start, each with a warning naming it.
func TestSQLiteFilesArePrivate(t *testing.T) {
	testdb.SkipUnless(t, dialect.SQLite)
	old := syscall.Umask(0o022) // authd inherits it
	t.Cleanup(func() { syscall.Umask(old) })
	mailSrv := smtptest.Start(t)
	production := []string{
		"JWT__SECRET=files-secret-0123456789-abcdefghijklmn",
		"OTP__SECRET=files-otp-secret-0123456789-abcdefghijk",
		"SMTP__HOST=" + mailSrv.Host,
		"SMTP__PORT=" + strconv.Itoa(mailSrv.Port),
		"SMTP__FROM=PlaceBrain <no-reply@placebrain.test>",
		"SMTP__TLS=none",
	}
	t.Run("development", func(t *testing.T) {
		dir := t.TempDir()
		p := start(t, dir, nil, "--dev")
		wantPrivate(t, dir)
		p.stop(t)
		if strings.Contains(p.logs.String(), "OTP__SECRET is not set") {
			t.Errorf("development mode warns about OTP__SECRET")
		}
	})
	t.Run("production", func(t *testing.T) {
		dir := t.TempDir()
		p := start(t, dir, production)
		wantPrivate(t, dir)
		if got := madePrivate(p.logs.String()); len(got) != 0 {
			t.Errorf("new files reported as made private: %v", got)
		}
		if strings.Contains(p.logs.String(), "OTP__SECRET is not set") {
			t.Errorf("OTP__SECRET warning with OTP__SECRET set")
		}
		// A crash leaves the -wal and -shm files; someone opens all three
		// to everyone.
		p.cmd.Process.Kill()
		<-p.exited
		for _, f := range sqliteFiles {
			if err := os.Chmod(filepath.Join(dir, f), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		p = start(t, dir, production)
		wantPrivate(t, dir)
		if diff := cmp.Diff(sqliteFiles, madePrivate(p.logs.String())); diff != "" {
			t.Errorf("files reported as made private (-want +got):\n%s", diff)
		}
		p.stop(t)
	})
}

// TestUsersImport imports a committed export of the platform's earlier
// service (testdata/python-users.jsonl: bcrypt hashes made by Python's
// bcrypt) into a database where an unverified account made in authd holds
// one of its addresses: the imported user signs in with its 6-character
// password and keeps its id, the unverified account is replaced, the
// duplicate address and the pbkdf2 hash are reported with their line
// numbers, a second run imports nothing; a dry run writes nothing; the
// export writes every user, 0600.
func TestUsersImport(t *testing.T) {
	dbURL := testdb.NewURL(t)
	bin := buildAuthd(t)
	dataDir := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "DATABASE__URL=" + dbURL, "DATA__DIR=" + dataDir}
	authd := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = t.TempDir()
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := authd("users", "import", "testdata/python-users.jsonl"); err == nil || !strings.Contains(out, "pending migrations") {
		t.Errorf("import before the migrations: %v\n%s", err, out)
	}
	mailSrv := smtptest.Start(t)
	p := start(t, t.TempDir(), []string{
		"DATABASE__URL=" + dbURL, "JWT__SECRET=e2e-secret-0123456789-abcdefghijklmnopq",
		"SMTP__HOST=" + mailSrv.Host, "SMTP__PORT=" + strconv.Itoa(mailSrv.Port),
		"SMTP__FROM=PlaceBrain <no-reply@placebrain.test>", "SMTP__TLS=none", "PASSWORD__BCRYPT_COST=4",
	})
	ctx := context.Background()
	squatter, err := p.client.Register(ctx, &authpb.RegisterRequest{Username: "squatter", Email: "Carol@example.com", Password: "squatter password"})
	if err != nil {
		t.Fatal(err)
	}
	fixture, err := filepath.Abs("testdata/python-users.jsonl")
	if err != nil {
		t.Fatal(err)
	}

	out, err := authd("users", "import", "--dry-run", fixture)
	if err != nil || !strings.Contains(out, "dry run: 1 imported, 1 replaced an unverified account, 0 already imported, 2 skipped") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if _, err := p.client.GetMe(ctx, &authpb.GetMeRequest{UserId: squatter.GetUserId()}); err != nil {
		t.Errorf("the dry run changed something: %v", err)
	}

	out, err = authd("users", "import", fixture)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	for _, want := range []string{
		"line 1: imported (id 7d3f6a2e-0b1c-4c8e-9a51-2f6e8d1b4c70)",
		`line 2: skipped (id "0a9e5c41-6f2d-4b7a-8e13-5c4d3b2a1f09"): the address is already on line 1`,
		`line 3: skipped (id "b6c1d2e3-4f5a-4b6c-8d7e-9f0a1b2c3d4e"): password_hash: scheme "pbkdf2-sha256" is not bcrypt`,
		"line 4: replaced (id e4f5a6b7-c8d9-4e0f-a1b2-c3d4e5f6a7b8)",
		"1 imported, 1 replaced an unverified account, 0 already imported, 2 skipped",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	// Alice signs in with the password Python hashed, and keeps her id.
	login, err := p.client.Login(ctx, &authpb.LoginRequest{Email: "alice@example.com", Password: "abc123"})
	if err != nil {
		t.Fatalf("imported user's login: %v\n%s", err, p.logs.String())
	}
	v, err := p.client.ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: login.GetAccessToken()})
	if err != nil || v.GetUserId() != "7d3f6a2e-0b1c-4c8e-9a51-2f6e8d1b4c70" || v.GetEmail() != "ALICE@EXAMPLE.COM" {
		t.Errorf("imported user's token: %v, %v", v, err)
	}
	// The squatter's unverified account is gone; Carol is the imported one.
	_, err = p.client.GetMe(ctx, &authpb.GetMeRequest{UserId: squatter.GetUserId()})
	if status.Code(err) != codes.NotFound {
		t.Errorf("the replaced account: %v", err)
	}
	if _, err := p.client.Login(ctx, &authpb.LoginRequest{Email: "carol@example.com", Password: "carol-pass-1"}); err != nil {
		t.Errorf("Carol's login: %v", err)
	}
	if _, err := p.client.Login(ctx, &authpb.LoginRequest{Email: "carol@example.com", Password: "squatter password"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the squatter's password: %v", err)
	}

	out, err = authd("users", "import", fixture)
	if err != nil || !strings.Contains(out, "0 imported, 0 replaced an unverified account, 2 already imported, 2 skipped") {
		t.Errorf("second run: %v\n%s", err, out)
	}

	export := filepath.Join(t.TempDir(), "users.jsonl")
	out, err = authd("users", "export", export)
	if err != nil || !strings.Contains(out, "2 users written") {
		t.Fatalf("export: %v\n%s", err, out)
	}
	fi, err := os.Stat(export)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("export file mode: %v, %v", fi, err)
	}
	b, _ := os.ReadFile(export)
	if lines := strings.Count(string(b), "\n"); lines != 2 || !strings.Contains(string(b), `"password_hash":"$2`) {
		t.Errorf("export:\n%s", b)
	}
	if _, err := authd("users", "export", export); err == nil {
		t.Errorf("export over an existing file succeeded")
	}
	p.stop(t)
}

// TestObservabilityEndToEnd runs the binary with the variables an operator
// sets: METRICS__ADDR serves /metrics, LOG__REQUESTS=info logs each RPC
// with the caller's x-request-id, and OTEL_TRACES_EXPORTER=console (the
// standard variables, through autoexport) exports the RPC's spans, flushed
// at SIGTERM, whose trace id the request's log lines carry.
func TestObservabilityEndToEnd(t *testing.T) {
	metricsAddr := freeAddr(t)
	p := start(t, t.TempDir(), []string{
		"DATABASE__URL=" + testdb.NewURL(t),
		"PASSWORD__BCRYPT_COST=4",
		"METRICS__ADDR=" + metricsAddr,
		"LOG__REQUESTS=info",
		"OTEL_TRACES_EXPORTER=console",
	}, "--dev")
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "e2e-request-1")
	var header metadata.MD
	reg, err := p.client.Register(ctx, &authpb.RegisterRequest{Username: "obs", Email: "obs@example.com", Password: "obs password"},
		grpc.Header(&header))
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if got := header.Get("x-request-id"); len(got) != 1 || got[0] != "e2e-request-1" {
		t.Errorf("x-request-id echoed = %q", got)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	want := `grpc_server_handled_total{grpc_code="OK",grpc_method="Register",grpc_service="auth.AuthService",grpc_type="unary"} 1`
	if !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s", want)
	}
	p.stop(t)

	logs := p.logs.String()
	var line map[string]any
	for l := range strings.SplitSeq(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "rpc" && m["request_id"] == "e2e-request-1" {
			line = m
		}
	}
	if line == nil || line["method"] != "/auth.AuthService/Register" || line["user_id"] != reg.GetUserId() || line["code"] != "OK" {
		t.Fatalf("request log line = %v\n%s", line, logs)
	}
	// The console exporter writes each span as a JSON object on stdout.
	traceID := ""
	for l := range strings.SplitSeq(logs, "\n") {
		var span struct {
			Name        string
			SpanContext struct{ TraceID string }
		}
		if json.Unmarshal([]byte(l), &span) == nil && span.Name == "auth.AuthService/Register" {
			traceID = span.SpanContext.TraceID
		}
	}
	if traceID == "" || line["trace_id"] != traceID {
		t.Errorf("Register span's trace id %q, request log line's %v\n%s", traceID, line["trace_id"], logs)
	}
}
