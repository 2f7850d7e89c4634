package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/loginthrottle"
	"github.com/placebrain/auth/internal/store"
)

// LoginPolicy throttles failed logins per e-mail address, in the database
// so that it holds across instances.
type LoginPolicy struct {
	// MaxFailures failed logins within Window lock the address for
	// Lockout. Zero disables throttling.
	MaxFailures int
	Window      time.Duration
	Lockout     time.Duration
	// Key keys the HMAC that names an address in login_throttles.
	Key []byte
}

// throttleKey names an address (its canonical form) without storing it.
func (s *Service) throttleKey(canonical string) []byte {
	m := hmac.New(sha256.New, s.o.Login.Key)
	m.Write([]byte(canonical))
	return m.Sum(nil)
}

// lockedUntil returns when the address's lock ends, or the zero time when
// it is not locked.
func (s *Service) lockedUntil(ctx context.Context, key []byte, now time.Time) (time.Time, error) {
	if s.o.Login.MaxFailures <= 0 {
		return time.Time{}, nil
	}
	th, err := s.db.LoginThrottle.Query().Where(loginthrottle.KeyHmac(key)).Only(ctx)
	switch {
	case ent.IsNotFound(err):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("read login throttle: %w", err)
	case th.LockedUntil != nil && now.Before(*th.LockedUntil):
		return *th.LockedUntil, nil
	}
	return time.Time{}, nil
}

// recordFailure counts a failed login for the address and locks it when
// the count reaches MaxFailures within Window. The row is created if
// missing (INSERT ... ON CONFLICT DO NOTHING) and then locked, so
// concurrent failures from several instances all count.
func (s *Service) recordFailure(ctx context.Context, key []byte, now time.Time) error {
	if s.o.Login.MaxFailures <= 0 {
		return nil
	}
	return store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		err := tx.LoginThrottle.Create().
			SetKeyHmac(key).SetWindowStartedAt(now).SetUpdatedAt(now).
			OnConflictColumns(loginthrottle.FieldKeyHmac).DoNothing().
			Exec(ctx)
		// With DO NOTHING, a conflict returns no row, which ent reports
		// as sql.ErrNoRows: the row exists, which is all we need.
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("create login throttle: %w", err)
		}
		th, err := tx.LoginThrottle.Query().Where(loginthrottle.KeyHmac(key)).Modify(store.ForUpdate()).Only(ctx)
		if err != nil {
			return fmt.Errorf("lock login throttle: %w", err)
		}
		failures, started := th.Failures+1, th.WindowStartedAt
		if !now.Before(started.Add(s.o.Login.Window)) {
			failures, started = 1, now // the window has passed: count anew
		}
		upd := tx.LoginThrottle.UpdateOneID(th.ID).SetUpdatedAt(now)
		if failures >= s.o.Login.MaxFailures {
			upd.SetLockedUntil(now.Add(s.o.Login.Lockout)).SetFailures(0).SetWindowStartedAt(now)
		} else {
			upd.SetFailures(failures).SetWindowStartedAt(started)
		}
		return upd.Exec(ctx)
	})
}

// resetFailures forgets the address's failures after a successful login.
func (s *Service) resetFailures(ctx context.Context, key []byte) error {
	if s.o.Login.MaxFailures <= 0 {
		return nil
	}
	_, err := s.db.LoginThrottle.Delete().Where(loginthrottle.KeyHmac(key)).Exec(ctx)
	return err
}
