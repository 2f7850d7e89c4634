package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/placebrain/auth/internal/testutil/pgtest"
	"github.com/placebrain/auth/internal/testutil/smtptest"
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
			buildErr = err
			t.Logf("%s", out)
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

// TestEndToEnd builds authd, starts it on a fresh database (migrating it
// itself) with an SMTP server in the test, and runs the user journey over
// gRPC, then stops it with SIGTERM.
func TestEndToEnd(t *testing.T) {
	bin := buildAuthd(t)
	dbURL := pgtest.NewEmptyDatabase(t)
	// Existing deployments give the SQLAlchemy form of the URL.
	dbURL = strings.Replace(dbURL, "postgres://", "postgresql+asyncpg://", 1)
	mailSrv := smtptest.Start(t)
	addr := freeAddr(t)
	const password = "e2e password 123"

	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"DATABASE__URL="+dbURL,
		"JWT__SECRET=e2e-secret-0123456789-abcdefghijklmnopq",
		"SMTP__HOST="+mailSrv.Host,
		"SMTP__PORT="+strconv.Itoa(mailSrv.Port),
		"SMTP__FROM=PlaceBrain <no-reply@placebrain.test>",
		"SMTP__TLS=none",
		"GRPC__LISTEN_ADDR="+addr,
		"PASSWORD__BCRYPT_COST=4",
		"OUTBOX__POLL_INTERVAL_MILLIS=100",
	)
	var logs lockedBuffer
	cmd.Stderr = &logs
	cmd.Stdout = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()

	// Health reports SERVING once the database is migrated.
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "auth.AuthService"})
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("authd exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not SERVING within 60s: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	c := authpb.NewAuthServiceClient(conn)
	reg, err := c.Register(ctx, &authpb.RegisterRequest{Username: "Eve", Email: "Eve@Example.com", Password: password})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	// The gateway calls SendOtp after Register and ignores its failure.
	_, err = c.SendOtp(ctx, &authpb.SendOtpRequest{Email: "eve@example.com"})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("SendOtp right after Register: %v, want RESOURCE_EXHAUSTED", err)
	}
	msg := mailSrv.WaitFor(t, "Eve@Example.com", 20*time.Second)
	code := regexp.MustCompile(`\b\d{6}\b`).FindString(string(msg.Email.Text))
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

	// SIGTERM stops it cleanly.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("authd did not stop after SIGTERM\n%s", logs.String())
	}

	// Logs are JSON lines and hold no secrets or addresses.
	out2 := logs.String()
	for _, line := range strings.Split(strings.TrimSpace(out2), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %q", line)
		}
	}
	for _, secret := range []string{password, code, login.GetRefreshToken(), login.GetAccessToken(), "Eve@Example.com", "eve@example.com"} {
		if strings.Contains(out2, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
	if !strings.Contains(out2, `"stopped"`) {
		t.Errorf("no clean-stop log line:\n%s", out2)
	}
}

// TestConfigErrorsStopTheStart checks that a missing or weak secret stops
// authd with an error naming the variable.
func TestConfigErrorsStopTheStart(t *testing.T) {
	bin := buildAuthd(t)
	base := []string{"PATH=" + os.Getenv("PATH"), "DATABASE__URL=postgres://127.0.0.1:1/x", "SMTP__HOST=localhost", "SMTP__FROM=a@b.c"}
	tests := []struct {
		name, extra, want string
	}{
		{"missing secret", "", "JWT__SECRET"},
		{"short secret", "JWT__SECRET=short", "JWT__SECRET must be at least 32 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, "serve")
			cmd.Env = append(append([]string{}, base...), tt.extra)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("authd started; output:\n%s", out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output %q lacks %q", out, tt.want)
			}
			if strings.Contains(string(out), "short") && tt.extra != "" && strings.Contains(string(out), "=short") {
				t.Errorf("output reveals the secret")
			}
		})
	}
}
