package auth

import (
	"context"
	"crypto/hmac"
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

// cooling reports whether a source whose last code request counted at
// last (zero: never) is still in its cooldown at now.
func (p OTPPolicy) cooling(last, now time.Time) bool {
	return !last.IsZero() && now.Before(last.Add(p.Cooldown))
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

// codeKind is one kind of one-time code: what it proves, its limits and
// its e-mail.
type codeKind struct {
	purpose CodePurpose
	policy  OTPPolicy
	// check and send are the per-source counters of attempts and of codes
	// sent; checkAccount and sendAccount the account-wide ones with their
	// limits (a reset code's attempts also count toward the sign-up
	// codes' account-wide cap).
	check, send  Purpose
	checkAccount []accountLimit
	sendAccount  []accountLimit
	template     string
	sent         Event
}

// accountLimit is an account-wide counter and its limit.
type accountLimit struct {
	purpose Purpose
	limit   Limit
}

// verifyKind is the sign-up code: it proves an address.
func (s *Service) verifyKind() codeKind {
	p := s.o.OTP
	return codeKind{
		purpose: CodeVerifyEmail, policy: p,
		check: PurposeCodeCheck, send: PurposeCodeSend,
		checkAccount: []accountLimit{{PurposeCodeCheckAccount, p.perAccountChecks()}},
		sendAccount:  []accountLimit{{PurposeCodeSendAccount, p.perAccountSends()}},
		template:     mail.TemplateOTP, sent: EventOTPSent,
	}
}

// resetKind is the password-reset code: it lets its holder set a new
// password (and proves the address). It allows fewer attempts than a
// sign-up code (ResetPolicy), and counts toward the sign-up codes'
// account-wide caps as well as its own.
func (s *Service) resetKind() codeKind {
	p := s.o.OTP
	rp := p
	rp.MaxAttempts = s.o.Reset.MaxAttempts
	return codeKind{
		purpose: CodeResetPassword, policy: rp,
		check: PurposeResetCheck, send: PurposeResetSend,
		checkAccount: []accountLimit{
			{PurposeResetCheckAccount, Limit{Max: s.o.Reset.AccountDailyFailures, Window: otpDay}},
			{PurposeCodeCheckAccount, p.perAccountChecks()},
		},
		sendAccount: []accountLimit{{PurposeCodeSendAccount, p.perAccountSends()}},
		template:    mail.TemplateReset, sent: EventResetRequested,
	}
}

// ResetPolicy limits password-reset codes, which give an account away and
// so allow fewer guesses than sign-up codes.
type ResetPolicy struct {
	// MaxAttempts is how many attempts one reset code allows from one
	// source.
	MaxAttempts int
	// AccountDailyFailures caps the reset codes checked against one
	// account in 24 hours, whatever the sources.
	AccountDailyFailures int
}

// SendOTP issues a new verification code for the address and queues its
// e-mail. An unknown or already verified address gets the same success and
// nothing is sent (this does not hide registration: Register tells by
// design), and so does a request within the cooldown of the source's last
// code, whatever that code's state: nothing is issued, mailed or counted
// (the platform's gateway calls SendOtp right after every Register, whose
// code is on its way). Errors: INVALID_INPUT and ErrOTPDailyLimit (see
// issueCode).
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
		issued, err = s.issueCode(ctx, tx, s.verifyKind(), u.ID, addr.Canonical, source, s.now(), false)
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

// issueCode creates a code of kind for the user whose canonical address
// is canonical, at the request of source (none: invalid prefix),
// supersedes older ones of its kind and queues the e-mail. It issues
// nothing (issued false, no error) when a sign-up code is asked for a
// verified user, or when the source's last code of the kind is younger
// than Cooldown, unless claim is set (Register's sign-up claims are mailed
// regardless of the cooldown). A limit refuses with ErrOTPDailyLimit when
// the source's (DailyLimit) or the address's codes of the day are used up.
// The user row is locked and read again under the lock, so concurrent
// requests for one user serialize and see each other's codes; a refusal
// rolls the unit of work back, so it counts nothing.
func (s *Service) issueCode(ctx context.Context, tx Tx, kind codeKind, userID uuid.UUID, canonical string, source netip.Prefix, now time.Time, claim bool) (bool, error) {
	u, err := tx.LockUser(ctx, userID)
	if err != nil {
		return false, err
	}
	if u.Verified && kind.purpose == CodeVerifyEmail {
		return false, nil
	}
	p := kind.policy
	send := s.counter(kind.send, canonical, source)
	c, err := tx.LockCounter(ctx, send.purpose, send.key, send.account, now)
	if err != nil {
		return false, err
	}
	if !claim && p.cooling(c.Last, now) {
		return false, nil
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
	for _, al := range kind.sendAccount {
		if _, until, _, err := takeIn(ctx, tx, s.counter(al.purpose, canonical, netip.Prefix{}), al.limit, time.Time{}, now); err != nil || !until.IsZero() {
			if err == nil {
				err = withRetry(ErrOTPDailyLimit, until.Sub(now))
			}
			return false, err
		}
	}
	code, err := otp.NewCode()
	if err != nil {
		return false, err
	}
	id := uuid.New()
	var requester []byte
	if source.IsValid() {
		requester = send.key
	}
	if err := tx.IssueOTP(ctx, OTPCode{ID: id, UserID: u.ID, Purpose: kind.purpose, MAC: s.o.OTPKeys.MAC(id, code),
		CreatedAt: now, ExpiresAt: now.Add(p.TTL), Requester: requester}); err != nil {
		return false, err
	}
	if err := s.auditTx(ctx, tx, kind.sent, u.ID, "", now); err != nil {
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
	// The message is not sent once its code has expired (ExpiresAt).
	err = tx.EnqueueMail(ctx, mail.Message{ID: msgID, UserID: u.ID, To: u.Email, Template: kind.template, Sealed: sealed,
		ExpiresAt: now.Add(p.TTL)}, now)
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
	err = s.checkCode(ctx, s.verifyKind(), u.ID, addr.Canonical, source, code, func(tx Tx, now time.Time) error {
		a, err := tx.LockUser(ctx, u.ID)
		if err != nil {
			return err
		}
		name, hash := verifiedCredentials(a)
		reason := ""
		if hash == "" {
			reason = "claims_contested"
		}
		if err := s.auditTx(ctx, tx, EventOTPVerified, u.ID, reason, now); err != nil {
			return err
		}
		return tx.MarkVerified(ctx, u.ID, name, hash, now)
	})
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

// checkCode checks code against the user's live code of kind. The
// attempt is counted and committed before the comparison: the account-wide
// caps first (the refusal that first hits one commits its lock and is
// audited), then the source's attempts on this code, and the count tells
// this attempt's number. A wrong code is audited; a right one is consumed
// and then, in the same unit of work, succeeded runs.
//
// When a known source asked for the live code (OTPCode.Requester), the
// account-wide caps keep the last of their day's checks (the code's own
// attempts per source, perSourceChecks) for that source: any other known
// source is refused once fewer remain, without locking the cap. Strangers
// who spend an account's caps with wrong guesses from many addresses
// therefore leave the owner the attempts on the code the owner asked for
// (OWASP Forgot Password Cheat Sheet: others must not be able to deny a
// reset to the user), and the day's guesses stay within the caps. A check
// without a source is another source here; a code asked for without one
// shares the whole caps, as before.
func (s *Service) checkCode(ctx context.Context, kind codeKind, userID uuid.UUID, canonical string, source netip.Prefix, code string, succeeded func(tx Tx, now time.Time) error) error {
	now := s.now()
	p := kind.policy
	c, ok, err := s.db.LatestLiveOTP(ctx, userID, kind.purpose)
	if err != nil {
		return err
	}
	if !ok {
		return ErrInvalidOTP
	}
	if err := p.checkable(c, now); err != nil {
		return err
	}
	// Whether a known source asked for c, and whether it is this one.
	reserve := c.Requester != nil && (!source.IsValid() || !hmac.Equal(c.Requester, s.counter(kind.send, canonical, source).key))
	var attempt int
	var capped, kept bool
	err = s.db.InTx(ctx, func(tx Tx) error {
		for _, al := range kind.checkAccount {
			ref := s.counter(al.purpose, canonical, netip.Prefix{})
			ac, err := tx.LockCounter(ctx, ref.purpose, ref.key, ref.account, now)
			if err != nil {
				return err
			}
			if until, full := al.limit.reserved(ac, now, p.perSourceChecks().Max); reserve && full {
				kept = true
				return withRetry(ErrOTPAttemptsExhausted, until.Sub(now)) // counts nothing
			}
			_, until, locked, err := takeLocked(ctx, tx, ref, ac, al.limit, time.Time{}, now)
			if err != nil {
				return err
			}
			if !until.IsZero() {
				// Commit the account's lock (its first refusal is audited).
				capped = locked
				return CommitAnd(withRetry(ErrOTPAttemptsExhausted, until.Sub(now)))
			}
		}
		n, until, _, err := takeIn(ctx, tx, s.counter(kind.check, canonical, source), p.perSourceChecks(), c.CreatedAt, now)
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
	if kept {
		s.o.Events(EventOTPFailed, ReasonKeptForRequester)
	}
	if capped {
		s.audit(ctx, EventOTPFailed, userID, ReasonAccountDailyCap, now)
	}
	if err != nil {
		return err
	}
	if !s.o.OTPKeys.Verify(c.ID, code, c.MAC) {
		s.o.Log.InfoContext(ctx, "code check failed", "user_id", userID, "purpose", kind.purpose, "attempt", attempt)
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
		return succeeded(tx, now)
	})
}
