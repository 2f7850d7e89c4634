// Package authtest runs the service as production assembles it
// (server.New and App.Serve) for a test: on its own database of the suite's
// backend (testdb), configured through the real configuration loader, with
// an SMTP server in the test process, an injected clock, and a real gRPC
// connection to it.
package authtest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/config"
	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/testutil/smtptest"
	"github.com/placebrain/auth/internal/testutil/testdb"
	"github.com/placebrain/auth/proto/authpb"
)

// Secret is the JWT__SECRET of every test service.
const Secret = "test-secret-0123456789-abcdefghijklmnop"

// Clock is a settable clock shared by the service, its tokens and its
// outbox.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to now, to the millisecond (what both
// databases keep).
func NewClock() *Clock { return &Clock{t: time.Now().UTC().Truncate(time.Millisecond)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Log is a log sink safe for concurrent writes.
type Log struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything logged so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Env is one running service.
type Env struct {
	App     *server.App
	Service *auth.Service
	DB      *store.DB
	Config  *config.Config
	// URL is the database's DATABASE__URL.
	URL   string
	Clock *Clock
	// Addr is the address the service listens on.
	Addr   string
	Conn   *grpc.ClientConn
	Client authpb.AuthServiceClient
	// SMTP is the relay the service sends to; nil while SMTPDown holds.
	SMTP     *smtptest.Server
	SMTPPort int
	Log      *Log

	read *readMail
	stop func() error
}

// readMail counts the e-mails to each address that Code has read; the
// instances of one deployment (SameDatabaseAs) share it with their relay.
type readMail struct {
	mu   sync.Mutex
	seen map[string]int
}

// Option varies a test service.
type Option func(*settings)

type settings struct {
	vars     map[string]string
	smtpDown bool
	shared   *Env
	opts     server.Options
	dial     []grpc.DialOption
	rewrite  func(string) string
}

// Set sets configuration variables (name, value, name, value, ...), e.g.
// Set("LOGIN__MAX_FAILURES", "5").
func Set(kv ...string) Option {
	return func(s *settings) {
		for i := 0; i+1 < len(kv); i += 2 {
			s.vars[kv[i]] = kv[i+1]
		}
	}
}

// SMTPDown starts the service with no SMTP server listening on its relay's
// port; StartSMTP starts one there.
func SMTPDown() Option { return func(s *settings) { s.smtpDown = true } }

// SameDatabaseAs makes the service a second instance of other's deployment:
// on its database, clock and SMTP relay.
func SameDatabaseAs(other *Env) Option { return func(s *settings) { s.shared = other } }

// ServerOptions sets the assembly's options besides the clock, the log and
// the listener.
func ServerOptions(o server.Options) Option { return func(s *settings) { s.opts = o } }

// RewriteURL makes the service open f(URL) instead of its database's URL:
// the same database reached another way (through a tcpproxy). Env.URL
// stays the direct one.
func RewriteURL(f func(url string) string) Option { return func(s *settings) { s.rewrite = f } }

// Dial sets the options of the env's connection (Conn, Client), e.g. TLS
// credentials; without it the connection is plain text.
func Dial(opts ...grpc.DialOption) Option { return func(s *settings) { s.dial = opts } }

// Defaults are the configuration every test service starts from, besides
// the database and the SMTP relay: bcrypt at its minimum cost and a quick
// outbox poll; everything else is the service's default.
var Defaults = map[string]string{
	"JWT__SECRET":                  Secret,
	"PASSWORD__BCRYPT_COST":        "4",
	"OUTBOX__POLL_INTERVAL_MILLIS": "50",
	"SMTP__TLS":                    "none",
	"SMTP__FROM":                   "PlaceBrain <no-reply@placebrain.test>",
	"SMTP__TIMEOUT_SECONDS":        "5",
	"LOG__LEVEL":                   "debug",
}

// New starts a service for t, stopped when the test ends.
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	s := settings{vars: maps.Clone(Defaults)}
	for _, o := range opts {
		o(&s)
	}
	e := &Env{Log: &Log{}}
	switch {
	case s.shared != nil:
		o := s.shared
		e.URL, e.Clock, e.SMTP, e.SMTPPort, e.read = o.URL, o.Clock, o.SMTP, o.SMTPPort, o.read
	case s.smtpDown:
		e.URL, e.Clock, e.read = testdb.URL(t), NewClock(), &readMail{seen: map[string]int{}}
		e.SMTPPort = smtptest.FreePort(t)
	default:
		e.URL, e.Clock, e.read = testdb.URL(t), NewClock(), &readMail{seen: map[string]int{}}
		e.SMTP = smtptest.Start(t)
		e.SMTPPort = e.SMTP.Port
	}
	vars := maps.Clone(s.vars)
	vars["DATABASE__URL"] = e.URL
	if s.rewrite != nil {
		vars["DATABASE__URL"] = s.rewrite(e.URL)
	}
	vars["SMTP__HOST"] = "127.0.0.1"
	vars["SMTP__PORT"] = strconv.Itoa(e.SMTPPort)
	ctx := context.Background()
	c, err := config.Load(ctx, envconfig.MapLookuper(vars), config.Options{})
	if err != nil {
		t.Fatalf("authtest: %v", err)
	}
	e.Config = c
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := s.opts
	o.Log = slog.New(slog.NewJSONHandler(e.Log, &slog.HandlerOptions{Level: c.Log.Level}))
	o.Now, o.Listener, o.PlainHashing = e.Clock.Now, lis, true
	app, err := server.New(ctx, c, o)
	if err != nil {
		lis.Close()
		t.Fatalf("authtest: %v", err)
	}
	e.App, e.Service, e.DB = app, app.Service, app.DB
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Serve(runCtx) }()
	var once sync.Once
	var serveErr error
	e.stop = func() error {
		once.Do(func() { e.checkChains(t); stop(); serveErr = <-done })
		return serveErr
	}
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Errorf("authtest: serve: %v", err)
		}
	})
	e.Addr = lis.Addr().String()
	dial := s.dial
	if dial == nil {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(e.Addr, dial...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.Conn, e.Client = conn, authpb.NewAuthServiceClient(conn)
	return e
}

// forkedFamilies finds the live token families with more than one unused
// refresh token: a family is a chain, never a tree.
const forkedFamilies = `SELECT t.family_id, COUNT(*) FROM refresh_tokens t
JOIN token_families f ON f.id = t.family_id
WHERE f.revoked_at IS NULL AND t.used_at IS NULL
GROUP BY t.family_id HAVING COUNT(*) > 1`

// checkChains fails t if any live token family of the env's database has
// forked; it runs whenever an env stops, at the latest when its test ends.
func (e *Env) checkChains(t testing.TB) {
	rows, err := e.DB.SQL.QueryContext(context.Background(), forkedFamilies)
	if err != nil && strings.Contains(err.Error(), "database is closed") {
		return // the test closed it (an outage)
	}
	if err != nil {
		t.Errorf("authtest: chain check: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var family []byte
		var n int
		if err := rows.Scan(&family, &n); err != nil {
			t.Errorf("authtest: chain check: %v", err)
			return
		}
		t.Errorf("authtest: live token family %x has %d unused refresh tokens, want at most 1", family, n)
	}
	if err := rows.Err(); err != nil {
		t.Errorf("authtest: chain check: %v", err)
	}
}

// Stop stops the service as a stop signal would, before the test ends:
// for a test that starts another instance on its database afterwards
// (SameDatabaseAs).
func (e *Env) Stop(t testing.TB) {
	t.Helper()
	if err := e.stop(); err != nil {
		t.Errorf("authtest: serve: %v", err)
	}
}

// StartSMTP starts the SMTP relay on the service's relay port (after
// SMTPDown).
func (e *Env) StartSMTP(t testing.TB) {
	t.Helper()
	e.SMTP = smtptest.StartOn(t, e.SMTPPort)
}

var codeRE = regexp.MustCompile(`\b(\d{6})\b`)

// Code waits for the next e-mail to addr that the test has not read yet
// (sent by the service's outbox dispatcher, as in production) and returns
// the code in the newest e-mail to addr.
func (e *Env) Code(t testing.TB, addr string) string {
	t.Helper()
	e.read.mu.Lock()
	n := e.read.seen[addr] + 1
	e.read.mu.Unlock()
	msg := e.SMTP.WaitForCount(t, addr, n, 10*time.Second)
	e.read.mu.Lock()
	e.read.seen[addr] = len(e.SMTP.To(addr))
	e.read.mu.Unlock()
	m := codeRE.FindStringSubmatch(string(msg.Email.Text))
	if m == nil {
		t.Fatalf("authtest: no code in e-mail text: %q", msg.Email.Text)
	}
	if !bytes.Contains(msg.Email.HTML, []byte(m[1])) {
		t.Fatalf("authtest: HTML body lacks the code")
	}
	return m[1]
}

// Register registers a user through the service and returns its id.
func (e *Env) Register(t testing.TB, username, addr, pw string) string {
	t.Helper()
	id, err := e.Service.Register(context.Background(), username, addr, pw)
	if err != nil {
		t.Fatalf("authtest: Register(%s): %v", addr, err)
	}
	return id.String()
}

// VerifiedUser registers a user, verifies it with the code from its
// e-mail, and returns its id.
func (e *Env) VerifiedUser(t testing.TB, username, addr, pw string) string {
	t.Helper()
	id := e.Register(t, username, addr, pw)
	if err := e.Service.VerifyOTP(context.Background(), addr, e.Code(t, addr)); err != nil {
		t.Fatalf("authtest: VerifyOTP(%s): %v", addr, err)
	}
	return id
}

// Login logs in through the service and fails the test on error.
func (e *Env) Login(t testing.TB, addr, pw string) auth.TokenPair {
	t.Helper()
	p, err := e.Service.Login(context.Background(), addr, pw)
	if err != nil {
		t.Fatalf("authtest: Login(%s): %v", addr, err)
	}
	return p
}

// String names the env's backend and database for failure messages.
func (e *Env) String() string { return fmt.Sprintf("%s (%s)", e.DB.Dialect, e.DB.Location) }
