package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"time"
)

// LoginPolicy throttles failed logins per e-mail address, counted in the
// database so that it holds across instances.
type LoginPolicy struct {
	// MaxFailures failed logins within Window lock the address for
	// Lockout. Zero disables throttling.
	MaxFailures int
	Window      time.Duration
	Lockout     time.Duration
	// Key keys the HMAC that names an address in the database.
	Key []byte
}

// key names an address (its canonical form) without storing it:
// HMAC-SHA256 under p.Key, 32 bytes.
func (p LoginPolicy) key(canonical string) []byte {
	m := hmac.New(sha256.New, p.Key)
	m.Write([]byte(canonical))
	return m.Sum(nil)
}

// admit counts one login attempt for an address whose attempts so far are
// th, at now, before its password is checked. It returns what to store and,
// when the attempt is refused, the end of the lock (zero when admitted):
//
//   - a lock that has not ended refuses the attempt and changes nothing;
//   - after a lock ended, or once Window has passed since the window
//     started, counting starts anew at now;
//   - an attempt with MaxFailures attempts already in the window is
//     refused and locks the address for Lockout from now (counting starts
//     anew after it);
//   - any other attempt is admitted and counted.
//
// Every attempt counts, right or wrong: a correct password then deletes the
// record (Service.resetFailures), so the count is of failures and of
// attempts still running.
func (p LoginPolicy) admit(th LoginThrottle, now time.Time) (next LoginThrottle, lockedUntil time.Time) {
	if now.Before(th.LockedUntil) {
		return th, th.LockedUntil
	}
	failures, started := th.Failures, th.WindowStartedAt
	if !th.LockedUntil.IsZero() || !now.Before(started.Add(p.Window)) {
		failures, started = 0, now
	}
	if failures >= p.MaxFailures {
		until := now.Add(p.Lockout)
		return LoginThrottle{WindowStartedAt: now, LockedUntil: until}, until
	}
	return LoginThrottle{Failures: failures + 1, WindowStartedAt: started}, time.Time{}
}

// admitLogin counts a login attempt for the address named key before the
// password is checked (see LoginPolicy.admit), in a unit of work holding
// the address's record locked, so attempts from any number of concurrent
// requests and instances are counted one by one: at most MaxFailures
// passwords are checked per address and lockout period. It returns the
// end of the lock when refused, or the zero time when admitted.
func (s *Service) admitLogin(ctx context.Context, key []byte, now time.Time) (time.Time, error) {
	p := s.o.Login
	if p.MaxFailures <= 0 {
		return time.Time{}, nil
	}
	var until time.Time
	err := s.db.InTx(ctx, func(tx Tx) error {
		th, err := tx.LockLoginThrottle(ctx, key, now)
		if err != nil {
			return err
		}
		next, locked := p.admit(th, now)
		until = locked
		if next == th {
			return nil
		}
		return tx.SaveLoginThrottle(ctx, key, next, now)
	})
	return until, err
}

// resetFailures forgets the address's attempts after a correct password.
func (s *Service) resetFailures(ctx context.Context, key []byte) error {
	if s.o.Login.MaxFailures <= 0 {
		return nil
	}
	return s.db.DeleteLoginThrottle(ctx, key)
}
