package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/auditevent"
	"github.com/placebrain/auth/ent/refreshtoken"
	"github.com/placebrain/auth/ent/tokenfamily"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/token"
)

// Revoke reasons recorded on token families.
const (
	revokeLogout        = "logout"
	revokeReuseDetected = "reuse_detected"
)

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

// lockFamily locks the family of the token with hash, then reads the
// token. Every change to a family's tokens takes the family's row lock
// first (on SQLite the transaction's write lock does the same), and the
// token is read after it, so it reflects every change committed before.
// Returns ErrInvalidRefreshToken for an unknown token.
func lockFamily(ctx context.Context, tx *ent.Tx, hash []byte) (*ent.RefreshToken, *ent.TokenFamily, error) {
	fam, err := tx.TokenFamily.Query().
		Where(tokenfamily.HasRefreshTokensWith(refreshtoken.TokenHash(hash))).
		Modify(store.ForUpdate()).
		Only(ctx)
	if ent.IsNotFound(err) {
		return nil, nil, ErrInvalidRefreshToken
	}
	if err != nil {
		return nil, nil, fmt.Errorf("lock token family: %w", err)
	}
	rt, err := tx.RefreshToken.Query().Where(refreshtoken.TokenHash(hash)).Only(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read refresh token: %w", err)
	}
	return rt, fam, nil
}

// Refresh rotates a refresh token: in one transaction, under the lock of
// its token family, the presented token is marked used and a new one is
// issued in the same family, with a new access token.
//
// A used token presented again within RefreshReuseGrace of its first use
// gets a new token in the same family too: tabs refreshing at once, or a
// client retrying after losing the response (even when the token it lost
// is the family's active one), are not logged out. After the grace window
// that is reuse (RFC 9700 §4.14.2): the family is revoked (committed) and
// ErrRefreshTokenReused returned. A thief and a client that lost a
// response cannot be told apart, so the window is short and the safe side
// is taken after it. A token of a revoked family gives
// ErrRefreshTokenRevoked (ErrRefreshTokenReused if it was used), an
// expired one ErrRefreshTokenExpired, an unknown one
// ErrInvalidRefreshToken.
func (s *Service) Refresh(ctx context.Context, raw string) (TokenPair, error) {
	hash, err := refreshHash(raw)
	if err != nil {
		return TokenPair{}, err
	}
	ctx, cancel := settle(ctx)
	defer cancel()
	var pair TokenPair
	err = store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		rt, fam, err := lockFamily(ctx, tx, hash)
		if err != nil {
			return err
		}
		now := s.now()
		inGrace := rt.UsedAt != nil && now.Sub(*rt.UsedAt) < s.o.RefreshReuseGrace
		switch {
		case fam.RevokedAt != nil && rt.UsedAt != nil:
			return ErrRefreshTokenReused
		case fam.RevokedAt != nil:
			return ErrRefreshTokenRevoked
		case rt.UsedAt != nil && !inGrace:
			if err := revokeFamily(ctx, tx, fam.ID, revokeReuseDetected, now); err != nil {
				return err
			}
			if err := s.auditTx(ctx, tx.Client(), auditevent.EventRefreshTokenReused, rt.UserID, "", now); err != nil {
				return err
			}
			if err := s.auditTx(ctx, tx.Client(), auditevent.EventTokenFamilyRevoked, rt.UserID, revokeReuseDetected, now); err != nil {
				return err
			}
			s.o.Log.WarnContext(ctx, "refresh token reuse detected; token family revoked",
				"user_id", rt.UserID, "family_id", fam.ID)
			return store.CommitAnd(ErrRefreshTokenReused)
		case !now.Before(rt.ExpiresAt):
			return ErrRefreshTokenExpired
		}
		u, err := tx.User.Get(ctx, rt.UserID)
		if err != nil {
			return fmt.Errorf("find user: %w", err)
		}
		reason := ""
		if inGrace {
			// Presented again within the grace window (another tab, a
			// retry after a lost response): a sibling token in the same
			// family; used_at keeps the first use, so the window does
			// not slide.
			reason = "reuse_grace"
		} else if err := tx.RefreshToken.Update().Where(refreshtoken.ID(rt.ID)).SetUsedAt(now).Exec(ctx); err != nil {
			return fmt.Errorf("mark refresh token used: %w", err)
		}
		if err := s.auditTx(ctx, tx.Client(), auditevent.EventTokenRefreshed, u.ID, reason, now); err != nil {
			return err
		}
		pair, err = s.issuePair(ctx, tx, u, fam.ID, &rt.ID, now)
		return err
	})
	return pair, err
}

// settle detaches a token state change from the caller's cancellation: a
// rotation, revocation or reuse detection that started completes (within
// 15 s) even if the client goes away, so a detected reuse is never rolled
// back by a disconnect.
func settle(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
}

// revokeFamily marks a locked family revoked. No token of it is accepted
// afterwards.
func revokeFamily(ctx context.Context, tx *ent.Tx, family uuid.UUID, reason string, now time.Time) error {
	err := tx.TokenFamily.Update().Where(tokenfamily.ID(family)).SetRevokedAt(now).SetRevokeReason(reason).Exec(ctx)
	if err != nil {
		return fmt.Errorf("revoke token family: %w", err)
	}
	return nil
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
	var revoked *ent.RefreshToken
	err = store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		rt, fam, err := lockFamily(ctx, tx, hash)
		if errors.Is(err, ErrInvalidRefreshToken) {
			return nil
		}
		if err != nil || fam.RevokedAt != nil {
			return err
		}
		revoked = rt
		now := s.now()
		if err := s.auditTx(ctx, tx.Client(), auditevent.EventLogout, rt.UserID, "", now); err != nil {
			return err
		}
		if err := s.auditTx(ctx, tx.Client(), auditevent.EventTokenFamilyRevoked, rt.UserID, revokeLogout, now); err != nil {
			return err
		}
		return revokeFamily(ctx, tx, fam.ID, revokeLogout, now)
	})
	if err == nil && revoked != nil {
		s.o.Log.InfoContext(ctx, "logout", "user_id", revoked.UserID, "family_id", revoked.FamilyID)
	}
	return err
}
