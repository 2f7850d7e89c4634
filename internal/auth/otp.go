package auth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/auditevent"
	"github.com/placebrain/auth/ent/otprequest"
	"github.com/placebrain/auth/ent/predicate"
	"github.com/placebrain/auth/ent/user"
	"github.com/placebrain/auth/internal/identity"
	"github.com/placebrain/auth/internal/mail"
	"github.com/placebrain/auth/internal/otp"
	"github.com/placebrain/auth/internal/store"
)

// live selects codes that are neither consumed nor superseded.
func live() predicate.OtpRequest {
	return otprequest.And(otprequest.ConsumedAtIsNil(), otprequest.SupersededAtIsNil())
}

// SendOTP issues a new verification code for the address and queues its
// e-mail. An unknown or already verified address gets the same success and
// nothing is sent (this does not hide registration: Register and
// GetUserByEmail tell by design). Errors: INVALID_INPUT; ErrOTPCooldown
// (with RetryAfter) when the previous code is younger than the cooldown;
// ErrOTPDailyLimit when the user had OTPDailyLimit codes in 24 hours.
func (s *Service) SendOTP(ctx context.Context, email string) error {
	addr, err := identity.NormalizeEmail(email)
	if err != nil {
		return invalidInput("email", err.Error())
	}
	u, err := s.userByEmail(ctx, s.db, addr)
	if errors.Is(err, ErrUserNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var issued bool
	err = store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
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
// limit applies. The user row is locked and read again under the lock, so
// concurrent requests for one user serialize and see each other's codes.
func (s *Service) issueOTP(ctx context.Context, tx *ent.Tx, userID uuid.UUID, now time.Time) (bool, error) {
	u, err := tx.User.Query().Where(user.ID(userID)).Modify(store.ForUpdate()).Only(ctx)
	if err != nil {
		return false, fmt.Errorf("lock user: %w", err)
	}
	if u.IsVerified {
		return false, nil
	}
	last, err := tx.OtpRequest.Query().
		Where(otprequest.UserID(u.ID)).
		Order(ent.Desc(otprequest.FieldCreatedAt)).
		First(ctx)
	switch {
	case ent.IsNotFound(err):
	case err != nil:
		return false, fmt.Errorf("find last code: %w", err)
	case now.Before(last.CreatedAt.Add(s.o.OTPCooldown)):
		return false, withRetry(ErrOTPCooldown, last.CreatedAt.Add(s.o.OTPCooldown).Sub(now))
	}
	if s.o.OTPDailyLimit > 0 {
		day := now.Add(-24 * time.Hour)
		recent, err := tx.OtpRequest.Query().
			Where(otprequest.UserID(u.ID), otprequest.CreatedAtGT(day)).
			Order(ent.Asc(otprequest.FieldCreatedAt)).
			All(ctx)
		if err != nil {
			return false, fmt.Errorf("count recent codes: %w", err)
		}
		if len(recent) >= s.o.OTPDailyLimit {
			oldest := recent[len(recent)-s.o.OTPDailyLimit]
			return false, withRetry(ErrOTPDailyLimit, oldest.CreatedAt.Sub(day))
		}
	}
	if err := tx.OtpRequest.Update().
		Where(otprequest.UserID(u.ID), live()).
		SetSupersededAt(now).
		Exec(ctx); err != nil {
		return false, fmt.Errorf("supersede codes: %w", err)
	}
	code, err := otp.NewCode()
	if err != nil {
		return false, err
	}
	id := uuid.New()
	if err := tx.OtpRequest.Create().
		SetID(id).
		SetUserID(u.ID).
		SetCodeHmac(s.o.OTPKeys.MAC(id, code)).
		SetCreatedAt(now).
		SetExpiresAt(now.Add(s.o.OTPTTL)).
		Exec(ctx); err != nil {
		return false, fmt.Errorf("store code: %w", err)
	}
	if err := s.auditTx(ctx, tx.Client(), auditevent.EventOtpSent, u.ID, "", now); err != nil {
		return false, err
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
	return err == nil, err
}

// VerifyOTP checks a code for the address and marks the user verified.
// The attempt is counted and committed before the comparison, so at most
// OTPMaxAttempts comparisons ever run for one code, however many requests
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
	u, err := s.userByEmail(ctx, s.db, addr)
	if errors.Is(err, ErrUserNotFound) {
		return ErrInvalidOTP
	}
	if err != nil {
		return err
	}
	if u.IsVerified {
		return nil
	}
	err = s.verifyOTP(ctx, u.ID, code)
	if err != nil {
		// A concurrent request with the right code may have won.
		if v, verr := s.db.User.Query().Where(user.ID(u.ID), user.IsVerified(true)).Exist(ctx); verr == nil && v {
			return nil
		}
		if de, ok := AsError(err); ok {
			s.audit(ctx, s.db, auditevent.EventOtpFailed, u.ID, strings.ToLower(de.Reason), s.now())
		}
		return err
	}
	s.o.Log.InfoContext(ctx, "email verified", "user_id", u.ID)
	return nil
}

func (s *Service) verifyOTP(ctx context.Context, userID uuid.UUID, code string) error {
	now := s.now()
	o, err := s.db.OtpRequest.Query().
		Where(otprequest.UserID(userID), live()).
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
	// the row it changed tells this attempt's number.
	var attempt int
	err = store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		n, err := tx.OtpRequest.Update().
			Where(otprequest.ID(o.ID), otprequest.AttemptsLT(s.o.OTPMaxAttempts), live()).
			AddAttempts(1).
			Save(ctx)
		if err != nil {
			return fmt.Errorf("count attempt: %w", err)
		}
		counted, err := tx.OtpRequest.Get(ctx, o.ID)
		if err != nil {
			return fmt.Errorf("read attempt: %w", err)
		}
		switch {
		case n == 1:
			attempt = counted.Attempts
			return nil
		case counted.Attempts >= s.o.OTPMaxAttempts:
			return exhausted
		default: // consumed or superseded meanwhile
			return ErrInvalidOTP
		}
	})
	if err != nil {
		return err
	}
	if !s.o.OTPKeys.Verify(o.ID, code, o.CodeHmac) {
		s.o.Log.InfoContext(ctx, "otp verification failed", "user_id", userID, "attempt", attempt)
		if attempt >= s.o.OTPMaxAttempts {
			return exhausted
		}
		return withMeta(ErrInvalidOTP, "attempts_left", strconv.Itoa(s.o.OTPMaxAttempts-attempt))
	}
	return store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		n, err := tx.OtpRequest.Update().
			Where(otprequest.ID(o.ID), live()).
			SetConsumedAt(now).
			Save(ctx)
		if err != nil {
			return fmt.Errorf("consume code: %w", err)
		}
		if n == 0 {
			return ErrInvalidOTP // consumed or superseded meanwhile
		}
		if err := s.auditTx(ctx, tx.Client(), auditevent.EventOtpVerified, userID, "", now); err != nil {
			return err
		}
		return tx.User.UpdateOneID(userID).SetIsVerified(true).SetVerifiedAt(now).SetUpdatedAt(now).Exec(ctx)
	})
}
