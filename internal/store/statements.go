package store

import (
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/placebrain/auth/ent/auditevent"
	"github.com/placebrain/auth/ent/ratelimit"
	"github.com/placebrain/auth/ent/refreshtoken"
	"github.com/placebrain/auth/ent/tokenfamily"
	"github.com/placebrain/auth/ent/user"
)

// Rotation holds the SQL text of the statements of a token rotation, the
// service's most frequent write, in the order a rotation runs them. They
// are built once per dialect with ent's SQL builder from the generated
// schema constants and run on the ent transaction (the database driver
// caches them as prepared statements on PostgreSQL): ent's per-call query
// building, mutation objects and reflective scanning cost about as much CPU
// as the statements themselves, so the methods that run them call the
// schema's validators themselves. The load tool's ceiling (c) issues these
// same texts directly.
type Rotation struct {
	// LockToken reads a refresh token with its family, its child and its
	// user and locks the token's and the family's rows. Args: token_hash.
	// Columns: id, user_id, family_id, used_at, expires_at, child_sealed,
	// the family's revoked_at and created_at, the child's used_at (NULL
	// without a child), the user's email and username.
	LockToken string
	// MarkUsed sets a refresh token's used_at and child_sealed. Args:
	// used_at, child_sealed, id.
	MarkUsed string
	// InsertAudit records an audit event. Args: id, created_at, event,
	// user_id, reason.
	InsertAudit string
	// InsertToken stores a refresh token. Args: id, created_at, user_id,
	// family_id, parent_id, token_hash, expires_at.
	InsertToken string
	// RotateFresh is the whole common-case rotation as one statement
	// (PostgreSQL only; empty on SQLite, which has no data-modifying
	// WITH): it locks the presented token's and its family's rows (FOR
	// UPDATE OF both) when the token is unused and unexpired and its
	// family is live and within its lifetime (auth.FreshRotation.Admits),
	// marks the token used with its sealed child, records the audit event
	// and inserts the child, capping its expiry at the family's end. A
	// token locked by a concurrent rotation is re-read once that commits
	// (READ COMMITTED), and then no longer matches. Args: token_hash, at,
	// family started after (NULL: no bound), child_sealed, audit id,
	// child id, child token_hash, child expires_at before the cap, session
	// lifetime in microseconds (NULL: no cap). Columns (no row when the
	// token is not fresh or unknown, and nothing changed): id, user_id,
	// family_id, the family's created_at, the user's email and username.
	RotateFresh string
	// MarkFresh is SQLite's first statement of the common case, in a
	// transaction with InsertAudit and InsertToken: it marks the token
	// used with its sealed child when the token is unused and unexpired
	// and its family live and within its lifetime, and returns what the
	// access token and the child need (empty on PostgreSQL). Args:
	// used_at, child_sealed, token_hash, at, family started after (NULL:
	// no bound; given twice). Columns (no row when the token is not fresh
	// or unknown, and nothing changed): id, user_id, family_id, the
	// family's created_at, the user's email and username.
	MarkFresh string
}

// Reads holds the SQL text of the service's hot reads, GetMe's and
// GetUserByEmail's, built once per dialect like Rotation and scanned
// without ent's reflection; the load tool's ceilings issue these same
// texts directly.
type Reads struct {
	// UserByID reads a user by id. Args: id. Columns: userColumns.
	UserByID string
	// UserByEmail reads a user by canonical address. Args:
	// email_normalized. Columns: userColumns.
	UserByEmail string
}

// userColumns are the columns Reads return, in order: what auth.Account
// holds.
var userColumns = []string{user.FieldID, user.FieldUsername, user.FieldEmail, user.FieldEmailNormalized,
	user.FieldPasswordHash, user.FieldIsVerified, user.FieldDeletedAt, user.FieldImportedAt, user.FieldCreatedAt,
	user.FieldClaimedAt, user.FieldClaimUsername, user.FieldClaimPasswordHash, user.FieldClaimsContestedAt}

// statements are the prebuilt statements of one dialect.
type statements struct {
	// dialect is dialect.Postgres or dialect.SQLite, for statements built
	// per call.
	dialect string
	Rotation
	Reads
	// lockCounter creates a limiter counter if missing and returns it,
	// locked, in one statement (an upsert whose conflict branch touches
	// the row, which locks it). Args: id, key_hmac, purpose, account_hmac,
	// window_started_at, updated_at.
	// Columns: count, pending, window_started_at, locked_until, last_at.
	lockCounter string
	// eraseUser turns a user into a tombstone. Args: username, email,
	// email_normalized, password_hash, is_verified, deleted_at,
	// updated_at, id.
	eraseUser string
}

var (
	postgresStatements = newStatements(dialect.Postgres)
	sqliteStatements   = newStatements(dialect.SQLite)
)

// statementsFor returns the prebuilt statements of dialect d.
func statementsFor(d string) *statements {
	if d == dialect.Postgres {
		return postgresStatements
	}
	return sqliteStatements
}

// RotationStatements returns the rotation's statements for dialect d
// (dialect.Postgres or dialect.SQLite).
func RotationStatements(d string) Rotation { return statementsFor(d).Rotation }

// ReadStatements returns the hot reads' statements for dialect d.
func ReadStatements(d string) Reads { return statementsFor(d).Reads }

// newStatements builds the statements for dialect d.
func newStatements(d string) *statements {
	b := entsql.Dialect(d)
	t := entsql.Table(refreshtoken.Table).As("t")
	f := entsql.Table(tokenfamily.Table).As("f")
	c := entsql.Table(refreshtoken.Table).As("c")
	u := entsql.Table(user.Table).As("u")
	lock := b.Select(t.C(refreshtoken.FieldID), t.C(refreshtoken.FieldUserID), t.C(refreshtoken.FieldFamilyID),
		t.C(refreshtoken.FieldUsedAt), t.C(refreshtoken.FieldExpiresAt), t.C(refreshtoken.FieldChildSealed),
		f.C(tokenfamily.FieldRevokedAt), f.C(tokenfamily.FieldCreatedAt), c.C(refreshtoken.FieldUsedAt),
		u.C(user.FieldEmail), u.C(user.FieldUsername)).
		From(t).
		Join(f).On(t.C(refreshtoken.FieldFamilyID), f.C(tokenfamily.FieldID)).
		LeftJoin(c).On(c.C(refreshtoken.FieldParentID), t.C(refreshtoken.FieldID)).
		Join(u).On(t.C(refreshtoken.FieldUserID), u.C(user.FieldID)).
		Where(entsql.EQ(t.C(refreshtoken.FieldTokenHash), []byte(nil)))
	forUpdate(entsql.WithLockTables("t", "f"))(lock)
	s := &statements{dialect: d}
	s.LockToken, _ = lock.Query()
	s.MarkUsed, _ = b.Update(refreshtoken.Table).
		Set(refreshtoken.FieldUsedAt, time.Time{}).
		Set(refreshtoken.FieldChildSealed, []byte{}).
		Where(entsql.EQ(refreshtoken.FieldID, uuid.Nil)).
		Query()
	s.InsertToken, _ = b.Insert(refreshtoken.Table).
		Columns(refreshtoken.FieldID, refreshtoken.FieldCreatedAt, refreshtoken.FieldUserID, refreshtoken.FieldFamilyID,
			refreshtoken.FieldParentID, refreshtoken.FieldTokenHash, refreshtoken.FieldExpiresAt).
		Values(placeholders(7)...).
		Query()
	s.lockCounter, _ = b.Insert(ratelimit.Table).
		Columns(ratelimit.FieldID, ratelimit.FieldKeyHmac, ratelimit.FieldPurpose, ratelimit.FieldAccountHmac, ratelimit.FieldWindowStartedAt, ratelimit.FieldUpdatedAt).
		Values(placeholders(6)...).
		OnConflict(entsql.ConflictColumns(ratelimit.FieldKeyHmac), entsql.ResolveWith(func(u *entsql.UpdateSet) {
			u.SetIgnore(ratelimit.FieldKeyHmac)
		})).
		Returning(ratelimit.FieldCount, ratelimit.FieldPending, ratelimit.FieldWindowStartedAt, ratelimit.FieldLockedUntil, ratelimit.FieldLastAt).
		Query()
	s.eraseUser, _ = b.Update(user.Table).
		Set(user.FieldUsername, "").Set(user.FieldEmail, "").Set(user.FieldEmailNormalized, "").Set(user.FieldPasswordHash, "").
		Set(user.FieldIsVerified, false).SetNull(user.FieldVerifiedAt).Set(user.FieldDeletedAt, time.Time{}).Set(user.FieldUpdatedAt, time.Time{}).
		Where(entsql.EQ(user.FieldID, uuid.Nil)).
		Query()
	if d == dialect.Postgres {
		s.RotateFresh = rotateFreshPostgres()
	} else {
		s.MarkFresh = markFreshSQLite()
	}
	s.UserByID, _ = b.Select(userColumns...).From(entsql.Table(user.Table)).Where(entsql.EQ(user.FieldID, uuid.Nil)).Query()
	s.UserByEmail, _ = b.Select(userColumns...).From(entsql.Table(user.Table)).Where(entsql.EQ(user.FieldEmailNormalized, "")).Query()
	s.InsertAudit, _ = b.Insert(auditevent.Table).
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

// nullable returns v, or nil (SQL NULL) when v is its type's zero value.
func nullable[T comparable](v T) any {
	var zero T
	if v == zero {
		return nil
	}
	return v
}

// rotateFreshPostgres builds Rotation.RotateFresh from the generated
// schema's names. Data-modifying WITH clauses all run, whether or not the
// final SELECT reads them, against the rows the first one locked; when it
// locks none, none of them changes anything.
func rotateFreshPostgres() string {
	q := func(name string) string { return `"` + name + `"` }
	rt, tf, us, ae := q(refreshtoken.Table), q(tokenfamily.Table), q(user.Table), q(auditevent.Table)
	c := func(alias, col string) string { return alias + "." + q(col) }
	return "WITH t AS (SELECT " + strings.Join([]string{
		c("t", refreshtoken.FieldID), c("t", refreshtoken.FieldUserID), c("t", refreshtoken.FieldFamilyID),
		c("f", tokenfamily.FieldCreatedAt) + " AS family_created_at", c("u", user.FieldEmail), c("u", user.FieldUsername)}, ", ") +
		" FROM " + rt + " AS t JOIN " + tf + " AS f ON " + c("t", refreshtoken.FieldFamilyID) + " = " + c("f", tokenfamily.FieldID) +
		" JOIN " + us + " AS u ON " + c("t", refreshtoken.FieldUserID) + " = " + c("u", user.FieldID) +
		" WHERE " + c("t", refreshtoken.FieldTokenHash) + " = $1 AND " + c("t", refreshtoken.FieldUsedAt) + " IS NULL AND " +
		c("t", refreshtoken.FieldExpiresAt) + " > $2 AND " + c("f", tokenfamily.FieldRevokedAt) + " IS NULL AND ($3::timestamptz IS NULL OR " +
		c("f", tokenfamily.FieldCreatedAt) + " > $3) FOR UPDATE OF t, f), " +
		"used AS (UPDATE " + rt + " AS r SET " + q(refreshtoken.FieldUsedAt) + " = $2, " + q(refreshtoken.FieldChildSealed) + " = $4 FROM t WHERE " +
		c("r", refreshtoken.FieldID) + " = " + c("t", refreshtoken.FieldID) + "), " +
		"audit AS (INSERT INTO " + ae + " (" + strings.Join([]string{q(auditevent.FieldID), q(auditevent.FieldCreatedAt), q(auditevent.FieldEvent),
		q(auditevent.FieldUserID), q(auditevent.FieldReason)}, ", ") + ") SELECT $5, $2, '" + string(auditevent.EventTokenRefreshed) + "', " +
		c("t", refreshtoken.FieldUserID) + ", NULL FROM t), " +
		"child AS (INSERT INTO " + rt + " (" + strings.Join([]string{q(refreshtoken.FieldID), q(refreshtoken.FieldCreatedAt), q(refreshtoken.FieldUserID),
		q(refreshtoken.FieldFamilyID), q(refreshtoken.FieldParentID), q(refreshtoken.FieldTokenHash), q(refreshtoken.FieldExpiresAt)}, ", ") +
		") SELECT $6, $2, " + c("t", refreshtoken.FieldUserID) + ", " + c("t", refreshtoken.FieldFamilyID) + ", " + c("t", refreshtoken.FieldID) +
		", $7, LEAST($8::timestamptz, t.family_created_at + $9::bigint * interval '1 microsecond') FROM t) " +
		"SELECT " + strings.Join([]string{c("t", refreshtoken.FieldID), c("t", refreshtoken.FieldUserID), c("t", refreshtoken.FieldFamilyID),
		"t.family_created_at", c("t", user.FieldEmail), c("t", user.FieldUsername)}, ", ") + " FROM t"
}

// markFreshSQLite builds Rotation.MarkFresh from the generated schema's
// names. SQLite allows subqueries in RETURNING; the transaction around it
// holds the database's write lock, so nothing changes between it and the
// inserts that follow.
func markFreshSQLite() string {
	q := func(name string) string { return "`" + name + "`" }
	rt, tf, us := q(refreshtoken.Table), q(tokenfamily.Table), q(user.Table)
	col := func(table, c string) string { return table + "." + q(c) }
	return "UPDATE " + rt + " SET " + q(refreshtoken.FieldUsedAt) + " = ?, " + q(refreshtoken.FieldChildSealed) + " = ? WHERE " +
		q(refreshtoken.FieldTokenHash) + " = ? AND " + q(refreshtoken.FieldUsedAt) + " IS NULL AND " + q(refreshtoken.FieldExpiresAt) + " > ? AND " +
		"EXISTS (SELECT 1 FROM " + tf + " WHERE " + col(tf, tokenfamily.FieldID) + " = " + col(rt, refreshtoken.FieldFamilyID) + " AND " +
		col(tf, tokenfamily.FieldRevokedAt) + " IS NULL AND (? IS NULL OR " + col(tf, tokenfamily.FieldCreatedAt) + " > ?)) AND " +
		"EXISTS (SELECT 1 FROM " + us + " WHERE " + col(us, user.FieldID) + " = " + col(rt, refreshtoken.FieldUserID) + ") " +
		"RETURNING " + q(refreshtoken.FieldID) + ", " + q(refreshtoken.FieldUserID) + ", " + q(refreshtoken.FieldFamilyID) + ", " +
		"(SELECT " + col(tf, tokenfamily.FieldCreatedAt) + " FROM " + tf + " WHERE " + col(tf, tokenfamily.FieldID) + " = " + col(rt, refreshtoken.FieldFamilyID) + "), " +
		"(SELECT " + col(us, user.FieldEmail) + " FROM " + us + " WHERE " + col(us, user.FieldID) + " = " + col(rt, refreshtoken.FieldUserID) + "), " +
		"(SELECT " + col(us, user.FieldUsername) + " FROM " + us + " WHERE " + col(us, user.FieldID) + " = " + col(rt, refreshtoken.FieldUserID) + ")"
}
