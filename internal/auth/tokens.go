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

// storeRefreshToken stores a new refresh token for userID in family
// (child of parent, if any) and returns its text.
func (s *Service) storeRefreshToken(ctx context.Context, tx *ent.Tx, userID, family uuid.UUID, parent *uuid.UUID, now time.Time) (string, error) {
	text, hash, err := token.NewRefreshToken()
	if err != nil {
		return "", fmt.Errorf("new refresh token: %w", err)
	}
	if err := refreshtoken.TokenHashValidator(hash); err != nil {
		return "", fmt.Errorf("new refresh token: %w", err)
	}
	var parentID any // NULL for a family's first token
	if parent != nil {
		parentID = *parent
	}
	_, err = tx.ExecContext(ctx, s.sql.insertToken, uuid.New(), now, userID, family, parentID, hash, now.Add(s.o.RefreshTokenTTL))
	if err != nil {
		return "", fmt.Errorf("store refresh token: %w", err)
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
// locks of the presented token and its family (see lockToken), the token
// is marked used and a new one is issued in the same family; the access
// token is signed after the commit.
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
	var (
		subject token.Subject
		refresh string
	)
	err = store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		rt, err := s.lockToken(ctx, tx, hash)
		if err != nil {
			return err
		}
		now := s.now()
		inGrace := rt.UsedAt != nil && now.Sub(*rt.UsedAt) < s.o.RefreshReuseGrace
		switch {
		case rt.RevokedAt != nil && rt.UsedAt != nil:
			return ErrRefreshTokenReused
		case rt.RevokedAt != nil:
			return ErrRefreshTokenRevoked
		case rt.UsedAt != nil && !inGrace:
			if err := revokeFamily(ctx, tx, rt.FamilyID, revokeReuseDetected, now); err != nil {
				return err
			}
			if err := s.auditTx(ctx, tx.Client(), auditevent.EventRefreshTokenReused, rt.UserID, "", now); err != nil {
				return err
			}
			if err := s.auditTx(ctx, tx.Client(), auditevent.EventTokenFamilyRevoked, rt.UserID, revokeReuseDetected, now); err != nil {
				return err
			}
			s.o.Log.WarnContext(ctx, "refresh token reuse detected; token family revoked",
				"user_id", rt.UserID, "family_id", rt.FamilyID)
			return store.CommitAnd(ErrRefreshTokenReused)
		case !now.Before(rt.ExpiresAt):
			return ErrRefreshTokenExpired
		}
		reason := ""
		if inGrace {
			// Presented again within the grace window (another tab, a
			// retry after a lost response): a sibling token in the same
			// family; used_at keeps the first use, so the window does
			// not slide.
			reason = "reuse_grace"
		} else if _, err := tx.ExecContext(ctx, s.sql.markUsed, now, rt.ID); err != nil {
			return fmt.Errorf("mark refresh token used: %w", err)
		}
		if err := s.auditTx(ctx, tx.Client(), auditevent.EventTokenRefreshed, rt.UserID, reason, now); err != nil {
			return err
		}
		subject = token.Subject{UserID: rt.UserID, Email: rt.Email, Username: rt.Username}
		refresh, err = s.storeRefreshToken(ctx, tx, rt.UserID, rt.FamilyID, &rt.ID, now)
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
	var revoked *presentedToken
	err = store.WithTx(ctx, s.db, func(tx *ent.Tx) error {
		rt, err := s.lockToken(ctx, tx, hash)
		if errors.Is(err, ErrInvalidRefreshToken) {
			return nil
		}
		if err != nil || rt.RevokedAt != nil {
			return err
		}
		revoked = &rt
		now := s.now()
		if err := s.auditTx(ctx, tx.Client(), auditevent.EventLogout, rt.UserID, "", now); err != nil {
			return err
		}
		if err := s.auditTx(ctx, tx.Client(), auditevent.EventTokenFamilyRevoked, rt.UserID, revokeLogout, now); err != nil {
			return err
		}
		return revokeFamily(ctx, tx, rt.FamilyID, revokeLogout, now)
	})
	if err == nil && revoked != nil {
		s.o.Log.InfoContext(ctx, "logout", "user_id", revoked.UserID, "family_id", revoked.FamilyID)
	}
	return err
}
