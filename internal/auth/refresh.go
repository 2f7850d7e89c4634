package auth

import (
	"context"
	"errors"
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
	// refreshRotate: an unused, live token is rotated: marked used, and a
	// new token is issued in its family.
	refreshRotate refreshOutcome = iota + 1
	// refreshGrace: a used token presented again within the grace window
	// (another tab, a retry after a lost response) gets a sibling token in
	// the same family; its first use stays recorded, so the window does
	// not slide.
	refreshGrace
	// refreshReuse: a used token after the grace window is reuse (RFC 9700
	// §4.14.2): the family is revoked, and that commits.
	refreshReuse
	// refreshRevoked: the token's family was revoked (logout, or reuse
	// detected before).
	refreshRevoked
	// refreshReusedRevoked: a used token of a revoked family: answered as
	// reuse, the more telling reason, with nothing left to revoke.
	refreshReusedRevoked
	// refreshExpired: an unused token past its lifetime.
	refreshExpired
)

// decideRefresh decides what presenting t at now leads to, given the reuse
// grace window. The order matters: a revoked family wins over everything,
// reuse after the grace window over expiry.
func decideRefresh(t PresentedToken, now time.Time, grace time.Duration) refreshOutcome {
	used := !t.UsedAt.IsZero()
	switch {
	case !t.RevokedAt.IsZero() && used:
		return refreshReusedRevoked
	case !t.RevokedAt.IsZero():
		return refreshRevoked
	case used && now.Sub(t.UsedAt) >= grace:
		return refreshReuse
	case !now.Before(t.ExpiresAt):
		return refreshExpired
	case used:
		return refreshGrace
	}
	return refreshRotate
}

// storeRefreshToken stores a new refresh token for userID in family (the
// child of parent; uuid.Nil for a family's first token) and returns its
// text.
func (s *Service) storeRefreshToken(ctx context.Context, tx Tx, userID, family, parent uuid.UUID, now time.Time) (string, error) {
	text, hash, err := token.NewRefreshToken()
	if err != nil {
		return "", err
	}
	err = tx.InsertRefreshToken(ctx, RefreshToken{ID: uuid.New(), UserID: userID, FamilyID: family, ParentID: parent,
		Hash: hash, CreatedAt: now, ExpiresAt: now.Add(s.o.RefreshTokenTTL)})
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

// Refresh rotates a refresh token: in one transaction, holding the row
// locks of the presented token and its family (Tx.LockRefreshToken), it
// decides with decideRefresh and either marks the token used and issues a
// new one in the same family, or refuses it; the access token is signed
// after the commit.
//
// A thief and a client that lost a response cannot be told apart, so the
// grace window is short and the safe side is taken after it: reuse
// revokes the family (committed) and answers ErrRefreshTokenReused. A
// token of a revoked family gives ErrRefreshTokenRevoked
// (ErrRefreshTokenReused if it was used), an expired one
// ErrRefreshTokenExpired, an unknown one ErrInvalidRefreshToken.
func (s *Service) Refresh(ctx context.Context, raw string) (TokenPair, error) {
	hash, err := refreshHash(raw)
	if err != nil {
		return TokenPair{}, err
	}
	ctx, cancel := settle(ctx)
	defer cancel()
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
		reason := ""
		switch decideRefresh(rt, now, s.o.RefreshReuseGrace) {
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
		case refreshGrace:
			reason = "reuse_grace"
		case refreshRotate:
			if err := tx.MarkUsed(ctx, rt.ID, now); err != nil {
				return err
			}
		}
		if err := s.auditTx(ctx, tx, EventTokenRefreshed, rt.UserID, reason, now); err != nil {
			return err
		}
		subject = token.Subject{UserID: rt.UserID, Email: rt.Email, Username: rt.Username}
		refresh, err = s.storeRefreshToken(ctx, tx, rt.UserID, rt.FamilyID, rt.ID, now)
		return err
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
