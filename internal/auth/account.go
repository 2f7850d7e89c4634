package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/identity"
	"github.com/placebrain/auth/internal/otp"
	"github.com/placebrain/auth/internal/password"
	"github.com/placebrain/auth/internal/token"
)

// Revoke reasons of account management.
const (
	revokeLogoutAll      = "logout_all"
	revokeSessionRevoked = "session_revoked"
	revokePasswordSet    = "password_set"
)

// DeletedUsername is the username a tombstone answers with.
const DeletedUsername = "Deleted user"

// MaxGetUsers is the most ids GetUsers takes.
const MaxGetUsers = 500

// parseUserID reads a user id in its canonical lower-case hyphenated form.
func parseUserID(id string) (uuid.UUID, error) {
	if id == "" {
		return uuid.Nil, invalidInput("user_id", "user_id is required")
	}
	uid, err := uuid.Parse(id)
	if err != nil || uid.String() != id {
		return uuid.Nil, invalidInput("user_id", "user_id must be a UUID in canonical form")
	}
	return uid, nil
}

// liveUser returns the account with id; ErrUserNotFound for an unknown id
// or a tombstone.
func (s *Service) liveUser(ctx context.Context, id uuid.UUID) (Account, error) {
	u, err := s.db.UserByID(ctx, id)
	if err == nil && u.Deleted {
		err = ErrUserNotFound
	}
	return u, err
}

// durations remembers how long recent calls of one kind took, so that
// calls that must look alike can wait as long.
type durations struct {
	mu sync.Mutex
	d  [64]time.Duration
	n  int
}

func (d *durations) add(x time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.d[d.n%len(d.d)] = x
	d.n++
}

// median is the median of the recent durations (0 when none).
func (d *durations) median() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := min(d.n, len(d.d))
	if k == 0 {
		return 0
	}
	s := slices.Clone(d.d[:k])
	slices.Sort(s)
	return s[k/2]
}

// RequestPasswordReset mails a password-reset code to the address when it
// has an account. The answer is the same success whether or not it has,
// and whether or not a limit kept the code from being sent (cooldown,
// daily limits; see resetKind), and it takes the same time: a request for
// an address without an account waits as long as recent requests for
// ones with an account took (their median). Errors: INVALID_INPUT only.
func (s *Service) RequestPasswordReset(ctx context.Context, email string) error {
	addr, err := identity.NormalizeEmail(email)
	if err != nil {
		return invalidInput("email", err.Error())
	}
	start := time.Now()
	u, err := s.liveUserByEmail(ctx, addr.Canonical)
	if errors.Is(err, ErrUserNotFound) {
		return s.o.Sleep(ctx, s.resetTimes.median()-time.Since(start))
	}
	if err != nil {
		return err
	}
	source, _ := SourceFrom(ctx)
	var issued bool
	err = s.db.InTx(ctx, func(tx Tx) error {
		var err error
		issued, err = s.issueCode(ctx, tx, s.resetKind(), u.ID, addr.Canonical, source, s.now(), false)
		return err
	})
	if de, ok := AsError(err); ok && de.Kind == KindResourceExhausted {
		err = nil // a limit: nothing sent, and the answer does not tell
	}
	if err != nil {
		return err
	}
	if issued {
		s.o.MailQueued()
		s.o.Log.InfoContext(ctx, "password reset code issued", "user_id", u.ID)
	}
	s.resetTimes.add(time.Since(start))
	return nil
}

// liveUserByEmail is UserByEmail for an account that is not a tombstone
// (tombstones have no address, so none is found; the check is cheap).
func (s *Service) liveUserByEmail(ctx context.Context, canonical string) (Account, error) {
	u, err := s.db.UserByEmail(ctx, canonical)
	if err == nil && u.Deleted {
		err = ErrUserNotFound
	}
	return u, err
}

// ResetPassword sets a new password with a password-reset code. The code
// is counted and checked before any hashing (a wrong code costs no
// bcrypt), with the attempt limits of reset codes; a success sets the
// password (8 to 72 bytes, as Register), marks the address verified (the
// code proves it), clears the account's login locks and daily counts, and
// revokes every session. Errors: INVALID_INPUT, ErrInvalidOTP (wrong code,
// or none for the address), ErrOTPExpired, ErrOTPAttemptsExhausted, and
// ErrServerBusy.
func (s *Service) ResetPassword(ctx context.Context, email, code, newPassword string) error {
	addr, err := identity.NormalizeEmail(email)
	if err != nil {
		return invalidInput("email", err.Error())
	}
	if err := otp.CheckFormat(code); err != nil {
		return invalidInput("code", err.Error())
	}
	if err := password.Validate(newPassword); err != nil {
		return invalidInput("new_password", err.Error())
	}
	u, err := s.liveUserByEmail(ctx, addr.Canonical)
	if errors.Is(err, ErrUserNotFound) {
		return ErrInvalidOTP
	}
	if err != nil {
		return err
	}
	source, _ := SourceFrom(ctx)
	// The code is checked (and consumed) first; the hash is made after,
	// and stored in a second unit of work, so that a wrong code never
	// costs a hash. A consumed code whose hash then fails to store leaves
	// the password as it was: the user asks for a new code.
	err = s.checkCode(ctx, s.resetKind(), u.ID, addr.Canonical, source, code, func(Tx, time.Time) error { return nil })
	if err != nil {
		return err
	}
	hash, err := s.o.Passwords.Hash(ctx, s.hashKey(addr.Canonical), newPassword)
	if err != nil {
		return s.busy(ctx, err)
	}
	now := s.now()
	ctx, cancel := settle(ctx)
	defer cancel()
	var ended int
	err = s.db.InTx(ctx, func(tx Tx) error {
		if u.Verified {
			if err := tx.SetPasswordHash(ctx, u.ID, hash, now); err != nil {
				return err
			}
		} else if err := tx.MarkVerified(ctx, u.ID, u.Username, hash, now); err != nil {
			return err
		}
		// Whoever knew the old password no longer does: its failures are
		// forgotten, and so are the sources it signed in from.
		if err := tx.DeleteAccountCounters(ctx, s.accountKey(addr.Canonical), PurposeLogin, PurposeLoginAccount, PurposeSignedIn); err != nil {
			return err
		}
		var err error
		if ended, err = tx.RevokeUserFamilies(ctx, u.ID, revokePasswordSet, now); err != nil {
			return err
		}
		return s.auditTx(ctx, tx, EventPasswordReset, u.ID, "", now)
	})
	if err != nil {
		return err
	}
	s.o.Log.InfoContext(ctx, "password reset", "user_id", u.ID, "sessions_ended", ended)
	return nil
}

// checkPassword checks a signed-in user's current password as Login does
// (counted and throttled per (address, source), compared in the hashing
// pool, a comparison that never ran taken back). A wrong password answers
// ErrWrongPassword, never UNAUTHENTICATED: the web client reads 401 as an
// expired access token and signs the user out.
func (s *Service) checkPassword(ctx context.Context, u Account, pw string, now time.Time) (loginGate, error) {
	if err := password.ValidateLength(pw); err != nil {
		return loginGate{}, invalidInput("current_password", err.Error())
	}
	if err := s.o.Passwords.Admits(s.hashKey(u.EmailCanonical)); err != nil {
		return loginGate{}, s.busy(ctx, err)
	}
	source, _ := SourceFrom(ctx)
	g, err := s.admitLogin(ctx, u.EmailCanonical, source, u.ID, now)
	if err != nil {
		return g, err
	}
	if g.delay > 0 {
		if err := s.o.Sleep(ctx, g.delay); err != nil {
			s.loginRefund(ctx, g, now)
			return g, err
		}
	}
	err = s.comparePassword(ctx, g.hashKey, u.PasswordHash, pw)
	switch {
	case err == nil:
		return g, s.loginSucceeded(ctx, g, u.EmailCanonical, source, now, true)
	case errors.Is(err, password.ErrMismatch):
		s.loginFailed(ctx, g, u.ID, "wrong_password", now)
		return g, ErrWrongPassword
	default:
		s.loginRefund(ctx, g, now)
		if errors.Is(err, password.ErrBusy) || ctx.Err() != nil {
			return g, s.busy(ctx, err)
		}
		return g, fmt.Errorf("compare password: %w", err)
	}
}

// ChangePassword sets a new password for a signed-in user after checking
// the current one (see checkPassword), ends every session, and starts a
// new one whose tokens it returns. Errors: INVALID_INPUT,
// ErrUserNotFound, ErrWrongPassword, ErrLoginThrottled, ErrServerBusy.
func (s *Service) ChangePassword(ctx context.Context, userID, current, newPassword string) (TokenPair, error) {
	uid, err := parseUserID(userID)
	if err != nil {
		return TokenPair{}, err
	}
	if err := password.Validate(newPassword); err != nil {
		return TokenPair{}, invalidInput("new_password", err.Error())
	}
	u, err := s.liveUser(ctx, uid)
	if err != nil {
		return TokenPair{}, err
	}
	now := s.now()
	g, err := s.checkPassword(ctx, u, current, now)
	if err != nil {
		return TokenPair{}, err
	}
	hash, err := s.o.Passwords.Hash(ctx, g.hashKey, newPassword)
	if err != nil {
		return TokenPair{}, s.busy(ctx, err)
	}
	ctx, cancel := settle(ctx)
	defer cancel()
	var refresh string
	err = s.db.InTx(ctx, func(tx Tx) error {
		if err := tx.SetPasswordHash(ctx, u.ID, hash, now); err != nil {
			return err
		}
		if _, err := tx.RevokeUserFamilies(ctx, u.ID, revokePasswordSet, now); err != nil {
			return err
		}
		if err := s.auditTx(ctx, tx, EventPasswordChanged, u.ID, "", now); err != nil {
			return err
		}
		var err error
		refresh, err = s.startFamily(ctx, tx, u.ID, now)
		return err
	})
	if err != nil {
		return TokenPair{}, err
	}
	s.o.Log.InfoContext(ctx, "password changed", "user_id", u.ID)
	return s.pair(token.Subject{UserID: u.ID, Email: u.Email, Username: u.Username}, refresh)
}

// LogoutAll ends every session of the user (the calling one too) and
// returns how many it ended. Errors: INVALID_INPUT, ErrUserNotFound.
func (s *Service) LogoutAll(ctx context.Context, userID string) (int, error) {
	uid, err := parseUserID(userID)
	if err != nil {
		return 0, err
	}
	if _, err := s.liveUser(ctx, uid); err != nil {
		return 0, err
	}
	ctx, cancel := settle(ctx)
	defer cancel()
	now := s.now()
	var n int
	err = s.db.InTx(ctx, func(tx Tx) error {
		var err error
		if n, err = tx.RevokeUserFamilies(ctx, uid, revokeLogoutAll, now); err != nil {
			return err
		}
		return s.auditTx(ctx, tx, EventLogoutAll, uid, "", now)
	})
	if err != nil {
		return 0, err
	}
	s.o.Log.InfoContext(ctx, "logout everywhere", "user_id", uid, "sessions_ended", n)
	return n, nil
}

// ListSessions lists the user's live sessions, oldest first. Errors:
// INVALID_INPUT, ErrUserNotFound.
func (s *Service) ListSessions(ctx context.Context, userID string) ([]Session, error) {
	uid, err := parseUserID(userID)
	if err != nil {
		return nil, err
	}
	if _, err := s.liveUser(ctx, uid); err != nil {
		return nil, err
	}
	return s.db.Sessions(ctx, uid, s.now())
}

// RevokeSession ends one of the user's sessions (idempotent for a session
// already ended). A session that is unknown or someone else's answers
// ErrSessionNotFound and nothing is revoked. Errors: INVALID_INPUT,
// ErrUserNotFound, ErrSessionNotFound.
func (s *Service) RevokeSession(ctx context.Context, userID, sessionID string) error {
	uid, err := parseUserID(userID)
	if err != nil {
		return err
	}
	sid, err := uuid.Parse(sessionID)
	if err != nil || sid.String() != sessionID {
		return invalidInput("session_id", "session_id must be a UUID in canonical form")
	}
	ctx, cancel := settle(ctx)
	defer cancel()
	now := s.now()
	err = s.db.InTx(ctx, func(tx Tx) error {
		found, err := tx.RevokeUserFamily(ctx, uid, sid, revokeSessionRevoked, now)
		if err != nil {
			return err
		}
		if !found {
			return ErrSessionNotFound
		}
		return s.auditTx(ctx, tx, EventSessionRevoked, uid, "", now)
	})
	if err == nil {
		s.o.Log.InfoContext(ctx, "session revoked", "user_id", uid, "family_id", sid)
	}
	return err
}

// DeleteUser erases the user after checking the password (as
// ChangePassword does): the address, name, password, sessions, codes and
// pending e-mails are gone, audit events stay (they hold no address), and
// a tombstone keeps the id resolving (GetUser answers it as
// DeletedUsername). The address can be registered anew. Errors:
// INVALID_INPUT, ErrUserNotFound, ErrWrongPassword, ErrLoginThrottled,
// ErrServerBusy.
func (s *Service) DeleteUser(ctx context.Context, userID, pw string) error {
	uid, err := parseUserID(userID)
	if err != nil {
		return err
	}
	u, err := s.liveUser(ctx, uid)
	if err != nil {
		return err
	}
	now := s.now()
	if _, err := s.checkPassword(ctx, u, pw, now); err != nil {
		return err
	}
	ctx, cancel := settle(ctx)
	defer cancel()
	err = s.db.InTx(ctx, func(tx Tx) error {
		if err := tx.EraseUser(ctx, uid, now); err != nil {
			return err
		}
		// The address is free again: its counters (cooldowns, daily codes,
		// locks) belong to the deleted account.
		if err := tx.DeleteAccountCounters(ctx, s.accountKey(u.EmailCanonical), Purposes...); err != nil {
			return err
		}
		return s.auditTx(ctx, tx, EventUserDeleted, uid, "", now)
	})
	if err == nil {
		s.o.Log.InfoContext(ctx, "user deleted", "user_id", uid)
	}
	return err
}

// GetUsers returns the users with the ids, each once, in one query;
// unknown ids are left out, and deleted users answer as tombstones.
// Errors: INVALID_INPUT (an id not in canonical form, or more than
// MaxGetUsers).
func (s *Service) GetUsers(ctx context.Context, ids []string) ([]User, error) {
	if len(ids) > MaxGetUsers {
		return nil, invalidInput("user_ids", fmt.Sprintf("user_ids must hold at most %d ids", MaxGetUsers))
	}
	seen := make(map[uuid.UUID]bool, len(ids))
	uids := make([]uuid.UUID, 0, len(ids))
	for _, id := range ids {
		uid, err := uuid.Parse(id)
		if err != nil || uid.String() != id {
			return nil, invalidInput("user_ids", "every user_ids entry must be a UUID in canonical form")
		}
		if !seen[uid] {
			seen[uid] = true
			uids = append(uids, uid)
		}
	}
	if len(uids) == 0 {
		return nil, nil
	}
	accounts, err := s.db.UsersByIDs(ctx, uids)
	if err != nil {
		return nil, err
	}
	users := make([]User, len(accounts))
	for i, a := range accounts {
		users[i] = a.user()
	}
	return users, nil
}
