package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// TokenFamily is one sign-in session: the chain of refresh tokens rotated
// from one login. Every change to a family's tokens (rotation, logout,
// revocation on reuse) first locks the family's row, so the changes of one
// family are serialized and a revocation can never miss a token that a
// concurrent rotation is issuing.
type TokenFamily struct{ ent.Schema }

func (TokenFamily) Mixin() []ent.Mixin { return []ent.Mixin{timeIDMixin{}, createdMixin{}} }

func (TokenFamily) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("user_id", uuid.UUID{}).Immutable(),
		// revoked_at is set when the session ended: logout or reuse
		// detection. No token of a revoked family is accepted.
		field.Time("revoked_at").Optional().Nillable(),
		field.String("revoke_reason").Optional().MaxLen(32),
	}
}

func (TokenFamily) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("user", User.Type).Ref("token_families").Field("user_id").
			Unique().Required().Immutable(),
		edge.To("refresh_tokens", RefreshToken.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
	}
}

func (TokenFamily) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("user_id"),
		// The cleanup finds families revoked before its cutoff.
		index.Fields("revoked_at"),
	}
}
