package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func TestDecideRefresh(t *testing.T) {
	const grace = 10 * time.Second
	live := PresentedToken{ExpiresAt: t0.Add(time.Hour)}
	with := func(f func(*PresentedToken)) PresentedToken {
		p := live
		f(&p)
		return p
	}
	tests := []struct {
		name string
		tok  PresentedToken
		now  time.Time
		want refreshOutcome
	}{
		{"unused, live", live, t0, refreshRotate},
		{"unused, a nanosecond before expiry", live, t0.Add(time.Hour - 1), refreshRotate},
		{"unused, at expiry", live, t0.Add(time.Hour), refreshExpired},
		{"used just now", with(func(p *PresentedToken) { p.UsedAt = t0 }), t0, refreshGrace},
		{"used, last moment of grace", with(func(p *PresentedToken) { p.UsedAt = t0 }), t0.Add(grace - 1), refreshGrace},
		{"used, grace over", with(func(p *PresentedToken) { p.UsedAt = t0 }), t0.Add(grace), refreshReuse},
		{"used after expiry, within grace", with(func(p *PresentedToken) { p.UsedAt = t0.Add(time.Hour - time.Second) }), t0.Add(time.Hour), refreshExpired},
		{"used, expired, grace over: reuse wins", with(func(p *PresentedToken) { p.UsedAt = t0 }), t0.Add(2 * time.Hour), refreshReuse},
		{"family revoked", with(func(p *PresentedToken) { p.RevokedAt = t0 }), t0, refreshRevoked},
		{"family revoked, expired", with(func(p *PresentedToken) { p.RevokedAt = t0 }), t0.Add(2 * time.Hour), refreshRevoked},
		{"used token of a revoked family", with(func(p *PresentedToken) { p.UsedAt, p.RevokedAt = t0, t0 }), t0, refreshReusedRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decideRefresh(tt.tok, tt.now, grace); got != tt.want {
				t.Errorf("decideRefresh = %v, want %v", got, tt.want)
			}
		})
	}
	// Without a grace window any used token is reuse.
	if got := decideRefresh(with(func(p *PresentedToken) { p.UsedAt = t0 }), t0, 0); got != refreshReuse {
		t.Errorf("no grace: decideRefresh = %v, want reuse", got)
	}
}

func TestLoginPolicyAdmit(t *testing.T) {
	p := LoginPolicy{MaxFailures: 3, Window: 15 * time.Minute, Lockout: 10 * time.Minute}
	fresh := LoginThrottle{WindowStartedAt: t0}
	tests := []struct {
		name       string
		th         LoginThrottle
		now        time.Time
		want       LoginThrottle
		wantLocked time.Time
	}{
		{"first attempt", fresh, t0, LoginThrottle{Failures: 1, WindowStartedAt: t0}, time.Time{}},
		{"below the cap", LoginThrottle{Failures: 2, WindowStartedAt: t0}, t0.Add(time.Minute), LoginThrottle{Failures: 3, WindowStartedAt: t0}, time.Time{}},
		{"at the cap: locks", LoginThrottle{Failures: 3, WindowStartedAt: t0}, t0.Add(time.Minute),
			LoginThrottle{WindowStartedAt: t0.Add(time.Minute), LockedUntil: t0.Add(11 * time.Minute)}, t0.Add(11 * time.Minute)},
		{"window over: counts anew", LoginThrottle{Failures: 3, WindowStartedAt: t0}, t0.Add(15 * time.Minute),
			LoginThrottle{Failures: 1, WindowStartedAt: t0.Add(15 * time.Minute)}, time.Time{}},
		{"locked: refused, nothing changes", LoginThrottle{WindowStartedAt: t0, LockedUntil: t0.Add(10 * time.Minute)}, t0.Add(time.Minute),
			LoginThrottle{WindowStartedAt: t0, LockedUntil: t0.Add(10 * time.Minute)}, t0.Add(10 * time.Minute)},
		{"lock over: counts anew", LoginThrottle{Failures: 0, WindowStartedAt: t0, LockedUntil: t0.Add(10 * time.Minute)}, t0.Add(10 * time.Minute),
			LoginThrottle{Failures: 1, WindowStartedAt: t0.Add(10 * time.Minute)}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, locked := p.admit(tt.th, tt.now)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("admit state mismatch (-want +got):\n%s", diff)
			}
			if !locked.Equal(tt.wantLocked) {
				t.Errorf("admit locked until %v, want %v", locked, tt.wantLocked)
			}
		})
	}
	// Attempts one after another: MaxFailures are admitted, the next locks.
	th := fresh
	for i := range p.MaxFailures {
		var locked time.Time
		if th, locked = p.admit(th, t0); !locked.IsZero() {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	if _, locked := p.admit(th, t0); !locked.Equal(t0.Add(p.Lockout)) {
		t.Errorf("attempt %d: locked until %v, want %v", p.MaxFailures+1, locked, t0.Add(p.Lockout))
	}
}

func TestOTPPolicyIssuable(t *testing.T) {
	p := OTPPolicy{Cooldown: time.Minute, DailyLimit: 3}
	tests := []struct {
		name      string
		created   []time.Time
		now       time.Time
		want      error
		wantRetry time.Duration
	}{
		{"no codes", nil, t0, nil, 0},
		{"last within cooldown", []time.Time{t0}, t0.Add(5 * time.Second), ErrOTPCooldown, 55 * time.Second},
		{"cooldown over", []time.Time{t0}, t0.Add(time.Minute), nil, 0},
		{"daily limit reached", []time.Time{t0, t0.Add(time.Hour), t0.Add(2 * time.Hour)}, t0.Add(3 * time.Hour), ErrOTPDailyLimit, 21 * time.Hour},
		{"oldest left the day", []time.Time{t0, t0.Add(time.Hour), t0.Add(2 * time.Hour)}, t0.Add(24 * time.Hour), nil, 0},
		{"cooldown before daily limit", []time.Time{t0, t0.Add(time.Hour), t0.Add(2 * time.Hour)}, t0.Add(2*time.Hour + time.Second), ErrOTPCooldown, 59 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.issuable(tt.created, tt.now)
			checkErr(t, err, tt.want, tt.wantRetry)
		})
	}
	if err := (OTPPolicy{Cooldown: time.Minute}).issuable([]time.Time{t0, t0, t0, t0}, t0.Add(time.Hour)); err != nil {
		t.Errorf("no daily limit: %v", err)
	}
}

func TestOTPPolicyAttempts(t *testing.T) {
	p := OTPPolicy{MaxAttempts: 5, Cooldown: time.Minute}
	c := OTPCode{CreatedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
	now := t0.Add(10 * time.Second)
	checkErr(t, p.checkable(c, now), nil, 0)
	checkErr(t, p.checkable(c, t0.Add(10*time.Minute)), ErrOTPExpired, 0)
	spent := c
	spent.Attempts = 5
	checkErr(t, p.checkable(spent, now), ErrOTPAttemptsExhausted, 50*time.Second)

	checkErr(t, p.counted(c, 3, true, now), nil, 0)
	checkErr(t, p.counted(c, 5, false, now), ErrOTPAttemptsExhausted, 50*time.Second)
	checkErr(t, p.counted(c, 2, false, now), ErrInvalidOTP, 0) // consumed or superseded meanwhile

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
