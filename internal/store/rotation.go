package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent/refreshtoken"
	"github.com/placebrain/auth/internal/auth"
)

// RotateFreshSpan names the span of a one-statement rotation in a traced
// request (its outcome attribute is commit whether or not the token was
// fresh: a token that is not changes nothing).
const RotateFreshSpan = "tx store.DB.RotateFresh"

// RotateFresh implements auth.Store. On PostgreSQL it is one statement
// (Rotation.RotateFresh) in its own implicit transaction: one round trip
// once the driver has it prepared. On SQLite it returns false at once and
// the service takes the full path, whose transaction SQLite serializes
// anyway.
func (db *DB) RotateFresh(ctx context.Context, r auth.FreshRotation) (auth.PresentedToken, bool, error) {
	if db.sql.RotateFresh == "" {
		return auth.PresentedToken{}, false, nil
	}
	if err := refreshtoken.TokenHashValidator(r.Child.Hash); err != nil {
		return auth.PresentedToken{}, false, fmt.Errorf("rotate refresh token: %w", err)
	}
	ctx, span := db.startSpan(ctx, RotateFreshSpan)
	p, ok, err := db.rotateFresh(ctx, r)
	if span != nil {
		endUnit(span, err, err, true)
	}
	return p, ok, err
}

func (db *DB) rotateFresh(ctx context.Context, r auth.FreshRotation) (auth.PresentedToken, bool, error) {
	var startedAfter, sessionMax any
	if !r.FamilyStartedAfter.IsZero() {
		startedAfter = r.FamilyStartedAfter
	}
	if r.SessionMax > 0 {
		sessionMax = r.SessionMax.Microseconds()
	}
	rows, err := db.c.QueryContext(ctx, db.sql.RotateFresh, r.Hash, r.At, startedAfter, r.ChildSealed,
		uuid.New(), r.Child.ID, r.Child.Hash, r.Child.ExpiresAt, sessionMax)
	if err != nil {
		return auth.PresentedToken{}, false, fmt.Errorf("rotate refresh token: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return auth.PresentedToken{}, false, fmt.Errorf("rotate refresh token: %w", err)
		}
		return auth.PresentedToken{}, false, nil
	}
	var p auth.PresentedToken
	if err := rows.Scan(&p.ID, &p.UserID, &p.FamilyID, &p.FamilyCreatedAt, &p.Email, &p.Username); err != nil {
		return auth.PresentedToken{}, false, fmt.Errorf("rotate refresh token: %w", err)
	}
	// Closing the rows is where the statement's own commit is reported.
	if err := rows.Close(); err != nil {
		return auth.PresentedToken{}, false, fmt.Errorf("rotate refresh token: %w", err)
	}
	return p, true, nil
}
