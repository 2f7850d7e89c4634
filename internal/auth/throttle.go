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

// admitLogin counts a login attempt for the address before the password is
// checked, and refuses it when the address is locked or has used up
// MaxFailures attempts in Window (then locking it for Lockout). The row is
// created if missing (INSERT ... ON CONFLICT DO NOTHING) and locked, so
// attempts from any number of concurrent requests and instances are
// counted one by one: at most MaxFailures passwords are checked per address
// and lockout period. It returns the end of the lock when refused, or the
// zero time when admitted.
func (s *Service) admitLogin(ctx context.Context, key []byte, now time.Time) (time.Time, error) {
	if s.o.Login.MaxFailures <= 0 {
		return time.Time{}, nil
	}
	var until time.Time
	err := store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
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
		if th.LockedUntil != nil && now.Before(*th.LockedUntil) {
			until = *th.LockedUntil
			return nil
		}
		failures, started := th.Failures, th.WindowStartedAt
		if th.LockedUntil != nil || !now.Before(started.Add(s.o.Login.Window)) {
			failures, started = 0, now // a lock ended or the window passed: count anew
		}
		upd := tx.LoginThrottle.Update().Where(loginthrottle.ID(th.ID)).SetUpdatedAt(now)
		if failures >= s.o.Login.MaxFailures {
			until = now.Add(s.o.Login.Lockout)
			upd.SetLockedUntil(until).SetFailures(0).SetWindowStartedAt(now)
		} else {
			upd.ClearLockedUntil().SetFailures(failures + 1).SetWindowStartedAt(started)
		}
		return upd.Exec(ctx)
	})
	return until, err
}

// resetFailures forgets the address's attempts after a correct password.
func (s *Service) resetFailures(ctx context.Context, key []byte) error {
	if s.o.Login.MaxFailures <= 0 {
		return nil
	}
	_, err := s.db.LoginThrottle.Delete().Where(loginthrottle.KeyHmac(key)).Exec(ctx)
	return err
}
