package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/token"
)

// Revoke reasons recorded on token families.
const (
	revokeLogout        = "logout"
	revokeReuseDetected = "reuse_detected"
)

// refreshOutcome is what a presented refresh token leads to.
type refreshOutcome int

const (
	// refreshRotate: an unused, live token is rotated: marked used, and its
	// child issued in its family (a family is a chain, never a tree).
	refreshRotate refreshOutcome = iota + 1
	// refreshReplay: a used token presented again within the grace window
	// (another tab, a retry) gets its child back, byte for byte, whether
	// or not the child was used.
	refreshReplay
	// refreshRecover: a used token presented after the grace window, whose
	// child is still unused, within the recovery window of its rotation (a
	// client that lost the response) gets its child back; recorded as
	// refresh_recovered.
	refreshRecover
	// refreshReuse: any other use of a used token is reuse (RFC 9700
	// §4.14.2): the family is revoked, and that commits.
	refreshReuse
	// refreshRevoked: the token's family was revoked (logout, or reuse
	// detected before).
	refreshRevoked
	// refreshReusedRevoked: a used token of a revoked family: answered as
	// reuse, the more telling reason, with nothing left to revoke.
	refreshReusedRevoked
	// refreshExpired: an unused token past its lifetime, or any token of a
	// session past its lifetime.
	refreshExpired
)

// RefreshPolicy is what decides a presented refresh token besides the
// token itself.
type RefreshPolicy struct {
	// Grace is how long after a rotation a replay of the rotated token
	// gets its child back (tabs refreshing at once, a retry).
	Grace time.Duration
	// Recovery is how long after a rotation a replay gets the child back
	// when the child is still unused (a lost response); zero disables it.
	Recovery time.Duration
	// SessionMax bounds a token family from its login; zero: no bound.
	SessionMax time.Duration
}

// sessionEnd is when a family that started at start ends (zero: never).
func (p RefreshPolicy) sessionEnd(start time.Time) time.Time {
	if p.SessionMax <= 0 {
		return time.Time{}
	}
	return start.Add(p.SessionMax)
}

// expiry is when a token issued at now in a family that started at start
// expires: the earlier of its own lifetime ttl and the family's end.
func (p RefreshPolicy) expiry(now, start time.Time, ttl time.Duration) time.Time {
	exp := now.Add(ttl)
	if end := p.sessionEnd(start); !end.IsZero() && end.Before(exp) {
		return end
	}
	return exp
}

// decideRefresh decides what presenting t at now leads to. The order
// matters: a revoked family wins over everything, then the session's end,
// then what the token's use allows.
func (p RefreshPolicy) decideRefresh(t PresentedToken, now time.Time) refreshOutcome {
	used := !t.UsedAt.IsZero()
	switch {
	case !t.RevokedAt.IsZero() && used:
		return refreshReusedRevoked
	case !t.RevokedAt.IsZero():
		return refreshRevoked
	case !p.sessionEnd(t.FamilyCreatedAt).IsZero() && !now.Before(p.sessionEnd(t.FamilyCreatedAt)):
		return refreshExpired
	case used && t.ChildSealed == nil:
		// Rotated before children were kept: nothing to return.
		return refreshReuse
	case used && now.Sub(t.UsedAt) < p.Grace:
		return refreshReplay
	case used && t.ChildUsedAt.IsZero() && now.Sub(t.UsedAt) < p.Recovery:
		return refreshRecover
	case used:
		return refreshReuse
	case !now.Before(t.ExpiresAt):
		return refreshExpired
	}
	return refreshRotate
}

// FreshRotation is the common case of a rotation, which the data layer
// can run in one statement (Store.RotateFresh): a presented token that
// Admits, rotated to Child. It is built before any row is read: the
// child's text is made and sealed first (token.SealChild needs only the
// presented token's text).
type FreshRotation struct {
	// Hash is the presented token's SHA-256 (32 bytes).
	Hash []byte
	// At is the rotation's time: the presented token's used_at, the
	// child's created_at and the audit event's time.
	At time.Time
	// FamilyStartedAfter, when not zero, is the earliest start a family
	// may have and still be within RefreshPolicy.SessionMax.
	FamilyStartedAfter time.Time
	// SessionMax caps the child's expiry at its family's start plus
	// SessionMax (zero: no cap), as RefreshPolicy.expiry does.
	SessionMax time.Duration
	// Child is the token to issue: its ID, Hash and ExpiresAt (At plus
	// the token lifetime, before the cap). The data layer fills UserID,
	// FamilyID and ParentID from the presented token and CreatedAt with
	// At.
	Child RefreshToken
	// ChildSealed is the child's text sealed under the presented token's
	// text: what a replay of the presented token gets back.
	ChildSealed []byte
}

// Admits reports whether presenting t at r.At is the common case: its
// family is not revoked and within its lifetime, and t is unused and
// unexpired. It admits exactly the tokens RefreshPolicy.decideRefresh
// decides refreshRotate for (TestFreshRotationAdmits); Store.RotateFresh
// implements it in SQL, and the agreement test runs every token state
// through both paths on PostgreSQL.
func (r FreshRotation) Admits(t PresentedToken) bool {
	return t.RevokedAt.IsZero() && t.UsedAt.IsZero() && r.At.Before(t.ExpiresAt) &&
		(r.FamilyStartedAfter.IsZero() || t.FamilyCreatedAt.After(r.FamilyStartedAfter))
}

// freshRotation describes rotating the token hashed hash at now to child
// (its text sealed under the presented token's as sealed) under p, with
// ttl the refresh token lifetime.
func (p RefreshPolicy) freshRotation(hash []byte, now time.Time, ttl time.Duration, child RefreshToken, sealed []byte) FreshRotation {
	r := FreshRotation{Hash: hash, At: now, SessionMax: max(p.SessionMax, 0), Child: child, ChildSealed: sealed}
	r.Child.CreatedAt, r.Child.ExpiresAt = now, now.Add(ttl)
	if p.SessionMax > 0 {
		r.FamilyStartedAfter = now.Add(-p.SessionMax)
	}
	return r
}

// startFamily starts a token family (a session) for userID and stores its
// first refresh token, whose text it returns.
func (s *Service) startFamily(ctx context.Context, tx Tx, userID uuid.UUID, now time.Time) (string, error) {
	family, err := tx.CreateTokenFamily(ctx, userID, now)
	if err != nil {
		return "", err
	}
	text, hash, err := token.NewRefreshToken()
	if err != nil {
		return "", err
	}
	err = tx.InsertRefreshToken(ctx, RefreshToken{ID: NewRowID(), UserID: userID, FamilyID: family,
		Hash: hash, CreatedAt: now, ExpiresAt: s.o.Refresh.expiry(now, now, s.o.RefreshTokenTTL)})
	if err != nil {
		return "", err
	}
	return text, nil
}

// pair signs an access token for u to go with refresh. It runs after the
// transaction that stored refresh committed: signing needs no lock, and on
// SQLite every transaction waits for the one before it.
func (s *Service) pair(u token.Subject, refresh string) (TokenPair, error) {
	access, _, err := s.o.AccessTokens.Sign(u)
	if err != nil {
		return TokenPair{}, err
	}
	return TokenPair{AccessToken: access, RefreshToken: refresh}, nil
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

// Refresh rotates a refresh token. The child's text is made and sealed
// under the presented token's text first. The common case (FreshRotation:
// a live, unused, unexpired token of a live family within its lifetime) is
// one call to Store.RotateFresh, which on PostgreSQL is one statement:
// lock, mark used, keep the sealed child, audit, issue the child. Every
// other case, and the common case on a store without that statement, takes
// the full path: in one transaction, holding the row locks of the
// presented token and its family (Tx.LockRefreshToken), it decides with
// RefreshPolicy.decideRefresh and either marks the token used, keeping the
// sealed child, and issues the child in the same family; or, for a replay
// or a recovery, opens the child the first rotation kept and returns it
// again; or refuses the token. The access token is signed after the
// commit.
//
// A family is a chain, never a tree: however many times a token is
// presented, it has one child. Reuse revokes the family (committed) and
// answers ErrRefreshTokenReused. A token of a revoked family gives
// ErrRefreshTokenRevoked (ErrRefreshTokenReused if it was used), an expired
// one or one of a session past its lifetime ErrRefreshTokenExpired, an
// unknown one ErrInvalidRefreshToken.
func (s *Service) Refresh(ctx context.Context, raw string) (TokenPair, error) {
	hash, err := refreshHash(raw)
	if err != nil {
		return TokenPair{}, err
	}
	ctx, cancel := settle(ctx)
	defer cancel()
	child, childHash, err := token.NewRefreshToken()
	if err != nil {
		return TokenPair{}, err
	}
	sealed, err := token.SealChild(raw, child)
	if err != nil {
		return TokenPair{}, err
	}
	childRow := RefreshToken{ID: NewRowID(), Hash: childHash}
	if !s.o.FullPathOnly {
		fresh := s.o.Refresh.freshRotation(hash, s.now(), s.o.RefreshTokenTTL, childRow, sealed)
		rt, ok, err := s.db.RotateFresh(ctx, fresh)
		if err != nil {
			return TokenPair{}, err
		}
		if ok {
			s.o.Events(EventTokenRefreshed, "")
			return s.pair(token.Subject{UserID: rt.UserID, Email: rt.Email, Username: rt.Username}, child)
		}
	}
	var (
		subject token.Subject
		refresh string
	)
	err = s.db.InTx(ctx, func(tx Tx) error {
		rt, err := tx.LockRefreshToken(ctx, hash)
		if err != nil {
			return err
		}
		now := s.now()
		subject = token.Subject{UserID: rt.UserID, Email: rt.Email, Username: rt.Username}
		switch s.o.Refresh.decideRefresh(rt, now) {
		case refreshReusedRevoked:
			return ErrRefreshTokenReused
		case refreshRevoked:
			return ErrRefreshTokenRevoked
		case refreshExpired:
			return ErrRefreshTokenExpired
		case refreshReuse:
			if err := tx.RevokeFamily(ctx, rt.FamilyID, revokeReuseDetected, now); err != nil {
				return err
			}
			if err := s.auditTx(ctx, tx, EventRefreshTokenReused, rt.UserID, "", now); err != nil {
				return err
			}
			if err := s.auditTx(ctx, tx, EventTokenFamilyRevoked, rt.UserID, revokeReuseDetected, now); err != nil {
				return err
			}
			s.o.Log.WarnContext(ctx, "refresh token reuse detected; token family revoked",
				"user_id", rt.UserID, "family_id", rt.FamilyID)
			return CommitAnd(ErrRefreshTokenReused)
		case refreshReplay:
			if refresh, err = token.OpenChild(raw, rt.ID, rt.ChildSealed); err != nil {
				return fmt.Errorf("open the child of a replayed token: %w", err)
			}
			return s.auditTx(ctx, tx, EventTokenRefreshed, rt.UserID, "replay", now)
		case refreshRecover:
			if refresh, err = token.OpenChild(raw, rt.ID, rt.ChildSealed); err != nil {
				return fmt.Errorf("open the child of a recovered token: %w", err)
			}
			s.o.Log.InfoContext(ctx, "refresh token recovered", "user_id", rt.UserID, "family_id", rt.FamilyID)
			return s.auditTx(ctx, tx, EventRefreshRecovered, rt.UserID, "", now)
		}
		refresh = child
		if err := tx.MarkUsed(ctx, rt.ID, now, sealed); err != nil {
			return err
		}
		if err := s.auditTx(ctx, tx, EventTokenRefreshed, rt.UserID, "", now); err != nil {
			return err
		}
		childRow.UserID, childRow.FamilyID, childRow.ParentID = rt.UserID, rt.FamilyID, rt.ID
		childRow.CreatedAt, childRow.ExpiresAt = now, s.o.Refresh.expiry(now, rt.FamilyCreatedAt, s.o.RefreshTokenTTL)
		return tx.InsertRefreshToken(ctx, childRow)
	})
	if err != nil {
		return TokenPair{}, err
	}
	return s.pair(subject, refresh)
}

// settle detaches a token state change from the caller's cancellation: a
// rotation, revocation or reuse detection that started completes (within
// 15 s) even if the client goes away, so a detected reuse is never rolled
// back by a disconnect.
func settle(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
}

// Logout ends the session the refresh token belongs to: its token family
// is revoked. Logout is idempotent, as token revocation is in RFC 7009
// §2.2: a token that is unknown, malformed, already used or already
// revoked is answered with success too, since afterwards it is unusable
// either way. Only an empty token is an error (INVALID_INPUT).
func (s *Service) Logout(ctx context.Context, raw string) error {
	hash, err := refreshHash(raw)
	if errors.Is(err, ErrInvalidRefreshToken) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, cancel := settle(ctx)
	defer cancel()
	var revoked *PresentedToken
	err = s.db.InTx(ctx, func(tx Tx) error {
		rt, err := tx.LockRefreshToken(ctx, hash)
		if errors.Is(err, ErrInvalidRefreshToken) {
			return nil
		}
		if err != nil || !rt.RevokedAt.IsZero() {
			return err
		}
		revoked = &rt
		now := s.now()
		if err := s.auditTx(ctx, tx, EventLogout, rt.UserID, "", now); err != nil {
			return err
		}
		if err := s.auditTx(ctx, tx, EventTokenFamilyRevoked, rt.UserID, revokeLogout, now); err != nil {
			return err
		}
		return tx.RevokeFamily(ctx, rt.FamilyID, revokeLogout, now)
	})
	if err == nil && revoked != nil {
		s.o.Log.InfoContext(ctx, "logout", "user_id", revoked.UserID, "family_id", revoked.FamilyID)
	}
	return err
}
