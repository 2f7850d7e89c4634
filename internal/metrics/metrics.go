// Package metrics keeps authd's Prometheus metrics (github.com/prometheus/client_golang)
// and serves them in the Prometheus text format: per-RPC counts and
// latencies (go-grpc-middleware's Prometheus provider), the database
// pool, the outbox's backlog and deliveries, the hashing pool, security
// events, rows removed by the cleanup, and the Go runtime and process. The
// domain and the dispatcher report through plain functions (auth.Options.Events,
// mail.DispatcherOptions.Delivered); the rest is read when Prometheus
// scrapes. The README's Operations section lists every family.
package metrics

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/grpcapi"
	"github.com/placebrain/auth/internal/mail"
	"github.com/placebrain/auth/internal/password"
)

// Path is where the metrics are served.
const Path = "/metrics"

// The families this package defines, besides the gRPC provider's
// (grpc_server_*), the database pool's (go_sql_*, labelled db_name=DBName)
// and the Go runtime's and process's (go_*, process_*).
const (
	OutboxPending      = "authd_outbox_pending_messages"
	OutboxOldestDue    = "authd_outbox_oldest_due_age_seconds"
	OutboxDeliveries   = "authd_outbox_deliveries_total"
	HashWaiting        = "authd_password_hash_waiting"
	HashRunning        = "authd_password_hash_running"
	HashRefused        = "authd_password_hash_refused_total"
	SecurityEvents     = "authd_security_events_total"
	CleanupDeletedRows = "authd_cleanup_deleted_rows_total"
)

// DBName is the db_name label of the database pool's families.
const DBName = "authd"

// backlogTimeout bounds the outbox's statements at a scrape.
const backlogTimeout = 2 * time.Second

const securityEventsHelp = "Security events by kind: refresh token reuse detected (family revoked), a rotated refresh token's child returned after the grace window (a lost response recovered), password reset (account recovery), " +
	"login and registration locks, codes burnt at their attempt cap, accounts' code checks capped for the day, checks refused to keep an account's last ones for the code's requester, refused gRPC callers."

// The values of authd_security_events_total's event label.
const (
	EventRefreshTokenReused    = "refresh_token_reused"
	EventRefreshRecovered      = "refresh_recovered"
	EventPasswordReset         = "password_reset"
	EventLoginLocked           = "login_locked"
	EventRegisterLocked        = "register_locked"
	EventCodeExhausted         = "code_exhausted"
	EventCodeChecksCapped      = "code_checks_capped"
	EventCodeChecksKept        = "code_checks_kept_for_requester"
	EventCallerUnauthenticated = "caller_unauthenticated"
	EventCallerDenied          = "caller_denied"
)

// LatencyBuckets are the bounds (seconds) of grpc_server_handling_seconds,
// 0.1 ms to 10 s: from a ValidateToken answered from the cache to a Login
// queued behind others for the hashing pool.
var LatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Sources are the parts whose numbers are read at each scrape.
type Sources struct {
	// DB is the database pool (go_sql_*).
	DB *sql.DB
	// Backlog reads the outbox's backlog at now (authd_outbox_*).
	Backlog func(ctx context.Context, now time.Time) (mail.Backlog, error)
	// Pool is the password hashing pool (authd_password_hash_*).
	Pool *password.Pool
	// Callers counts refused callers (authd_security_events_total); nil
	// without caller authentication.
	Callers *grpcapi.Callers
	// Now is the clock of the outbox's ages (time.Now when nil).
	Now func() time.Time
	// Log receives the errors of scrapes (discarded when nil).
	Log *slog.Logger
}

// Metrics are one authd's metrics, in a registry of their own (tests run
// several in one process). A nil *Metrics counts nothing.
type Metrics struct {
	reg  *prometheus.Registry
	log  *slog.Logger
	grpc *grpcprom.ServerMetrics

	// Security events the domain reports, resolved once: counting one is
	// an atomic add, no look-up, no lock.
	reuse, recovered, reset, loginLocked, registerLocked, codeExhausted, codeCapped, codeKept prometheus.Counter
	// deliveries by mail.Status.
	sent, retry, failed, expired prometheus.Counter
	cleanup                      *prometheus.CounterVec
}

// New registers every family on a new registry, reading s at each scrape.
func New(s Sources) *Metrics {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{reg: prometheus.NewRegistry(), log: s.Log}
	m.grpc = grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(LatencyBuckets)))
	m.reg.MustRegister(
		m.grpc,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewDBStatsCollector(s.DB, DBName),
		&backlogCollector{read: s.Backlog, now: s.Now},
	)

	// One family of security events, each kind a series of its own: the
	// domain's are counters, the refused callers read from Callers.
	security := func(event string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: SecurityEvents, Help: securityEventsHelp,
			ConstLabels: prometheus.Labels{"event": event}})
		m.reg.MustRegister(c)
		return c
	}
	m.reuse = security(EventRefreshTokenReused)
	m.recovered = security(EventRefreshRecovered)
	m.reset = security(EventPasswordReset)
	m.loginLocked = security(EventLoginLocked)
	m.registerLocked = security(EventRegisterLocked)
	m.codeExhausted = security(EventCodeExhausted)
	m.codeCapped = security(EventCodeChecksCapped)
	m.codeKept = security(EventCodeChecksKept)
	callers := s.Callers
	refused := func(event string, n func(grpcapi.Refusals) uint64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: SecurityEvents, Help: securityEventsHelp,
			ConstLabels: prometheus.Labels{"event": event}}, func() float64 { return float64(n(callers.Refused())) }))
	}
	refused(EventCallerUnauthenticated, func(r grpcapi.Refusals) uint64 { return r.Unauthenticated })
	refused(EventCallerDenied, func(r grpcapi.Refusals) uint64 { return r.PermissionDenied })

	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: OutboxDeliveries,
		Help: "E-mail delivery attempts by outcome: sent, retry (failed, will be retried), failed (for good) or expired (its code expired first)."}, []string{"outcome"})
	m.sent = deliveries.WithLabelValues(mail.OutcomeName(mail.StatusSent))
	m.retry = deliveries.WithLabelValues(mail.OutcomeName(mail.StatusPending))
	m.failed = deliveries.WithLabelValues(mail.OutcomeName(mail.StatusFailed))
	m.expired = deliveries.WithLabelValues(mail.OutcomeName(mail.StatusExpired))
	m.cleanup = prometheus.NewCounterVec(prometheus.CounterOpts{Name: CleanupDeletedRows,
		Help: "Rows the periodic cleanup deleted, by table."}, []string{"table"})
	m.reg.MustRegister(deliveries, m.cleanup)
	// Every table's series exists from the start, at 0, rather than from
	// the first cleanup pass, which runs in the background.
	for table := range (auth.Cleaned{}).Tables() {
		m.cleanup.WithLabelValues(table)
	}

	pool := s.Pool
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: HashWaiting,
			Help: "Password hashing jobs (Login, Register, password changes) waiting in the pool's queue."},
			func() float64 { return float64(pool.Stats().Waiting) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: HashRunning,
			Help: "Password hashing jobs the pool's workers are running."},
			func() float64 { return float64(pool.Stats().Running) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: HashRefused,
			Help: "Password hashing jobs refused or shed because the pool was full (answered SERVER_BUSY)."},
			func() float64 { return float64(pool.Stats().Shed) }),
	)
	return m
}

// Handler serves the metrics (OpenMetrics when the scraper asks for it,
// with the trace ids of sampled RPCs as exemplars). A source that fails
// (the database, for the outbox's backlog) is logged and left out; the
// other families are still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          errorLog{m.log},
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg,
		EnableOpenMetrics: true,
		Timeout:           10 * time.Second,
	})
}

// Registry returns the registry, for a test that gathers without HTTP.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ServerOptions returns the gRPC server options that count and time every
// RPC, unary and stream; they come before the service's own interceptors,
// so they see the codes the clients get.
func (m *Metrics) ServerOptions() []grpc.ServerOption {
	ex := grpcprom.WithExemplarFromContext(exemplar)
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.grpc.UnaryServerInterceptor(ex)),
		grpc.ChainStreamInterceptor(m.grpc.StreamServerInterceptor(ex)),
	}
}

// InitializeMetrics creates the series of every method of gs at zero, so
// that rates exist before the first call. Call it once the services are
// registered.
func (m *Metrics) InitializeMetrics(gs *grpc.Server) { m.grpc.InitializeMetrics(gs) }

// exemplar is the trace id of a sampled RPC, which Prometheus keeps next
// to a counter's or histogram bucket's value; nil otherwise (no cost).
func exemplar(ctx context.Context) prometheus.Labels {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return nil
	}
	return prometheus.Labels{"trace_id": sc.TraceID().String()}
}

// AuditEvent counts the audit events that are security events (it is
// auth.Options.Events): a reuse detection, a recovery, a password reset, a login or
// registration lock, a code burnt at its attempt cap, an account's code
// checks capped, a check refused to keep an account's last checks for a
// code's requester. The others, RefreshTokens' token_refreshed among them,
// pass through a switch and nothing else.
func (m *Metrics) AuditEvent(e auth.Event, reason string) {
	if m == nil {
		return
	}
	switch e {
	case auth.EventRefreshTokenReused:
		m.reuse.Inc()
	case auth.EventRefreshRecovered:
		m.recovered.Inc()
	case auth.EventPasswordReset:
		m.reset.Inc()
	case auth.EventLoginThrottled:
		m.loginLocked.Inc()
	case auth.EventRegisterThrottled:
		m.registerLocked.Inc()
	case auth.EventOTPFailed:
		switch reason {
		case auth.ReasonOTPAttemptsExhausted:
			m.codeExhausted.Inc()
		case auth.ReasonAccountDailyCap:
			m.codeCapped.Inc()
		case auth.ReasonKeptForRequester:
			m.codeKept.Inc()
		}
	}
}

// Delivered counts a delivery attempt's outcome (it is
// mail.DispatcherOptions.Delivered).
func (m *Metrics) Delivered(s mail.Status) {
	if m == nil {
		return
	}
	switch s {
	case mail.StatusSent:
		m.sent.Inc()
	case mail.StatusFailed:
		m.failed.Inc()
	case mail.StatusExpired:
		m.expired.Inc()
	default:
		m.retry.Inc()
	}
}

// CleanupDeleted counts n rows the cleanup deleted from table.
func (m *Metrics) CleanupDeleted(table string, n int) {
	if m == nil || n < 0 {
		return
	}
	m.cleanup.WithLabelValues(table).Add(float64(n))
}

// backlogCollector reads the outbox's backlog at each scrape: two cheap
// statements (see store.DB.OutboxBacklog).
type backlogCollector struct {
	read func(ctx context.Context, now time.Time) (mail.Backlog, error)
	now  func() time.Time
}

var (
	pendingDesc = prometheus.NewDesc(OutboxPending,
		"E-mails in the outbox not yet sent or failed: due, waiting for a retry, or being delivered.", nil, nil)
	oldestDueDesc = prometheus.NewDesc(OutboxOldestDue,
		"How long the e-mail due the longest has been due (0 when none is): grows while the dispatcher is stopped or behind.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- oldestDueDesc
}

// Collect implements prometheus.Collector.
func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), backlogTimeout)
	defer cancel()
	now := c.now()
	b, err := c.read(ctx, now)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(pendingDesc, err)
		ch <- prometheus.NewInvalidMetric(oldestDueDesc, err)
		return
	}
	age := 0.0
	if !b.OldestDue.IsZero() {
		age = max(now.Sub(b.OldestDue).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(b.Pending))
	ch <- prometheus.MustNewConstMetric(oldestDueDesc, prometheus.GaugeValue, age)
}

// errorLog logs promhttp's errors.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) { l.log.Error("metrics scrape", "error", fmt.Sprint(v...)) }
