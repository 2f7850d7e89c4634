package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/placebrain/auth/internal/password"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// refreshCase is a presented token's state and what presenting it at now
// under p leads to.
type refreshCase struct {
	name string
	p    RefreshPolicy
	tok  PresentedToken
	now  time.Time
	want refreshOutcome
}

// refreshCases are the token states TestDecideRefresh and
// TestFreshRotationAdmits run.
func refreshCases() []refreshCase {
	p := RefreshPolicy{Grace: 10 * time.Second, Recovery: 15 * time.Minute, SessionMax: 90 * 24 * time.Hour}
	child := []byte("sealed child")
	live := PresentedToken{ExpiresAt: t0.Add(time.Hour), FamilyCreatedAt: t0.Add(-24 * time.Hour)}
	with := func(f func(*PresentedToken)) PresentedToken {
		p := live
		f(&p)
		return p
	}
	rotated := func(f func(*PresentedToken)) PresentedToken {
		return with(func(p *PresentedToken) {
			p.UsedAt, p.ChildSealed = t0, child
			f(p)
		})
	}
	childUsed := func(p *PresentedToken) { p.ChildUsedAt = t0.Add(time.Second) }
	return []refreshCase{
		{"unused, live", p, live, t0, refreshRotate},
		{"unused, a nanosecond before expiry", p, live, t0.Add(time.Hour - 1), refreshRotate},
		{"unused, at expiry", p, live, t0.Add(time.Hour), refreshExpired},

		{"used just now: its child", p, rotated(func(*PresentedToken) {}), t0, refreshReplay},
		{"used, last moment of grace: its child", p, rotated(func(*PresentedToken) {}), t0.Add(10*time.Second - 1), refreshReplay},
		{"used, within grace, child used too: its child", p, rotated(childUsed), t0.Add(5 * time.Second), refreshReplay},
		{"used after its own expiry, within grace: its child", p,
			rotated(func(p *PresentedToken) { p.ExpiresAt = t0 }), t0.Add(time.Second), refreshReplay},

		{"used, grace over, child unused: recovered", p, rotated(func(*PresentedToken) {}), t0.Add(10 * time.Second), refreshRecover},
		{"used, last moment of recovery", p, rotated(func(*PresentedToken) {}), t0.Add(15*time.Minute - 1), refreshRecover},
		{"used, recovery over", p, rotated(func(*PresentedToken) {}), t0.Add(15 * time.Minute), refreshReuse},
		{"used, grace over, child used: reuse", p, rotated(childUsed), t0.Add(10 * time.Second), refreshReuse},
		{"recovery disabled", RefreshPolicy{Grace: p.Grace}, rotated(func(*PresentedToken) {}), t0.Add(10 * time.Second), refreshReuse},
		{"no grace, no recovery: any replay is reuse", RefreshPolicy{}, rotated(func(*PresentedToken) {}), t0, refreshReuse},
		{"used, expired, windows over: reuse wins", p, rotated(func(*PresentedToken) {}), t0.Add(2 * time.Hour), refreshReuse},
		{"used before children were kept, within grace: reuse", p,
			with(func(p *PresentedToken) { p.UsedAt = t0 }), t0, refreshReuse},

		{"session at its end", p, live, live.FamilyCreatedAt.Add(90 * 24 * time.Hour), refreshExpired},
		{"session a nanosecond before its end", p, with(func(p *PresentedToken) { p.ExpiresAt = t0.Add(100 * 24 * time.Hour) }),
			live.FamilyCreatedAt.Add(90*24*time.Hour - 1), refreshRotate},
		{"session past its end, even within grace", p, rotated(func(p *PresentedToken) { p.FamilyCreatedAt = t0.Add(-90 * 24 * time.Hour) }),
			t0, refreshExpired},
		{"no session bound", RefreshPolicy{Grace: p.Grace}, with(func(p *PresentedToken) {
			p.FamilyCreatedAt, p.ExpiresAt = t0.Add(-1000*24*time.Hour), t0.Add(time.Hour)
		}), t0, refreshRotate},

		{"family revoked", p, with(func(p *PresentedToken) { p.RevokedAt = t0 }), t0, refreshRevoked},
		{"family revoked, expired", p, with(func(p *PresentedToken) { p.RevokedAt = t0 }), t0.Add(2 * time.Hour), refreshRevoked},
		{"used token of a revoked family, within grace", p, rotated(func(p *PresentedToken) { p.RevokedAt = t0 }), t0, refreshReusedRevoked},
	}
}

func TestDecideRefresh(t *testing.T) {
	for _, tt := range refreshCases() {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.decideRefresh(tt.tok, tt.now); got != tt.want {
				t.Errorf("decideRefresh = %v, want %v", got, tt.want)
			}
		})
	}
}

// The one-statement rotation admits exactly the tokens the full path
// rotates, and asks for the child's expiry the full path gives it.
func TestFreshRotationAdmits(t *testing.T) {
	ttl := 30 * 24 * time.Hour
	for _, tt := range refreshCases() {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.p.freshRotation([]byte("hash"), tt.now, ttl, RefreshToken{}, nil)
			if got, want := r.Admits(tt.tok), tt.p.decideRefresh(tt.tok, tt.now) == refreshRotate; got != want {
				t.Errorf("Admits = %v, want %v (decideRefresh: %v)", got, want, tt.want)
			}
			// What the store computes: LEAST(child expiry, family start + SessionMax).
			exp := r.Child.ExpiresAt
			if end := tt.tok.FamilyCreatedAt.Add(r.SessionMax); r.SessionMax > 0 && end.Before(exp) {
				exp = end
			}
			if want := tt.p.expiry(tt.now, tt.tok.FamilyCreatedAt, ttl); !exp.Equal(want) || !r.Child.CreatedAt.Equal(tt.now) {
				t.Errorf("child expires %v, created %v; the full path: %v, %v", exp, r.Child.CreatedAt, want, tt.now)
			}
		})
	}
}

func TestRefreshExpiry(t *testing.T) {
	p := RefreshPolicy{SessionMax: 90 * 24 * time.Hour}
	ttl := 30 * 24 * time.Hour
	if got := p.expiry(t0, t0, ttl); !got.Equal(t0.Add(ttl)) {
		t.Errorf("fresh session: expiry %v, want its own lifetime", got)
	}
	start := t0.Add(-80 * 24 * time.Hour)
	if got := p.expiry(t0, start, ttl); !got.Equal(start.Add(90 * 24 * time.Hour)) {
		t.Errorf("late in the session: expiry %v, want the session's end", got)
	}
	if got := (RefreshPolicy{}).expiry(t0, start, ttl); !got.Equal(t0.Add(ttl)) {
		t.Errorf("no session bound: expiry %v, want its own lifetime", got)
	}
}

func TestLimitTake(t *testing.T) {
	lock := Limit{Max: 3, Window: 15 * time.Minute, Lock: 10 * time.Minute}
	daily := Limit{Max: 3, Window: 24 * time.Hour}
	fresh := Counter{WindowStart: t0}
	tests := []struct {
		name       string
		l          Limit
		c          Counter
		now        time.Time
		want       Counter
		wantLocked time.Time
		wantSet    bool
	}{
		{"first event", lock, fresh, t0, Counter{Count: 1, WindowStart: t0, Last: t0}, time.Time{}, false},
		{"below the cap", lock, Counter{Count: 2, WindowStart: t0}, t0.Add(time.Minute),
			Counter{Count: 3, WindowStart: t0, Last: t0.Add(time.Minute)}, time.Time{}, false},
		{"at the cap: locks for Lock", lock, Counter{Count: 3, WindowStart: t0, Last: t0}, t0.Add(time.Minute),
			Counter{WindowStart: t0.Add(time.Minute), LockedUntil: t0.Add(11 * time.Minute), Last: t0}, t0.Add(11 * time.Minute), true},
		{"at the cap, no Lock: refused until the window ends", daily, Counter{Count: 3, WindowStart: t0}, t0.Add(time.Hour),
			Counter{WindowStart: t0.Add(time.Hour), LockedUntil: t0.Add(24 * time.Hour)}, t0.Add(24 * time.Hour), true},
		{"window over: counts anew", lock, Counter{Count: 3, WindowStart: t0}, t0.Add(15 * time.Minute),
			Counter{Count: 1, WindowStart: t0.Add(15 * time.Minute), Last: t0.Add(15 * time.Minute)}, time.Time{}, false},
		{"locked: refused, nothing changes", lock, Counter{WindowStart: t0, LockedUntil: t0.Add(10 * time.Minute)}, t0.Add(time.Minute),
			Counter{WindowStart: t0, LockedUntil: t0.Add(10 * time.Minute)}, t0.Add(10 * time.Minute), false},
		{"lock over: counts anew", lock, Counter{WindowStart: t0, LockedUntil: t0.Add(10 * time.Minute)}, t0.Add(10 * time.Minute),
			Counter{Count: 1, WindowStart: t0.Add(10 * time.Minute), Last: t0.Add(10 * time.Minute)}, time.Time{}, false},
		{"no limit: admits, counts nothing", Limit{}, Counter{Count: 7, WindowStart: t0}, t0, Counter{Count: 7, WindowStart: t0}, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, until, set := tt.l.take(tt.c, tt.now)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("take state mismatch (-want +got):\n%s", diff)
			}
			if !until.Equal(tt.wantLocked) || set != tt.wantSet {
				t.Errorf("take: locked until %v (set %v), want %v (set %v)", until, set, tt.wantLocked, tt.wantSet)
			}
		})
	}
	// Events one after another: Max are admitted, the next locks.
	c := fresh
	for i := range lock.Max {
		var until time.Time
		if c, until, _ = lock.take(c, t0); !until.IsZero() {
			t.Fatalf("event %d refused", i+1)
		}
	}
	if !lock.full(c, t0) {
		t.Errorf("full after %d events = false", lock.Max)
	}
	if _, until, _ := lock.take(c, t0); !until.Equal(t0.Add(lock.Lock)) {
		t.Errorf("event %d: locked until %v, want %v", lock.Max+1, until, t0.Add(lock.Lock))
	}
	// A counter whose window began before a code was issued starts anew.
	if got := (Counter{Count: 5, WindowStart: t0}).since(t0.Add(time.Minute)); got != (Counter{WindowStart: t0.Add(time.Minute)}) {
		t.Errorf("since = %+v", got)
	}
	if got := refund(Counter{Count: 0}); got.Count != 0 {
		t.Errorf("refund below zero: %+v", got)
	}
}

func TestLoginPolicy(t *testing.T) {
	p := LoginPolicy{MaxFailures: 10, Window: 15 * time.Minute, Lockout: 15 * time.Minute,
		AccountDailyFailures: 100, AccountDelay: 2 * time.Second, TrustedFor: 90 * 24 * time.Hour}
	if !p.trusted(t0, t0.Add(89*24*time.Hour)) || p.trusted(t0, t0.Add(90*24*time.Hour)) || p.trusted(time.Time{}, t0) {
		t.Errorf("trusted: a sign-in trusts its source for TrustedFor, and no sign-in trusts nothing")
	}
	for _, tt := range []struct {
		attempts       int
		trusted, known bool
		want           time.Duration
	}{
		{10, false, true, 0},
		{11, false, true, 2 * time.Second},
		{11, true, true, 0},   // the owner's source is not slowed
		{11, false, false, 0}, // no source: the per-account lock is the limit
	} {
		if got := p.delay(tt.attempts, tt.trusted, tt.known); got != tt.want {
			t.Errorf("delay(%d, trusted %v, known %v) = %v, want %v", tt.attempts, tt.trusted, tt.known, got, tt.want)
		}
	}
	if p.pair() != (Limit{Max: 10, Window: 15 * time.Minute, Lock: 15 * time.Minute}) || p.account() != (Limit{Max: 100, Window: 24 * time.Hour}) {
		t.Errorf("limits: pair %+v, account %+v", p.pair(), p.account())
	}
}

func TestOTPPolicyCodesSent(t *testing.T) {
	p := OTPPolicy{Cooldown: time.Minute, DailyLimit: 3}
	for _, tt := range []struct {
		last, now time.Time
		want      bool
	}{
		{time.Time{}, t0, false},
		{t0, t0.Add(5 * time.Second), true},
		{t0, t0.Add(time.Minute - 1), true},
		{t0, t0.Add(time.Minute), false},
	} {
		if got := p.cooling(tt.last, tt.now); got != tt.want {
			t.Errorf("cooling(%v, %v) = %v, want %v", tt.last, tt.now, got, tt.want)
		}
	}
	// The daily limit: the fourth code of a window is refused until the
	// window ends.
	c := Counter{WindowStart: t0}
	for i := range 3 {
		var until time.Time
		if c, until, _ = p.perSourceSends().take(c, t0.Add(time.Duration(i)*time.Hour)); !until.IsZero() {
			t.Fatalf("code %d refused", i+1)
		}
	}
	if _, until, _ := p.perSourceSends().take(c, t0.Add(3*time.Hour)); !until.Equal(t0.Add(24 * time.Hour)) {
		t.Errorf("fourth code: refused until %v, want %v", until, t0.Add(24*time.Hour))
	}
}

func TestOTPPolicyAttempts(t *testing.T) {
	p := OTPPolicy{MaxAttempts: 5, Cooldown: time.Minute, TTL: 10 * time.Minute}
	c := OTPCode{CreatedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
	now := t0.Add(10 * time.Second)
	checkErr(t, p.checkable(c, now), nil, 0)
	checkErr(t, p.checkable(c, t0.Add(10*time.Minute)), ErrOTPExpired, 0)
	checkErr(t, p.exhausted(c, now), ErrOTPAttemptsExhausted, 50*time.Second)
	if p.perSourceChecks() != (Limit{Max: 5, Window: 10 * time.Minute}) {
		t.Errorf("per-source checks: %+v", p.perSourceChecks())
	}
	for attempt := 1; attempt < 5; attempt++ {
		err := p.mismatch(c, attempt, now)
		checkErr(t, err, ErrInvalidOTP, 0)
		if de, _ := AsError(err); de.Metadata["attempts_left"] != string(rune('0'+5-attempt)) {
			t.Errorf("attempt %d: attempts_left = %q", attempt, de.Metadata["attempts_left"])
		}
	}
	checkErr(t, p.mismatch(c, 5, now), ErrOTPAttemptsExhausted, 50*time.Second)
}

// checkErr checks that err is want (by reason) with the retry delay, or
// nil when want is nil.
func checkErr(t *testing.T, err, want error, retry time.Duration) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("err = %v, want nil", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Errorf("err = %v, want %v", err, want)
		return
	}
	if de, _ := AsError(err); de.RetryAfter != retry {
		t.Errorf("%v: retry after %v, want %v", want, de.RetryAfter, retry)
	}
}

func TestNextBatch(t *testing.T) {
	for _, tt := range []struct {
		n     int
		took  time.Duration
		limit int
		want  int
	}{
		{1000, 30 * time.Millisecond, 1000, 500},
		{60, 30 * time.Millisecond, 1000, 50},
		{50, time.Second, 1000, 50},
		{10, time.Second, 10, 10}, // a batch size under the floor stays
		{500, 10 * time.Millisecond, 1000, 500},
		{500, time.Millisecond, 1000, 1000},
		{800, time.Millisecond, 1000, 1000},
	} {
		if got := nextBatch(tt.n, tt.took, tt.limit); got != tt.want {
			t.Errorf("nextBatch(%d, %v, %d) = %d, want %d", tt.n, tt.took, tt.limit, got, tt.want)
		}
	}
}

func TestAddressUsername(t *testing.T) {
	long := strings.Repeat("a", 70)
	for in, want := range map[string]string{
		"jane.doe@example.com":      "jane.doe",
		"Jöhn+tag@example.com":      "Jöhn+tag",
		long + "@example.com":       strings.Repeat("a", 64),
		"\"odd@local\"@example.com": "\"odd@local\"",
		"...@example.com":           "user",
	} {
		if got := addressUsername(in); got != want {
			t.Errorf("addressUsername(%q) = %q, want %q", in, got, want)
		}
	}
}

// An admitted login attempt counts only when its password comparison
// answered; one that never ran to an answer is taken back.
func TestAttemptOutcome(t *testing.T) {
	tests := []struct {
		name string
		cmp  error
		want outcome
	}{
		{"the password matched", nil, succeeded},
		{"a comparison ran and said no", password.ErrMismatch, failed},
		{"it said no after the caller left (a started job runs to the end)", fmt.Errorf("compare: %w", password.ErrMismatch), failed},
		{"the pool refused or shed the job", password.ErrBusy, refunded},
		{"cancelled while queued", context.Canceled, refunded},
		{"deadline passed while queued", context.DeadlineExceeded, refunded},
		{"unreadable stored hash", errors.New("crypto/bcrypt: hashedSecret too short"), refunded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := attemptOutcome(tt.cmp); got != tt.want {
				t.Errorf("attemptOutcome(%v) = %v, want %v", tt.cmp, got, tt.want)
			}
		})
	}
}

// Limit.reserved keeps the window's last events back: it refuses while
// fewer than the reserve remain, finds a lock, and keeps nothing back in a
// window that is over, without a limit or without a reserve.
func TestLimitReserved(t *testing.T) {
	daily := Limit{Max: 10, Window: 24 * time.Hour}
	end := t0.Add(24 * time.Hour)
	tests := []struct {
		name     string
		l        Limit
		c        Counter
		now      time.Time
		reserve  int
		wantFull bool
		wantTill time.Time
	}{
		{"fresh", daily, Counter{WindowStart: t0}, t0, 3, false, time.Time{}},
		{"four left: admitted", daily, Counter{Count: 6, WindowStart: t0}, t0.Add(time.Hour), 3, false, time.Time{}},
		{"three left: kept for the requester", daily, Counter{Count: 7, WindowStart: t0}, t0.Add(time.Hour), 3, true, end},
		{"window over: a new window", daily, Counter{Count: 9, WindowStart: t0}, end, 3, false, time.Time{}},
		{"locked", daily, Counter{WindowStart: t0, LockedUntil: end}, t0.Add(time.Hour), 3, true, end},
		{"lock over", daily, Counter{WindowStart: t0, LockedUntil: end}, end, 3, false, time.Time{}},
		{"no reserve", daily, Counter{Count: 9, WindowStart: t0}, t0, 0, false, time.Time{}},
		{"no limit", Limit{}, Counter{Count: 9, WindowStart: t0}, t0, 3, false, time.Time{}},
		{"reserve of the whole cap: nobody else", Limit{Max: 3, Window: time.Hour}, Counter{WindowStart: t0}, t0, 3, true, t0.Add(time.Hour)},
		{"reserve of the whole cap, window over: still nobody else", Limit{Max: 3, Window: time.Hour}, Counter{Count: 3, WindowStart: t0}, t0.Add(time.Hour), 3, true, t0.Add(2 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			until, full := tt.l.reserved(tt.c, tt.now, tt.reserve)
			if full != tt.wantFull || !until.Equal(tt.wantTill) {
				t.Errorf("reserved = %v, %v; want %v, %v", until, full, tt.wantTill, tt.wantFull)
			}
		})
	}
}
