// Package server assembles authd from its parts: database, migrations,
// domain service, outbox dispatcher and the gRPC server with health and
// reflection, and runs them until the context ends.
package server

import (
	"context"
	"crypto/sha256"
	"database/sql"
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
	"golang.org/x/crypto/hkdf"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/config"
	"github.com/placebrain/auth/internal/grpcapi"
	"github.com/placebrain/auth/internal/mail"
	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/internal/otp"
	"github.com/placebrain/auth/internal/password"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/token"
	"github.com/placebrain/auth/migrations"
	"github.com/placebrain/auth/proto/authpb"
)

// ShutdownGrace is how long in-flight RPCs may run after a stop signal
// before they are cancelled.
const ShutdownGrace = 20 * time.Second

// OpenDB opens the configured database.
func OpenDB(ctx context.Context, c *config.Config) (*store.DB, error) {
	return store.Open(ctx, store.Config{
		URL:     c.Database.URL,
		DataDir: c.DataDir,
		Pool: store.PoolConfig{
			MaxOpenConns:    c.Database.MaxOpenConns,
			MaxIdleConns:    c.Database.MaxIdleConns,
			ConnMaxLifetime: time.Duration(c.Database.ConnMaxLifetimeMinutes) * time.Minute,
		},
	})
}

// Run serves until ctx is cancelled, then shuts down gracefully: health
// turns NOT_SERVING, in-flight RPCs finish (up to ShutdownGrace), and the
// dispatcher finishes the delivery in progress.
func Run(ctx context.Context, c *config.Config, log *slog.Logger) error {
	if c.Dev {
		log.Warn("DEVELOPMENT MODE: do not use in production. The JWT secret may be generated and kept in the data directory, and without SMTP__HOST e-mails (with their codes) are written to this log instead of being sent.",
			"data_dir", c.DataDir)
	}
	db, err := OpenDB(ctx, c)
	if err != nil {
		return err
	}
	defer db.Close()
	client := db.Ent
	log.Info("database open", "database", db.Location)
	m := migrate.New(db.SQL, db.Dialect, migrations.For(db.Dialect), log)
	if c.Database.AutoMigrate {
		applied, err := m.Apply(ctx)
		if err != nil {
			return err
		}
		log.Info("migrations up to date", "applied", len(applied))
	} else {
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		if len(st.Pending) > 0 {
			return fmt.Errorf("database has %d pending migrations and DATABASE__AUTO_MIGRATE=false: run `authd migrate apply` or `atlas migrate apply`", len(st.Pending))
		}
	}

	var previous [][]byte
	for _, p := range c.JWT.PreviousSecrets {
		previous = append(previous, []byte(p))
	}
	access, err := token.NewIssuer([]byte(c.JWT.Secret), c.JWT.Issuer, c.JWT.AccessTokenTTL(), nil,
		token.Options{Previous: previous, Leeway: time.Duration(c.JWT.LeewaySeconds) * time.Second, CacheSize: c.JWT.ValidationCacheSize})
	if err != nil {
		return err
	}
	// Hashing workers run at the lowest OS priority and, while they hash,
	// on processors of their own on top of GOMAXPROCS (see password.Pool).
	workers := c.Password.HashWorkers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	hasher, err := password.NewHasher(c.Password.BcryptCost, password.NewPool(workers, c.Password.HashQueue, password.OwnProcs()))
	if err != nil {
		return err
	}
	keys, err := otp.NewKeyer([]byte(c.OTP.Secret), []byte(c.JWT.Secret))
	if err != nil {
		return err
	}
	throttleKey, err := deriveKey([]byte(c.JWT.Secret), "placebrain-auth login throttle v1")
	if err != nil {
		return err
	}
	var sender mail.Sender = mail.LogSender{Log: log}
	sendTimeout := time.Duration(c.SMTP.TimeoutSeconds) * time.Second
	if c.SMTP.Host != "" {
		if sender, err = mail.NewSMTPSender(mail.SMTPConfig{
			Host: c.SMTP.Host, Port: c.SMTP.Port, Username: c.SMTP.Username, Password: c.SMTP.Password,
			From: c.SMTP.From, TLS: c.SMTP.TLS, Timeout: sendTimeout,
		}); err != nil {
			return err
		}
	}
	dispatcher := mail.NewDispatcher(client, sender, mail.DispatcherOptions{
		PollInterval: time.Duration(c.Outbox.PollIntervalMillis) * time.Millisecond,
		SendTimeout:  sendTimeout,
		MaxAttempts:  c.Outbox.MaxAttempts,
		RetryBase:    time.Duration(c.Outbox.RetryBaseSeconds) * time.Second,
		RetryMax:     time.Duration(c.Outbox.RetryMaxSeconds) * time.Second,
		Log:          log,
	})
	svc := auth.New(db, auth.Options{
		AccessTokens:      access,
		Passwords:         hasher,
		OTPKeys:           keys,
		RefreshTokenTTL:   c.JWT.RefreshTokenTTL(),
		OTPTTL:            time.Duration(c.OTP.ExpireMinutes) * time.Minute,
		OTPMaxAttempts:    c.OTP.MaxAttempts,
		OTPCooldown:       time.Duration(c.OTP.ResendCooldownSeconds) * time.Second,
		OTPDailyLimit:     c.OTP.DailyLimit,
		RefreshReuseGrace: time.Duration(c.JWT.RefreshReuseGraceSeconds) * time.Second,
		Login: auth.LoginPolicy{
			MaxFailures: c.Login.MaxFailures,
			Window:      time.Duration(c.Login.WindowMinutes) * time.Minute,
			Lockout:     time.Duration(c.Login.LockoutMinutes) * time.Minute,
			Key:         throttleKey,
		},
		AuditRetention: time.Duration(c.Audit.RetentionDays) * 24 * time.Hour,
		MailQueued:     dispatcher.Wake,
		Log:            log,
	})

	if c.PprofAddr != "" {
		// net/http/pprof registers its handlers on http.DefaultServeMux.
		pprofSrv := &http.Server{Addr: c.PprofAddr, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := pprofSrv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("pprof server", "error", err)
			}
		}()
		defer pprofSrv.Close()
		log.Warn("pprof enabled", "addr", c.PprofAddr)
	}
	lis, err := net.Listen("tcp", c.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on GRPC__LISTEN_ADDR %q: %w", c.ListenAddr, err)
	}
	// Streams (health Watch) end when shutdown starts; otherwise a
	// watching load balancer would hold GracefulStop for the full grace
	// period.
	stopping := make(chan struct{})
	endStreams := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		go func() {
			select {
			case <-stopping:
				cancel()
			case <-ctx.Done():
			}
		}()
		w := middleware.WrapServerStream(ss)
		w.WrappedContext = ctx
		return handler(srv, w)
	}
	gs := grpc.NewServer(append(grpcapi.ServerOptions(log), grpc.StreamInterceptor(endStreams))...)
	grpcapi.Register(gs, svc)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	setHealth := func(s healthpb.HealthCheckResponse_ServingStatus) {
		hs.SetServingStatus("", s)
		hs.SetServingStatus(authpb.AuthService_ServiceDesc.ServiceName, s)
	}
	// The database is reachable and migrated at this point.
	setHealth(healthpb.HealthCheckResponse_SERVING)

	runCtx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); dispatcher.Run(runCtx) }()
	go func() { defer wg.Done(); watchDB(runCtx, db.SQL, setHealth, log) }()
	go func() { defer wg.Done(); prune(runCtx, svc, log) }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	log.Info("authd serving", "addr", lis.Addr().String())

	select {
	case err = <-serveErr:
		stopWorkers()
		wg.Wait()
		return fmt.Errorf("grpc serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	hs.Shutdown()
	close(stopping)
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(ShutdownGrace):
		log.Warn("grace period over; cancelling in-flight RPCs")
		gs.Stop()
	}
	stopWorkers()
	wg.Wait()
	log.Info("stopped")
	if err := <-serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// prune deletes expired audit events and login throttles at start and
// then hourly.
func prune(ctx context.Context, svc *auth.Service, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := svc.Prune(ctx); err != nil && ctx.Err() == nil {
			log.Error("prune", "error", err)
		} else if n > 0 {
			log.Info("pruned expired rows", "rows", n)
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

// watchDB pings the database every few seconds and reports NOT_SERVING
// while it does not answer.
func watchDB(ctx context.Context, db *sql.DB, set func(healthpb.HealthCheckResponse_ServingStatus), log *slog.Logger) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	up := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := db.PingContext(pctx)
		cancel()
		switch {
		case err != nil && up && ctx.Err() == nil:
			up = false
			log.Error("database unreachable", "error", err)
			set(healthpb.HealthCheckResponse_NOT_SERVING)
		case err == nil && !up:
			up = true
			log.Info("database reachable again")
			set(healthpb.HealthCheckResponse_SERVING)
		}
	}
}
