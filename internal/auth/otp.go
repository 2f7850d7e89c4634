package auth

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/identity"
	"github.com/placebrain/auth/internal/mail"
	"github.com/placebrain/auth/internal/otp"
)

// OTPPolicy limits verification codes. Codes are counted per (account,
// source) when the source is known, and per account otherwise; the
// account-wide caps hold whatever the sources.
type OTPPolicy struct {
	// TTL is how long a code is valid.
	TTL time.Duration
	// MaxAttempts is how many attempts one code allows from one source;
	// the code burns for that source at the cap.
	MaxAttempts int
	// Cooldown is the least time between two codes requested from one
	// source.
	Cooldown time.Duration
	// DailyLimit caps the codes one source can have sent to one account in
	// 24 hours. Zero: no cap.
	DailyLimit int
	// AccountDailyLimit caps the codes mailed to one address in 24 hours,
	// whatever the sources (mail bombing). Zero: no cap.
	AccountDailyLimit int
	// AccountDailyFailures caps the codes checked against one account in 24
	// hours, whatever the sources: at most that many guesses, each with a
	// one-in-a-million chance. Zero: no cap.
	AccountDailyFailures int
}

// otpDay is the period of the daily limits.
const otpDay = 24 * time.Hour

func (p OTPPolicy) perSourceSends() Limit  { return Limit{Max: p.DailyLimit, Window: otpDay} }
func (p OTPPolicy) perAccountSends() Limit { return Limit{Max: p.AccountDailyLimit, Window: otpDay} }
func (p OTPPolicy) perSourceChecks() Limit { return Limit{Max: p.MaxAttempts, Window: p.TTL} }
func (p OTPPolicy) perAccountChecks() Limit {
	return Limit{Max: p.AccountDailyFailures, Window: otpDay}
}

// cooling decides whether a source whose last code request counted at last
// (zero: never) must wait at now: ErrOTPCooldown with the wait, or nil.
func (p OTPPolicy) cooling(last, now time.Time) error {
	if next := last.Add(p.Cooldown); !last.IsZero() && now.Before(next) {
		return withRetry(ErrOTPCooldown, next.Sub(now))
	}
	return nil
}

// checkable decides whether code c may be checked at now: ErrOTPExpired
// once it has expired, nil otherwise.
func (p OTPPolicy) checkable(c OTPCode, now time.Time) error {
	if !now.Before(c.ExpiresAt) {
		return ErrOTPExpired
	}
	return nil
}

// exhausted is ErrOTPAttemptsExhausted for code c, with the wait until a new
// code may be requested.
func (p OTPPolicy) exhausted(c OTPCode, now time.Time) error {
	return withRetry(ErrOTPAttemptsExhausted, c.CreatedAt.Add(p.Cooldown).Sub(now))
}

// mismatch is the answer to a wrong code on its source's attempt-th
// attempt: the code burns for the source at the cap, otherwise
// ErrInvalidOTP says how many attempts are left.
func (p OTPPolicy) mismatch(c OTPCode, attempt int, now time.Time) error {
	if attempt >= p.MaxAttempts {
		return p.exhausted(c, now)
	}
	return withMeta(ErrInvalidOTP, "attempts_left", strconv.Itoa(p.MaxAttempts-attempt))
}

// SendOTP issues a new verification code for the address and queues its
// e-mail. An unknown or already verified address gets the same success and
// nothing is sent (this does not hide registration: Register and
// GetUserByEmail tell by design). Errors: INVALID_INPUT, ErrOTPCooldown and
// ErrOTPDailyLimit (see issueOTP).
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
	source, _ := SourceFrom(ctx)
	var issued bool
	err = s.db.InTx(ctx, func(tx Tx) error {
		var err error
		issued, err = s.issueOTP(ctx, tx, u.ID, addr.Canonical, source, s.now())
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

// issueOTP creates a code for the user whose canonical address is
// canonical, at the request of source (none: invalid prefix), supersedes
// older ones and queues the e-mail, unless the user is verified (issued
// false, no error) or a limit applies: ErrOTPCooldown when the source's
// last code is younger than Cooldown, ErrOTPDailyLimit when the source's
// (DailyLimit) or the address's (AccountDailyLimit) codes of the day are
// used up. The user row is locked and read again under the lock, so
// concurrent requests for one user serialize and see each other's codes;
// a refusal rolls the unit of work back, so it counts nothing.
func (s *Service) issueOTP(ctx context.Context, tx Tx, userID uuid.UUID, canonical string, source netip.Prefix, now time.Time) (bool, error) {
	u, err := tx.LockUser(ctx, userID)
	if err != nil {
		return false, err
	}
	if u.Verified {
		return false, nil
	}
	p := s.o.OTP
	send := s.counter(PurposeCodeSend, canonical, source)
	c, err := tx.LockCounter(ctx, send.purpose, send.key, now)
	if err != nil {
		return false, err
	}
	if err := p.cooling(c.Last, now); err != nil {
		return false, err
	}
	next, until, _ := p.perSourceSends().take(c, now)
	if !until.IsZero() {
		return false, withRetry(ErrOTPDailyLimit, until.Sub(now))
	}
	if p.DailyLimit <= 0 {
		next.Last = now // the cooldown still counts from this code
	}
	if err := tx.SaveCounter(ctx, send.key, next, now); err != nil {
		return false, err
	}
	if _, until, _, err := takeIn(ctx, tx, s.counter(PurposeCodeSendAccount, canonical, netip.Prefix{}), p.perAccountSends(), time.Time{}, now); err != nil || !until.IsZero() {
		if err == nil {
			err = withRetry(ErrOTPDailyLimit, until.Sub(now))
		}
		return false, err
	}
	code, err := otp.NewCode()
	if err != nil {
		return false, err
	}
	id := uuid.New()
	if err := tx.IssueOTP(ctx, OTPCode{ID: id, UserID: u.ID, MAC: s.o.OTPKeys.MAC(id, code),
		CreatedAt: now, ExpiresAt: now.Add(p.TTL)}); err != nil {
		return false, err
	}
	if err := auditTx(ctx, tx, EventOTPSent, u.ID, "", now); err != nil {
		return false, err
	}
	msgID := uuid.New()
	sealed, err := s.o.MailSealer.Seal(msgID, map[string]string{
		"code":           code,
		"expiresMinutes": strconv.Itoa(int(p.TTL / time.Minute)),
	})
	if err != nil {
		return false, err
	}
	err = tx.EnqueueMail(ctx, mail.Message{ID: msgID, UserID: u.ID, To: u.Email, Template: mail.TemplateOTP, Sealed: sealed}, now)
	return err == nil, err
}

// VerifyOTP checks a code for the address and marks the user verified.
// The attempt is counted and committed before the comparison, so at most
// MaxAttempts comparisons ever run for one code from one source (or, when
// sources are unknown, at all), however many requests arrive at once, and
// at most AccountDailyFailures for the account in a day; the code burns for
// the source at the cap, and another source's attempts are not used up.
// Errors: INVALID_INPUT (code not 6 digits), ErrInvalidOTP (wrong code, or
// no live code for the address), ErrOTPExpired, ErrOTPAttemptsExhausted
// (with RetryAfter until a new code may be requested, or until the
// account's day ends). An already verified address succeeds, also when it
// got verified by a concurrent request with the same code. Only
// comparisons that failed, and the refusal that first hits the account's
// cap, are audited.
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
	source, _ := SourceFrom(ctx)
	err = s.verifyOTP(ctx, u.ID, addr.Canonical, source, code)
	if err != nil {
		// A concurrent request with the right code may have won.
		if v, verr := s.db.UserVerified(ctx, u.ID); verr == nil && v {
			return nil
		}
		return err
	}
	s.o.Log.InfoContext(ctx, "email verified", "user_id", u.ID)
	return nil
}

func (s *Service) verifyOTP(ctx context.Context, userID uuid.UUID, canonical string, source netip.Prefix, code string) error {
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
	// MaxAttempts attempts per source and AccountDailyFailures per account
	// are admitted, even concurrently, and the count tells this attempt's
	// number.
	var attempt int
	var capped bool
	err = s.db.InTx(ctx, func(tx Tx) error {
		_, until, locked, err := takeIn(ctx, tx, s.counter(PurposeCodeCheckAccount, canonical, netip.Prefix{}), p.perAccountChecks(), time.Time{}, now)
		if err != nil {
			return err
		}
		if !until.IsZero() {
			// Commit the account's lock (its first refusal is audited).
			capped = locked
			return CommitAnd(withRetry(ErrOTPAttemptsExhausted, until.Sub(now)))
		}
		n, until, _, err := takeIn(ctx, tx, s.counter(PurposeCodeCheck, canonical, source), p.perSourceChecks(), c.CreatedAt, now)
		if err != nil {
			return err
		}
		if !until.IsZero() {
			return p.exhausted(c, now) // rolls the account's count back
		}
		attempt = n.Count
		live, err := tx.CountOTPAttempt(ctx, c.ID)
		if err != nil {
			return err
		}
		if !live {
			return ErrInvalidOTP // consumed or superseded meanwhile
		}
		return nil
	})
	if capped {
		s.audit(ctx, EventOTPFailed, userID, "account_daily_cap", now)
	}
	if err != nil {
		return err
	}
	if !s.o.OTPKeys.Verify(c.ID, code, c.MAC) {
		s.o.Log.InfoContext(ctx, "otp verification failed", "user_id", userID, "attempt", attempt)
		err := p.mismatch(c, attempt, now)
		de, _ := AsError(err)
		s.audit(ctx, EventOTPFailed, userID, strings.ToLower(de.Reason), now)
		return err
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
