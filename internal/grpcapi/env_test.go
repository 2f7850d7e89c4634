package grpcapi_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/grpcapi"
	"github.com/placebrain/auth/internal/mail"
	"github.com/placebrain/auth/internal/otp"
	"github.com/placebrain/auth/internal/password"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/testutil/smtptest"
	"github.com/placebrain/auth/internal/testutil/testdb"
	"github.com/placebrain/auth/internal/token"
	"github.com/placebrain/auth/proto/authpb"
)

var testSecret = []byte("test-secret-0123456789-abcdefghijklmnop")

const (
	otpTTL         = 10 * time.Minute
	otpCooldown    = 60 * time.Second
	otpMaxAttempts = 5
	otpDailyLimit  = 10
	refreshGrace   = 10 * time.Second
	loginMaxFails  = 5
	loginWindow    = 15 * time.Minute
	loginLockout   = 15 * time.Minute
	refreshTTL     = 30 * 24 * time.Hour
	accessTTL      = 15 * time.Minute
)

// clock is a settable clock shared by the service, tokens and dispatcher.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is one service on its own database, served over a real gRPC
// connection, with an SMTP server in the test process.
type env struct {
	store      *store.DB
	svc        *auth.Service
	client     authpb.AuthServiceClient
	conn       *grpc.ClientConn
	db         *ent.Client
	clock      *clock
	smtp       *smtptest.Server
	smtpPort   int
	dispatcher *mail.Dispatcher
	log        *syncBuffer
	closeDB    func() error
}

type envOption func(*envConfig)

type envConfig struct {
	smtpDown bool      // no SMTP server listens at first
	db       *store.DB // share another env's database (a second instance)
	clock    *clock    // share another env's clock
	cost     int       // bcrypt cost (default bcrypt.MinCost)
	grace    *time.Duration
}

// withBcryptCost sets the bcrypt cost (benchmarks use the default, 12).
func withBcryptCost(cost int) envOption { return func(c *envConfig) { c.cost = cost } }

// withRefreshGrace sets the refresh token reuse grace window (default
// refreshGrace).
func withRefreshGrace(d time.Duration) envOption { return func(c *envConfig) { c.grace = &d } }

func withSMTPDown() envOption { return func(c *envConfig) { c.smtpDown = true } }

// sameDatabaseAs makes the env a second instance of the service on other's
// database and clock.
func sameDatabaseAs(other *env) envOption {
	return func(c *envConfig) { c.db, c.clock = other.store, other.clock }
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	cfg := envConfig{cost: bcrypt.MinCost}
	for _, o := range opts {
		o(&cfg)
	}
	grace := refreshGrace
	if cfg.grace != nil {
		grace = *cfg.grace
	}
	db := cfg.db
	if db == nil {
		db = testdb.Open(t)
	}
	clk := cfg.clock
	if clk == nil {
		clk = &clock{t: time.Now().UTC().Truncate(time.Millisecond)}
	}
	client := db.Ent
	e := &env{db: client, store: db, clock: clk, log: &syncBuffer{}, closeDB: db.Close}
	if cfg.smtpDown {
		e.smtpPort = smtptest.FreePort(t)
	} else {
		e.smtp = smtptest.Start(t)
		e.smtpPort = e.smtp.Port
	}
	log := slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	access, err := token.NewIssuer(testSecret, "placebrain-auth", accessTTL, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.NewHasher(cfg.cost)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := otp.NewKeyer(nil, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	sender, err := mail.NewSMTPSender(mail.SMTPConfig{
		Host: "127.0.0.1", Port: e.smtpPort, From: "PlaceBrain <no-reply@placebrain.test>", TLS: mail.TLSNone, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.dispatcher = mail.NewDispatcher(client, sender, mail.DispatcherOptions{Now: e.clock.Now, Log: log, MaxAttempts: 3, RetryBase: 5 * time.Second, RetryMax: time.Minute})
	svc := auth.New(db, auth.Options{
		AccessTokens:      access,
		Passwords:         hasher,
		OTPKeys:           keys,
		RefreshTokenTTL:   refreshTTL,
		OTPTTL:            otpTTL,
		OTPMaxAttempts:    otpMaxAttempts,
		OTPCooldown:       otpCooldown,
		OTPDailyLimit:     otpDailyLimit,
		RefreshReuseGrace: grace,
		Login: auth.LoginPolicy{MaxFailures: loginMaxFails, Window: loginWindow, Lockout: loginLockout,
			Key: []byte("login-throttle-key-0123456789abcdef")},
		AuditRetention: 90 * 24 * time.Hour,
		Now:            e.clock.Now,
		Log:            log,
	})
	e.svc = svc
	gs := grpc.NewServer(grpcapi.ServerOptions(log)...)
	grpcapi.Register(gs, svc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.conn = conn
	e.client = authpb.NewAuthServiceClient(conn)
	return e
}

var codeRE = regexp.MustCompile(`\b(\d{6})\b`)

// mailCode delivers the outbox and returns the code in the newest e-mail to
// addr.
func (e *env) mailCode(t testing.TB, addr string) string {
	t.Helper()
	if _, err := e.dispatcher.DispatchOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	msg := e.smtp.WaitFor(t, addr, 5*time.Second)
	m := codeRE.FindStringSubmatch(string(msg.Email.Text))
	if m == nil {
		t.Fatalf("no code in e-mail text: %q", msg.Email.Text)
	}
	if !bytes.Contains(msg.Email.HTML, []byte(m[1])) {
		t.Fatalf("HTML body lacks the code")
	}
	return m[1]
}

// register registers a user and returns its id.
func (e *env) register(t testing.TB, username, addr, pw string) string {
	t.Helper()
	r, err := e.client.Register(context.Background(), &authpb.RegisterRequest{Username: username, Email: addr, Password: pw})
	if err != nil {
		t.Fatalf("Register(%s): %v", addr, err)
	}
	return r.GetUserId()
}

// verifiedUser registers and verifies a user, and returns its id.
func (e *env) verifiedUser(t testing.TB, username, addr, pw string) string {
	t.Helper()
	id := e.register(t, username, addr, pw)
	code := e.mailCode(t, addr)
	if _, err := e.client.VerifyOtp(context.Background(), &authpb.VerifyOtpRequest{Email: addr, Code: code}); err != nil {
		t.Fatalf("VerifyOtp: %v", err)
	}
	return id
}

// login logs in and fails the test on error.
func (e *env) login(t testing.TB, addr, pw string) *authpb.LoginResponse {
	t.Helper()
	r, err := e.client.Login(context.Background(), &authpb.LoginRequest{Email: addr, Password: pw})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	return r
}

// wantStatus checks an RPC error's code, message (when msg != "") and
// ErrorInfo reason (when reason != "").
func wantStatus(t *testing.T, err error, code codes.Code, msg, reason string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || err == nil {
		t.Fatalf("got error %v, want status %v", err, code)
	}
	if st.Code() != code {
		t.Fatalf("code = %v (%q), want %v", st.Code(), st.Message(), code)
	}
	if msg != "" && st.Message() != msg {
		t.Errorf("message = %q, want %q", st.Message(), msg)
	}
	if reason != "" {
		if got := errorInfo(err); got == nil || got.GetReason() != reason {
			t.Errorf("reason = %v, want %s", got, reason)
		}
	}
}

func errorInfo(err error) *errdetails.ErrorInfo {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}

func retryDelay(err error) (time.Duration, bool) {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}
