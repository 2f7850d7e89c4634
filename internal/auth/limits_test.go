package auth_test

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent/auditevent"
	"github.com/placebrain/auth/ent/otprequest"
	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/internal/testutil/authtest"
)

// from returns a context whose request comes from the source of addr.
func from(addr string) context.Context {
	return auth.WithSource(context.Background(), auth.SourceOf(netip.MustParseAddr(addr)))
}

// sleeps records the login slowdown's waits instead of waiting them.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) Sleep(_ context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return nil
}

func (s *sleeps) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.d)
}

// auditCount counts audit events of one kind (and reason, when given).
func auditCount(t testing.TB, e *authtest.Env, ev auditevent.Event, reason string) int {
	t.Helper()
	q := e.DB.Ent.AuditEvent.Query().Where(auditevent.EventEQ(ev))
	if reason != "" {
		q = q.Where(auditevent.Reason(reason))
	}
	return q.CountX(context.Background())
}

// With sources known, a stranger's wrong passwords lock only the
// stranger's own source: 11 wrong logins every 15 minutes from source A
// leave the owner, signing in from B, able to sign in all along, also
// after A's attempts have used up the account's daily cap for untrusted
// sources (B signed in before, so it is the owner's). A new source of the
// owner's is refused once the cap is used up.
func TestStrangerCannotLockOwnerOut(t *testing.T) {
	e := newEnv(t, authtest.ServerOptions(server.Options{Sleep: (&sleeps{}).Sleep}))
	e.VerifiedUser(t, "owner", "owner@example.com", pw)
	owner, stranger, newDevice := from("198.51.100.7"), from("203.0.113.9"), from("192.0.2.44")
	if _, err := e.Service.Login(owner, "owner@example.com", pw); err != nil {
		t.Fatalf("owner's first sign-in: %v", err)
	}
	const rounds = 100/loginMaxFails + 1 // rounds of 15 minutes: past the cap of 100 a day
	for round := range rounds {
		for i := range loginMaxFails + 1 {
			_, err := e.Service.Login(stranger, "owner@example.com", "wrong password")
			switch {
			case round == 0 && i < loginMaxFails:
				wantErr(t, err, auth.ErrInvalidCredentials, "")
			case round == 0:
				wantErr(t, err, auth.ErrLoginThrottled, "") // the stranger's own source locks
			default: // later, the account's cap may refuse it first
				if de, _ := auth.AsError(err); de == nil || (de.Reason != auth.ErrInvalidCredentials.Reason && de.Reason != auth.ErrLoginThrottled.Reason) {
					t.Fatalf("round %d: stranger's login: %v", round, err)
				}
			}
		}
		if _, err := e.Service.Login(owner, "owner@example.com", pw); err != nil {
			t.Fatalf("round %d: the owner's sign-in from their own source: %v", round, err)
		}
		e.Clock.Advance(loginLockout)
	}
	// The cap (100 untrusted attempts a day) is used up, so a source the
	// owner never signed in from is refused.
	_, err := e.Service.Login(newDevice, "owner@example.com", pw)
	wantErr(t, err, auth.ErrLoginThrottled, "")
	// Without a source the cap holds too.
	_, err = e.Service.Login(context.Background(), "owner@example.com", pw)
	wantErr(t, err, auth.ErrLoginThrottled, "")
}

// Without a source, the per-account lock of earlier versions is the
// fallback: 11 wrong logins lock the account, the right password included.
func TestNoSourceLocksTheAccount(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "owner", "owner@example.com", pw)
	for range loginMaxFails {
		_, err := e.Service.Login(ctx, "owner@example.com", "wrong password")
		wantErr(t, err, auth.ErrInvalidCredentials, "")
	}
	_, err := e.Service.Login(ctx, "owner@example.com", pw)
	if de := wantErr(t, err, auth.ErrLoginThrottled, ""); de.RetryAfter != loginLockout {
		t.Errorf("retry after %v, want %v", de.RetryAfter, loginLockout)
	}
}

// 1,000 wrong passwords from 100 sources make no more password comparisons
// in a day than the account's cap for untrusted sources (100), and past
// LOGIN__MAX_FAILURES of them each is slowed by the account delay.
func TestAccountDailyCapHoldsWhateverTheSources(t *testing.T) {
	rec := &sleeps{}
	e := newEnv(t, authtest.ServerOptions(server.Options{Sleep: rec.Sleep}))
	e.VerifiedUser(t, "owner", "owner@example.com", pw)
	const cap = 100
	refused := 0
	for src := range 100 {
		ctx := from(fmt.Sprintf("10.0.%d.%d", src/200, 1+src%200))
		for range 10 {
			_, err := e.Service.Login(ctx, "owner@example.com", "wrong password")
			if de, _ := auth.AsError(err); de != nil && de.Reason == auth.ErrLoginThrottled.Reason {
				refused++
				continue
			}
			wantErr(t, err, auth.ErrInvalidCredentials, "")
		}
	}
	compared := auditCount(t, e, auditevent.EventLoginFailed, "wrong_password")
	if compared != cap || refused != 1000-cap {
		t.Errorf("wrong passwords compared = %d, refused = %d; want %d and %d", compared, refused, cap, 1000-cap)
	}
	// Every attempt past the first LOGIN__MAX_FAILURES of the day waited
	// the delay before its comparison.
	if got, want := rec.count(), cap-loginMaxFails; got != want {
		t.Errorf("slowed attempts = %d, want %d", got, want)
	}
	for _, d := range rec.d {
		if d != 2*time.Second {
			t.Fatalf("delay = %v, want the default 2s", d)
		}
	}
	// A day later the account takes attempts again.
	e.Clock.Advance(24 * time.Hour)
	if _, err := e.Service.Login(from("10.9.9.9"), "owner@example.com", pw); err != nil {
		t.Errorf("a day later: %v", err)
	}
}

// A third party cannot block an owner's verification: 5 wrong codes and
// 10 code requests from source A leave the owner, from source B, able to
// get a code and verify the same day.
func TestStrangerCannotBlockVerification(t *testing.T) {
	e := newEnv(t)
	owner, stranger := from("198.51.100.7"), from("203.0.113.9")
	if _, err := e.Service.Register(owner, "owner", "owner@example.com", pw); err != nil {
		t.Fatal(err)
	}
	code := e.Code(t, "owner@example.com")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	for i := range otpMaxAttempts {
		err := e.Service.VerifyOTP(stranger, "owner@example.com", wrong)
		if i < otpMaxAttempts-1 {
			wantErr(t, err, auth.ErrInvalidOTP, "")
		} else {
			wantErr(t, err, auth.ErrOTPAttemptsExhausted, "")
		}
	}
	// The code burned for A only: the owner verifies with it from B.
	if err := e.Service.VerifyOTP(owner, "owner@example.com", code); err != nil {
		t.Fatalf("the owner's code after a stranger's five wrong ones: %v", err)
	}

	// And code requests: a stranger's ten a day do not use up the owner's.
	e2 := newEnv(t)
	if _, err := e2.Service.Register(owner, "owner", "owner2@example.com", pw); err != nil {
		t.Fatal(err)
	}
	e2.Code(t, "owner2@example.com")
	for i := range otpDailyLimit {
		e2.Clock.Advance(otpCooldown)
		if err := e2.Service.SendOTP(stranger, "owner2@example.com"); err != nil {
			t.Fatalf("stranger's code request %d: %v", i+1, err)
		}
		// Delivered before the clock moves on: a message whose code has
		// expired on the injected clock is never sent (outbox expires_at),
		// and ten cooldowns are longer than a code's life.
		e2.SMTP.WaitForCount(t, "owner2@example.com", 1+i+1, 10*time.Second)
	}
	e2.Clock.Advance(otpCooldown)
	err := e2.Service.SendOTP(stranger, "owner2@example.com")
	wantErr(t, err, auth.ErrOTPDailyLimit, "")
	if err := e2.Service.SendOTP(owner, "owner2@example.com"); err != nil {
		t.Fatalf("the owner's code request after a stranger's ten: %v", err)
	}
	// Sign-up, the stranger's ten, the owner's: the newest is the owner's.
	e2.SMTP.WaitForCount(t, "owner2@example.com", 1+otpDailyLimit+1, 10*time.Second)
	if err := e2.Service.VerifyOTP(owner, "owner2@example.com", e2.Code(t, "owner2@example.com")); err != nil {
		t.Fatalf("the owner verifies the same day: %v", err)
	}
}

// 100 sources x 5 wrong codes against one account make no more code
// comparisons in a day than OTP__ACCOUNT_DAILY_FAILURES (50); the refusal
// that hits the cap is audited once.
func TestCodeChecksCappedPerAccount(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.Register(t, "owner", "owner@example.com", pw)
	code := e.Code(t, "owner@example.com")
	const cap = 50
	compared, refused := 0, 0
	for src := range 100 {
		sctx := from("10.1.0." + strconv.Itoa(1+src))
		for i := range 5 {
			guess := fmt.Sprintf("%06d", src*5+i)
			if guess == code {
				continue
			}
			err := e.Service.VerifyOTP(sctx, "owner@example.com", guess)
			de, _ := auth.AsError(err)
			switch {
			case de != nil && de.Reason == auth.ErrInvalidOTP.Reason:
				compared++
			case de != nil && de.Reason == auth.ErrOTPAttemptsExhausted.Reason:
				refused++
			default:
				t.Fatalf("guess from source %d: %v", src, err)
			}
		}
	}
	// A wrong code at its source's fifth attempt answers exhausted too
	// (the code burns for that source): count the comparisons the audit
	// log saw.
	failed := auditCount(t, e, auditevent.EventOtpFailed, "otp_invalid") + auditCount(t, e, auditevent.EventOtpFailed, "otp_attempts_exhausted")
	if failed != cap {
		t.Errorf("codes compared = %d (answered invalid %d, refused %d), want %d", failed, compared, refused, cap)
	}
	if n := auditCount(t, e, auditevent.EventOtpFailed, "account_daily_cap"); n != 1 {
		t.Errorf("cap refusals audited = %d, want 1", n)
	}
	o := e.DB.Ent.OtpRequest.Query().Where(otprequest.UserID(uuidOf(t, id))).OnlyX(ctx)
	if o.Attempts != cap {
		t.Errorf("attempts on the code = %d, want %d", o.Attempts, cap)
	}
}

// Refusals that repeat leave one audit row per lock or per code: 200
// logins on a locked account and 200 codes tried on an exhausted code add
// at most 2 audit rows each.
func TestRepeatedRefusalsAuditOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "owner", "owner@example.com", pw)
	for range loginMaxFails + 1 {
		e.Service.Login(ctx, "owner@example.com", "wrong password")
	}
	before := e.DB.Ent.AuditEvent.Query().CountX(ctx)
	for range 200 {
		_, err := e.Service.Login(ctx, "owner@example.com", pw)
		wantErr(t, err, auth.ErrLoginThrottled, "")
	}
	if n := e.DB.Ent.AuditEvent.Query().CountX(ctx) - before; n > 2 {
		t.Errorf("200 logins on a locked account wrote %d audit rows, want at most 2", n)
	}

	e.Register(t, "other", "other@example.com", pw)
	code := e.Code(t, "other@example.com")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	for range otpMaxAttempts {
		e.Service.VerifyOTP(ctx, "other@example.com", wrong)
	}
	before = e.DB.Ent.AuditEvent.Query().CountX(ctx)
	for range 200 {
		err := e.Service.VerifyOTP(ctx, "other@example.com", code)
		wantErr(t, err, auth.ErrOTPAttemptsExhausted, "")
	}
	if n := e.DB.Ent.AuditEvent.Query().CountX(ctx) - before; n > 2 {
		t.Errorf("200 codes on an exhausted code wrote %d audit rows, want at most 2", n)
	}
}

// 20 concurrent right-password logins of one account, four times over:
// all return tokens, none fails (a success's reset of the attempts used to
// delete the row another login was about to lock).
func TestConcurrentRightPasswordLogins(t *testing.T) {
	e := newEnv(t)
	e.VerifiedUser(t, "owner", "owner@example.com", pw)
	for round := range 4 {
		var wg sync.WaitGroup
		errs := make([]error, 20)
		for i := range errs {
			wg.Go(func() { _, errs[i] = e.Service.Login(context.Background(), "owner@example.com", pw) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d, login %d: %v", round, i, err)
			}
		}
	}
}

// Registrations count per source: past REGISTER__MAX_PER_SOURCE in the
// window a source is refused, other sources are not, and without sources
// nothing is counted.
func TestRegistrationsPerSource(t *testing.T) {
	e := newEnv(t, authtest.Set("REGISTER__MAX_PER_SOURCE", "3"))
	a, b := from("203.0.113.9"), from("198.51.100.7")
	for i := range 3 {
		if _, err := e.Service.Register(a, "u", fmt.Sprintf("a%d@example.com", i), pw); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.Service.Register(a, "u", "a3@example.com", pw)
	if de := wantErr(t, err, auth.ErrRegisterThrottled, "Too many sign-ups from your network; try again later"); de.RetryAfter <= 0 || de.RetryAfter > time.Hour {
		t.Errorf("retry after %v", de.RetryAfter)
	}
	if _, err := e.Service.Register(b, "u", "b0@example.com", pw); err != nil {
		t.Errorf("another source: %v", err)
	}
	for i := range 5 {
		if _, err := e.Service.Register(context.Background(), "u", fmt.Sprintf("n%d@example.com", i), pw); err != nil {
			t.Errorf("without a source: %v", err)
		}
	}
	// A registration refused for a taken (verified) address counts
	// nothing.
	e2 := newEnv(t, authtest.Set("REGISTER__MAX_PER_SOURCE", "1"))
	e2.VerifiedUser(t, "u", "taken@example.com", pw)
	_, err = e2.Service.Register(a, "u", "taken@example.com", pw)
	wantErr(t, err, auth.ErrEmailTaken, "")
	if _, err := e2.Service.Register(a, "u", "fresh@example.com", pw); err != nil {
		t.Errorf("after a refused registration: %v", err)
	}
	e.Clock.Advance(time.Hour)
	if _, err := e.Service.Register(a, "u", "a4@example.com", pw); err != nil {
		t.Errorf("an hour later: %v", err)
	}
}

// An answer that sends nothing counts nothing: code requests for unknown
// and verified addresses, and ones within the cooldown, leave no counter
// behind.
func TestNothingSentNothingCounted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "v", "verified@example.com", pw)
	before := e.DB.Ent.RateLimit.Query().CountX(ctx)
	for _, addr := range []string{"nobody@example.com", "verified@example.com"} {
		if err := e.Service.SendOTP(from("203.0.113.9"), addr); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.DB.Ent.RateLimit.Query().CountX(ctx); n != before {
		t.Errorf("counters after codes that were not sent: %d, want %d", n, before)
	}
	e.Register(t, "u", "u@example.com", pw)
	e.Code(t, "u@example.com")
	counted := e.DB.Ent.RateLimit.Query().AllX(ctx)
	if err := e.Service.SendOTP(ctx, "u@example.com"); err != nil { // within the cooldown
		t.Fatalf("SendOTP within the cooldown: %v", err)
	}
	after := e.DB.Ent.RateLimit.Query().AllX(ctx)
	if len(after) != len(counted) {
		t.Fatalf("counters: %d, want %d", len(after), len(counted))
	}
	for i := range after {
		if after[i].Count != counted[i].Count {
			t.Errorf("a refused code request changed a counter: %d -> %d", counted[i].Count, after[i].Count)
		}
	}
}

func uuidOf(t testing.TB, s string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
