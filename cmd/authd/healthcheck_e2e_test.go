package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/placebrain/auth/internal/testutil/certtest"
	"github.com/placebrain/auth/internal/testutil/smtptest"
	"github.com/placebrain/auth/internal/testutil/testdb"
)

// healthcheck runs `authd healthcheck args...` with env and returns its
// output and whether it exited 0.
func healthcheck(t *testing.T, env []string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(buildAuthd(t), append([]string{"healthcheck"}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	out, err := cmd.CombinedOutput()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatal(err)
	}
	return string(out), err == nil
}

// serveEnv is what `authd serve` needs besides the address.
func serveEnv(t *testing.T) []string {
	mailSrv := smtptest.Start(t)
	return []string{
		"DATABASE__URL=" + testdb.NewURL(t),
		"JWT__SECRET=e2e-secret-0123456789-abcdefghijklmnopq",
		"SMTP__HOST=" + mailSrv.Host,
		"SMTP__PORT=" + strconv.Itoa(mailSrv.Port),
		"SMTP__FROM=PlaceBrain <no-reply@placebrain.test>",
		"SMTP__TLS=none",
	}
}

// listenAddr is the GRPC__LISTEN_ADDR p was started with.
func listenAddr(p *proc) string {
	for _, kv := range p.cmd.Env {
		if v, ok := strings.CutPrefix(kv, "GRPC__LISTEN_ADDR="); ok {
			return v
		}
	}
	return ""
}

// `authd healthcheck` exits 0 while the local authd is SERVING (for the
// server and for AuthService), and not when nothing answers.
func TestHealthcheckCommand(t *testing.T) {
	p := start(t, t.TempDir(), serveEnv(t))
	addr := listenAddr(p)
	// A listen address without a host is reached on loopback.
	_, port, _ := strings.Cut(addr, ":")
	for _, env := range [][]string{{"GRPC__LISTEN_ADDR=" + addr}, {"GRPC__LISTEN_ADDR=:" + port}, {"GRPC__LISTEN_ADDR=0.0.0.0:" + port}} {
		if out, ok := healthcheck(t, env); !ok || strings.TrimSpace(out) != "SERVING" {
			t.Errorf("healthcheck %v: ok=%v, output %q", env, ok, out)
		}
	}
	if out, ok := healthcheck(t, []string{"GRPC__LISTEN_ADDR=" + addr}, "--service", "auth.AuthService"); !ok {
		t.Errorf("healthcheck --service auth.AuthService: %q", out)
	}
	if out, ok := healthcheck(t, []string{"GRPC__LISTEN_ADDR=" + addr}, "--service", "no.such.Service"); ok {
		t.Errorf("healthcheck of an unknown service succeeded: %q", out)
	}
	p.stop(t)
	if out, ok := healthcheck(t, []string{"GRPC__LISTEN_ADDR=" + addr}, "--timeout", "1s"); ok {
		t.Errorf("healthcheck with authd stopped succeeded: %q", out)
	}
	if out, ok := healthcheck(t, nil, "extra"); ok || !strings.Contains(out, "usage") {
		t.Errorf("healthcheck with a stray argument: ok=%v, %q", ok, out)
	}
}

// With GRPC__TLS_CERT_FILE the check speaks TLS and accepts only the
// server's own certificate.
func TestHealthcheckTLS(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "authd test CA")
	leaf := ca.Server(t, nil)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	certtest.WriteFile(t, certFile, leaf.CertPEM)
	certtest.WriteFile(t, keyFile, leaf.KeyPEM)
	other := filepath.Join(dir, "other.crt")
	certtest.WriteFile(t, other, ca.Server(t, nil).CertPEM)

	addr := freeAddr(t)
	tlsEnv := []string{"GRPC__LISTEN_ADDR=" + addr, "GRPC__TLS_CERT_FILE=" + certFile, "GRPC__TLS_KEY_FILE=" + keyFile}
	cmd := exec.Command(buildAuthd(t), "serve")
	cmd.Dir = dir
	cmd.Env = append(append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, serveEnv(t)...), tlsEnv...)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		out, ok := healthcheck(t, tlsEnv, "--timeout", "2s")
		if ok {
			break
		}
		if i == 60 {
			t.Fatalf("healthcheck over TLS never succeeded: %s\n%s", out, logs.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
	pinned := []string{"GRPC__LISTEN_ADDR=" + addr, "GRPC__TLS_CERT_FILE=" + other, "GRPC__TLS_KEY_FILE=" + keyFile}
	if out, ok := healthcheck(t, pinned, "--timeout", "2s"); ok || !strings.Contains(out, "not the one in GRPC__TLS_CERT_FILE") {
		t.Errorf("healthcheck against a certificate other than GRPC__TLS_CERT_FILE's: ok=%v, %q", ok, out)
	}
	if out, ok := healthcheck(t, []string{"GRPC__LISTEN_ADDR=" + addr}, "--timeout", "1s"); ok {
		t.Errorf("plain-text healthcheck of a TLS server succeeded: %q", out)
	}
}
