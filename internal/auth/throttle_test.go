package auth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent/auditevent"
	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/testutil/authtest"
)

// Failed logins are counted per address in the database: past the limit
// the address is locked, a known and an unknown address are answered
// alike, the lock expires by itself, and a success resets the count.
func TestLoginThrottling(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "tom", "tom@example.com", pw)
	login := func(addr, password string) error {
		_, err := e.Service.Login(ctx, addr, password)
		return err
	}
	for i := 0; i < loginMaxFails; i++ {
		wantErr(t, login("tom@example.com", "wrong password"), auth.ErrInvalidCredentials, "Invalid email or password")
		wantErr(t, login("ghost@example.com", "wrong password"), auth.ErrInvalidCredentials, "Invalid email or password")
	}
	// Locked: even the right password is refused, with the same answer
	// for the unknown address.
	errKnown, errUnknown := login("TOM@example.com", pw), login("ghost@example.com", pw)
	const msg = "Too many failed sign-in attempts; try again later"
	dk := wantErr(t, errKnown, auth.ErrLoginThrottled, msg).RetryAfter
	du := wantErr(t, errUnknown, auth.ErrLoginThrottled, msg).RetryAfter
	if dk != loginLockout || du != loginLockout {
		t.Errorf("retry delays %v and %v, want %v", dk, du, loginLockout)
	}
	// Other addresses are not affected.
	e.VerifiedUser(t, "ann", "ann@example.com", pw)
	e.Login(t, "ann@example.com", pw)

	// The lock expires by itself.
	e.Clock.Advance(loginLockout)
	e.Login(t, "tom@example.com", pw)

	// A success resets the count: limit-1 failures, a success, limit-1
	// failures again, and the account is not locked.
	for range loginMaxFails - 1 {
		login("tom@example.com", "wrong password")
	}
	e.Login(t, "tom@example.com", pw)
	for range loginMaxFails - 1 {
		login("tom@example.com", "wrong password")
	}
	e.Login(t, "tom@example.com", pw)

	// Failures outside the window do not add up.
	for range loginMaxFails - 1 {
		login("ann@example.com", "wrong password")
	}
	e.Clock.Advance(loginWindow)
	login("ann@example.com", "wrong password")
	e.Login(t, "ann@example.com", pw)
}

// The count is in the database, so it holds across instances: failures
// spread over two instances lock the address on both.
func TestLoginThrottlingAcrossInstances(t *testing.T) {
	a := newEnv(t)
	b := newEnv(t, authtest.SameDatabaseAs(a))
	ctx := context.Background()
	a.VerifiedUser(t, "multi", "multi@example.com", pw)
	for i := 0; i < loginMaxFails; i++ {
		inst := []*authtest.Env{a, b}[i%2]
		_, err := inst.Service.Login(ctx, "multi@example.com", "wrong password")
		wantErr(t, err, auth.ErrInvalidCredentials, "")
	}
	for _, inst := range []*authtest.Env{a, b} {
		_, err := inst.Service.Login(ctx, "multi@example.com", pw)
		wantErr(t, err, auth.ErrLoginThrottled, "")
	}
}

// Attempts are counted before the password is checked, so concurrent
// guesses cannot outrun the limit: of many parallel wrong logins at most
// MaxFailures get a password check, the rest are throttled.
func TestLoginThrottlingUnderConcurrency(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "burst", "burst@example.com", pw)
	const n = 30
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = e.Service.Login(ctx, "burst@example.com", "wrong password") })
	}
	wg.Wait()
	checked := 0
	for _, err := range errs {
		de, _ := auth.AsError(err)
		switch {
		case de == nil:
			t.Errorf("unexpected answer %v", err)
		case de.Reason == auth.ErrInvalidCredentials.Reason:
			checked++
		case de.Reason != auth.ErrLoginThrottled.Reason:
			t.Errorf("unexpected answer %v", err)
		}
	}
	if checked > loginMaxFails {
		t.Errorf("%d passwords checked in parallel, want at most %d", checked, loginMaxFails)
	}
}

// Security events are recorded with user ids, and hold no secret or
// address; Cleanup drops them after the retention.
func TestAuditLog(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := uuid.MustParse(e.Register(t, "audit", "audit@example.com", pw))
	code := e.Code(t, "audit@example.com")
	e.Service.VerifyOTP(ctx, "audit@example.com", "000000")
	e.Service.VerifyOTP(ctx, "audit@example.com", code)
	e.Service.Login(ctx, "audit@example.com", "wrong password")
	e.Service.Login(ctx, "nobody@example.com", "wrong password")
	lr := e.Login(t, "audit@example.com", pw)
	r1, _ := e.Service.Refresh(ctx, lr.RefreshToken)
	e.Clock.Advance(refreshRecovery)        // past the lost-response recovery too
	e.Service.Refresh(ctx, lr.RefreshToken) // reuse
	lr2 := e.Login(t, "audit@example.com", pw)
	e.Service.Logout(ctx, lr2.RefreshToken)

	want := map[auditevent.Event]int{
		auditevent.EventRegister: 1, auditevent.EventOtpSent: 1, auditevent.EventOtpFailed: 1, auditevent.EventOtpVerified: 1,
		auditevent.EventLoginFailed: 2, auditevent.EventLoginSucceeded: 2, auditevent.EventTokenRefreshed: 1,
		auditevent.EventRefreshTokenReused: 1, auditevent.EventTokenFamilyRevoked: 2, auditevent.EventLogout: 1,
	}
	got := map[auditevent.Event]int{}
	for _, ev := range e.DB.Ent.AuditEvent.Query().AllX(ctx) {
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
		for _, secret := range []string{pw, code, lr.RefreshToken, r1.RefreshToken, "audit@example.com"} {
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
	e.Clock.Advance(89 * 24 * time.Hour)
	if _, err := e.Service.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.DB.Ent.AuditEvent.Query().CountX(ctx); n == 0 {
		t.Errorf("events pruned before the retention ended")
	}
	e.Clock.Advance(2 * 24 * time.Hour)
	if _, err := e.Service.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.DB.Ent.AuditEvent.Query().CountX(ctx); n != 0 {
		t.Errorf("%d events left after the retention", n)
	}
	if n := e.DB.Ent.LoginThrottle.Query().CountX(ctx); n != 0 {
		t.Errorf("%d stale login throttles left", n)
	}
}

// waitPool waits until the service's hashing pool runs and queues the
// given numbers of jobs (a bounded number of looks, no timing).
func waitPool(t *testing.T, e *authtest.Env, running, waiting int) {
	t.Helper()
	for i := 0; ; i++ {
		st := e.App.Passwords.Pool().Stats()
		if st.Running == running && st.Waiting == waiting {
			return
		}
		if i == 100000 {
			t.Fatalf("pool: %+v, want %d running and %d waiting", st, running, waiting)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// A login its caller cancels while it waits for the hashing pool never
// compared its password: it is taken back and does not count toward the
// lock. One whose comparison ran counts.
func TestLoginCancelledWhileQueuedIsRefunded(t *testing.T) {
	e := newEnv(t, authtest.Set("LOGIN__MAX_FAILURES", "1", "PASSWORD__HASH_WORKERS", "1", "PASSWORD__HASH_QUEUE", "4"))
	e.VerifiedUser(t, "tom", "tom@example.com", pw)
	// Fill the pool: its one worker runs a job that waits for release.
	release := make(chan struct{})
	blocked := make(chan error, 1)
	go func() {
		blocked <- e.App.Passwords.Pool().Do(context.Background(), "someone else", func() { <-release })
	}()
	waitPool(t, e, 1, 0)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.Service.Login(ctx, "tom@example.com", "wrong password")
		done <- err
	}()
	waitPool(t, e, 1, 1) // the login is queued
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) && !errors.Is(err, auth.ErrServerBusy) {
		t.Errorf("cancelled login: %v", err)
	}
	close(release)
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	// With one failure allowed, the cancelled attempt left the allowance
	// whole: this wrong password is the first failure, and it counts.
	_, err := e.Service.Login(context.Background(), "tom@example.com", "wrong password")
	wantErr(t, err, auth.ErrInvalidCredentials, "")
	_, err = e.Service.Login(context.Background(), "tom@example.com", pw)
	wantErr(t, err, auth.ErrLoginThrottled, "")
}
