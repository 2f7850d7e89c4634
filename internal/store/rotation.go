package store

import (
	"context"
	"fmt"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/refreshtoken"
	"github.com/placebrain/auth/internal/auth"
)

// RotateFreshSpan names the span of a one-statement rotation in a traced
// request (its outcome attribute is commit whether or not the token was
// fresh: a token that is not changes nothing).
const RotateFreshSpan = "tx store.DB.RotateFresh"

// RotateFresh implements auth.Store. On PostgreSQL it is one statement
// (Rotation.RotateFresh) in its own implicit transaction: one round trip
// once the driver has it prepared. SQLite has no data-modifying WITH: there
// it is a transaction of three statements (Rotation.MarkFresh, then the
// audit event and the child), one fewer than the full path's and without
// its read, holding the write lock for less time.
func (db *DB) RotateFresh(ctx context.Context, r auth.FreshRotation) (auth.PresentedToken, bool, error) {
	if err := refreshtoken.TokenHashValidator(r.Child.Hash); err != nil {
		return auth.PresentedToken{}, false, fmt.Errorf("rotate refresh token: %w", err)
	}
	ctx, span := db.startSpan(ctx, RotateFreshSpan)
	var (
		p   auth.PresentedToken
		ok  bool
		err error
	)
	if db.sql.RotateFresh != "" {
		// One statement, bounded and classified as a unit of work is
		// (withTx).
		bctx, cancel := db.bound(ctx)
		p, ok, err = db.rotateFresh(bctx, r)
		cancel()
		err = db.unavailable(ctx, err)
	} else {
		err = db.withTx(ctx, func(tx *Tx) error {
			p, ok, err = tx.rotateFresh(ctx, r)
			return err
		})
	}
	if span != nil {
		endUnit(span, err, err, true)
	}
	return p, ok, err
}

func (db *DB) rotateFresh(ctx context.Context, r auth.FreshRotation) (auth.PresentedToken, bool, error) {
	return queryRotated(ctx, db.c, db.sql.RotateFresh, r.Hash, r.At, nullable(r.FamilyStartedAfter), r.ChildSealed,
		auth.NewRowID(), r.Child.ID, r.Child.Hash, r.Child.ExpiresAt, nullable(r.SessionMax.Microseconds()))
}

// queryRotated runs a statement that marks a fresh token used and returns
// its row (Rotation.RotateFresh or Rotation.MarkFresh) and scans that row;
// ok is false when it returned none. Closing the rows is where a
// statement's own commit is reported, so their error counts too.
func queryRotated(ctx context.Context, c *ent.Client, query string, args ...any) (auth.PresentedToken, bool, error) {
	wrap := func(err error) error { return fmt.Errorf("rotate refresh token: %w", err) }
	rows, err := c.QueryContext(ctx, query, args...)
	if err != nil {
		return auth.PresentedToken{}, false, wrap(err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return auth.PresentedToken{}, false, wrap(err)
		}
		return auth.PresentedToken{}, false, nil
	}
	var p auth.PresentedToken
	if err := rows.Scan(&p.ID, &p.UserID, &p.FamilyID, &p.FamilyCreatedAt, &p.Email, &p.Username); err != nil {
		return auth.PresentedToken{}, false, wrap(err)
	}
	if err := rows.Close(); err != nil {
		return auth.PresentedToken{}, false, wrap(err)
	}
	return p, true, nil
}

// rotateFresh is RotateFresh on SQLite, in the transaction t.
func (t *Tx) rotateFresh(ctx context.Context, r auth.FreshRotation) (auth.PresentedToken, bool, error) {
	after := nullable(r.FamilyStartedAfter)
	p, ok, err := queryRotated(ctx, t.c, t.sql.MarkFresh, r.At, r.ChildSealed, r.Hash, r.At, after, after)
	if err != nil || !ok {
		return p, ok, err
	}
	if err := t.RecordAudit(ctx, auth.AuditEvent{Event: auth.EventTokenRefreshed, UserID: p.UserID, At: r.At}); err != nil {
		return auth.PresentedToken{}, false, err
	}
	child := r.Child
	child.UserID, child.FamilyID, child.ParentID, child.CreatedAt = p.UserID, p.FamilyID, p.ID, r.At
	if end := p.FamilyCreatedAt.Add(r.SessionMax); r.SessionMax > 0 && end.Before(child.ExpiresAt) {
		child.ExpiresAt = end
	}
	if err := t.InsertRefreshToken(ctx, child); err != nil {
		return auth.PresentedToken{}, false, err
	}
	return p, true, nil
}
