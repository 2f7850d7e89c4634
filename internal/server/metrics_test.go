package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/placebrain/auth/internal/metrics"
	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/proto/authpb"
)

const pw = "correct horse battery"

// API keys of the metrics tests: one for every method, one for GetMe only.
const (
	keyAll   = "key-all-0123456789-abcdefghijklmnopqrstuvw"
	keyGetMe = "key-getme-0123456789-abcdefghijklmnopqrstu"
)

// metricsOn makes a test service serve its metrics on a free port.
var metricsOn = authtest.Set("METRICS__ADDR", "127.0.0.1:0")

// scrape is one scrape of /metrics, parsed.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics gets e's /metrics over HTTP, as Prometheus does.
func scrapeMetrics(t *testing.T, e *authtest.Env) scrape {
	t.Helper()
	addr := e.App.MetricsAddr()
	if addr == nil {
		t.Fatal("no metrics listener")
	}
	resp, err := http.Get("http://" + addr.String() + metrics.Path)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s, %v: %s", resp.Status, err, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("scrape: parse: %v", err)
	}
	return fams
}

// value is the sum of family name's series that have every label in
// labels (name=value pairs): a counter's or gauge's value, a histogram's
// count; -1 when the family is absent.
func (s scrape) value(name string, labels ...string) float64 {
	f, ok := s[name]
	if !ok {
		return -1
	}
	sum := 0.0
series:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// eventually waits for cond, polling: for what happens after an RPC has
// answered (a delivery counted after the relay took the message).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// families are every family authd serves, with a label that must be on
// it ("" for none).
var families = []struct{ name, label string }{
	{"grpc_server_started_total", "grpc_method"},
	{"grpc_server_handled_total", "grpc_code"},
	{"grpc_server_handling_seconds", "grpc_method"},
	{"grpc_server_msg_received_total", "grpc_method"},
	{"grpc_server_msg_sent_total", "grpc_method"},
	{"go_sql_max_open_connections", "db_name"},
	{"go_sql_open_connections", "db_name"},
	{"go_sql_in_use_connections", "db_name"},
	{"go_sql_idle_connections", "db_name"},
	{"go_sql_wait_count_total", "db_name"},
	{"go_sql_wait_duration_seconds_total", "db_name"},
	{"go_sql_max_idle_closed_total", "db_name"},
	{"go_sql_max_idle_time_closed_total", "db_name"},
	{"go_sql_max_lifetime_closed_total", "db_name"},
	{metrics.OutboxPending, ""},
	{metrics.OutboxOldestDue, ""},
	{metrics.OutboxDeliveries, "outcome"},
	{metrics.HashWaiting, ""},
	{metrics.HashRunning, ""},
	{metrics.HashRefused, ""},
	{metrics.SecurityEvents, "event"},
	{metrics.CleanupDeletedRows, "table"},
	{"go_goroutines", ""},
	{"go_memstats_heap_alloc_bytes", ""},
	{"go_gc_duration_seconds", ""},
	{"process_cpu_seconds_total", ""},
	{"process_resident_memory_bytes", ""},
	{"process_open_fds", ""},
}

// A scrape while RPCs run in parallel shows every family, each with its
// labels; the database pool's numbers are there and sane.
func TestMetricsFamiliesUnderLoad(t *testing.T) {
	e := authtest.New(t, metricsOn)
	id := e.VerifiedUser(t, "Alice", "alice@example.com", pw)
	access := e.Login(t, "alice@example.com", pw).AccessToken
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				var err error
				if i%2 == 0 {
					_, err = e.Client.ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: access})
				} else {
					_, err = e.Client.GetMe(ctx, &authpb.GetMeRequest{UserId: id})
				}
				if err != nil && ctx.Err() == nil {
					t.Errorf("load: %v", err)
					return
				}
			}
		})
	}
	var s scrape
	eventually(t, "RPCs counted during the load", func() bool {
		s = scrapeMetrics(t, e)
		return s.value("grpc_server_handled_total", "grpc_method", "ValidateToken", "grpc_code", "OK") > 2 &&
			s.value("grpc_server_handled_total", "grpc_method", "GetMe", "grpc_code", "OK") > 2
	})
	stop()
	wg.Wait()

	for _, f := range families {
		mf, ok := s[f.name]
		if !ok || len(mf.GetMetric()) == 0 {
			t.Errorf("family %s missing", f.name)
			continue
		}
		if f.label == "" {
			continue
		}
		for _, m := range mf.GetMetric() {
			has := false
			for _, l := range m.GetLabel() {
				has = has || l.GetName() == f.label
			}
			if !has {
				t.Errorf("%s series without label %s: %v", f.name, f.label, m.GetLabel())
				break
			}
		}
	}
	if n := s.value("go_sql_max_open_connections", "db_name", metrics.DBName); n < 1 {
		t.Errorf("go_sql_max_open_connections = %v", n)
	}
	if n := s.value("go_sql_open_connections", "db_name", metrics.DBName); n < 1 {
		t.Errorf("go_sql_open_connections = %v during load", n)
	}
	if n := s.value("grpc_server_handling_seconds", "grpc_method", "ValidateToken"); n < 2 {
		t.Errorf("ValidateToken latencies observed = %v", n)
	}
}

// keyed sends key with every call of the connection.
func keyed(key string) grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key), method, req, reply, cc, opts...)
	})
}

// dial connects to e with dial options of its own.
func dial(t *testing.T, e *authtest.Env, opts ...grpc.DialOption) authpb.AuthServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(e.Addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authpb.NewAuthServiceClient(conn)
}

// wantCode fails unless err has code.
func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: %v, want %v", what, err, code)
	}
}

// moved checks that each series moved by its delta between two scrapes.
type moved struct {
	t      *testing.T
	e      *authtest.Env
	before scrape
}

func watch(t *testing.T, e *authtest.Env) *moved {
	return &moved{t: t, e: e, before: scrapeMetrics(t, e)}
}

// by waits until series (family, then labels) has moved by delta since
// watch, and fails if it moves further.
func (m *moved) by(delta float64, family string, labels ...string) {
	m.t.Helper()
	was := m.before.value(family, labels...)
	var now float64
	eventually(m.t, fmt.Sprintf("%s%v to move by %v from %v", family, labels, delta, was), func() bool {
		now = scrapeMetrics(m.t, m.e).value(family, labels...)
		return now-was >= delta
	})
	if now-was != delta {
		m.t.Errorf("%s%v moved by %v, want %v", family, labels, now-was, delta)
	}
}

// Each metric moves when its event happens, through the real API: an RPC,
// refused callers, an e-mail sent, a reuse detection, a login lock, a code
// burnt at its attempt cap and an account's code checks capped, a
// password reset, the hashing pool busy and refusing, and the cleanup
// deleting rows (at the start of a second instance, a day later).
func TestMetricsMove(t *testing.T) {
	settings := authtest.Set(
		"METRICS__ADDR", "127.0.0.1:0",
		"GRPC__API_KEYS", keyAll+","+keyGetMe+"=GetMe",
		"LOGIN__MAX_FAILURES", "2",
		"OTP__MAX_ATTEMPTS", "2",
		"OTP__ACCOUNT_DAILY_FAILURES", "3",
		"PASSWORD__HASH_WORKERS", "1",
		"PASSWORD__HASH_QUEUE", "0",
		"AUDIT__RETENTION_DAYS", "1",
	)
	e := authtest.New(t, settings, authtest.Dial(grpc.WithTransportCredentials(insecure.NewCredentials()), keyed(keyAll)))
	ctx := context.Background()
	c := e.Client

	t.Run("an RPC", func(t *testing.T) {
		m := watch(t, e)
		_, err := c.GetMe(ctx, &authpb.GetMeRequest{UserId: uuid.NewString()})
		wantCode(t, "GetMe(unknown)", err, codes.NotFound)
		m.by(1, "grpc_server_started_total", "grpc_method", "GetMe")
		m.by(1, "grpc_server_handled_total", "grpc_method", "GetMe", "grpc_code", "NotFound")
		m.by(1, "grpc_server_handling_seconds", "grpc_method", "GetMe")
	})

	t.Run("refused callers", func(t *testing.T) {
		m := watch(t, e)
		_, err := dial(t, e).GetMe(ctx, &authpb.GetMeRequest{UserId: uuid.NewString()})
		wantCode(t, "GetMe without a key", err, codes.Unauthenticated)
		_, err = dial(t, e, keyed(keyGetMe)).Login(ctx, &authpb.LoginRequest{Email: "x@example.com", Password: pw})
		wantCode(t, "Login with a GetMe key", err, codes.PermissionDenied)
		m.by(1, metrics.SecurityEvents, "event", metrics.EventCallerUnauthenticated)
		m.by(1, metrics.SecurityEvents, "event", metrics.EventCallerDenied)
		m.by(1, "grpc_server_handled_total", "grpc_method", "Login", "grpc_code", "PermissionDenied")
	})

	var alice string
	t.Run("an e-mail sent", func(t *testing.T) {
		m := watch(t, e)
		r, err := c.Register(ctx, &authpb.RegisterRequest{Username: "Alice", Email: "alice@example.com", Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		alice = r.GetUserId()
		code := e.Code(t, "alice@example.com")
		m.by(1, metrics.OutboxDeliveries, "outcome", "sent")
		if _, err := c.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "alice@example.com", Code: code}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a recovery and a reuse detection", func(t *testing.T) {
		m := watch(t, e)
		l, err := c.Login(ctx, &authpb.LoginRequest{Email: "alice@example.com", Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: l.GetRefreshToken()}); err != nil {
			t.Fatal(err)
		}
		e.Clock.Advance(11 * time.Second) // past the reuse grace, the child unused: a lost response
		if _, err := c.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: l.GetRefreshToken()}); err != nil {
			t.Fatalf("the rotated token within the recovery window: %v", err)
		}
		m.by(1, metrics.SecurityEvents, "event", metrics.EventRefreshRecovered)
		e.Clock.Advance(15 * time.Minute) // past the recovery window
		_, err = c.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: l.GetRefreshToken()})
		wantCode(t, "the rotated token again", err, codes.Unauthenticated)
		m.by(1, metrics.SecurityEvents, "event", metrics.EventRefreshTokenReused)
	})

	t.Run("a login lock", func(t *testing.T) {
		e.VerifiedUser(t, "Bob", "bob@example.com", pw)
		m := watch(t, e)
		for i := range 2 {
			_, err := c.Login(ctx, &authpb.LoginRequest{Email: "bob@example.com", Password: "wrong password"})
			wantCode(t, fmt.Sprintf("wrong password %d", i+1), err, codes.Unauthenticated)
		}
		_, err := c.Login(ctx, &authpb.LoginRequest{Email: "bob@example.com", Password: "wrong password"})
		wantCode(t, "the attempt past the limit", err, codes.ResourceExhausted)
		m.by(1, metrics.SecurityEvents, "event", metrics.EventLoginLocked)
	})

	t.Run("exhausted codes", func(t *testing.T) {
		e.Register(t, "Carol", "carol@example.com", pw)
		wrong := func(code string) *authpb.VerifyOtpRequest {
			return &authpb.VerifyOtpRequest{Email: "carol@example.com", Code: fmt.Sprintf("%06d", (atoi(code)+1)%1000000)}
		}
		m := watch(t, e)
		code := e.Code(t, "carol@example.com")
		_, err := c.VerifyOtp(ctx, wrong(code))
		wantCode(t, "first wrong code", err, codes.InvalidArgument)
		_, err = c.VerifyOtp(ctx, wrong(code))
		wantCode(t, "second wrong code (the code's last attempt)", err, codes.ResourceExhausted)
		m.by(1, metrics.SecurityEvents, "event", metrics.EventCodeExhausted)

		// A new code: its first wrong attempt is the account's third
		// check of the day (the cap), the next one is refused and caps
		// the account's checks.
		e.Clock.Advance(61 * time.Second) // past the resend cooldown
		if _, err := c.SendOtp(ctx, &authpb.SendOtpRequest{Email: "carol@example.com"}); err != nil {
			t.Fatal(err)
		}
		code = e.Code(t, "carol@example.com")
		_, err = c.VerifyOtp(ctx, wrong(code))
		wantCode(t, "third check of the day", err, codes.InvalidArgument)
		_, err = c.VerifyOtp(ctx, wrong(code))
		wantCode(t, "fourth check of the day", err, codes.ResourceExhausted)
		m.by(1, metrics.SecurityEvents, "event", metrics.EventCodeChecksCapped)
		m.by(1, metrics.SecurityEvents, "event", metrics.EventCodeExhausted)
	})

	t.Run("checks kept for a code's requester", func(t *testing.T) {
		from := func(ip string) context.Context { return metadata.AppendToOutgoingContext(ctx, "x-real-ip", ip) }
		owner := from("198.51.100.20")
		if _, err := c.Register(owner, &authpb.RegisterRequest{Username: "Dora", Email: "dora@example.com", Password: pw}); err != nil {
			t.Fatal(err)
		}
		code := e.Code(t, "dora@example.com")
		wrong := &authpb.VerifyOtpRequest{Email: "dora@example.com", Code: fmt.Sprintf("%06d", (atoi(code)+1)%1000000)}
		m := watch(t, e)
		// OTP__ACCOUNT_DAILY_FAILURES 3, OTP__MAX_ATTEMPTS 2: one check
		// for other sources, the last two kept for the owner's.
		_, err := c.VerifyOtp(from("203.0.113.21"), wrong)
		wantCode(t, "a stranger's wrong code", err, codes.InvalidArgument)
		_, err = c.VerifyOtp(from("203.0.113.22"), wrong)
		wantCode(t, "another stranger's, past what is kept", err, codes.ResourceExhausted)
		m.by(1, metrics.SecurityEvents, "event", metrics.EventCodeChecksKept)
		if _, err := c.VerifyOtp(owner, &authpb.VerifyOtpRequest{Email: "dora@example.com", Code: code}); err != nil {
			t.Fatalf("the owner's code: %v", err)
		}
	})

	t.Run("a password reset", func(t *testing.T) {
		m := watch(t, e)
		if _, err := c.RequestPasswordReset(ctx, &authpb.RequestPasswordResetRequest{Email: "alice@example.com"}); err != nil {
			t.Fatal(err)
		}
		code := e.Code(t, "alice@example.com")
		if _, err := c.ResetPassword(ctx, &authpb.ResetPasswordRequest{Email: "alice@example.com", Code: code, NewPassword: "another password"}); err != nil {
			t.Fatal(err)
		}
		m.by(1, metrics.SecurityEvents, "event", metrics.EventPasswordReset)
	})

	t.Run("the hashing pool busy and refusing", func(t *testing.T) {
		pool := e.App.Passwords.Pool()
		release := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- pool.Do(ctx, "test", func() { <-release }) }()
		defer func() {
			close(release)
			if err := <-done; err != nil {
				t.Errorf("blocking job: %v", err)
			}
		}()
		eventually(t, "the pool's one worker busy", func() bool { return pool.Stats().Running == 1 })
		m := watch(t, e)
		if n := m.before.value(metrics.HashRunning); n != 1 {
			t.Errorf("%s = %v, want 1", metrics.HashRunning, n)
		}
		if n := m.before.value(metrics.HashWaiting); n != 0 {
			t.Errorf("%s = %v, want 0 (no queue)", metrics.HashWaiting, n)
		}
		_, err := c.Login(ctx, &authpb.LoginRequest{Email: "alice@example.com", Password: "another password"})
		wantCode(t, "Login while the pool is full", err, codes.ResourceExhausted)
		m.by(1, metrics.HashRefused)
	})

	t.Run("the cleanup deleting rows", func(t *testing.T) {
		if alice == "" {
			t.Skip("no user registered")
		}
		e.Stop(t)
		e.Clock.Advance(48 * time.Hour) // every audit event is past the retention of 1 day
		next := authtest.New(t, settings, authtest.SameDatabaseAs(e))
		eventually(t, "rows deleted by the start's cleanup", func() bool {
			return scrapeMetrics(t, next).value(metrics.CleanupDeletedRows, "table", "audit_events") > 0
		})
	})
}

// atoi reads a code's six digits.
func atoi(code string) int {
	n := 0
	for _, r := range code {
		n = n*10 + int(r-'0')
	}
	return n
}

// The outbox's backlog: a message waiting for its retry is pending and not
// due; once due, its age grows with the clock until a dispatcher takes
// it; deliveries that fail are counted as retry, then failed.
func TestMetricsOutboxBacklog(t *testing.T) {
	e := authtest.New(t, metricsOn,
		// The dispatcher runs only when woken by a queued e-mail: a due
		// message waits for the test.
		authtest.Set("OUTBOX__POLL_INTERVAL_MILLIS", "3600000", "OUTBOX__MAX_ATTEMPTS", "2", "OUTBOX__RETRY_BASE_SECONDS", "5"))
	m := watch(t, e)
	e.Register(t, "Temp", "tempfail@example.com", pw) // the relay answers 451
	m.by(1, metrics.OutboxDeliveries, "outcome", "retry")
	s := scrapeMetrics(t, e)
	if n := s.value(metrics.OutboxPending); n != 1 {
		t.Errorf("%s = %v, want 1", metrics.OutboxPending, n)
	}
	if n := s.value(metrics.OutboxOldestDue); n != 0 {
		t.Errorf("%s = %v before the retry is due, want 0", metrics.OutboxOldestDue, n)
	}

	e.Clock.Advance(65 * time.Second) // due 5 s after the attempt: 60 s ago
	s = scrapeMetrics(t, e)
	if n := s.value(metrics.OutboxOldestDue); n != 60 {
		t.Errorf("%s = %v, want 60", metrics.OutboxOldestDue, n)
	}
	if n := s.value(metrics.OutboxPending); n != 1 {
		t.Errorf("%s = %v, want 1", metrics.OutboxPending, n)
	}

	// Another registration wakes the dispatcher: the due message's last
	// attempt fails for good, and so does the new one (the relay answers
	// 550).
	m = watch(t, e)
	e.Register(t, "Rejected", "reject@example.com", pw)
	m.by(2, metrics.OutboxDeliveries, "outcome", "failed")
	s = scrapeMetrics(t, e)
	if p, a := s.value(metrics.OutboxPending), s.value(metrics.OutboxOldestDue); p != 0 || a != 0 {
		t.Errorf("after the failures: pending %v, oldest due age %v; want 0, 0", p, a)
	}
}

// Without METRICS__ADDR nothing listens and nothing is kept.
func TestMetricsOff(t *testing.T) {
	e := authtest.New(t)
	if e.App.MetricsAddr() != nil || e.App.Metrics != nil {
		t.Errorf("metrics on without METRICS__ADDR: %v", e.App.MetricsAddr())
	}
}
