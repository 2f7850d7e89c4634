package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	_ "github.com/placebrain/auth/internal/store" // registers the pgx driver
	"github.com/placebrain/auth/internal/testutil/smtptest"
	"github.com/placebrain/auth/proto/authpb"
)

const (
	faultSecret   = "authfaults-secret-0123456789-abcdefghij"
	faultOTPKey   = "authfaults-otp-secret-0123456789-abcdefg"
	faultPassword = "faults password 123"
)

// harness is one scenario's world: a fresh PostgreSQL database reached by
// authd through a TCP proxy the suite controls, an SMTP server it can
// stop, and authd processes it can kill.
type harness struct {
	name    string
	dir     string // logs and data directories
	dbName  string
	admin   *sql.DB // the PostgreSQL server, direct
	db      *sql.DB // the scenario's database, direct (not through the proxy)
	proxy   *toxiproxy.Proxy
	pgAddr  string // the proxy's address
	smtp    *smtpRelay
	relays  []*smtpRelay // smtp and any other relay of the scenario
	authds  []*authd
	extra   []string // extra authd environment for this scenario
	started time.Time
}

// newHarness creates the scenario's database and starts the proxy and the
// SMTP server (authd is started by startAuthd).
func newHarness(ctx context.Context, o options, name string, extra ...string) (*harness, error) {
	h := &harness{name: name, extra: extra, started: time.Now()}
	var err error
	if h.dir, err = os.MkdirTemp("", "authfaults-"+name); err != nil {
		return nil, err
	}
	if h.admin, err = sql.Open("pgx", o.pgURL); err != nil {
		return nil, err
	}
	h.dbName = "authfaults_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	if _, err := h.admin.ExecContext(ctx, "CREATE DATABASE "+h.dbName); err != nil {
		h.admin.Close()
		return nil, fmt.Errorf("PostgreSQL at -pg: %w", err)
	}
	pg, err := url.Parse(o.pgURL)
	if err != nil {
		return nil, err
	}
	pg.Path = "/" + h.dbName
	if h.db, err = sql.Open("pgx", pg.String()); err != nil {
		h.close()
		return nil, err
	}
	// authd's only way to the database.
	if h.proxy, err = startProxy(pg.Host); err != nil {
		h.close()
		return nil, err
	}
	h.pgAddr = h.proxy.Listen
	if h.smtp, err = h.newRelay(); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// startProxy starts an embedded proxy (github.com/Shopify/toxiproxy/v2)
// on a free loopback port to upstream (host:port).
func startProxy(upstream string) (*toxiproxy.Proxy, error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "postgres", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return p, nil
}

// authdURL is the DATABASE__URL authd uses: the proxy's address.
func (h *harness) authdURL() string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", h.pgAddr, h.dbName)
}

func (h *harness) close() {
	for _, a := range h.authds {
		a.kill()
	}
	if h.proxy != nil {
		h.proxy.Stop()
	}
	for _, r := range h.relays {
		r.stop()
	}
	if h.db != nil {
		h.db.Close()
	}
	if h.admin != nil && h.dbName != "" {
		h.admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+h.dbName+" WITH (FORCE)")
		h.admin.Close()
	}
	os.RemoveAll(h.dir)
}

// refuse disables the proxy: open connections are closed and new ones
// refused, as when the database host is down.
func (h *harness) refuse() { h.proxy.Stop() }

// restore enables the proxy again and removes every toxic.
func (h *harness) restore() error {
	h.proxy.Toxics.ResetToxics(context.Background())
	if h.proxy.Enabled {
		return nil
	}
	// The proxy listens on the same address again.
	return h.proxy.Start()
}

// blackhole makes the link accept connections and forward nothing either
// way (toxiproxy's timeout toxic with no timeout): open connections and new
// ones hang, as behind a dropped route.
func (h *harness) blackhole() error {
	for _, dir := range []string{"upstream", "downstream"} {
		js := fmt.Sprintf(`{"name":"blackhole_%s","type":"timeout","stream":%q,"attributes":{"timeout":0}}`, dir, dir)
		if _, err := h.proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			return err
		}
	}
	return nil
}

// newRelay starts an SMTP server of the scenario on a free port.
func (h *harness) newRelay() (*smtpRelay, error) {
	r, err := startRelay(0)
	if err == nil {
		h.relays = append(h.relays, r)
	}
	return r, err
}

// messages returns what every relay of the scenario received.
func (h *harness) messages() []smtptest.Message {
	var out []smtptest.Message
	for _, r := range h.relays {
		out = append(out, r.messages()...)
	}
	return out
}

// authd is one authd process.
type authd struct {
	name    string
	addr    string
	metrics string
	cmd     *exec.Cmd
	log     *os.File
	conn    *grpc.ClientConn
	client  authpb.AuthServiceClient
	health  healthpb.HealthClient
	exited  chan struct{}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startAuthd starts the built authd (production mode: SMTP without TLS to
// the suite's relay, reflection and metrics on) and waits until health
// says SERVING. addr "" picks a free port; a restarted instance passes its
// old one. env is added to (and overrides) the scenario's environment.
func (h *harness) startAuthd(ctx context.Context, o options, name, addr string, env ...string) (*authd, error) {
	a := &authd{name: name, addr: addr, exited: make(chan struct{})}
	var err error
	if a.addr == "" {
		if a.addr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	if a.metrics, err = freeAddr(); err != nil {
		return nil, err
	}
	dataDir := filepath.Join(h.dir, name+"-data")
	if a.log, err = os.OpenFile(filepath.Join(h.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return nil, err
	}
	a.cmd = exec.Command(o.authd, "serve")
	a.cmd.Env = append(os.Environ(),
		"DATABASE__URL="+h.authdURL(),
		"JWT__SECRET="+faultSecret,
		"OTP__SECRET="+faultOTPKey,
		"GRPC__LISTEN_ADDR="+a.addr,
		"GRPC__REFLECTION=true",
		"METRICS__ADDR="+a.metrics,
		"LOG__LEVEL=warn",
		"DATA__DIR="+dataDir,
		"SMTP__HOST="+h.smtp.host,
		"SMTP__PORT="+strconv.Itoa(h.smtp.port),
		"SMTP__FROM=PlaceBrain <no-reply@faults.example.com>",
		"SMTP__TLS=none",
		// The suite measures faults, not hashing: the cheapest cost
		// leaves the shared CPUs to authd's other work.
		"PASSWORD__BCRYPT_COST=4",
	)
	a.cmd.Env = append(append(a.cmd.Env, h.extra...), env...)
	a.cmd.Stderr = a.log
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { a.cmd.Wait(); close(a.exited) }()
	h.authds = append(h.authds, a)
	// Reconnect quickly (grpc-go waits 1 s after a refused first attempt),
	// so the time to SERVING is authd's, not the backoff's.
	fast := grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: time.Second,
		Backoff: backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.2, MaxDelay: 100 * time.Millisecond}})
	if a.conn, err = grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), fast); err != nil {
		return nil, err
	}
	a.client, a.health = authpb.NewAuthServiceClient(a.conn), healthpb.NewHealthClient(a.conn)
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		r, err := a.health.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return a, nil
		}
		select {
		case <-a.exited:
			return nil, fmt.Errorf("authd %s exited at start (log %s): %s", name, a.log.Name(), tail(a.log.Name()))
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("authd %s not SERVING after 60 s: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tail returns the last lines of a log file.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// kill sends SIGKILL (kill -9) and waits for the process to be gone.
func (a *authd) kill() {
	if a.cmd.Process != nil {
		a.cmd.Process.Signal(syscall.SIGKILL)
		<-a.exited
	}
	if a.conn != nil {
		a.conn.Close()
	}
	a.log.Close()
}

func (a *authd) alive() bool {
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

// memory is authd's memory at one moment: the heap in use as its metrics
// endpoint reports it (go_memstats_heap_inuse_bytes) and its resident set
// from /proc (VmRSS), in bytes; 0 when unknown.
type memory struct{ heap, rss int64 }

func (a *authd) memory() memory {
	var m memory
	if v, ok := procStatus(a.cmd.Process.Pid, "VmRSS:"); ok {
		m.rss = v
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			m.heap = int64(f)
		}
	}
	return m
}

// metricLines returns the sample lines of authd's /metrics that start
// with name and contain every one of the label matchers, e.g.
// grpc_code="ResourceExhausted".
func (a *authd) metricLines(name string, labels ...string) []string {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
next:
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		for _, m := range labels {
			if !strings.Contains(l, m) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// metricSum adds the values of metricLines' samples.
func (a *authd) metricSum(name string, labels ...string) float64 {
	var sum float64
	for _, l := range a.metricLines(name, labels...) {
		f := strings.Fields(l)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

// families returns the metric families a scrape of authd's /metrics
// shows (its "# TYPE" lines).
func (a *authd) families() (map[string]bool, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = true
		}
	}
	return out, sc.Err()
}

// procStatus reads one kB field of /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte(field)); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(v)), " kB"), 10, 64)
			return kb * 1024, err == nil
		}
	}
	return 0, false
}

// smtpRelay is the suite's SMTP server (internal/testutil/smtptest, on
// github.com/emersion/go-smtp) on a fixed port, stopped and started again
// on the same port, keeping every message received.
type smtpRelay struct {
	host string
	port int

	mu    sync.Mutex
	cur   *smtptest.Server
	older []smtptest.Message // received by servers already stopped
	delay time.Duration
}

func startRelay(port int) (*smtpRelay, error) {
	s, err := smtptest.Listen(port)
	if err != nil {
		return nil, fmt.Errorf("SMTP server: %w", err)
	}
	return &smtpRelay{host: s.Host, port: s.Port, cur: s}, nil
}

// stop closes the server: connections are refused, sessions cut.
func (r *smtpRelay) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil {
		return
	}
	r.cur.Close()
	r.older = append(r.older, r.cur.Messages()...)
	r.cur = nil
}

// start listens again on the same port.
func (r *smtpRelay) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil {
		return nil
	}
	var err error
	for range 50 { // the port may linger a moment after the close
		if r.cur, err = smtptest.Listen(r.port); err == nil {
			r.cur.SetDelay(r.delay)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("SMTP server: restart on port %d: %w", r.port, err)
}

// setDelay makes the relay accept each message d after its data arrived.
func (r *smtpRelay) setDelay(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delay = d
	if r.cur != nil {
		r.cur.SetDelay(d)
	}
}

// messages returns every message received so far, by any of the servers.
func (r *smtpRelay) messages() []smtptest.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]smtptest.Message(nil), r.older...)
	if r.cur != nil {
		out = append(out, r.cur.Messages()...)
	}
	return out
}

// inFlight is how many messages the relay is receiving or holding now.
func (r *smtpRelay) inFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil {
		return 0
	}
	return r.cur.InFlight()
}
