package grpcapi_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/placebrain/auth/ent/auditevent"
	"github.com/placebrain/auth/proto/authpb"
)

// Failed logins are counted per address in the database: past the limit
// the address is locked, a known and an unknown address are answered
// alike, the lock expires by itself, and a success resets the count.
func TestLoginThrottling(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.verifiedUser(t, "tom", "tom@example.com", pw)
	login := func(addr, password string) error {
		_, err := e.client.Login(ctx, &authpb.LoginRequest{Email: addr, Password: password})
		return err
	}
	for i := 0; i < loginMaxFails; i++ {
		wantStatus(t, login("tom@example.com", "wrong password"), codes.Unauthenticated, "Invalid email or password", "INVALID_CREDENTIALS")
		wantStatus(t, login("ghost@example.com", "wrong password"), codes.Unauthenticated, "Invalid email or password", "INVALID_CREDENTIALS")
	}
	// Locked: even the right password is refused, with the same answer
	// for the unknown address.
	errKnown, errUnknown := login("TOM@example.com", pw), login("ghost@example.com", pw)
	wantStatus(t, errKnown, codes.ResourceExhausted, "Too many failed sign-in attempts; try again later", "LOGIN_THROTTLED")
	wantStatus(t, errUnknown, codes.ResourceExhausted, "Too many failed sign-in attempts; try again later", "LOGIN_THROTTLED")
	dk, _ := retryDelay(errKnown)
	du, _ := retryDelay(errUnknown)
	if dk != loginLockout || du != loginLockout {
		t.Errorf("retry delays %v and %v, want %v", dk, du, loginLockout)
	}
	if errKnown.Error() != errUnknown.Error() {
		t.Errorf("answers differ: %v vs %v", errKnown, errUnknown)
	}
	// Other addresses are not affected.
	e.verifiedUser(t, "ann", "ann@example.com", pw)
	e.login(t, "ann@example.com", pw)

	// The lock expires by itself.
	e.clock.Advance(loginLockout)
	e.login(t, "tom@example.com", pw)

	// A success resets the count: limit-1 failures, a success, limit-1
	// failures again, and the account is not locked.
	for range loginMaxFails - 1 {
		login("tom@example.com", "wrong password")
	}
	e.login(t, "tom@example.com", pw)
	for range loginMaxFails - 1 {
		login("tom@example.com", "wrong password")
	}
	e.login(t, "tom@example.com", pw)

	// Failures outside the window do not add up.
	for range loginMaxFails - 1 {
		login("ann@example.com", "wrong password")
	}
	e.clock.Advance(loginWindow)
	login("ann@example.com", "wrong password")
	e.login(t, "ann@example.com", pw)
}

// The count is in the database, so it holds across instances: failures
// spread over two instances lock the address on both.
func TestLoginThrottlingAcrossInstances(t *testing.T) {
	a := newEnv(t)
	b := newEnv(t, sameDatabaseAs(a))
	ctx := context.Background()
	a.verifiedUser(t, "multi", "multi@example.com", pw)
	for i := 0; i < loginMaxFails; i++ {
		inst := []*env{a, b}[i%2]
		_, err := inst.client.Login(ctx, &authpb.LoginRequest{Email: "multi@example.com", Password: "wrong password"})
		wantStatus(t, err, codes.Unauthenticated, "", "INVALID_CREDENTIALS")
	}
	for _, inst := range []*env{a, b} {
		_, err := inst.client.Login(ctx, &authpb.LoginRequest{Email: "multi@example.com", Password: pw})
		wantStatus(t, err, codes.ResourceExhausted, "", "LOGIN_THROTTLED")
	}
}

// Security events are recorded with user ids, and hold no secret or
// address; Prune drops them after the retention.
func TestAuditLog(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := uuid.MustParse(e.register(t, "audit", "audit@example.com", pw))
	code := e.mailCode(t, "audit@example.com")
	e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "audit@example.com", Code: "000000"})
	e.client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "audit@example.com", Code: code})
	e.client.Login(ctx, &authpb.LoginRequest{Email: "audit@example.com", Password: "wrong password"})
	e.client.Login(ctx, &authpb.LoginRequest{Email: "nobody@example.com", Password: "wrong password"})
	lr := e.login(t, "audit@example.com", pw)
	r1, _ := e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: lr.GetRefreshToken()})
	e.clock.Advance(refreshGrace)
	e.client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: lr.GetRefreshToken()}) // reuse
	lr2 := e.login(t, "audit@example.com", pw)
	e.client.Logout(ctx, &authpb.LogoutRequest{RefreshToken: lr2.GetRefreshToken()})

	want := map[auditevent.Event]int{
		auditevent.EventRegister: 1, auditevent.EventOtpSent: 1, auditevent.EventOtpFailed: 1, auditevent.EventOtpVerified: 1,
		auditevent.EventLoginFailed: 2, auditevent.EventLoginSucceeded: 2, auditevent.EventTokenRefreshed: 1,
		auditevent.EventRefreshTokenReused: 1, auditevent.EventTokenFamilyRevoked: 2, auditevent.EventLogout: 1,
	}
	got := map[auditevent.Event]int{}
	for _, ev := range e.db.AuditEvent.Query().AllX(ctx) {
		got[ev.Event]++
		if ev.Event == auditevent.EventLoginFailed && ev.Reason == "unknown_email" {
			if ev.UserID != nil {
				t.Errorf("unknown-email failure carries a user id")
			}
			continue
		}
		if ev.UserID == nil || *ev.UserID != id {
			t.Errorf("%s: user_id = %v, want %s", ev.Event, ev.UserID, id)
		}
		for _, secret := range []string{pw, code, lr.GetRefreshToken(), r1.GetRefreshToken(), "audit@example.com"} {
			if strings.Contains(ev.Reason, secret) {
				t.Errorf("%s reason holds a secret", ev.Event)
			}
		}
	}
	for ev, n := range want {
		if got[ev] != n {
			t.Errorf("%s events = %d, want %d", ev, got[ev], n)
		}
	}

	// Retention.
	e.clock.Advance(89 * 24 * time.Hour)
	if _, err := e.svc.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.db.AuditEvent.Query().CountX(ctx); n == 0 {
		t.Errorf("events pruned before the retention ended")
	}
	e.clock.Advance(2 * 24 * time.Hour)
	if _, err := e.svc.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.db.AuditEvent.Query().CountX(ctx); n != 0 {
		t.Errorf("%d events left after the retention", n)
	}
	if n := e.db.LoginThrottle.Query().CountX(ctx); n != 0 {
		t.Errorf("%d stale login throttles left", n)
	}
}

// Every string field has a bound; an oversized access token is
// INVALID_ARGUMENT, not a parse of megabytes.
func TestInputLimits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.client.ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: strings.Repeat("a", 4097)})
	wantStatus(t, err, codes.InvalidArgument, "access_token must be at most 4096 bytes", "INVALID_INPUT")
	_, err = e.client.Register(ctx, &authpb.RegisterRequest{Username: strings.Repeat("u", 65), Email: "x@example.com", Password: pw})
	wantStatus(t, err, codes.InvalidArgument, "", "INVALID_INPUT")
	_, err = e.client.GetMe(ctx, &authpb.GetMeRequest{UserId: strings.ToUpper(uuid.NewString())})
	wantStatus(t, err, codes.InvalidArgument, "", "INVALID_INPUT")
	// Over the gRPC message limit.
	_, err = e.client.Login(ctx, &authpb.LoginRequest{Email: strings.Repeat("a", 100<<10), Password: pw})
	wantStatus(t, err, codes.ResourceExhausted, "", "")
}

// Register Alice@Example.COM, then alice@example.com: ALREADY_EXISTS;
// Login with ALICE@example.com works; GetUserByEmail with
// alice@EXAMPLE.com returns the same user.
func TestEmailCaseInsensitivity(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.verifiedUser(t, "Alice", "Alice@Example.COM", pw)
	_, err := e.client.Register(ctx, &authpb.RegisterRequest{Username: "alice", Email: "alice@example.com", Password: pw})
	wantStatus(t, err, codes.AlreadyExists, "Email already registered", "EMAIL_TAKEN")
	e.login(t, "ALICE@example.com", pw)
	u, err := e.client.GetUserByEmail(ctx, &authpb.GetUserByEmailRequest{Email: "alice@EXAMPLE.com"})
	if err != nil || u.GetUserId() != id || u.GetEmail() != "Alice@Example.COM" {
		t.Fatalf("GetUserByEmail = %v, %v", u, err)
	}
}

// Attempts are counted before the password is checked, so concurrent
// guesses cannot outrun the limit: of many parallel wrong logins at most
// MaxFailures get a password check, the rest are throttled.
func TestLoginThrottlingUnderConcurrency(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.verifiedUser(t, "burst", "burst@example.com", pw)
	const n = 30
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.client.Login(ctx, &authpb.LoginRequest{Email: "burst@example.com", Password: "wrong password"})
		}()
	}
	wg.Wait()
	checked := 0
	for _, err := range errs {
		switch errorInfo(err).GetReason() {
		case "INVALID_CREDENTIALS":
			checked++
		case "LOGIN_THROTTLED":
		default:
			t.Errorf("unexpected answer %v", err)
		}
	}
	if checked > loginMaxFails {
		t.Errorf("%d passwords checked in parallel, want at most %d", checked, loginMaxFails)
	}
}
