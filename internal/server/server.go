// Package server assembles authd from its parts (New): database,
// migrations, domain service, password hashing pool, e-mail outbox
// dispatcher and the gRPC server with health, caller authentication and
// TLS, and (in development mode or on request) reflection, metrics,
// tracing and the request log; App.Serve runs them until the context
// ends. Production, the integration tests and the benchmarks all build
// through New.
package server

import (
	"context"
	"crypto/sha256"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // profiling endpoints, served only with DEBUG__PPROF_ADDR
	"runtime"
	"sync"
	"time"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/crypto/hkdf"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/config"
	"github.com/placebrain/auth/internal/grpcapi"
	"github.com/placebrain/auth/internal/mail"
	"github.com/placebrain/auth/internal/metrics"
	"github.com/placebrain/auth/internal/otp"
	"github.com/placebrain/auth/internal/password"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/telemetry"
	"github.com/placebrain/auth/internal/token"
	"github.com/placebrain/auth/proto/authpb"
)

// ShutdownGrace is how long in-flight RPCs may run after a stop signal
// before they are cancelled.
const ShutdownGrace = 20 * time.Second

// OTPSecretWarning is logged at a production start without OTP__SECRET.
const OTPSecretWarning = "OTP__SECRET is not set: the keys of stored codes and of queued e-mails (which hold codes) are derived from JWT__SECRET, which the gateway also holds to validate access tokens. " +
	"Set OTP__SECRET to 32 or more random bytes (head -c 32 /dev/urandom | base64). " +
	"Setting or changing it voids the codes already sent and fails the verification e-mails still queued: their users request a new code."

// Options are what New takes besides the configuration: the parts that
// tests and benchmarks vary. The zero value is production's.
type Options struct {
	// Log receives the JSON log (discarded when nil).
	Log *slog.Logger
	// Now is the clock of the service, the access tokens and the outbox
	// (time.Now when nil).
	Now func() time.Time
	// Listener, when set, serves gRPC instead of a new listener on
	// GRPC__LISTEN_ADDR.
	Listener net.Listener
	// PlainHashing runs the hashing pool's workers at normal priority and
	// on the Go processors everything else runs on (see
	// password.LowPriority and password.OwnProcs): for tests, which run
	// many services in one process.
	PlainHashing bool
	// WrapConnector, when set, wraps the database driver (a test that
	// counts statements).
	WrapConnector func(driver.Connector) driver.Connector
	// Sleep, when set, replaces the timer of the login slowdown (a test
	// that records the delays instead of waiting them).
	Sleep func(ctx context.Context, d time.Duration) error
	// TLSRefresh is how often the TLS certificate, key and client CA
	// files are re-read (the constant TLSRefresh when zero): short in the tests of
	// their rotation.
	TLSRefresh time.Duration
	// TracerProvider, when set, traces RPCs, their units of work and the
	// e-mail deliveries instead of the provider the OTEL_* variables
	// configure (a test's in-memory exporter); its owner shuts it down.
	TracerProvider trace.TracerProvider
	// NoCleanup keeps Serve from running the retention cleanup (a test
	// that runs auth.Service.Cleanup itself and counts what it deletes).
	NoCleanup bool
	// FullPathOnly makes every token rotation take the full path (the
	// test that checks the one-statement rotation agrees with it).
	FullPathOnly bool
	// HealthTicks, when set, times the database probe of health instead
	// of a ticker of HealthProbeInterval (a test that probes when it
	// says).
	HealthTicks <-chan time.Time
}

// App is an assembled authd, ready to Serve.
type App struct {
	// DB is the open database; Serve closes it when it returns.
	DB         *store.DB
	Service    *auth.Service
	Dispatcher *mail.Dispatcher
	// Callers authenticates the gRPC callers and counts the refused ones.
	Callers *grpcapi.Callers
	// Passwords hashes and compares passwords on its pool.
	Passwords *password.Hasher
	// Metrics are the metrics served on METRICS__ADDR; nil when it is
	// empty.
	Metrics *metrics.Metrics

	cfg    *config.Config
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server
	lis    net.Listener
	// noCleanup is Options.NoCleanup.
	noCleanup bool
	// dbHealth follows the database for health; healthTicks times its
	// probe (Options.HealthTicks).
	dbHealth    *dbHealth
	healthTicks <-chan time.Time
	// stopTLS stops re-reading the TLS files.
	stopTLS func()
	// stopping is closed when shutdown starts, ending open streams.
	stopping chan struct{}
	// metricsLis is METRICS__ADDR's listener (nil when it is empty).
	metricsLis net.Listener
	// shutdownTracing flushes and stops the tracer provider authd made.
	shutdownTracing func(context.Context) error
}

// Run assembles authd from c and serves until ctx is cancelled (see
// App.Serve).
func Run(ctx context.Context, c *config.Config, log *slog.Logger) error {
	app, err := New(ctx, c, Options{Log: log})
	if err != nil {
		return err
	}
	return app.Serve(ctx)
}

// New builds authd from c: it listens, opens the database and applies
// pending migrations (or, with DATABASE__AUTO_MIGRATE=false, refuses a
// database with pending ones), answering health checks NOT_SERVING
// meanwhile when it has to wait for another process's migration or runs
// a file outside a transaction, and warns when the schema drifted from
// the migration files; then it builds the token issuer, hashing pool, OTP
// keys, outbox sealer, e-mail sender and outbox dispatcher, the domain
// service, and the gRPC server with health, TLS and caller authentication
// (GRPC__ section) and, in development mode or with GRPC__REFLECTION,
// server reflection; with METRICS__ADDR it keeps metrics and listens
// there too, with LOG__REQUESTS it logs each RPC, and with the OTEL_*
// variables (or Options.TracerProvider) it traces RPCs, their units of
// work and the e-mail deliveries. The log gets the request and trace ids
// of the context it is given (telemetry.NewLogHandler). Nothing runs once
// New returns until Serve; Close releases an App that is never served. A
// production start without OTP__SECRET logs OTPSecretWarning.
func New(ctx context.Context, c *config.Config, o Options) (_ *App, err error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = slog.New(telemetry.NewLogHandler(log.Handler()))
	if c.Dev {
		log.Warn("DEVELOPMENT MODE: do not use in production. The JWT secret may be generated and kept in the data directory, and without SMTP__HOST e-mails (with their codes) are written to this log instead of being sent.",
			"data_dir", c.Data.Dir)
	}
	if !c.Dev && c.OTP.Secret == "" {
		log.Warn(OTPSecretWarning)
	}
	// TLS files and caller authentication first: their errors stop the
	// start before the database is touched.
	grpcOpts, callers, stopTLS, err := callerSecurity(c, o.TLSRefresh, o.Now, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			stopTLS()
		}
	}()
	// Listen first: health answers NOT_SERVING while migrations keep the
	// service from starting (see migrateAtStart).
	lis := o.Listener
	if lis == nil {
		if lis, err = net.Listen("tcp", c.GRPC.ListenAddr); err != nil {
			return nil, fmt.Errorf("listen on GRPC__LISTEN_ADDR %q: %w", c.GRPC.ListenAddr, err)
		}
		defer func() {
			if err != nil {
				lis.Close()
			}
		}()
	}
	lis = limitListener(lis, c.GRPC)
	grpcOpts = append(grpcOpts, transportOptions(c.GRPC)...)
	db, err := OpenDB(ctx, c, log, o.WrapConnector)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	log.Info("database open", "database", db.Location)
	if lis, err = migrateAtStart(ctx, db, c.Database.AutoMigrate, log, lis, grpcOpts); err != nil {
		return nil, err
	}
	warnDrift(ctx, db, log)
	tracer, shutdownTracing, err := startTracing(ctx, o, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = shutdownTracing(context.Background())
		}
	}()
	metricsLis, err := listenMetrics(c)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && metricsLis != nil {
			metricsLis.Close()
		}
	}()

	var previous [][]byte
	for _, p := range c.JWT.PreviousSecrets {
		previous = append(previous, []byte(p))
	}
	access, err := token.NewIssuer([]byte(c.JWT.Secret), c.JWT.Issuer, c.JWT.AccessTokenTTL, o.Now,
		token.Options{Previous: previous, Leeway: c.JWT.Leeway, CacheSize: c.JWT.ValidationCacheSize})
	if err != nil {
		return nil, err
	}
	hasher, err := newHasher(c.Password, o.PlainHashing)
	if err != nil {
		return nil, err
	}
	var m *metrics.Metrics
	var delivered func(mail.Status)
	var events func(auth.Event, string)
	if metricsLis != nil {
		m = metrics.New(metrics.Sources{DB: db.SQL, Backlog: db.OutboxBacklog, Pool: hasher.Pool(),
			Callers: callers, Now: o.Now, Log: log})
		delivered, events = m.Delivered, m.AuditEvent
	}
	keys, err := otp.NewKeyer([]byte(c.OTP.Secret), []byte(c.JWT.Secret))
	if err != nil {
		return nil, err
	}
	limiterKey, err := deriveKey([]byte(c.JWT.Secret), "placebrain-auth limiter v1")
	if err != nil {
		return nil, err
	}
	// Queued e-mails hold codes: they are sealed under a key of their own
	// from the codes' secret, OTP__SECRET, or JWT__SECRET when it is empty
	// (as otp.NewKeyer falls back).
	codeSecret := c.OTP.Secret
	if codeSecret == "" {
		codeSecret = c.JWT.Secret
	}
	outboxKey, err := deriveKey([]byte(codeSecret), "placebrain-auth outbox v1")
	if err != nil {
		return nil, err
	}
	sealer, err := mail.NewSealer(outboxKey)
	if err != nil {
		return nil, err
	}
	var sender mail.Sender = mail.LogSender{Log: log}
	if c.SMTP.Host != "" {
		if sender, err = mail.NewSMTPSender(mail.SMTPConfig{
			Host: c.SMTP.Host, Port: c.SMTP.Port, Username: c.SMTP.Username, Password: c.SMTP.Password,
			From: c.SMTP.From, TLS: c.SMTP.TLS, Timeout: c.SMTP.Timeout,
		}); err != nil {
			return nil, err
		}
	}
	dispatcher := mail.NewDispatcher(db, sender, mail.DispatcherOptions{
		PollInterval:  c.Outbox.PollInterval,
		SendTimeout:   c.SMTP.Timeout,
		MaxAttempts:   c.Outbox.MaxAttempts,
		RetryBase:     c.Outbox.RetryBase,
		RetryMax:      c.Outbox.RetryMax,
		Sealer:        sealer,
		Now:           o.Now,
		Log:           log,
		Delivered:     delivered,
		TraceDelivery: traceDeliveries(tracer),
	})
	svc := auth.New(db, auth.Options{
		AccessTokens:    access,
		Passwords:       hasher,
		OTPKeys:         keys,
		MailSealer:      sealer,
		RefreshTokenTTL: c.JWT.RefreshTokenTTL,
		FullPathOnly:    o.FullPathOnly,
		Refresh: auth.RefreshPolicy{
			Grace:      c.JWT.RefreshReuseGrace,
			Recovery:   c.JWT.RefreshRecovery,
			SessionMax: c.JWT.SessionMax,
		},
		OTP: auth.OTPPolicy{
			TTL:                  c.OTP.TTL,
			MaxAttempts:          c.OTP.MaxAttempts,
			Cooldown:             c.OTP.ResendCooldown,
			DailyLimit:           c.OTP.DailyLimit,
			AccountDailyLimit:    c.OTP.AccountDailyLimit,
			AccountDailyFailures: c.OTP.AccountDailyFailures,
		},
		Login: auth.LoginPolicy{
			MaxFailures:          c.Login.MaxFailures,
			Window:               c.Login.Window,
			Lockout:              c.Login.Lockout,
			AccountDailyFailures: c.Login.AccountDailyFailures,
			AccountDelay:         c.Login.AccountDelay,
			TrustedFor:           c.Login.TrustedSource,
		},
		Register:   auth.RegisterPolicy{MaxPerSource: c.Register.MaxPerSource, Window: c.Register.Window},
		Reset:      auth.ResetPolicy{MaxAttempts: c.Reset.MaxAttempts, AccountDailyFailures: c.Reset.AccountDailyFailures},
		LimiterKey: limiterKey,
		Sleep:      o.Sleep,
		Retention: auth.RetentionPolicy{
			RevokedFamilies:    c.JWT.RevokedRetention,
			UnverifiedAccounts: c.Users.UnverifiedTTL,
			Mail:               c.Outbox.Retention,
			Audit:              c.Audit.Retention,
			BatchSize:          c.Cleanup.BatchSize,
		},
		Now:        o.Now,
		MailQueued: dispatcher.Wake,
		Events:     events,
		Log:        log,
	})

	a := &App{DB: db, Service: svc, Dispatcher: dispatcher, Callers: callers, Passwords: hasher, Metrics: m,
		cfg: c, log: log, lis: lis, stopTLS: stopTLS, health: health.NewServer(), stopping: make(chan struct{}),
		metricsLis: metricsLis, shutdownTracing: shutdownTracing, noCleanup: o.NoCleanup, healthTicks: o.HealthTicks}
	a.dbHealth = newDBHealth(a.setHealth, log)
	db.ObserveAvailability(a.dbHealth.observe)
	serverOpts := append(observedServerOptions(c, log, m, tracer), grpcOpts...)
	a.grpc = grpc.NewServer(append(serverOpts, grpc.StreamInterceptor(a.endStreams))...)
	grpcapi.Register(a.grpc, svc, callers)
	healthpb.RegisterHealthServer(a.grpc, a.health)
	if c.Dev || c.GRPC.Reflection {
		reflection.Register(a.grpc)
	}
	if m != nil {
		m.InitializeMetrics(a.grpc)
	}
	return a, nil
}

// OpenDB opens the database c's DATABASE__ and DATA__ sections name; log
// receives the store's warnings (a SQLite file made private), and wrap,
// when set, wraps its driver.
func OpenDB(ctx context.Context, c *config.Config, log *slog.Logger, wrap func(driver.Connector) driver.Connector) (*store.DB, error) {
	return store.Open(ctx, store.Config{
		URL:     c.Database.URL,
		DataDir: c.Data.Dir,
		Pool: store.PoolConfig{
			MaxOpenConns:    c.Database.MaxOpenConns,
			MaxIdleConns:    c.Database.MaxIdleConns,
			ConnMaxLifetime: c.Database.ConnMaxLifetime,
		},
		Timeouts:      store.Timeouts{Connect: c.Database.ConnectTimeout, Statement: c.Database.StatementTimeout},
		WrapConnector: wrap,
		Log:           log,
	})
}

// newHasher builds the bcrypt hasher and its pool: PASSWORD__HASH_WORKERS
// workers (one per Go processor when 0) that, unless plain, run at the
// lowest OS priority and, while they hash, on processors of their own on
// top of GOMAXPROCS (see password.Pool).
func newHasher(c config.Password, plain bool) (*password.Hasher, error) {
	workers := c.HashWorkers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var opts []password.PoolOption
	if !plain {
		opts = append(opts, password.OwnProcs(), password.LowPriority())
	}
	return password.NewHasher(c.BcryptCost, password.NewPool(workers, c.HashQueue, opts...))
}

// Addr is the address gRPC listens on.
func (a *App) Addr() net.Addr { return a.lis.Addr() }

// MetricsAddr is the address the metrics are served on; nil without
// METRICS__ADDR.
func (a *App) MetricsAddr() net.Addr {
	if a.metricsLis == nil {
		return nil
	}
	return a.metricsLis.Addr()
}

// Close releases an App that was never served.
func (a *App) Close() error {
	a.lis.Close()
	if a.metricsLis != nil {
		a.metricsLis.Close()
	}
	a.stopTLS()
	a.stopTracing()
	return a.DB.Close()
}

// endStreams ends streams (health Watch) when shutdown starts; otherwise
// a watching load balancer would hold GracefulStop for the full grace
// period.
func (a *App) endStreams(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	go func() {
		select {
		case <-a.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	w := middleware.WrapServerStream(ss)
	w.WrappedContext = ctx
	return handler(srv, w)
}

// setHealth sets the serving status of the server and of AuthService.
func (a *App) setHealth(s healthpb.HealthCheckResponse_ServingStatus) {
	a.health.SetServingStatus("", s)
	a.health.SetServingStatus(authpb.AuthService_ServiceDesc.ServiceName, s)
}

// Serve serves gRPC and runs the outbox dispatcher, the database's health
// (see HealthProbeInterval) and
// the periodic pruning until ctx is cancelled, then shuts down gracefully:
// health turns NOT_SERVING and open streams end, in-flight RPCs finish (up
// to ShutdownGrace), the dispatcher finishes the delivery in progress, and
// the database is closed.
func (a *App) Serve(ctx context.Context) error {
	defer a.DB.Close()
	defer a.stopTLS()
	defer a.stopTracing()
	if addr := a.cfg.Debug.PprofAddr; addr != "" {
		// net/http/pprof registers its handlers on http.DefaultServeMux.
		pprofSrv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := pprofSrv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("pprof server", "error", err)
			}
		}()
		defer pprofSrv.Close()
		a.log.Warn("pprof enabled", "addr", addr)
	}
	if a.metricsLis != nil {
		defer serveMetrics(a.metricsLis, a.Metrics, a.log)()
	}
	// The database is reachable and migrated at this point.
	a.setHealth(healthpb.HealthCheckResponse_SERVING)

	runCtx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	wg.Go(func() { a.Dispatcher.Run(runCtx) })
	ticks := a.healthTicks
	if ticks == nil {
		t := time.NewTicker(HealthProbeInterval)
		defer t.Stop()
		ticks = t.C
	}
	wg.Go(func() { a.dbHealth.probe(runCtx, ticks, a.DB.SQL.PingContext) })
	if !a.noCleanup {
		wg.Go(func() { cleanup(runCtx, a.Service, a.cfg.Cleanup.Interval, a.Metrics, a.log) })
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- a.grpc.Serve(a.lis) }()
	a.log.Info("authd serving", "addr", a.lis.Addr().String())

	select {
	case err := <-serveErr:
		stopWorkers()
		wg.Wait()
		return fmt.Errorf("grpc serve: %w", err)
	case <-ctx.Done():
	}
	a.log.Info("shutting down")
	a.health.Shutdown()
	close(a.stopping)
	stopped := make(chan struct{})
	go func() { a.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(ShutdownGrace):
		a.log.Warn("grace period over; cancelling in-flight RPCs")
		a.grpc.Stop()
	}
	stopWorkers()
	wg.Wait()
	a.log.Info("stopped")
	if err := <-serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// cleanup runs the retention cleanup (auth.Service.Cleanup) at start and
// then every interval, until ctx ends, and counts the rows in m.
func cleanup(ctx context.Context, svc *auth.Service, interval time.Duration, m *metrics.Metrics, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		start := time.Now()
		c, err := svc.Cleanup(ctx)
		for table, n := range c.Tables() {
			m.CleanupDeleted(table, n)
		}
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("cleanup failed", "error", err, "rows", c.Total())
		case c.Total() > 0:
			log.Info("cleanup", "rows", c.Total(), "refresh_tokens", c.RefreshTokens, "token_families", c.TokenFamilies,
				"codes", c.Codes, "outbox_messages", c.Mail, "users", c.Users, "audit_events", c.AuditEvents,
				"rate_limits", c.Counters, "login_throttles", c.LoginThrottles, "duration", time.Since(start))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// deriveKey derives a 32-byte key for one purpose from secret with
// HKDF-SHA256 (RFC 5869).
func deriveKey(secret []byte, purpose string) ([]byte, error) {
	k := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, secret, nil, []byte(purpose)), k); err != nil {
		return nil, fmt.Errorf("derive %s key: %w", purpose, err)
	}
	return k, nil
}
