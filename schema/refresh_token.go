package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// RefreshToken is one opaque refresh token of a token family (one sign-in
// session). Only the token's SHA-256 is stored. Rotation marks a token used
// and issues its successor in the same family; presenting a used token
// again revokes the whole family (reuse detection).
type RefreshToken struct{ ent.Schema }

func (RefreshToken) Mixin() []ent.Mixin { return []ent.Mixin{timeIDMixin{}, createdMixin{}} }

func (RefreshToken) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("user_id", uuid.UUID{}).Immutable(),
		// family_id is the token family (sign-in session) the token
		// belongs to.
		field.UUID("family_id", uuid.UUID{}).Immutable(),
		// parent_id is the token this one was rotated from; nil for the
		// first token of a family.
		field.UUID("parent_id", uuid.UUID{}).Optional().Nillable().Immutable(),
		// token_hash is SHA-256 of the token text (32 bytes).
		field.Bytes("token_hash").Sensitive().Unique().Immutable().MinLen(32).MaxLen(32),
		field.Time("expires_at").Immutable(),
		// used_at is set when the token was exchanged by rotation.
		// Revocation is recorded on the family.
		field.Time("used_at").Optional().Nillable(),
		// child_sealed is the text of the token this one was rotated to,
		// sealed under a key derived from this token's own text
		// (token.SealChild): a replay of this token can return its child,
		// and nothing else can open it.
		field.Bytes("child_sealed").Sensitive().Optional().Nillable(),
	}
}

func (RefreshToken) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("user", User.Type).Ref("refresh_tokens").Field("user_id").
			Unique().Required().Immutable(),
		edge.From("family", TokenFamily.Type).Ref("refresh_tokens").Field("family_id").
			Unique().Required().Immutable(),
	}
}

func (RefreshToken) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("family_id"),
		index.Fields("user_id"),
		// A rotation finds the presented token's child; the cleanup finds
		// used tokens past their expiry.
		index.Fields("parent_id"),
		index.Fields("expires_at"),
	}
}
