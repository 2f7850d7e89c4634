// Package auth is the domain logic of the auth service: registration,
// login, refresh-token rotation with reuse detection, logout, e-mail
// verification by OTP, and user look-ups. It speaks in domain types and the
// closed set of errors in errors.go; it knows nothing of gRPC.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/otprequest"
	"github.com/placebrain/auth/ent/refreshtoken"
	"github.com/placebrain/auth/ent/user"
	"github.com/placebrain/auth/internal/identity"
	"github.com/placebrain/auth/internal/mail"
	"github.com/placebrain/auth/internal/otp"
	"github.com/placebrain/auth/internal/password"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/token"
)

// Revoke reasons recorded on refresh tokens.
const (
	revokeLogout        = "logout"
	revokeReuseDetected = "reuse_detected"
)

// Options are the parts and policies of a Service.
type Options struct {
	AccessTokens *token.Issuer
	Passwords    *password.Hasher
	OTPKeys      *otp.Keyer
	// RefreshTokenTTL is the lifetime of each refresh token.
	RefreshTokenTTL time.Duration
	// OTPTTL is how long a code is valid.
	OTPTTL time.Duration
	// OTPMaxAttempts is how many attempts one code allows.
	OTPMaxAttempts int
	// OTPCooldown is the least time between two codes for one user.
	OTPCooldown time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// MailQueued, when set, is called after a transaction that queued
	// an e-mail commits (it wakes the outbox dispatcher).
	MailQueued func()
	Log        *slog.Logger
}

// Service implements the auth operations on one database.
type Service struct {
	db *ent.Client
	o  Options
}

// New returns a Service on db.
func New(db *ent.Client, o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.MailQueued == nil {
		o.MailQueued = func() {}
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

// TokenPair is what a successful login or refresh returns.
type TokenPair struct {
	AccessToken  string
	RefreshToken string
}

func (s *Service) now() time.Time { return s.o.Now().UTC() }

// Register creates an unverified user, its first OTP and the outbox e-mail
// that carries it, in one transaction, and returns the user's id. Errors:
// INVALID_INPUT for a bad username, e-mail or password (8 to 72 bytes),
// ErrEmailTaken when the normalized e-mail is registered.
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
	hash, err := s.o.Passwords.Hash(pw)
	if err != nil {
		return uuid.Nil, err
	}
	now := s.now()
	var id uuid.UUID
	err = store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		u, err := tx.User.Create().
			SetUsername(name).
			SetEmail(addr.Address).
			SetEmailNormalized(addr.Canonical).
			SetPasswordHash(hash).
			SetCreatedAt(now).
			SetUpdatedAt(now).
			Save(ctx)
		if ent.IsConstraintError(err) {
			return ErrEmailTaken
		}
		if err != nil {
			return fmt.Errorf("create user: %w", err)
		}
		id = u.ID
		return s.issueOTP(ctx, tx, u, now)
	})
	if err != nil {
		return uuid.Nil, err
	}
	s.o.MailQueued()
	s.o.Log.InfoContext(ctx, "user registered", "user_id", id)
	return id, nil
}

// Login checks an e-mail and password and starts a new token family.
// Unknown e-mail and wrong password both give ErrInvalidCredentials after
// one bcrypt comparison at the same cost; a correct password on an
// unverified account gives ErrEmailNotVerified.
func (s *Service) Login(ctx context.Context, email, pw string) (TokenPair, error) {
	addr, err := identity.NormalizeEmail(email)
	if err != nil {
		return TokenPair{}, invalidInput("email", err.Error())
	}
	if err := password.Validate(pw); err != nil {
		return TokenPair{}, invalidInput("password", err.Error())
	}
	u, err := s.db.User.Query().Where(user.EmailNormalized(addr.Canonical)).Only(ctx)
	if ent.IsNotFound(err) {
		s.o.Passwords.CompareDummy(pw)
		return TokenPair{}, ErrInvalidCredentials
	}
	if err != nil {
		return TokenPair{}, fmt.Errorf("find user: %w", err)
	}
	if err := s.o.Passwords.Compare(u.PasswordHash, pw); err != nil {
		if errors.Is(err, password.ErrMismatch) {
			s.o.Log.InfoContext(ctx, "login failed", "user_id", u.ID, "reason", "wrong_password")
			return TokenPair{}, ErrInvalidCredentials
		}
		return TokenPair{}, fmt.Errorf("compare password: %w", err)
	}
	if !u.IsVerified {
		return TokenPair{}, ErrEmailNotVerified
	}
	var pair TokenPair
	err = store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		var err error
		pair, err = s.issuePair(ctx, tx, u, uuid.New(), nil, s.now())
		return err
	})
	if err != nil {
		return TokenPair{}, err
	}
	s.o.Log.InfoContext(ctx, "login succeeded", "user_id", u.ID)
	return pair, nil
}

// issuePair stores a new refresh token in family (child of parent, if any)
// and signs an access token for u.
func (s *Service) issuePair(ctx context.Context, tx *ent.Tx, u *ent.User, family uuid.UUID, parent *uuid.UUID, now time.Time) (TokenPair, error) {
	text, hash, err := token.NewRefreshToken()
	if err != nil {
		return TokenPair{}, fmt.Errorf("new refresh token: %w", err)
	}
	err = tx.RefreshToken.Create().
		SetUserID(u.ID).
		SetFamilyID(family).
		SetNillableParentID(parent).
		SetTokenHash(hash).
		SetCreatedAt(now).
		SetExpiresAt(now.Add(s.o.RefreshTokenTTL)).
		Exec(ctx)
	if err != nil {
		return TokenPair{}, fmt.Errorf("store refresh token: %w", err)
	}
	access, _, err := s.o.AccessTokens.Sign(token.Subject{UserID: u.ID, Email: u.Email, Username: u.Username})
	if err != nil {
		return TokenPair{}, err
	}
	return TokenPair{AccessToken: access, RefreshToken: text}, nil
}

// refreshHash validates a presented refresh token's text: empty is
// INVALID_INPUT, anything this service cannot have issued is
// ErrInvalidRefreshToken.
func refreshHash(raw string) ([]byte, error) {
	if raw == "" {
		return nil, invalidInput("refresh_token", "refresh_token is required")
	}
	h, err := token.HashRefreshToken(raw)
	if err != nil {
		return nil, ErrInvalidRefreshToken
	}
	return h, nil
}

// Refresh rotates a refresh token: in one transaction the presented token
// is marked used and a new one is issued in the same family, with a new
// access token. Presenting a used token again is reuse: the whole family is
// revoked (committed) and ErrRefreshTokenReused returned, also when the
// family was revoked already. An unused revoked token (after logout or
// after reuse of an ancestor) gives ErrRefreshTokenRevoked, an expired one ErrRefreshTokenExpired, an
// unknown one ErrInvalidRefreshToken.
func (s *Service) Refresh(ctx context.Context, raw string) (TokenPair, error) {
	hash, err := refreshHash(raw)
	if err != nil {
		return TokenPair{}, err
	}
	var pair TokenPair
	err = store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		rt, err := tx.RefreshToken.Query().Where(refreshtoken.TokenHash(hash)).Modify(store.ForUpdate()).Only(ctx)
		if ent.IsNotFound(err) {
			return ErrInvalidRefreshToken
		}
		if err != nil {
			return fmt.Errorf("find refresh token: %w", err)
		}
		now := s.now()
		switch {
		case rt.UsedAt != nil:
			n, err := revokeFamily(ctx, tx, rt.FamilyID, revokeReuseDetected, now)
			if err != nil {
				return err
			}
			s.o.Log.WarnContext(ctx, "refresh token reuse detected; token family revoked",
				"user_id", rt.UserID, "family_id", rt.FamilyID, "revoked", n)
			return store.CommitAnd(ErrRefreshTokenReused)
		case rt.RevokedAt != nil:
			return ErrRefreshTokenRevoked
		case !now.Before(rt.ExpiresAt):
			return ErrRefreshTokenExpired
		}
		u, err := tx.User.Get(ctx, rt.UserID)
		if err != nil {
			return fmt.Errorf("find user: %w", err)
		}
		if err := tx.RefreshToken.UpdateOneID(rt.ID).SetUsedAt(now).Exec(ctx); err != nil {
			return fmt.Errorf("mark refresh token used: %w", err)
		}
		pair, err = s.issuePair(ctx, tx, u, rt.FamilyID, &rt.ID, now)
		return err
	})
	return pair, err
}

// revokeFamily revokes every unrevoked token of a family and returns how
// many it revoked.
func revokeFamily(ctx context.Context, tx *ent.Tx, family uuid.UUID, reason string, now time.Time) (int, error) {
	n, err := tx.RefreshToken.Update().
		Where(refreshtoken.FamilyID(family), refreshtoken.RevokedAtIsNil()).
		SetRevokedAt(now).
		SetRevokeReason(reason).
		Save(ctx)
	if err != nil {
		return 0, fmt.Errorf("revoke token family: %w", err)
	}
	return n, nil
}

// Logout ends the session the refresh token belongs to: its whole token
// family is revoked. Logout is idempotent, as token revocation is in
// RFC 7009 §2.2: a token that is unknown, malformed, already used or
// already revoked is answered with success too, since afterwards it is
// unusable either way. Only an empty token is an error (INVALID_INPUT).
func (s *Service) Logout(ctx context.Context, raw string) error {
	hash, err := refreshHash(raw)
	if errors.Is(err, ErrInvalidRefreshToken) {
		return nil
	}
	if err != nil {
		return err
	}
	return store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		rt, err := tx.RefreshToken.Query().Where(refreshtoken.TokenHash(hash)).Only(ctx)
		if ent.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("find refresh token: %w", err)
		}
		n, err := revokeFamily(ctx, tx, rt.FamilyID, revokeLogout, s.now())
		if err != nil {
			return err
		}
		if n > 0 {
			s.o.Log.InfoContext(ctx, "logout", "user_id", rt.UserID, "family_id", rt.FamilyID)
		}
		return nil
	})
}

// GetUser returns the user with the given id (text form of a UUID).
// Errors: INVALID_INPUT for a malformed id, ErrUserNotFound.
func (s *Service) GetUser(ctx context.Context, id string) (User, error) {
	if id == "" {
		return User{}, invalidInput("user_id", "user_id is required")
	}
	uid, err := uuid.Parse(id)
	if err != nil {
		return User{}, invalidInput("user_id", "user_id must be a UUID")
	}
	u, err := s.db.User.Get(ctx, uid)
	if ent.IsNotFound(err) {
		return User{}, ErrUserNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	return toUser(u), nil
}

// GetUserByEmail returns the user with the e-mail address, compared in its
// normalized form. Errors: INVALID_INPUT, ErrUserNotFound.
func (s *Service) GetUserByEmail(ctx context.Context, email string) (User, error) {
	addr, err := identity.NormalizeEmail(email)
	if err != nil {
		return User{}, invalidInput("email", err.Error())
	}
	u, err := s.db.User.Query().Where(user.EmailNormalized(addr.Canonical)).Only(ctx)
	if ent.IsNotFound(err) {
		return User{}, ErrUserNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("find user: %w", err)
	}
	return toUser(u), nil
}

func toUser(u *ent.User) User {
	return User{ID: u.ID, Username: u.Username, Email: u.Email, Verified: u.IsVerified}
}

// ValidateToken verifies an access token (see token.Issuer.Verify). It
// returns ok=false for any token that fails; the only error is
// INVALID_INPUT for an empty token.
func (s *Service) ValidateToken(ctx context.Context, raw string) (token.Subject, bool, error) {
	if raw == "" {
		return token.Subject{}, false, invalidInput("access_token", "access_token is required")
	}
	sub, err := s.o.AccessTokens.Verify(raw)
	if err != nil {
		return token.Subject{}, false, nil
	}
	return sub, true, nil
}

// SendOtp issues a new verification code for the address and queues its
// e-mail. To keep the answer from telling which addresses have accounts,
// an unknown or already verified address gets the same success and nothing
// is sent. Errors: INVALID_INPUT, ErrOTPCooldown (with RetryAfter) when the
// previous code is younger than the cooldown.
func (s *Service) SendOtp(ctx context.Context, email string) error {
	addr, err := identity.NormalizeEmail(email)
	if err != nil {
		return invalidInput("email", err.Error())
	}
	u, err := s.db.User.Query().Where(user.EmailNormalized(addr.Canonical)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find user: %w", err)
	}
	if u.IsVerified {
		s.o.Log.InfoContext(ctx, "otp not sent: already verified", "user_id", u.ID)
		return nil
	}
	if err := store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		return s.issueOTP(ctx, tx, u, s.now())
	}); err != nil {
		return err
	}
	s.o.MailQueued()
	return nil
}

// issueOTP creates a code for u, supersedes older ones and queues the
// e-mail, unless the last code is younger than the cooldown. The user row
// is locked so that concurrent requests for one user serialize.
func (s *Service) issueOTP(ctx context.Context, tx *ent.Tx, u *ent.User, now time.Time) error {
	if _, err := tx.User.Query().Where(user.ID(u.ID)).Modify(store.ForUpdate()).Only(ctx); err != nil {
		return fmt.Errorf("lock user: %w", err)
	}
	last, err := tx.OtpRequest.Query().
		Where(otprequest.UserID(u.ID)).
		Order(ent.Desc(otprequest.FieldCreatedAt)).
		First(ctx)
	switch {
	case ent.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("find last code: %w", err)
	case now.Before(last.CreatedAt.Add(s.o.OTPCooldown)):
		return withRetry(ErrOTPCooldown, last.CreatedAt.Add(s.o.OTPCooldown).Sub(now))
	}
	if err := tx.OtpRequest.Update().
		Where(otprequest.UserID(u.ID), otprequest.ConsumedAtIsNil(), otprequest.SupersededAtIsNil()).
		SetSupersededAt(now).
		Exec(ctx); err != nil {
		return fmt.Errorf("supersede codes: %w", err)
	}
	code, err := otp.NewCode()
	if err != nil {
		return err
	}
	id := uuid.New()
	if err := tx.OtpRequest.Create().
		SetID(id).
		SetUserID(u.ID).
		SetCodeHmac(s.o.OTPKeys.MAC(id, code)).
		SetCreatedAt(now).
		SetExpiresAt(now.Add(s.o.OTPTTL)).
		Exec(ctx); err != nil {
		return fmt.Errorf("store code: %w", err)
	}
	err = mail.Enqueue(ctx, tx, mail.Message{
		UserID:   u.ID,
		To:       u.Email,
		Template: mail.TemplateOTP,
		Data: map[string]string{
			"code":           code,
			"username":       u.Username,
			"expiresMinutes": strconv.Itoa(int(s.o.OTPTTL / time.Minute)),
		},
	}, now)
	if err != nil {
		return err
	}
	s.o.Log.InfoContext(ctx, "otp issued", "user_id", u.ID)
	return nil
}

// VerifyOtp checks a code for the address and marks the user verified.
// The attempt is counted and committed before the comparison, so at most
// OTPMaxAttempts comparisons ever run for one code, however many requests
// arrive at once; the code is burned at the cap. Errors: INVALID_INPUT (code
// not 6 digits), ErrInvalidOTP (wrong code, or no live code for the
// address), ErrOTPExpired, ErrOTPAttemptsExhausted (with RetryAfter until a
// new code may be requested). An already verified address succeeds.
func (s *Service) VerifyOtp(ctx context.Context, email, code string) error {
	addr, err := identity.NormalizeEmail(email)
	if err != nil {
		return invalidInput("email", err.Error())
	}
	if err := otp.CheckFormat(code); err != nil {
		return invalidInput("code", err.Error())
	}
	u, err := s.db.User.Query().Where(user.EmailNormalized(addr.Canonical)).Only(ctx)
	if ent.IsNotFound(err) {
		return ErrInvalidOTP
	}
	if err != nil {
		return fmt.Errorf("find user: %w", err)
	}
	if u.IsVerified {
		return nil
	}
	now := s.now()
	o, err := s.db.OtpRequest.Query().
		Where(otprequest.UserID(u.ID), otprequest.ConsumedAtIsNil(), otprequest.SupersededAtIsNil()).
		Order(ent.Desc(otprequest.FieldCreatedAt)).
		First(ctx)
	if ent.IsNotFound(err) {
		return ErrInvalidOTP
	}
	if err != nil {
		return fmt.Errorf("find code: %w", err)
	}
	exhausted := withRetry(ErrOTPAttemptsExhausted, o.CreatedAt.Add(s.o.OTPCooldown).Sub(now))
	if !now.Before(o.ExpiresAt) {
		return ErrOTPExpired
	}
	if o.Attempts >= s.o.OTPMaxAttempts {
		return exhausted
	}
	// Count the attempt and commit it before comparing: the conditional
	// UPDATE admits at most OTPMaxAttempts attempts, even concurrently, and
	// the row it locked tells this attempt's number.
	var attempt int
	err = store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		n, err := tx.OtpRequest.Update().
			Where(otprequest.ID(o.ID), otprequest.AttemptsLT(s.o.OTPMaxAttempts),
				otprequest.ConsumedAtIsNil(), otprequest.SupersededAtIsNil()).
			AddAttempts(1).
			Save(ctx)
		if err != nil {
			return fmt.Errorf("count attempt: %w", err)
		}
		if n == 0 {
			return exhausted
		}
		counted, err := tx.OtpRequest.Get(ctx, o.ID)
		if err != nil {
			return fmt.Errorf("read attempt: %w", err)
		}
		attempt = counted.Attempts
		return nil
	})
	if err != nil {
		return err
	}
	if !s.o.OTPKeys.Verify(o.ID, code, o.CodeHmac) {
		s.o.Log.InfoContext(ctx, "otp verification failed", "user_id", u.ID, "attempt", attempt)
		if attempt >= s.o.OTPMaxAttempts {
			return exhausted
		}
		return withMeta(ErrInvalidOTP, "attempts_left", strconv.Itoa(s.o.OTPMaxAttempts-attempt))
	}
	err = store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		n, err := tx.OtpRequest.Update().
			Where(otprequest.ID(o.ID), otprequest.ConsumedAtIsNil(), otprequest.SupersededAtIsNil()).
			SetConsumedAt(now).
			Save(ctx)
		if err != nil {
			return fmt.Errorf("consume code: %w", err)
		}
		if n == 0 {
			return ErrInvalidOTP // consumed or superseded meanwhile
		}
		return tx.User.UpdateOneID(u.ID).SetIsVerified(true).SetVerifiedAt(now).SetUpdatedAt(now).Exec(ctx)
	})
	if err != nil {
		return err
	}
	s.o.Log.InfoContext(ctx, "email verified", "user_id", u.ID)
	return nil
}
