package server_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/internal/testutil/tcpproxy"
	"github.com/placebrain/auth/internal/testutil/testdb"
	"github.com/placebrain/auth/proto/authpb"
)

// viaProxy starts a service whose database connections go through a
// proxy the test controls.
func viaProxy(t *testing.T, opts ...authtest.Option) (*authtest.Env, *tcpproxy.Proxy) {
	t.Helper()
	var p *tcpproxy.Proxy
	opts = append(opts, authtest.RewriteURL(func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		p = tcpproxy.Start(t, u.Host)
		u.Host = p.Addr()
		return u.String()
	}))
	return authtest.New(t, opts...), p
}

// wantUnavailable fails t unless err is UNAVAILABLE with the reason
// DATABASE_UNAVAILABLE and a RetryInfo.
func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.Unavailable {
		t.Errorf("%s: code %v (%q), want UNAVAILABLE", what, st.Code(), st.Message())
		return
	}
	var reason string
	var retry bool
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason = d.Reason
		case *errdetails.RetryInfo:
			retry = d.GetRetryDelay().AsDuration() > 0
		}
	}
	if reason != "DATABASE_UNAVAILABLE" || !retry {
		t.Errorf("%s: reason %q, retry info %v; want DATABASE_UNAVAILABLE with a RetryInfo", what, reason, retry)
	}
}

// everyRPC calls the database-backed RPCs once each and returns their
// errors by name.
func everyRPC(ctx context.Context, c authpb.AuthServiceClient, userID, refresh string) map[string]error {
	errs := map[string]error{}
	_, errs["GetMe"] = c.GetMe(ctx, &authpb.GetMeRequest{UserId: userID})
	_, errs["GetUserByEmail"] = c.GetUserByEmail(ctx, &authpb.GetUserByEmailRequest{Email: "ada@example.com"})
	_, errs["Login"] = c.Login(ctx, &authpb.LoginRequest{Email: "ada@example.com", Password: pw})
	_, errs["RefreshTokens"] = c.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: refresh})
	_, errs["Register"] = c.Register(ctx, &authpb.RegisterRequest{Username: "bob", Email: "bob@example.com", Password: pw})
	_, errs["SendOtp"] = c.SendOtp(ctx, &authpb.SendOtpRequest{Email: "ada@example.com"})
	_, errs["Logout"] = c.Logout(ctx, &authpb.LogoutRequest{RefreshToken: refresh})
	return errs
}

// recovers calls GetMe until it succeeds: the pool's connections that the
// outage broke fail once each (at most the pool's size).
func recovers(t *testing.T, e *authtest.Env, userID string) {
	t.Helper()
	for i := 0; ; i++ {
		_, err := e.Client.GetMe(t.Context(), &authpb.GetMeRequest{UserId: userID})
		if err == nil {
			return
		}
		if i > e.Config.Database.MaxOpenConns+1 {
			t.Fatalf("GetMe after the database came back: %v", err)
		}
		wantUnavailable(t, "GetMe while the pool reconnects", err)
	}
}

func TestDatabaseRefusedIsUnavailable(t *testing.T) {
	testdb.SkipUnless(t, "postgres")
	e, p := viaProxy(t)
	id := e.VerifiedUser(t, "ada", "ada@example.com", pw)
	tp := e.Login(t, "ada@example.com", pw)

	p.Set(tcpproxy.Refuse) // open connections cut, new ones closed at once
	for name, err := range everyRPC(t.Context(), e.Client, id, tp.RefreshToken) {
		wantUnavailable(t, name, err)
	}
	p.Set(tcpproxy.Forward)
	recovers(t, e, id)
}

func TestDatabaseBlackholedIsUnavailable(t *testing.T) {
	testdb.SkipUnless(t, "postgres")
	e, p := viaProxy(t, authtest.Set("DATABASE__CONNECT_TIMEOUT_SECONDS", "1", "DATABASE__STATEMENT_TIMEOUT_SECONDS", "1"))
	id := e.VerifiedUser(t, "ada", "ada@example.com", pw)
	tp := e.Login(t, "ada@example.com", pw)

	// Connections accepted and never answered, open ones frozen: only the
	// service's own deadlines end the calls.
	p.Set(tcpproxy.Blackhole)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for name, err := range everyRPC(ctx, e.Client, id, tp.RefreshToken) {
		wantUnavailable(t, name, err)
	}
	p.Set(tcpproxy.Forward)
	recovers(t, e, id)
}

// lockTokens locks every refresh token row of the database at url in a
// transaction of its own, until the returned function rolls it back.
func lockTokens(t *testing.T, db *sql.DB) func() {
	t.Helper()
	tx, err := db.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("SELECT id FROM refresh_tokens FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	return func() { _ = tx.Rollback() }
}

func TestStatementTimeoutIsUnavailable(t *testing.T) {
	testdb.SkipUnless(t, "postgres")
	e := authtest.New(t, authtest.Set("DATABASE__STATEMENT_TIMEOUT_SECONDS", "1"))
	e.VerifiedUser(t, "ada", "ada@example.com", pw)
	tp := e.Login(t, "ada@example.com", pw)
	db := openDirect(t, e.URL)
	unlock := lockTokens(t, db)
	// The rotation waits for the row lock until the server's
	// statement_timeout cancels it (57014).
	_, err := e.Client.RefreshTokens(t.Context(), &authpb.RefreshTokensRequest{RefreshToken: tp.RefreshToken})
	wantUnavailable(t, "RefreshTokens behind a held lock", err)
	unlock()
	// Nothing committed: the retry with the same token rotates.
	if _, err := e.Client.RefreshTokens(t.Context(), &authpb.RefreshTokensRequest{RefreshToken: tp.RefreshToken}); err != nil {
		t.Fatalf("retry: %v", err)
	}
}

func TestTerminatedConnectionIsUnavailable(t *testing.T) {
	testdb.SkipUnless(t, "postgres")
	e := authtest.New(t)
	e.VerifiedUser(t, "ada", "ada@example.com", pw)
	tp := e.Login(t, "ada@example.com", pw)
	db := openDirect(t, e.URL)
	unlock := lockTokens(t, db)
	defer unlock()
	done := make(chan error, 1)
	go func() {
		_, err := e.Client.RefreshTokens(t.Context(), &authpb.RefreshTokensRequest{RefreshToken: tp.RefreshToken})
		done <- err
	}()
	// The service's backend waiting for the lock, mid-transaction, is
	// terminated (57P01) as an administrator or a failover would.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the rotation never waited for the lock")
		case <-time.After(10 * time.Millisecond):
		}
	}
	wantUnavailable(t, "RefreshTokens on a terminated connection", <-done)
}

// openDirect opens the test database at url without the service.
func openDirect(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatal(fmt.Errorf("open %s: %w", url, err))
	}
	return db
}

// Health follows the database: an RPC that finds it gone turns it
// NOT_SERVING and one that succeeds SERVING, at once; while no RPC runs,
// the probe (timed by the test) does the same.
func TestHealthFollowsDatabase(t *testing.T) {
	testdb.SkipUnless(t, "postgres")
	ticks := make(chan time.Time)
	e, p := viaProxy(t, authtest.ServerOptions(server.Options{HealthTicks: ticks}))
	id := e.VerifiedUser(t, "ada", "ada@example.com", pw)
	hc := healthpb.NewHealthClient(e.Conn)
	check := func(want healthpb.HealthCheckResponse_ServingStatus, when string) {
		t.Helper()
		for _, svc := range []string{"", "auth.AuthService"} {
			r, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				t.Fatalf("%s: health check %q: %v", when, svc, err)
			}
			if r.GetStatus() != want {
				t.Errorf("%s: health of %q is %v, want %v", when, svc, r.GetStatus(), want)
			}
		}
	}
	// probeUntil ticks the probe until health says want: each tick is
	// taken once the previous probe's outcome is recorded. A pool
	// connection the outage broke may fail one ping each.
	probeUntil := func(want healthpb.HealthCheckResponse_ServingStatus, when string) {
		t.Helper()
		for i := 0; i <= e.Config.Database.MaxOpenConns+2; i++ {
			ticks <- time.Now()
			ticks <- time.Now()
			r, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{})
			if err == nil && r.GetStatus() == want {
				check(want, when)
				return
			}
		}
		t.Fatalf("%s: health never turned %v", when, want)
	}
	check(healthpb.HealthCheckResponse_SERVING, "at start")

	p.Set(tcpproxy.Refuse)
	_, err := e.Client.GetMe(t.Context(), &authpb.GetMeRequest{UserId: id})
	wantUnavailable(t, "GetMe", err)
	check(healthpb.HealthCheckResponse_NOT_SERVING, "after an RPC found the database gone")

	p.Set(tcpproxy.Forward)
	recovers(t, e, id)
	check(healthpb.HealthCheckResponse_SERVING, "after an RPC succeeded")

	p.Set(tcpproxy.Refuse)
	probeUntil(healthpb.HealthCheckResponse_NOT_SERVING, "idle, database gone")
	p.Set(tcpproxy.Forward)
	probeUntil(healthpb.HealthCheckResponse_SERVING, "idle, database back")
}

// A login the database failed before its password was compared counts
// nothing toward the lock.
func TestLoginDatabaseFailureCountsNothing(t *testing.T) {
	testdb.SkipUnless(t, "postgres")
	e, p := viaProxy(t, authtest.Set("LOGIN__MAX_FAILURES", "1"))
	id := e.VerifiedUser(t, "ada", "ada@example.com", pw)
	p.Set(tcpproxy.Refuse)
	_, err := e.Client.Login(t.Context(), &authpb.LoginRequest{Email: "ada@example.com", Password: "wrong password"})
	wantUnavailable(t, "Login", err)
	p.Set(tcpproxy.Forward)
	recovers(t, e, id)
	// The allowance is whole: this wrong password is the first failure.
	_, err = e.Client.Login(t.Context(), &authpb.LoginRequest{Email: "ada@example.com", Password: "wrong password"})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("first counted failure: %v, want UNAUTHENTICATED", err)
	}
	_, err = e.Client.Login(t.Context(), &authpb.LoginRequest{Email: "ada@example.com", Password: pw})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("after it: %v, want RESOURCE_EXHAUSTED (locked)", err)
	}
}
