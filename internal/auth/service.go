// Package auth holds the rules of the auth service: registration, login
// and its throttling, refresh-token rotation with reuse detection, logout,
// e-mail verification by OTP, and user look-ups. Each decision is a plain
// function (refresh.go, throttle.go, otp.go) and the Service runs them
// against a Store (data.go), which internal/store implements. It speaks in
// domain types and the closed set of errors in errors.go; it imports no
// gRPC and no database code.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/identity"
	"github.com/placebrain/auth/internal/mail"
	"github.com/placebrain/auth/internal/otp"
	"github.com/placebrain/auth/internal/password"
	"github.com/placebrain/auth/internal/token"
)

// Options are the parts and policies of a Service.
type Options struct {
	AccessTokens *token.Issuer
	Passwords    *password.Hasher
	OTPKeys      *otp.Keyer
	// MailSealer seals the data of queued e-mails (they hold codes).
	MailSealer *mail.Sealer
	// RefreshTokenTTL is the lifetime of each refresh token.
	RefreshTokenTTL time.Duration
	// Refresh decides presented refresh tokens: the reuse grace window,
	// the recovery window and the session's lifetime.
	Refresh RefreshPolicy
	// OTP limits verification codes.
	OTP OTPPolicy
	// Login limits login attempts.
	Login LoginPolicy
	// Register limits registrations per source.
	Register RegisterPolicy
	// Reset limits password-reset codes.
	Reset ResetPolicy
	// LimiterKey keys the HMAC that names limiter counters (32 bytes).
	LimiterKey []byte
	// Sleep waits d or until ctx ends (a real timer when nil); the login
	// slowdown uses it.
	Sleep func(ctx context.Context, d time.Duration) error
	// Retention says how long dead rows are kept (Cleanup).
	Retention RetentionPolicy
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// MailQueued, when set, is called after a transaction that queued
	// an e-mail commits (it wakes the outbox dispatcher).
	MailQueued func()
	// Events, when set, is told of each audit event the service records,
	// with its reason (for metrics), as it is written: in a unit of work,
	// after its statement succeeded (a unit of work that fails later
	// still told it, which only a failing database does). It runs on the
	// RPCs' paths, RefreshTokens' included: it must be cheap, never
	// block, and be safe for concurrent use. It is also told, with no
	// row written, of each code check refused to keep an account's last
	// checks for a code's requester (EventOTPFailed,
	// ReasonKeptForRequester).
	Events func(e Event, reason string)
	// Log receives security events, with user ids and never secrets or
	// e-mail addresses.
	Log *slog.Logger
	// FullPathOnly makes every rotation take the full path, never
	// Store.RotateFresh (the agreement test compares the two).
	FullPathOnly bool
}

// Service implements the auth operations on one Store.
type Service struct {
	db Store
	o  Options
	// busyAudited is when a busy refusal was last audited.
	busyAudited atomic.Pointer[time.Time]
	// resetTimes are how long password-reset requests for existing
	// accounts took (RequestPasswordReset).
	resetTimes durations
}

// New returns a Service on db.
func New(db Store, o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.MailQueued == nil {
		o.MailQueued = func() {}
	}
	if o.Events == nil {
		o.Events = func(Event, string) {}
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	return &Service{db: db, o: o}
}

// User is a user as the API shows it.
type User struct {
	ID       uuid.UUID
	Username string
	Email    string
	Verified bool
}

// user is the account as the API shows it; a tombstone shows its id with
// DeletedUsername, no address and not verified.
func (a Account) user() User {
	if a.Deleted {
		return User{ID: a.ID, Username: DeletedUsername}
	}
	return User{ID: a.ID, Username: a.Username, Email: a.Email, Verified: a.Verified}
}

// TokenPair is what a successful login or refresh returns.
type TokenPair struct {
	AccessToken  string
	RefreshToken string
}

func (s *Service) now() time.Time { return s.o.Now().UTC() }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// audit records a security event outside a unit of work and tells
// Options.Events. A failure to record is logged by the store and ignored:
// it must not fail the operation (and the event happened all the same).
func (s *Service) audit(ctx context.Context, event Event, userID uuid.UUID, reason string, now time.Time) {
	s.o.Events(event, reason)
	if err := s.db.RecordAudit(ctx, AuditEvent{Event: event, UserID: userID, Reason: reason, At: now}); err != nil {
		s.o.Log.ErrorContext(ctx, "audit: record event", "event", event, "user_id", userID, "error", err)
	}
}

// auditTx records a security event in a unit of work, so that it commits
// with the change it describes, and tells Options.Events; its error fails
// the unit of work (a failed statement aborts a PostgreSQL transaction).
func (s *Service) auditTx(ctx context.Context, tx Tx, event Event, userID uuid.UUID, reason string, now time.Time) error {
	if err := recordAuditTx(ctx, tx, event, userID, reason, now); err != nil {
		return err
	}
	s.o.Events(event, reason)
	return nil
}

// recordAuditTx records a security event in a unit of work; a command
// that runs without a Service (ImportUsers) calls it directly.
func recordAuditTx(ctx context.Context, tx Tx, event Event, userID uuid.UUID, reason string, now time.Time) error {
	return tx.RecordAudit(ctx, AuditEvent{Event: event, UserID: userID, Reason: reason, At: now})
}

// RegisterPolicy limits registrations per source (none is counted when
// the source is unknown).
type RegisterPolicy struct {
	// MaxPerSource registrations from one source within Window; zero
	// disables the limit.
	MaxPerSource int
	Window       time.Duration
}

func (p RegisterPolicy) limit() Limit { return Limit{Max: p.MaxPerSource, Window: p.Window} }

// Register creates an unverified user, its first OTP and the outbox e-mail
// that carries it, in one transaction, and returns the user's id. For an
// address whose account is unverified it makes a sign-up claim instead
// (see claim) and returns that account's id. Errors: INVALID_INPUT for a
// bad username, e-mail or password (8 to 72 bytes), ErrEmailTaken when the
// address's account is verified, ErrRegisterThrottled when the request's
// source has used up its registrations (RegisterPolicy), ErrOTPDailyLimit
// when the address's codes of the day are used up (see issueCode), and
// ErrServerBusy when the hashing pool is full.
func (s *Service) Register(ctx context.Context, username, email, pw string) (uuid.UUID, error) {
	name, err := identity.NormalizeUsername(username)
	if err != nil {
		return uuid.Nil, invalidInput("username", err.Error())
	}
	addr, err := identity.NormalizeEmail(email)
	if err != nil {
		return uuid.Nil, invalidInput("email", err.Error())
	}
	if err := password.Validate(pw); err != nil {
		return uuid.Nil, invalidInput("password", err.Error())
	}
	if err := s.o.Passwords.Admits(registerHashKey); err != nil {
		return uuid.Nil, s.busy(ctx, err)
	}
	source, _ := SourceFrom(ctx)
	var perSource counterRef
	if source.IsValid() {
		// Refuse a source that has used up its registrations before
		// hashing; the registration counts in the unit of work below.
		perSource = s.counter(PurposeRegister, "", source)
		c, ok, err := s.db.ReadCounter(ctx, perSource.key)
		if err != nil {
			return uuid.Nil, err
		}
		if l := s.o.Register.limit(); ok && l.full(c, s.now()) {
			return uuid.Nil, withRetry(ErrRegisterThrottled, retryUntil(c, l, s.now()))
		}
	}
	// The address is looked up outside the unit of work (the claim path
	// compares, the new-account path hashes, before it), so a concurrent
	// Register or the cleanup can change it meanwhile: a new account that
	// finds the address taken becomes a claim on the other account, and a
	// claim whose account was deleted registers anew, once.
	// createAccount stores the new, unverified account a with its first
	// code and e-mail; ErrEmailTaken when the address was registered
	// meanwhile. (A closure, so that its unit of work is Register's.)
	createAccount := func(a NewAccount) (uuid.UUID, error) {
		now := s.now()
		a.CreatedAt = now
		var id uuid.UUID
		var throttled bool
		err := s.db.InTx(ctx, func(tx Tx) error {
			var err error
			if throttled, err = s.countRegistration(ctx, tx, perSource, now); err != nil {
				return err
			}
			if id, err = tx.CreateUser(ctx, a); err != nil {
				return err
			}
			if err := s.auditTx(ctx, tx, EventRegister, id, "", now); err != nil {
				return err
			}
			_, err = s.issueCode(ctx, tx, s.verifyKind(), id, a.EmailCanonical, source, now, true)
			return err
		})
		if throttled {
			s.audit(ctx, EventRegisterThrottled, uuid.Nil, "", now)
		}
		if err != nil {
			return uuid.Nil, err
		}
		s.o.MailQueued()
		s.o.Log.InfoContext(ctx, "user registered", "user_id", id)
		return id, nil
	}
	var hash string
	for attempt := 0; ; attempt++ {
		existing, err := s.db.UserByEmail(ctx, addr.Canonical)
		switch {
		case err == nil && existing.Verified:
			return uuid.Nil, ErrEmailTaken
		case err == nil:
			id, err := s.claim(ctx, existing, name, addr.Canonical, pw, source, perSource)
			if errors.Is(err, ErrUserNotFound) && attempt == 0 {
				continue
			}
			return id, err
		case !errors.Is(err, ErrUserNotFound):
			return uuid.Nil, err
		}
		if hash == "" {
			if hash, err = s.o.Passwords.Hash(ctx, registerHashKey, pw); err != nil {
				return uuid.Nil, s.busy(ctx, err)
			}
		}
		id, err := createAccount(NewAccount{Username: name, Email: addr.Address, EmailCanonical: addr.Canonical, PasswordHash: hash})
		if errors.Is(err, ErrEmailTaken) && attempt == 0 {
			continue
		}
		return id, err
	}
}

// countRegistration counts a registration of the source whose counter is
// perSource (none when its key is nil) in tx: ErrRegisterThrottled when
// the source has used up its registrations, with locked set when this
// refusal locked the counter (audit it).
func (s *Service) countRegistration(ctx context.Context, tx Tx, perSource counterRef, now time.Time) (locked bool, err error) {
	if perSource.key == nil {
		return false, nil
	}
	_, until, locked, err := takeIn(ctx, tx, perSource, s.o.Register.limit(), time.Time{}, now)
	if err != nil {
		return false, err
	}
	if !until.IsZero() {
		return locked, withRetry(ErrRegisterThrottled, until.Sub(now))
	}
	return false, nil
}

// registerHashKey is the hashing pool's key of every registration: a flood
// of them (each for a new address) weighs as one account's logins.
const registerHashKey = "register"

// hashKey is the hashing pool's key of logins to the account whose
// canonical address is canonical.
func (s *Service) hashKey(canonical string) string {
	return string(s.counter(PurposeLoginAccount, canonical, netip.Prefix{}).key)
}

// retryUntil is how long until counter c of limit l admits again at now.
func retryUntil(c Counter, l Limit, now time.Time) time.Duration {
	if now.Before(c.LockedUntil) {
		return c.LockedUntil.Sub(now)
	}
	return c.WindowStart.Add(l.Window).Sub(now)
}

// Login checks an e-mail and password and starts a new token family.
// Unknown e-mail and wrong password both give ErrInvalidCredentials; a
// correct password on an unverified account gives ErrEmailNotVerified.
// The attempt is counted before the password is checked (LoginPolicy); a
// refused one gets ErrLoginThrottled without a check, for a known address
// and an unknown one alike. A known address's password is compared in the
// hashing pool, shared fairly between (account, source) pairs; an unknown
// address takes no hashing capacity and waits as long as a comparison
// takes (password.Hasher.WaitLikeCompare), so without a flood both answer
// in the same time (during one, a known address may wait in the pool). A success rehashes a password stored at another cost.
func (s *Service) Login(ctx context.Context, email, pw string) (TokenPair, error) {
	addr, err := identity.NormalizeEmail(email)
	if err != nil {
		return TokenPair{}, invalidInput("email", err.Error())
	}
	// Only the bytes bcrypt reads are bounded here: the length rules apply
	// where a password is set, and an account imported from the platform's
	// earlier service may have a shorter one.
	if err := password.ValidateLength(pw); err != nil {
		return TokenPair{}, invalidInput("password", err.Error())
	}
	// Refuse at once, before any database work, a login the hashing pool
	// would refuse: a flood's refusals must cost next to nothing.
	if err := s.o.Passwords.Admits(s.hashKey(addr.Canonical)); err != nil {
		return TokenPair{}, s.busy(ctx, err)
	}
	now := s.now()
	source, _ := SourceFrom(ctx)
	u, err := s.db.UserByEmail(ctx, addr.Canonical)
	known := err == nil
	if err != nil && !errors.Is(err, ErrUserNotFound) {
		return TokenPair{}, err
	}
	g, err := s.admitLogin(ctx, addr.Canonical, source, u.ID, now)
	if err != nil {
		return TokenPair{}, err
	}
	if g.delay > 0 {
		if err := s.o.Sleep(ctx, g.delay); err != nil {
			s.loginRefund(ctx, g, now)
			return TokenPair{}, err
		}
	}
	fail := func(reason string) (TokenPair, error) {
		s.loginFailed(ctx, g, u.ID, reason, now)
		return TokenPair{}, ErrInvalidCredentials
	}
	if !known {
		if err := s.o.Passwords.WaitLikeCompare(ctx); err != nil {
			s.loginRefund(ctx, g, now)
			return TokenPair{}, err
		}
		return fail("unknown_email")
	}
	if err := s.comparePassword(ctx, g.hashKey, u.PasswordHash, pw); err != nil {
		if attemptOutcome(err) == failed {
			s.o.Log.InfoContext(ctx, "login failed", "user_id", u.ID, "reason", "wrong_password")
			return fail("wrong_password")
		}
		// The comparison never ran: the attempt is not a failure.
		s.loginRefund(ctx, g, now)
		if errors.Is(err, password.ErrBusy) || ctx.Err() != nil {
			return TokenPair{}, s.busy(ctx, err)
		}
		return TokenPair{}, fmt.Errorf("compare password: %w", err)
	}
	// The right password of an unverified account, which may be a
	// stranger's sign-up claim, resolves the attempt but makes no source
	// the account's own.
	if err := s.loginSucceeded(ctx, g, addr.Canonical, source, now, u.Verified); err != nil {
		return TokenPair{}, err
	}
	if !u.Verified {
		s.audit(ctx, EventLoginFailed, u.ID, "email_not_verified", now)
		return TokenPair{}, ErrEmailNotVerified
	}
	var rehash string
	if s.o.Passwords.NeedsRehash(u.PasswordHash) {
		if rehash, err = s.o.Passwords.Hash(ctx, g.hashKey, pw); err != nil {
			return TokenPair{}, s.busy(ctx, err)
		}
	}
	var refresh string
	err = s.db.InTx(ctx, func(tx Tx) error {
		if rehash != "" {
			if err := tx.SetPasswordHash(ctx, u.ID, rehash, now); err != nil {
				return err
			}
		}
		if err := s.auditTx(ctx, tx, EventLoginSucceeded, u.ID, "", now); err != nil {
			return err
		}
		var err error
		refresh, err = s.startFamily(ctx, tx, u.ID, now)
		return err
	})
	if err != nil {
		return TokenPair{}, err
	}
	s.o.Log.InfoContext(ctx, "login succeeded", "user_id", u.ID, "rehashed", rehash != "")
	return s.pair(token.Subject{UserID: u.ID, Email: u.Email, Username: u.Username}, refresh)
}

// busy maps a full hashing pool to ErrServerBusy, recording the refusal at
// most once a minute (a flood must not write an audit row per request);
// other errors pass.
func (s *Service) busy(ctx context.Context, err error) error {
	if !errors.Is(err, password.ErrBusy) {
		return err
	}
	now := s.now()
	if last := s.busyAudited.Load(); last == nil || now.Sub(*last) >= time.Minute {
		if s.busyAudited.CompareAndSwap(last, &now) {
			s.audit(ctx, EventServerBusy, uuid.Nil, "", now)
		}
	}
	return withRetry(ErrServerBusy, time.Second)
}

// GetUser returns the user with the given id, a UUID in its canonical
// lower-case hyphenated form; a deleted user answers as a tombstone (see
// Account.user). Errors: INVALID_INPUT, ErrUserNotFound.
func (s *Service) GetUser(ctx context.Context, id string) (User, error) {
	uid, err := parseUserID(id)
	if err != nil {
		return User{}, err
	}
	u, err := s.db.UserByID(ctx, uid)
	if err != nil {
		return User{}, err
	}
	return u.user(), nil
}

// GetUserByEmail returns the user with the e-mail address, compared in its
// normalized form. An unverified account is a pending sign-up claim, not a
// user anyone can add to a place: it answers ErrUserNotFound. Errors:
// INVALID_INPUT, ErrUserNotFound.
func (s *Service) GetUserByEmail(ctx context.Context, email string) (User, error) {
	addr, err := identity.NormalizeEmail(email)
	if err != nil {
		return User{}, invalidInput("email", err.Error())
	}
	u, err := s.db.UserByEmail(ctx, addr.Canonical)
	if err != nil {
		return User{}, err
	}
	if !u.Verified {
		return User{}, ErrUserNotFound
	}
	return u.user(), nil
}

// MaxAccessTokenBytes bounds the access token ValidateToken reads; the
// tokens this service signs are well under 1 KiB.
const MaxAccessTokenBytes = 4096

// ValidateToken verifies an access token (see token.Issuer.Verify). It
// returns ok=false for any token that fails; the only error is
// INVALID_INPUT for an empty token or one over MaxAccessTokenBytes.
func (s *Service) ValidateToken(_ context.Context, raw string) (token.Subject, bool, error) {
	if raw == "" {
		return token.Subject{}, false, invalidInput("access_token", "access_token is required")
	}
	if len(raw) > MaxAccessTokenBytes {
		return token.Subject{}, false, invalidInput("access_token", fmt.Sprintf("access_token must be at most %d bytes", MaxAccessTokenBytes))
	}
	sub, err := s.o.AccessTokens.Verify(raw)
	if err != nil {
		return token.Subject{}, false, nil
	}
	return sub, true, nil
}

// counterLifetimes says, per purpose, how long after its last event a
// counter can no longer matter: the longest window it counts in.
func (s *Service) counterLifetimes() []struct {
	purpose Purpose
	idle    time.Duration
} {
	day := 24 * time.Hour
	return []struct {
		purpose Purpose
		idle    time.Duration
	}{
		{PurposeLogin, max(s.o.Login.Window, s.o.Login.Lockout)},
		{PurposeLoginAccount, day},
		{PurposeSignedIn, s.o.Login.TrustedFor},
		{PurposeCodeCheck, s.o.OTP.TTL},
		{PurposeCodeCheckAccount, day},
		{PurposeCodeSend, max(day, s.o.OTP.Cooldown)},
		{PurposeCodeSendAccount, day},
		{PurposeRegister, s.o.Register.Window},
		{PurposeResetCheck, s.o.OTP.TTL},
		{PurposeResetCheckAccount, day},
		{PurposeResetSend, max(day, s.o.OTP.Cooldown)},
	}
}
