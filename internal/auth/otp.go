package auth

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/identity"
	"github.com/placebrain/auth/internal/mail"
	"github.com/placebrain/auth/internal/otp"
)

// OTPPolicy limits verification codes.
type OTPPolicy struct {
	// TTL is how long a code is valid.
	TTL time.Duration
	// MaxAttempts is how many attempts one code allows.
	MaxAttempts int
	// Cooldown is the least time between two codes for one user.
	Cooldown time.Duration
	// DailyLimit caps the codes one user can be sent in 24 hours, which
	// caps guesses at DailyLimit*MaxAttempts a day. Zero: no cap.
	DailyLimit int
}

// otpDay is the period of OTPPolicy.DailyLimit.
const otpDay = 24 * time.Hour

// historySince is how far back issuable needs to see a user's codes.
func (p OTPPolicy) historySince(now time.Time) time.Time {
	return now.Add(-max(otpDay, p.Cooldown))
}

// issuable decides whether a new code may be issued at now to a user whose
// codes since historySince(now) were created at created (oldest first):
// ErrOTPCooldown, with the wait, when the newest is younger than Cooldown;
// ErrOTPDailyLimit, with the wait until the oldest counted code leaves the
// 24 hours, when DailyLimit codes were created in the last 24 hours; nil
// otherwise.
func (p OTPPolicy) issuable(created []time.Time, now time.Time) error {
	if n := len(created); n > 0 {
		if next := created[n-1].Add(p.Cooldown); now.Before(next) {
			return withRetry(ErrOTPCooldown, next.Sub(now))
		}
	}
	if p.DailyLimit <= 0 {
		return nil
	}
	day := now.Add(-otpDay)
	var recent []time.Time
	for _, c := range created {
		if c.After(day) {
			recent = append(recent, c)
		}
	}
	if len(recent) >= p.DailyLimit {
		oldest := recent[len(recent)-p.DailyLimit]
		return withRetry(ErrOTPDailyLimit, oldest.Sub(day))
	}
	return nil
}

// checkable decides whether code c may be checked at now, before its
// attempt is counted: ErrOTPExpired once it has expired, the exhausted
// error once it has had MaxAttempts attempts, nil otherwise.
func (p OTPPolicy) checkable(c OTPCode, now time.Time) error {
	if !now.Before(c.ExpiresAt) {
		return ErrOTPExpired
	}
	if c.Attempts >= p.MaxAttempts {
		return p.exhausted(c, now)
	}
	return nil
}

// exhausted is ErrOTPAttemptsExhausted for code c, with the wait until a new
// code may be requested.
func (p OTPPolicy) exhausted(c OTPCode, now time.Time) error {
	return withRetry(ErrOTPAttemptsExhausted, c.CreatedAt.Add(p.Cooldown).Sub(now))
}

// counted decides an attempt on code c whose count returned attempts and
// whether it was counted (Tx.CountOTPAttempt): a counted attempt may
// compare (nil); one refused at the cap is exhausted; one refused because
// the code was consumed or superseded meanwhile is ErrInvalidOTP.
func (p OTPPolicy) counted(c OTPCode, attempts int, ok bool, now time.Time) error {
	switch {
	case ok:
		return nil
	case attempts >= p.MaxAttempts:
		return p.exhausted(c, now)
	default:
		return ErrInvalidOTP
	}
}

// mismatch is the answer to a wrong code on its attempt-th attempt: the
// code burns at the cap, otherwise ErrInvalidOTP says how many attempts
// are left.
func (p OTPPolicy) mismatch(c OTPCode, attempt int, now time.Time) error {
	if attempt >= p.MaxAttempts {
		return p.exhausted(c, now)
	}
	return withMeta(ErrInvalidOTP, "attempts_left", strconv.Itoa(p.MaxAttempts-attempt))
}

// SendOTP issues a new verification code for the address and queues its
// e-mail. An unknown or already verified address gets the same success and
// nothing is sent (this does not hide registration: Register and
// GetUserByEmail tell by design). Errors: INVALID_INPUT, and those of
// OTPPolicy.issuable.
func (s *Service) SendOTP(ctx context.Context, email string) error {
	addr, err := identity.NormalizeEmail(email)
	if err != nil {
		return invalidInput("email", err.Error())
	}
	u, err := s.db.UserByEmail(ctx, addr.Canonical)
	if errors.Is(err, ErrUserNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var issued bool
	err = s.db.InTx(ctx, func(tx Tx) error {
		var err error
		issued, err = s.issueOTP(ctx, tx, u.ID, s.now())
		return err
	})
	if err != nil {
		return err
	}
	if issued {
		s.o.MailQueued()
		s.o.Log.InfoContext(ctx, "otp issued", "user_id", u.ID)
	}
	return nil
}

// issueOTP creates a code for the user, supersedes older ones and queues
// the e-mail, unless the user is verified (issued false, no error) or a
// limit applies (OTPPolicy.issuable). The user row is locked and read
// again under the lock, so concurrent requests for one user serialize and
// see each other's codes.
func (s *Service) issueOTP(ctx context.Context, tx Tx, userID uuid.UUID, now time.Time) (bool, error) {
	u, err := tx.LockUser(ctx, userID)
	if err != nil {
		return false, err
	}
	if u.Verified {
		return false, nil
	}
	created, err := tx.OTPsSince(ctx, u.ID, s.o.OTP.historySince(now))
	if err != nil {
		return false, err
	}
	if err := s.o.OTP.issuable(created, now); err != nil {
		return false, err
	}
	code, err := otp.NewCode()
	if err != nil {
		return false, err
	}
	id := uuid.New()
	if err := tx.IssueOTP(ctx, OTPCode{ID: id, UserID: u.ID, MAC: s.o.OTPKeys.MAC(id, code),
		CreatedAt: now, ExpiresAt: now.Add(s.o.OTP.TTL)}); err != nil {
		return false, err
	}
	if err := auditTx(ctx, tx, EventOTPSent, u.ID, "", now); err != nil {
		return false, err
	}
	err = tx.EnqueueMail(ctx, mail.Message{
		UserID:   u.ID,
		To:       u.Email,
		Template: mail.TemplateOTP,
		Data: map[string]string{
			"code":           code,
			"username":       u.Username,
			"expiresMinutes": strconv.Itoa(int(s.o.OTP.TTL / time.Minute)),
		},
	}, now)
	return err == nil, err
}

// VerifyOTP checks a code for the address and marks the user verified.
// The attempt is counted and committed before the comparison, so at most
// MaxAttempts comparisons ever run for one code, however many requests
// arrive at once; the code is burned at the cap. Errors: INVALID_INPUT (code
// not 6 digits), ErrInvalidOTP (wrong code, or no live code for the
// address), ErrOTPExpired, ErrOTPAttemptsExhausted (with RetryAfter until a
// new code may be requested). An already verified address succeeds, also
// when it got verified by a concurrent request with the same code.
func (s *Service) VerifyOTP(ctx context.Context, email, code string) error {
	addr, err := identity.NormalizeEmail(email)
	if err != nil {
		return invalidInput("email", err.Error())
	}
	if err := otp.CheckFormat(code); err != nil {
		return invalidInput("code", err.Error())
	}
	u, err := s.db.UserByEmail(ctx, addr.Canonical)
	if errors.Is(err, ErrUserNotFound) {
		return ErrInvalidOTP
	}
	if err != nil {
		return err
	}
	if u.Verified {
		return nil
	}
	err = s.verifyOTP(ctx, u.ID, code)
	if err != nil {
		// A concurrent request with the right code may have won.
		if v, verr := s.db.UserVerified(ctx, u.ID); verr == nil && v {
			return nil
		}
		if de, ok := AsError(err); ok {
			s.audit(ctx, EventOTPFailed, u.ID, strings.ToLower(de.Reason), s.now())
		}
		return err
	}
	s.o.Log.InfoContext(ctx, "email verified", "user_id", u.ID)
	return nil
}

func (s *Service) verifyOTP(ctx context.Context, userID uuid.UUID, code string) error {
	now := s.now()
	p := s.o.OTP
	c, ok, err := s.db.LatestLiveOTP(ctx, userID)
	if err != nil {
		return err
	}
	if !ok {
		return ErrInvalidOTP
	}
	if err := p.checkable(c, now); err != nil {
		return err
	}
	// Count the attempt and commit it before comparing: at most
	// MaxAttempts attempts are admitted, even concurrently, and the count
	// tells this attempt's number.
	var attempt int
	err = s.db.InTx(ctx, func(tx Tx) error {
		n, ok, err := tx.CountOTPAttempt(ctx, c.ID, p.MaxAttempts)
		if err != nil {
			return err
		}
		attempt = n
		return p.counted(c, n, ok, now)
	})
	if err != nil {
		return err
	}
	if !s.o.OTPKeys.Verify(c.ID, code, c.MAC) {
		s.o.Log.InfoContext(ctx, "otp verification failed", "user_id", userID, "attempt", attempt)
		return p.mismatch(c, attempt, now)
	}
	return s.db.InTx(ctx, func(tx Tx) error {
		ok, err := tx.ConsumeOTP(ctx, c.ID, now)
		if err != nil {
			return err
		}
		if !ok {
			return ErrInvalidOTP // consumed or superseded meanwhile
		}
		if err := auditTx(ctx, tx, EventOTPVerified, userID, "", now); err != nil {
			return err
		}
		return tx.MarkVerified(ctx, userID, now)
	})
}
