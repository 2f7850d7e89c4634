package auth

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/mail"
)

// This file is what the rules need from the database, in domain terms.
// internal/store implements it: every query and statement lives there, and
// this package imports no database code.

// Store is the auth database.
type Store interface {
	Queries
	// InTx runs fn in one transaction, the unit of work behind an RPC: it
	// commits when fn returns nil, rolls back when fn returns an error or
	// panics, and commits and then returns the cause when fn returns
	// CommitAnd(cause). On SQLite the transaction holds the database's
	// write lock from its start.
	InTx(ctx context.Context, fn func(Tx) error) error
	// Purger deletes dead rows (Cleanup).
	Purger
	// RotateFresh rotates the presented token r.Hash names to r.Child when
	// r.Admits it, as one unit of work, and returns what the access token
	// needs (ID, UserID, FamilyID, FamilyCreatedAt, Email, Username): the
	// token is marked used with r.ChildSealed, a token_refreshed audit
	// event is recorded and the child stored in the family, its expiry
	// capped at the family's start plus r.SessionMax. ok is false, and
	// nothing changed, when the token is unknown or r does not admit it;
	// the caller then takes the full path. A store without a
	// one-statement rotation returns false at once, touching nothing.
	RotateFresh(ctx context.Context, r FreshRotation) (t PresentedToken, ok bool, err error)
	// EachUser calls fn with every account that is not a tombstone, in id
	// order, until fn fails.
	EachUser(ctx context.Context, fn func(Account) error) error
}

// ErrUserExists reports an account id that is taken (an import).
var ErrUserExists = errors.New("user id exists")

// Queries are the single statements that need no unit of work; on a Store
// each runs on its own, on a Tx inside the transaction.
type Queries interface {
	// UserByID returns the account with id; ErrUserNotFound when there is
	// none.
	UserByID(ctx context.Context, id uuid.UUID) (Account, error)
	// UserByEmail returns the account whose canonical address (see
	// identity.Email) is canonical; ErrUserNotFound when there is none.
	UserByEmail(ctx context.Context, canonical string) (Account, error)
	// UsersByIDs returns the accounts with the ids, tombstones included,
	// in one statement; unknown ids are left out.
	UsersByIDs(ctx context.Context, ids []uuid.UUID) ([]Account, error)
	// UserVerified reports whether the user's address is verified (false
	// for an unknown user).
	UserVerified(ctx context.Context, id uuid.UUID) (bool, error)
	// LatestLiveOTP returns the user's newest code of purpose that is
	// neither consumed nor superseded; ok is false when there is none.
	LatestLiveOTP(ctx context.Context, userID uuid.UUID, purpose CodePurpose) (c OTPCode, ok bool, err error)
	// Sessions returns the user's token families that are not revoked and
	// whose newest token expires after now, oldest first.
	Sessions(ctx context.Context, userID uuid.UUID, now time.Time) ([]Session, error)
	// RecordAudit records a security event.
	RecordAudit(ctx context.Context, e AuditEvent) error
	// ReadCounter reads the limiter counter named key, without locking it;
	// ok is false when there is none.
	ReadCounter(ctx context.Context, key []byte) (c Counter, ok bool, err error)
	// DeleteCounter forgets the limiter counter named key.
	DeleteCounter(ctx context.Context, key []byte) error
}

// Tx is one unit of work: Queries and the changes that must commit
// together.
type Tx interface {
	Queries
	// CreateUser stores a new, unverified account and returns its id;
	// ErrEmailTaken when the canonical address is registered.
	CreateUser(ctx context.Context, a NewAccount) (uuid.UUID, error)
	// LockUser reads the account with id and locks its row until the
	// transaction ends; ErrUserNotFound when there is none.
	LockUser(ctx context.Context, id uuid.UUID) (Account, error)
	// InsertImportedUser stores an account brought over from the platform's
	// earlier service, with its id, hash and creation time; ErrEmailTaken
	// when the canonical address is registered, ErrUserExists when the id
	// is.
	InsertImportedUser(ctx context.Context, a ImportedAccount, at time.Time) error
	// DeleteUnverifiedUser deletes an unverified account (not a tombstone)
	// and everything of it; false when id names no such account.
	DeleteUnverifiedUser(ctx context.Context, id uuid.UUID) (bool, error)
	// EraseUser erases an account: its tokens and families, codes and
	// pending e-mails are deleted, its name, addresses and password set to
	// NULL and deleted_at set, leaving a tombstone. Audit events stay.
	EraseUser(ctx context.Context, id uuid.UUID, at time.Time) error
	// SetPasswordHash replaces the user's password hash.
	SetPasswordHash(ctx context.Context, id uuid.UUID, hash string, at time.Time) error
	// MarkVerified marks the user's address verified, sets its username
	// and password hash (an empty hash: no password), and clears its
	// sign-up claims.
	MarkVerified(ctx context.Context, id uuid.UUID, username, passwordHash string, at time.Time) error
	// RecordClaim records a new sign-up claim on an unverified account.
	RecordClaim(ctx context.Context, id uuid.UUID, c Claim) error

	// CreateTokenFamily starts a token family (a session) for the user and
	// returns its id.
	CreateTokenFamily(ctx context.Context, userID uuid.UUID, at time.Time) (uuid.UUID, error)
	// LockRefreshToken reads the refresh token whose SHA-256 is hash, with
	// what a rotation needs of its family and user, and locks the token's
	// and the family's rows until the transaction ends; every later change
	// to the family sees what committed before. ErrInvalidRefreshToken
	// when there is no such token.
	LockRefreshToken(ctx context.Context, hash []byte) (PresentedToken, error)
	// MarkUsed records a refresh token's rotation, keeping its child's
	// text sealed under the token's own text (token.SealChild).
	MarkUsed(ctx context.Context, tokenID uuid.UUID, at time.Time, childSealed []byte) error
	// InsertRefreshToken stores a refresh token (its hash only).
	InsertRefreshToken(ctx context.Context, t RefreshToken) error
	// RevokeFamily ends a (locked) token family: none of its tokens is
	// accepted afterwards.
	RevokeFamily(ctx context.Context, familyID uuid.UUID, reason string, at time.Time) error
	// RevokeUserFamily ends the user's token family familyID; false when
	// the user has no such family (already revoked counts as found).
	RevokeUserFamily(ctx context.Context, userID, familyID uuid.UUID, reason string, at time.Time) (bool, error)
	// RevokeUserFamilies ends every live token family of the user and
	// returns how many.
	RevokeUserFamilies(ctx context.Context, userID uuid.UUID, reason string, at time.Time) (int, error)

	// LockCounter reads the limiter counter of purpose named key, creating
	// an empty one (no events, window starting at now; account names the
	// account it belongs to, nil for none) when there is none, and locks it
	// until the transaction ends, in one statement, so that concurrent
	// events on one key are counted one by one.
	LockCounter(ctx context.Context, purpose Purpose, key, account []byte, now time.Time) (Counter, error)
	// DeleteAccountCounters deletes the account's limiter counters of the
	// purposes.
	DeleteAccountCounters(ctx context.Context, account []byte, purposes ...Purpose) error
	// SaveCounter writes the limiter counter named key.
	SaveCounter(ctx context.Context, key []byte, c Counter, now time.Time) error

	// IssueOTP supersedes the user's live codes and stores c.
	IssueOTP(ctx context.Context, c OTPCode) error
	// CountOTPAttempt counts one attempt on a live code; false when the
	// code was consumed or superseded meanwhile.
	CountOTPAttempt(ctx context.Context, id uuid.UUID) (bool, error)
	// ConsumeOTP marks a live code used; false when it was consumed or
	// superseded meanwhile.
	ConsumeOTP(ctx context.Context, id uuid.UUID, at time.Time) (bool, error)

	// EnqueueMail writes an e-mail to the outbox, due at at; the outbox
	// dispatcher sends it after the transaction commits.
	EnqueueMail(ctx context.Context, m mail.Message, at time.Time) error
}

// Account is a user as the rules see it.
type Account struct {
	ID       uuid.UUID
	Username string
	// Email is the address as the user typed it.
	Email string
	// EmailCanonical is its canonical form (identity.Email).
	EmailCanonical string
	// PasswordHash is the bcrypt hash in modular crypt format.
	PasswordHash string
	Verified     bool
	// Deleted marks a tombstone: the account was deleted and only its id
	// remains.
	Deleted bool
	// Imported says the account came from the platform's earlier service.
	Imported  bool
	CreatedAt time.Time
	// ClaimedAt is when the latest sign-up claim on the unverified account
	// was made; zero for accounts made before claims existed.
	ClaimedAt time.Time
	// ClaimUsername and ClaimPasswordHash are the latest claim after the
	// one that created the account; empty when the account's own username
	// and password are the claim.
	ClaimUsername     string
	ClaimPasswordHash string
	// ContestedAt is when claims with different passwords were first made
	// on the unverified account; zero while they agree.
	ContestedAt time.Time
}

// Claim is a sign-up claim on an unverified account: Register for its
// address.
type Claim struct {
	Username     string
	PasswordHash string
	At           time.Time
	// ContestedAt is the account's ContestedAt after the claim (zero:
	// the claims agree).
	ContestedAt time.Time
}

// ImportedAccount is an account brought over from the platform's earlier
// service.
type ImportedAccount struct {
	ID             uuid.UUID
	Username       string
	Email          string
	EmailCanonical string
	PasswordHash   string
	Verified       bool
	CreatedAt      time.Time
}

// Session is one sign-in session: a token family.
type Session struct {
	ID        uuid.UUID
	CreatedAt time.Time
	// LastUsedAt is when its newest refresh token was issued (the sign-in
	// or the last rotation).
	LastUsedAt time.Time
	// ExpiresAt is when its newest refresh token expires.
	ExpiresAt time.Time
}

// NewAccount is an account to create.
type NewAccount struct {
	Username string
	// Email is the address as typed; EmailCanonical its canonical form
	// (identity.Email), unique among accounts.
	Email          string
	EmailCanonical string
	PasswordHash   string
	CreatedAt      time.Time
}

// PresentedToken is a presented refresh token with what a rotation needs
// of its token family, its child and its user.
type PresentedToken struct {
	ID       uuid.UUID
	UserID   uuid.UUID
	FamilyID uuid.UUID
	// UsedAt is when the token was rotated; zero when it was not.
	UsedAt    time.Time
	ExpiresAt time.Time
	// ChildSealed is its child's text, sealed under its own text; nil
	// while it was not rotated (or was rotated before children were kept).
	ChildSealed []byte
	// ChildUsedAt is when its child was rotated; zero when it was not (or
	// there is none).
	ChildUsedAt time.Time
	// RevokedAt is when the family was revoked; zero when it was not.
	RevokedAt time.Time
	// FamilyCreatedAt is when the family (the session) started: its login.
	FamilyCreatedAt time.Time
	Email           string
	Username        string
}

// RefreshToken is a refresh token to store.
type RefreshToken struct {
	ID       uuid.UUID
	UserID   uuid.UUID
	FamilyID uuid.UUID
	// ParentID is the token it was rotated from; uuid.Nil for the first
	// token of a family.
	ParentID uuid.UUID
	// Hash is the SHA-256 of the token's text (32 bytes).
	Hash      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// CodePurpose is what a one-time code proves.
type CodePurpose string

// The code purposes.
const (
	// CodeVerifyEmail proves an address (sign-up).
	CodeVerifyEmail CodePurpose = "email_verification"
	// CodeResetPassword lets its holder set a new password.
	CodeResetPassword CodePurpose = "password_reset"
)

// OTPCode is a one-time code as stored: its HMAC, never the code.
type OTPCode struct {
	ID      uuid.UUID
	UserID  uuid.UUID
	Purpose CodePurpose
	// MAC is otp.Keyer.MAC(ID, code).
	MAC       []byte
	CreatedAt time.Time
	ExpiresAt time.Time
	// Requester is the key of the send counter of the source that asked
	// for the code (32 bytes); nil when the source was unknown.
	Requester []byte
}

// AuditEvent is one security event. It never holds a secret or an e-mail
// address.
type AuditEvent struct {
	Event Event
	// UserID is the account concerned; uuid.Nil when there is none (a
	// login for an unknown address).
	UserID uuid.UUID
	// Reason is a short machine-readable detail (at most 64 bytes), or "".
	Reason string
	At     time.Time
}

// Event names a kind of security event.
type Event string

// The audit events.
const (
	EventRegister           Event = "register"
	EventLoginSucceeded     Event = "login_succeeded"
	EventLoginFailed        Event = "login_failed"
	EventLoginThrottled     Event = "login_throttled"
	EventRegisterThrottled  Event = "register_throttled"
	EventServerBusy         Event = "server_busy"
	EventTokenRefreshed     Event = "token_refreshed"
	EventRefreshTokenReused Event = "refresh_token_reused"
	EventTokenFamilyRevoked Event = "token_family_revoked"
	EventLogout             Event = "logout"
	EventOTPSent            Event = "otp_sent"
	EventOTPVerified        Event = "otp_verified"
	EventOTPFailed          Event = "otp_failed"
	EventResetRequested     Event = "password_reset_requested"
	EventPasswordReset      Event = "password_reset"
	EventPasswordChanged    Event = "password_changed"
	EventLogoutAll          Event = "logout_all"
	EventSessionRevoked     Event = "session_revoked"
	EventUserDeleted        Event = "user_deleted"
	EventUserImported       Event = "user_imported"
	EventRefreshRecovered   Event = "refresh_recovered"
)

// Reasons of otp_failed events that say more than a wrong code (metrics
// count them apart).
const (
	// ReasonOTPAttemptsExhausted: the wrong code used up its source's
	// attempts; the code burns for that source
	// (ErrOTPAttemptsExhausted's reason, in lower case).
	ReasonOTPAttemptsExhausted = "otp_attempts_exhausted"
	// ReasonAccountDailyCap: the attempt hit the account's daily cap on
	// code checks, which locks them for every source until the day ends.
	ReasonAccountDailyCap = "account_daily_cap"
	// ReasonKeptForRequester: the check was refused because the account's
	// last checks of the day are kept for the source that asked for the
	// live code. Told to Options.Events only, never recorded: it locks
	// nothing, so a flood of them would be a row each.
	ReasonKeptForRequester = "kept_for_requester"
)

// Events lists every audit event (the store's schema must accept each).
var Events = []Event{EventRegister, EventLoginSucceeded, EventLoginFailed, EventLoginThrottled,
	EventRegisterThrottled, EventServerBusy, EventTokenRefreshed, EventRefreshTokenReused,
	EventTokenFamilyRevoked, EventLogout, EventOTPSent, EventOTPVerified, EventOTPFailed,
	EventResetRequested, EventPasswordReset, EventPasswordChanged, EventLogoutAll,
	EventSessionRevoked, EventUserDeleted, EventUserImported, EventRefreshRecovered}

// committed marks the error of a unit of work whose writes must commit.
type committed struct{ err error }

func (c committed) Error() string { return c.err.Error() }
func (c committed) Unwrap() error { return c.err }

// CommitAnd wraps err so that Store.InTx commits the transaction's writes
// before returning err: for failures that must be recorded, such as a
// token family revoked by reuse detection.
func CommitAnd(err error) error { return committed{err: err} }

// CommitCause reports whether err came from CommitAnd, and its cause.
func CommitCause(err error) (error, bool) {
	var c committed
	if errors.As(err, &c) {
		return c.err, true
	}
	return nil, false
}
