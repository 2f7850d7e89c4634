package store

import (
	"context"
	"fmt"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/otprequest"
	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/ent/refreshtoken"
	"github.com/placebrain/auth/ent/tokenfamily"
	"github.com/placebrain/auth/ent/user"
	"github.com/placebrain/auth/internal/auth"
)

// UsersByIDs implements auth.Queries: one SELECT ... WHERE id IN (...).
func (q queries) UsersByIDs(ctx context.Context, ids []uuid.UUID) ([]auth.Account, error) {
	us, err := q.c.User.Query().Where(user.IDIn(ids...)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("get users: %w", err)
	}
	out := make([]auth.Account, len(us))
	for i, u := range us {
		out[i] = account(u)
	}
	return out, nil
}

// Sessions implements auth.Queries with one statement: the user's live
// families with their newest token's issue and expiry times.
func (q queries) Sessions(ctx context.Context, userID uuid.UUID, now time.Time) ([]auth.Session, error) {
	b := entsql.Dialect(q.sql.dialect)
	f, t := b.Table(tokenfamily.Table).As("f"), b.Table(refreshtoken.Table).As("t")
	query, args := b.
		Select(f.C(tokenfamily.FieldID), f.C(tokenfamily.FieldCreatedAt)).
		AppendSelectExpr(entsql.Expr(entsql.Max(t.C(refreshtoken.FieldCreatedAt))), entsql.Expr(entsql.Max(t.C(refreshtoken.FieldExpiresAt)))).
		From(f).Join(t).On(f.C(tokenfamily.FieldID), t.C(refreshtoken.FieldFamilyID)).
		Where(entsql.And(entsql.EQ(f.C(tokenfamily.FieldUserID), userID), entsql.IsNull(f.C(tokenfamily.FieldRevokedAt)))).
		GroupBy(f.C(tokenfamily.FieldID), f.C(tokenfamily.FieldCreatedAt)).
		Having(entsql.GT(entsql.Max(t.C(refreshtoken.FieldExpiresAt)), now)).
		OrderBy(f.C(tokenfamily.FieldCreatedAt)).
		Query()
	rows, err := q.c.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	var out []auth.Session
	for rows.Next() {
		var s auth.Session
		var last, expires any // an aggregate has no declared type: SQLite returns its text
		if err := rows.Scan(&s.ID, &s.CreatedAt, &last, &expires); err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		if s.LastUsedAt, err = timeOf(last); err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		if s.ExpiresAt, err = timeOf(expires); err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// sqliteTime is how the SQLite driver writes times (DSN _time_format=sqlite).
const sqliteTime = "2006-01-02 15:04:05.999999999-07:00"

// timeOf reads a time the driver returned without a declared type: a
// time.Time (PostgreSQL) or SQLite's text.
func timeOf(v any) (time.Time, error) {
	switch v := v.(type) {
	case time.Time:
		return v.UTC(), nil
	case string:
		t, err := time.Parse(sqliteTime, v)
		return t.UTC(), err
	case []byte:
		t, err := time.Parse(sqliteTime, string(v))
		return t.UTC(), err
	}
	return time.Time{}, fmt.Errorf("unexpected time value %T", v)
}

// EachUser implements auth.Store, reading pages of 500 users in id order.
func (db *DB) EachUser(ctx context.Context, fn func(auth.Account) error) error {
	var after *uuid.UUID
	for {
		q := db.Ent.User.Query().Where(user.DeletedAtIsNil()).Order(ent.Asc(user.FieldID)).Limit(500)
		if after != nil {
			q = q.Where(user.IDGT(*after))
		}
		us, err := q.All(ctx)
		if err != nil {
			return fmt.Errorf("read users: %w", err)
		}
		for _, u := range us {
			if err := fn(account(u)); err != nil {
				return err
			}
		}
		if len(us) < 500 {
			return nil
		}
		after = &us[len(us)-1].ID
	}
}

// InsertImportedUser implements auth.Tx.
func (t *Tx) InsertImportedUser(ctx context.Context, a auth.ImportedAccount, at time.Time) error {
	c := t.c.User.Create().
		SetID(a.ID).
		SetUsername(a.Username).
		SetEmail(a.Email).
		SetEmailNormalized(a.EmailCanonical).
		SetPasswordHash(a.PasswordHash).
		SetIsVerified(a.Verified).
		SetCreatedAt(a.CreatedAt).
		SetUpdatedAt(at).
		SetImportedAt(at)
	if a.Verified {
		c.SetVerifiedAt(a.CreatedAt)
	} else {
		c.SetClaimedAt(at) // an imported sign-up's TTL runs from its import
	}
	err := c.Exec(ctx)
	if ent.IsConstraintError(err) {
		if exists, _ := t.c.User.Query().Where(user.ID(a.ID)).Exist(ctx); exists {
			return auth.ErrUserExists
		}
		return auth.ErrEmailTaken
	}
	if err != nil {
		return fmt.Errorf("import user: %w", err)
	}
	return nil
}

// DeleteUnverifiedUser implements auth.Tx. The user's families, tokens and
// codes go with the row (ON DELETE CASCADE); its pending e-mails are
// deleted here.
func (t *Tx) DeleteUnverifiedUser(ctx context.Context, id uuid.UUID) (bool, error) {
	if err := t.deleteMail(ctx, id); err != nil {
		return false, err
	}
	n, err := t.c.User.Delete().Where(user.ID(id), user.IsVerified(false), user.DeletedAtIsNil()).Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("delete unverified user: %w", err)
	}
	return n == 1, nil
}

// deleteMail deletes the user's e-mails still in the outbox.
func (t *Tx) deleteMail(ctx context.Context, id uuid.UUID) error {
	if _, err := t.c.OutboxMessage.Delete().Where(outboxmessage.UserID(id), outboxmessage.StatusEQ(outboxmessage.StatusPending)).Exec(ctx); err != nil {
		return fmt.Errorf("delete queued mail: %w", err)
	}
	return nil
}

// EraseUser implements auth.Tx. The refresh tokens go before their
// families: a rotation locks a token, then its family, and taking the
// locks in the same order keeps the two from deadlocking (a token rotated
// meanwhile leaves a child the families' ON DELETE CASCADE takes).
func (t *Tx) EraseUser(ctx context.Context, id uuid.UUID, at time.Time) error {
	if _, err := t.c.RefreshToken.Delete().Where(refreshtoken.UserID(id)).Exec(ctx); err != nil {
		return fmt.Errorf("delete refresh tokens: %w", err)
	}
	if _, err := t.c.TokenFamily.Delete().Where(tokenfamily.UserID(id)).Exec(ctx); err != nil {
		return fmt.Errorf("delete sessions: %w", err)
	}
	if _, err := t.c.OtpRequest.Delete().Where(otprequest.UserID(id)).Exec(ctx); err != nil {
		return fmt.Errorf("delete codes: %w", err)
	}
	if _, err := t.c.OutboxMessage.Delete().Where(outboxmessage.UserID(id)).Exec(ctx); err != nil {
		return fmt.Errorf("delete e-mails: %w", err)
	}
	// The tombstone: the name and password gone, the address empty and its
	// canonical form "deleted:ID", which no address normalizes to, so the
	// address can be registered anew. The columns stay NOT NULL (on SQLite,
	// relaxing that would rebuild the users table, which the tables that
	// reference it cannot survive inside a migration's transaction).
	_, err := t.c.ExecContext(ctx, t.sql.eraseUser, auth.DeletedUsername, "", "deleted:"+id.String(), "", false, at, at, id)
	if err != nil {
		return fmt.Errorf("erase user: %w", err)
	}
	return nil
}

// RevokeUserFamily implements auth.Tx.
func (t *Tx) RevokeUserFamily(ctx context.Context, userID, familyID uuid.UUID, reason string, at time.Time) (bool, error) {
	exists, err := t.c.TokenFamily.Query().Where(tokenfamily.ID(familyID), tokenfamily.UserID(userID)).Modify(forUpdate()).Exist(ctx)
	if err != nil || !exists {
		return false, wrapErr("find session", err)
	}
	err = t.c.TokenFamily.Update().
		Where(tokenfamily.ID(familyID), tokenfamily.RevokedAtIsNil()).
		SetRevokedAt(at).SetRevokeReason(reason).Exec(ctx)
	return true, wrapErr("revoke session", err)
}

// RevokeUserFamilies implements auth.Tx.
func (t *Tx) RevokeUserFamilies(ctx context.Context, userID uuid.UUID, reason string, at time.Time) (int, error) {
	n, err := t.c.TokenFamily.Update().
		Where(tokenfamily.UserID(userID), tokenfamily.RevokedAtIsNil()).
		SetRevokedAt(at).SetRevokeReason(reason).Save(ctx)
	return n, wrapErr("revoke sessions", err)
}

// wrapErr wraps a non-nil err with what was being done.
func wrapErr(doing string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", doing, err)
}
