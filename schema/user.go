package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// User is an account: a person who signs in with an e-mail address and a
// password. A deleted account stays as a tombstone (deleted_at set; its
// name, address and password erased: see store's EraseUser), so the ids
// other services hold keep resolving; its address can be registered anew.
type User struct{ ent.Schema }

func (User) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, createdMixin{}} }

func (User) Fields() []ent.Field {
	return []ent.Field{
		field.String("username").NotEmpty().MaxRuneLen(64),
		// email is the address as the user typed it (trimmed), for display
		// and for sending mail; "" on a tombstone.
		field.String("email").NotEmpty().MaxLen(254),
		// email_normalized is the canonical form used for look-ups; its
		// unique index makes registration case-insensitively unique. Case
		// folding can lengthen an address, hence the larger bound. A
		// tombstone's is "deleted:" and its id, which no address normalizes
		// to (an address has an @).
		field.String("email_normalized").NotEmpty().MaxLen(1024).Unique(),
		// password_hash is a bcrypt hash in modular crypt format; "" on a
		// tombstone.
		field.String("password_hash").Sensitive(),
		field.Bool("is_verified").Default(false),
		field.Time("verified_at").Optional().Nillable(),
		field.Time("updated_at").Default(now).UpdateDefault(now),
		// imported_at is when `authd users import` brought the account over
		// from the platform's earlier service.
		field.Time("imported_at").Optional().Nillable(),
		// deleted_at is when the account was deleted (a tombstone).
		field.Time("deleted_at").Optional().Nillable(),
		// The fields below are added at the end of the table: on SQLite a
		// column anywhere else rebuilds the table, which the tables that
		// reference it cannot survive inside a migration's transaction.

		// claimed_at is when the latest sign-up claim on an unverified
		// account was made (Register, or its import); an unverified
		// account whose latest claim is older than USERS__UNVERIFIED_TTL_HOURS
		// is deleted. NULL for accounts made before claims existed, which
		// are exempt.
		field.Time("claimed_at").Optional().Nillable(),
		// claim_username and claim_password_hash are the latest sign-up
		// claim on the unverified account after the one that created it
		// (Register for an address whose account is unverified): what
		// verifying the address adopts. NULL when the account's own
		// username and password are the claim.
		field.String("claim_username").Optional().Nillable().MaxRuneLen(64),
		field.String("claim_password_hash").Optional().Nillable().Sensitive(),
		// claims_contested_at is when sign-up claims with different
		// passwords were first made on the unverified account: verifying it
		// then adopts no password (the owner sets one with ResetPassword).
		// NULL while the claims agree. (A timestamp, not a boolean with a
		// default: Atlas adds a column with a non-literal default on SQLite
		// by rebuilding the table.)
		field.Time("claims_contested_at").Optional().Nillable(),
	}
}

func (User) Indexes() []ent.Index {
	return []ent.Index{
		// The cleanup finds unverified accounts whose claims expired.
		index.Fields("is_verified", "claimed_at"),
	}
}

func (User) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("token_families", TokenFamily.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
		edge.To("refresh_tokens", RefreshToken.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
		edge.To("otp_requests", OtpRequest.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
	}
}
