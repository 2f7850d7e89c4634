package auth

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/auditevent"
	"github.com/placebrain/auth/ent/refreshtoken"
	"github.com/placebrain/auth/ent/tokenfamily"
	"github.com/placebrain/auth/ent/user"
	"github.com/placebrain/auth/internal/store"
)

// statements holds the SQL text of the statements on the token rotation
// path, the service's most frequent write, built once per dialect with
// ent's SQL builder from the generated schema constants. They run on the
// ent transaction with its ExecContext and QueryContext (the database
// driver caches them as server-side prepared statements on PostgreSQL).
// Profiling a rotation showed ent's per-call query building, mutation
// objects and reflective scanning costing about as much CPU as the
// statements themselves; prebuilt text skips that, and the callers run the
// schema's validators themselves (pprof of authd under cmd/authbench).
type statements struct {
	// lockToken reads a refresh token with its family and user and locks
	// the token's and the family's rows. Args: token_hash. Columns: see
	// presentedToken.
	lockToken string
	// markUsed sets a refresh token's used_at. Args: used_at, id.
	markUsed string
	// insertToken stores a refresh token. Args: id, created_at, user_id,
	// family_id, parent_id, token_hash, expires_at.
	insertToken string
	// insertAudit records an audit event. Args: id, created_at, event,
	// user_id, reason.
	insertAudit string
}

// newStatements builds the statements for dialect d (dialect.Postgres or
// dialect.SQLite).
func newStatements(d string) statements {
	b := entsql.Dialect(d)
	t := entsql.Table(refreshtoken.Table).As("t")
	f := entsql.Table(tokenfamily.Table).As("f")
	u := entsql.Table(user.Table).As("u")
	lock := b.Select(t.C(refreshtoken.FieldID), t.C(refreshtoken.FieldUserID), t.C(refreshtoken.FieldFamilyID),
		t.C(refreshtoken.FieldUsedAt), t.C(refreshtoken.FieldExpiresAt), f.C(tokenfamily.FieldRevokedAt),
		u.C(user.FieldEmail), u.C(user.FieldUsername)).
		From(t).
		Join(f).On(t.C(refreshtoken.FieldFamilyID), f.C(tokenfamily.FieldID)).
		Join(u).On(t.C(refreshtoken.FieldUserID), u.C(user.FieldID)).
		Where(entsql.EQ(t.C(refreshtoken.FieldTokenHash), []byte(nil)))
	store.ForUpdate(entsql.WithLockTables("t", "f"))(lock)
	var s statements
	s.lockToken, _ = lock.Query()
	s.markUsed, _ = b.Update(refreshtoken.Table).
		Set(refreshtoken.FieldUsedAt, time.Time{}).
		Where(entsql.EQ(refreshtoken.FieldID, uuid.Nil)).
		Query()
	s.insertToken, _ = b.Insert(refreshtoken.Table).
		Columns(refreshtoken.FieldID, refreshtoken.FieldCreatedAt, refreshtoken.FieldUserID, refreshtoken.FieldFamilyID,
			refreshtoken.FieldParentID, refreshtoken.FieldTokenHash, refreshtoken.FieldExpiresAt).
		Values(placeholders(7)...).
		Query()
	s.insertAudit, _ = b.Insert(auditevent.Table).
		Columns(auditevent.FieldID, auditevent.FieldCreatedAt, auditevent.FieldEvent, auditevent.FieldUserID, auditevent.FieldReason).
		Values(placeholders(5)...).
		Query()
	return s
}

// placeholders returns n stand-in values: each becomes a bind parameter
// ($1 or ?) in the built statement (nil would become a NULL literal).
func placeholders(n int) []any {
	v := make([]any, n)
	for i := range v {
		v[i] = 0
	}
	return v
}

// presentedToken is a presented refresh token with what a rotation needs
// of its token family and its user.
type presentedToken struct {
	ID        uuid.UUID
	UserID    uuid.UUID
	FamilyID  uuid.UUID
	UsedAt    *time.Time // nil: not used yet
	ExpiresAt time.Time
	RevokedAt *time.Time // the family's; nil: not revoked
	Email     string
	Username  string
}

// lockToken reads the refresh token with hash, its family and its user in
// one statement, locking the token's and the family's rows (PostgreSQL:
// SELECT ... FOR UPDATE OF both; SQLite: the transaction's write lock).
// Every change to an existing family or token (rotation, reuse detection,
// logout) runs after this statement in its transaction, and in READ
// COMMITTED PostgreSQL returns the newest version of a row it had to wait
// for, so what is read reflects every change committed before. Locking the
// token row matters: a rotation changes only the token, and two refreshes
// of one token must not both see it unused. Returns ErrInvalidRefreshToken
// for an unknown token.
func (s *Service) lockToken(ctx context.Context, tx *ent.Tx, hash []byte) (presentedToken, error) {
	rows, err := tx.QueryContext(ctx, s.sql.lockToken, hash)
	if err != nil {
		return presentedToken{}, fmt.Errorf("lock refresh token: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return presentedToken{}, fmt.Errorf("lock refresh token: %w", err)
		}
		return presentedToken{}, ErrInvalidRefreshToken
	}
	var p presentedToken
	var used, revoked sql.NullTime
	if err := rows.Scan(&p.ID, &p.UserID, &p.FamilyID, &used, &p.ExpiresAt, &revoked, &p.Email, &p.Username); err != nil {
		return presentedToken{}, fmt.Errorf("lock refresh token: %w", err)
	}
	if used.Valid {
		p.UsedAt = &used.Time
	}
	if revoked.Valid {
		p.RevokedAt = &revoked.Time
	}
	return p, rows.Close()
}

// nullable returns v, or nil (SQL NULL) when v is its type's zero value.
func nullable[T comparable](v T) any {
	var zero T
	if v == zero {
		return nil
	}
	return v
}
