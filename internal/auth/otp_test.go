package auth_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/placebrain/auth/ent/otprequest"
	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/internal/auth"
)

func TestVerifyOTP(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.Register(t, "Alice", "Alice@Example.COM", pw)
	code := e.Code(t, "Alice@Example.COM")
	if err := e.Service.VerifyOTP(ctx, "ALICE@example.com", code); err != nil {
		t.Fatalf("VerifyOTP: %v", err)
	}
	if me, err := e.Service.GetUser(ctx, id); err != nil || !me.Verified {
		t.Fatalf("GetUser after verification = %v, %v", me, err)
	}
	// Verifying again succeeds (a double submit is harmless); the code is
	// single-use, and no other address takes it.
	if err := e.Service.VerifyOTP(ctx, "alice@example.com", code); err != nil {
		t.Errorf("VerifyOTP again: %v", err)
	}
	err := e.Service.VerifyOTP(ctx, "nobody@example.com", code)
	wantErr(t, err, auth.ErrInvalidOTP, "Invalid code")
	// The e-mail's data (the code) is erased once sent (the dispatcher
	// records that just after the relay accepted it).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m, err := e.DB.Ent.OutboxMessage.Query().Only(ctx)
		if err == nil && m.Status == outboxmessage.StatusSent && len(m.Data) == 0 && m.SentAt != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox row after send = %+v, %v", m, err)
		}
	}
}

// A username is the caller's text: the verification e-mail does not
// carry it, so a stranger cannot make our e-mail say "Security team:
// verify at https://..." to the address they registered.
func TestVerificationMailShowsNoUsername(t *testing.T) {
	e := newEnv(t)
	const username = "Security team: verify at https://evil.example/verify"
	e.Register(t, username, "victim@example.com", pw)
	code := e.Code(t, "victim@example.com")
	msg := e.SMTP.WaitFor(t, "victim@example.com", 5*time.Second)
	for _, part := range []struct{ name, body string }{{"text", string(msg.Email.Text)}, {"html", string(msg.Email.HTML)}} {
		if !strings.Contains(part.body, code) {
			t.Errorf("%s part lacks the code:\n%s", part.name, part.body)
		}
		for _, bad := range []string{"Security", "evil.example", "https://", "verify at"} {
			if strings.Contains(part.body, bad) {
				t.Errorf("%s part contains %q from the username:\n%s", part.name, bad, part.body)
			}
		}
	}
}

func TestSendOtpCooldownAndSupersede(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.Register(t, "kim", "kim@example.com", pw)
	first := e.Code(t, "kim@example.com")

	// Register already sent a code: the gateway's SendOtp right after
	// succeeds and issues, mails and counts nothing, also after the code
	// was used up or when it is the last moment of the cooldown.
	e.Clock.Advance(5 * time.Second)
	if err := e.Service.SendOTP(ctx, "kim@example.com"); err != nil {
		t.Fatalf("SendOTP within the cooldown: %v", err)
	}
	for range otpMaxAttempts {
		e.Service.VerifyOTP(ctx, "kim@example.com", wrongCode(first))
	}
	e.Clock.Advance(otpCooldown - 5*time.Second - 1)
	if err := e.Service.SendOTP(ctx, "kim@example.com"); err != nil {
		t.Fatalf("SendOTP within the cooldown, code used up: %v", err)
	}
	if n := e.DB.Ent.OutboxMessage.Query().CountX(ctx); n != 1 {
		t.Errorf("outbox messages = %d, want 1", n)
	}
	if n := e.DB.Ent.OtpRequest.Query().CountX(ctx); n != 1 {
		t.Errorf("codes = %d, want 1", n)
	}
	e.Clock.Advance(1)

	if err := e.Service.SendOTP(ctx, "KIM@example.com"); err != nil {
		t.Fatalf("SendOTP after cooldown: %v", err)
	}
	second := e.Code(t, "kim@example.com")
	if first == second {
		// One in a million; the supersede check below would be moot.
		t.Skip("codes collided")
	}
	// Issuing a new code invalidated the previous one.
	err := e.Service.VerifyOTP(ctx, "kim@example.com", first)
	wantErr(t, err, auth.ErrInvalidOTP, "Invalid code")
	if err := e.Service.VerifyOTP(ctx, "kim@example.com", second); err != nil {
		t.Fatalf("new code: %v", err)
	}

	// Unknown and already verified addresses get the same success and no mail.
	for _, addr := range []string{"nobody@example.com", "kim@example.com"} {
		e.Clock.Advance(otpCooldown)
		if err := e.Service.SendOTP(ctx, addr); err != nil {
			t.Errorf("SendOTP(%s): %v", addr, err)
		}
	}
	if n := e.DB.Ent.OutboxMessage.Query().CountX(ctx); n != 2 {
		t.Errorf("outbox messages = %d, want 2", n)
	}
	err = e.Service.SendOTP(ctx, "")
	wantErr(t, err, auth.ErrInvalidInput, "email is required")
}

// One user gets at most OTPDailyLimit codes in 24 hours, which caps
// guessing at OTPDailyLimit*OTPMaxAttempts a day.
func TestSendOtpDailyLimit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.Register(t, "daily", "daily@example.com", pw) // code 1
	for i := 2; i <= otpDailyLimit; i++ {
		e.Clock.Advance(otpCooldown)
		if err := e.Service.SendOTP(ctx, "daily@example.com"); err != nil {
			t.Fatalf("code %d: %v", i, err)
		}
	}
	e.Clock.Advance(otpCooldown)
	err := e.Service.SendOTP(ctx, "daily@example.com")
	de := wantErr(t, err, auth.ErrOTPDailyLimit, "Too many codes requested today; try again later")
	want := 24*time.Hour - time.Duration(otpDailyLimit)*otpCooldown
	if de.RetryAfter != want {
		t.Errorf("retry delay = %v, want %v", de.RetryAfter, want)
	}
	e.Clock.Advance(de.RetryAfter)
	if err := e.Service.SendOTP(ctx, "daily@example.com"); err != nil {
		t.Errorf("after the window: %v", err)
	}
}

func TestVerifyOtpAttemptCap(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.Register(t, "lee", "lee@example.com", pw)
	code := e.Code(t, "lee@example.com")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	for i := 1; i < otpMaxAttempts; i++ {
		err := e.Service.VerifyOTP(ctx, "lee@example.com", wrong)
		de := wantErr(t, err, auth.ErrInvalidOTP, "Invalid code")
		if left := de.Metadata["attempts_left"]; left != string(rune('0'+otpMaxAttempts-i)) {
			t.Errorf("attempt %d: attempts_left = %q", i, left)
		}
	}
	// The fifth wrong code burns it.
	err := e.Service.VerifyOTP(ctx, "lee@example.com", wrong)
	wantErr(t, err, auth.ErrOTPAttemptsExhausted, "Too many wrong codes; request a new one")
	// Even the right code is refused now; a new code is needed.
	err = e.Service.VerifyOTP(ctx, "lee@example.com", code)
	wantErr(t, err, auth.ErrOTPAttemptsExhausted, "")
	e.Clock.Advance(otpCooldown)
	if err := e.Service.SendOTP(ctx, "lee@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := e.Service.VerifyOTP(ctx, "lee@example.com", e.Code(t, "lee@example.com")); err != nil {
		t.Fatalf("fresh code: %v", err)
	}
}

func TestVerifyOtpParallelGuessesAreCapped(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.Register(t, "max", "max@example.com", pw)
	code := e.Code(t, "max@example.com")
	var wg sync.WaitGroup
	const n = 10
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			guess := "00000" + string(rune('0'+i))
			if guess == code {
				guess = "999999"
			}
			errs[i] = e.Service.VerifyOTP(ctx, "max@example.com", guess)
		})
	}
	wg.Wait()
	evaluated := 0
	for _, err := range errs {
		if de, ok := auth.AsError(err); ok && de.Reason == auth.ErrInvalidOTP.Reason {
			evaluated++
		}
	}
	o := e.DB.Ent.OtpRequest.Query().OnlyX(ctx)
	if o.Attempts != otpMaxAttempts {
		t.Errorf("attempts recorded = %d, want %d", o.Attempts, otpMaxAttempts)
	}
	if evaluated > otpMaxAttempts-1 {
		t.Errorf("%d wrong guesses answered OTP_INVALID; at most %d may be evaluated before the cap", evaluated, otpMaxAttempts-1)
	}
}

// The right code sent several times at once verifies the account and
// every request succeeds.
func TestVerifyOtpSameRightCodeConcurrently(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.Register(t, "twice", "twice@example.com", pw)
	code := e.Code(t, "twice@example.com")
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() { errs[i] = e.Service.VerifyOTP(ctx, "twice@example.com", code) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
}

func TestVerifyOtpExpiryAndInput(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.Register(t, "ned", "ned@example.com", pw)
	code := e.Code(t, "ned@example.com")
	for _, bad := range []string{"", "12345", "1234567", "12345a", "１２３４５６"} {
		err := e.Service.VerifyOTP(ctx, "ned@example.com", bad)
		wantInput(t, err, "code", "code must be 6 digits")
	}
	err := e.Service.VerifyOTP(ctx, "bad", code)
	wantErr(t, err, auth.ErrInvalidInput, "")

	e.Clock.Advance(otpTTL)
	err = e.Service.VerifyOTP(ctx, "ned@example.com", code)
	wantErr(t, err, auth.ErrOTPExpired, "Code expired; request a new one")
	if o := e.DB.Ent.OtpRequest.Query().Where(otprequest.ConsumedAtNotNil()).CountX(ctx); o != 0 {
		t.Errorf("expired code consumed")
	}
}

// wrongCode returns a well-formed code other than code.
func wrongCode(code string) string {
	if code == "000000" {
		return "111111"
	}
	return "000000"
}
