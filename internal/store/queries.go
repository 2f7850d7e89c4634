package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/auditevent"
	"github.com/placebrain/auth/ent/otprequest"
	"github.com/placebrain/auth/ent/predicate"
	"github.com/placebrain/auth/ent/refreshtoken"
	"github.com/placebrain/auth/ent/tokenfamily"
	"github.com/placebrain/auth/ent/user"
	"github.com/placebrain/auth/internal/auth"
)

// queries run the service's statements on an ent client: the pool's (DB)
// or a transaction's (Tx). They implement auth.Queries.
type queries struct {
	c   *ent.Client
	sql *statements
}

func account(u *ent.User) auth.Account {
	a := auth.Account{ID: u.ID, Username: u.Username, Email: u.Email, EmailCanonical: u.EmailNormalized,
		PasswordHash: u.PasswordHash, Verified: u.IsVerified, Deleted: u.DeletedAt != nil, Imported: u.ImportedAt != nil,
		CreatedAt: u.CreatedAt}
	if u.ClaimedAt != nil {
		a.ClaimedAt = *u.ClaimedAt
	}
	if u.ClaimUsername != nil && u.ClaimPasswordHash != nil {
		a.ClaimUsername, a.ClaimPasswordHash = *u.ClaimUsername, *u.ClaimPasswordHash
	}
	if u.ClaimsContestedAt != nil {
		a.ContestedAt = *u.ClaimsContestedAt
	}
	return a
}

// UserByID implements auth.Queries with a prebuilt statement (GetMe's).
func (q queries) UserByID(ctx context.Context, id uuid.UUID) (auth.Account, error) {
	a, err := q.readUser(ctx, q.sql.UserByID, id)
	if err != nil && !errors.Is(err, auth.ErrUserNotFound) {
		return auth.Account{}, fmt.Errorf("get user: %w", err)
	}
	return a, err
}

// UserByEmail implements auth.Queries with a prebuilt statement
// (GetUserByEmail's).
func (q queries) UserByEmail(ctx context.Context, canonical string) (auth.Account, error) {
	a, err := q.readUser(ctx, q.sql.UserByEmail, canonical)
	if err != nil && !errors.Is(err, auth.ErrUserNotFound) {
		return auth.Account{}, fmt.Errorf("find user: %w", err)
	}
	return a, err
}

// readUser runs one of Reads' statements with arg and scans its
// userColumns; auth.ErrUserNotFound when it returns no row.
func (q queries) readUser(ctx context.Context, query string, arg any) (auth.Account, error) {
	rows, err := q.c.QueryContext(ctx, query, arg)
	if err != nil {
		return auth.Account{}, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return auth.Account{}, err
		}
		return auth.Account{}, auth.ErrUserNotFound
	}
	var (
		a                                 auth.Account
		deleted, imported, claimed, contd sql.NullTime
		claimUser, claimHash              sql.NullString
	)
	if err := rows.Scan(&a.ID, &a.Username, &a.Email, &a.EmailCanonical, &a.PasswordHash, &a.Verified,
		&deleted, &imported, &a.CreatedAt, &claimed, &claimUser, &claimHash, &contd); err != nil {
		return auth.Account{}, err
	}
	a.Deleted, a.Imported = deleted.Valid, imported.Valid
	a.ClaimedAt, a.ContestedAt = claimed.Time, contd.Time
	if claimUser.Valid && claimHash.Valid {
		a.ClaimUsername, a.ClaimPasswordHash = claimUser.String, claimHash.String
	}
	return a, rows.Close()
}

// UserVerified implements auth.Queries.
func (q queries) UserVerified(ctx context.Context, id uuid.UUID) (bool, error) {
	ok, err := q.c.User.Query().Where(user.ID(id), user.IsVerified(true)).Exist(ctx)
	if err != nil {
		return false, fmt.Errorf("read user: %w", err)
	}
	return ok, nil
}

// liveOTP selects codes that are neither consumed nor superseded.
func liveOTP() predicate.OtpRequest {
	return otprequest.And(otprequest.ConsumedAtIsNil(), otprequest.SupersededAtIsNil())
}

// LatestLiveOTP implements auth.Queries.
func (q queries) LatestLiveOTP(ctx context.Context, userID uuid.UUID, purpose auth.CodePurpose) (auth.OTPCode, bool, error) {
	o, err := q.c.OtpRequest.Query().
		Where(otprequest.UserID(userID), otprequest.PurposeEQ(otprequest.Purpose(purpose)), liveOTP()).
		Order(ent.Desc(otprequest.FieldCreatedAt)).
		First(ctx)
	if ent.IsNotFound(err) {
		return auth.OTPCode{}, false, nil
	}
	if err != nil {
		return auth.OTPCode{}, false, fmt.Errorf("find code: %w", err)
	}
	return auth.OTPCode{ID: o.ID, UserID: o.UserID, Purpose: auth.CodePurpose(o.Purpose), MAC: o.CodeHmac,
		CreatedAt: o.CreatedAt, ExpiresAt: o.ExpiresAt, Requester: derefBytes(o.RequesterHmac)}, true, nil
}

// RecordAudit implements auth.Queries with a prebuilt statement (it runs
// on every rotation), after the schema's checks that ent's builders would
// run.
func (q queries) RecordAudit(ctx context.Context, e auth.AuditEvent) error {
	if err := errors.Join(auditevent.EventValidator(auditevent.Event(e.Event)), auditevent.ReasonValidator(e.Reason)); err != nil {
		return fmt.Errorf("audit %s: %w", e.Event, err)
	}
	if _, err := q.c.ExecContext(ctx, q.sql.InsertAudit, auth.NewRowID(), e.At, string(e.Event), nullable(e.UserID), nullable(e.Reason)); err != nil {
		return fmt.Errorf("audit %s: %w", e.Event, err)
	}
	return nil
}

// CreateUser implements auth.Tx.
func (t *Tx) CreateUser(ctx context.Context, a auth.NewAccount) (uuid.UUID, error) {
	u, err := t.c.User.Create().
		SetUsername(a.Username).
		SetEmail(a.Email).
		SetEmailNormalized(a.EmailCanonical).
		SetPasswordHash(a.PasswordHash).
		SetCreatedAt(a.CreatedAt).
		SetUpdatedAt(a.CreatedAt).
		SetClaimedAt(a.CreatedAt).
		Save(ctx)
	if ent.IsConstraintError(err) {
		return uuid.Nil, auth.ErrEmailTaken
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("create user: %w", err)
	}
	return u.ID, nil
}

// LockUser implements auth.Tx.
func (t *Tx) LockUser(ctx context.Context, id uuid.UUID) (auth.Account, error) {
	u, err := t.c.User.Query().Where(user.ID(id)).Modify(forUpdate()).Only(ctx)
	if ent.IsNotFound(err) {
		return auth.Account{}, auth.ErrUserNotFound
	}
	if err != nil {
		return auth.Account{}, fmt.Errorf("lock user: %w", err)
	}
	return account(u), nil
}

// SetPasswordHash implements auth.Tx.
func (t *Tx) SetPasswordHash(ctx context.Context, id uuid.UUID, hash string, at time.Time) error {
	if err := t.c.User.UpdateOneID(id).SetPasswordHash(hash).SetUpdatedAt(at).Exec(ctx); err != nil {
		return fmt.Errorf("set password hash: %w", err)
	}
	return nil
}

// MarkVerified implements auth.Tx.
func (t *Tx) MarkVerified(ctx context.Context, id uuid.UUID, username, passwordHash string, at time.Time) error {
	err := t.c.User.UpdateOneID(id).
		SetIsVerified(true).SetVerifiedAt(at).SetUpdatedAt(at).
		SetUsername(username).SetPasswordHash(passwordHash).
		ClearClaimUsername().ClearClaimPasswordHash().ClearClaimsContestedAt().
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("mark verified: %w", err)
	}
	return nil
}

// RecordClaim implements auth.Tx.
func (t *Tx) RecordClaim(ctx context.Context, id uuid.UUID, c auth.Claim) error {
	u := t.c.User.UpdateOneID(id).
		SetClaimUsername(c.Username).SetClaimPasswordHash(c.PasswordHash).SetClaimedAt(c.At).SetUpdatedAt(c.At)
	if c.ContestedAt.IsZero() {
		u.ClearClaimsContestedAt()
	} else {
		u.SetClaimsContestedAt(c.ContestedAt)
	}
	if err := u.Exec(ctx); err != nil {
		return fmt.Errorf("record sign-up claim: %w", err)
	}
	return nil
}

// CreateTokenFamily implements auth.Tx.
func (t *Tx) CreateTokenFamily(ctx context.Context, userID uuid.UUID, at time.Time) (uuid.UUID, error) {
	f, err := t.c.TokenFamily.Create().SetUserID(userID).SetCreatedAt(at).Save(ctx)
	if err != nil {
		return uuid.Nil, fmt.Errorf("create token family: %w", err)
	}
	return f.ID, nil
}

// LockRefreshToken implements auth.Tx with one prebuilt statement
// (Rotation.LockToken): PostgreSQL locks the token's and the family's rows
// with SELECT ... FOR UPDATE OF both; SQLite's transaction already holds
// the write lock. Every change to an existing family or token (rotation,
// reuse detection, logout) runs after this statement in its transaction,
// and in READ COMMITTED PostgreSQL returns the newest version of a row it
// had to wait for, so what is read reflects every change committed before.
// Locking the token row matters: a rotation changes only the token, and two
// refreshes of one token must not both see it unused.
func (t *Tx) LockRefreshToken(ctx context.Context, hash []byte) (auth.PresentedToken, error) {
	rows, err := t.c.QueryContext(ctx, t.sql.LockToken, hash)
	if err != nil {
		return auth.PresentedToken{}, fmt.Errorf("lock refresh token: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return auth.PresentedToken{}, fmt.Errorf("lock refresh token: %w", err)
		}
		return auth.PresentedToken{}, auth.ErrInvalidRefreshToken
	}
	var p auth.PresentedToken
	var used, revoked, childUsed sql.NullTime
	if err := rows.Scan(&p.ID, &p.UserID, &p.FamilyID, &used, &p.ExpiresAt, &p.ChildSealed,
		&revoked, &p.FamilyCreatedAt, &childUsed, &p.Email, &p.Username); err != nil {
		return auth.PresentedToken{}, fmt.Errorf("lock refresh token: %w", err)
	}
	p.UsedAt, p.RevokedAt, p.ChildUsedAt = used.Time, revoked.Time, childUsed.Time
	return p, rows.Close()
}

// MarkUsed implements auth.Tx with a prebuilt statement.
func (t *Tx) MarkUsed(ctx context.Context, tokenID uuid.UUID, at time.Time, childSealed []byte) error {
	if _, err := t.c.ExecContext(ctx, t.sql.MarkUsed, at, childSealed, tokenID); err != nil {
		return fmt.Errorf("mark refresh token used: %w", err)
	}
	return nil
}

// InsertRefreshToken implements auth.Tx with a prebuilt statement, after the
// schema's check that ent's builder would run.
func (t *Tx) InsertRefreshToken(ctx context.Context, r auth.RefreshToken) error {
	if err := refreshtoken.TokenHashValidator(r.Hash); err != nil {
		return fmt.Errorf("store refresh token: %w", err)
	}
	_, err := t.c.ExecContext(ctx, t.sql.InsertToken, r.ID, r.CreatedAt, r.UserID, r.FamilyID, nullable(r.ParentID), r.Hash, r.ExpiresAt)
	if err != nil {
		return fmt.Errorf("store refresh token: %w", err)
	}
	return nil
}

// RevokeFamily implements auth.Tx.
func (t *Tx) RevokeFamily(ctx context.Context, familyID uuid.UUID, reason string, at time.Time) error {
	err := t.c.TokenFamily.Update().Where(tokenfamily.ID(familyID)).SetRevokedAt(at).SetRevokeReason(reason).Exec(ctx)
	if err != nil {
		return fmt.Errorf("revoke token family: %w", err)
	}
	return nil
}

// IssueOTP implements auth.Tx.
func (t *Tx) IssueOTP(ctx context.Context, c auth.OTPCode) error {
	purpose := otprequest.Purpose(c.Purpose)
	if err := otprequest.PurposeValidator(purpose); err != nil {
		return fmt.Errorf("store code: %w", err)
	}
	if err := t.c.OtpRequest.Update().
		Where(otprequest.UserID(c.UserID), otprequest.PurposeEQ(purpose), liveOTP()).
		SetSupersededAt(c.CreatedAt).
		Exec(ctx); err != nil {
		return fmt.Errorf("supersede codes: %w", err)
	}
	create := t.c.OtpRequest.Create().
		SetID(c.ID).
		SetUserID(c.UserID).
		SetPurpose(purpose).
		SetCodeHmac(c.MAC).
		SetCreatedAt(c.CreatedAt).
		SetExpiresAt(c.ExpiresAt)
	if c.Requester != nil {
		create.SetRequesterHmac(c.Requester)
	}
	if err := create.Exec(ctx); err != nil {
		return fmt.Errorf("store code: %w", err)
	}
	return nil
}

// CountOTPAttempt implements auth.Tx.
func (t *Tx) CountOTPAttempt(ctx context.Context, id uuid.UUID) (bool, error) {
	n, err := t.c.OtpRequest.Update().Where(otprequest.ID(id), liveOTP()).AddAttempts(1).Save(ctx)
	if err != nil {
		return false, fmt.Errorf("count attempt: %w", err)
	}
	return n == 1, nil
}

// ConsumeOTP implements auth.Tx.
func (t *Tx) ConsumeOTP(ctx context.Context, id uuid.UUID, at time.Time) (bool, error) {
	n, err := t.c.OtpRequest.Update().Where(otprequest.ID(id), liveOTP()).SetConsumedAt(at).Save(ctx)
	if err != nil {
		return false, fmt.Errorf("consume code: %w", err)
	}
	return n == 1, nil
}

// derefBytes is *b, or nil when b is.
func derefBytes(b *[]byte) []byte {
	if b == nil {
		return nil
	}
	return *b
}
