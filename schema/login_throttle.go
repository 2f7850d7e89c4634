package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// LoginThrottle counts failed logins for one e-mail address, known or not,
// in the database so the limit holds across instances. The address is kept
// only as an HMAC (key_hmac), so addresses that have no account leave no
// readable trace.
type LoginThrottle struct{ ent.Schema }

func (LoginThrottle) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

func (LoginThrottle) Fields() []ent.Field {
	return []ent.Field{
		// key_hmac is HMAC-SHA256 of the canonical address (32 bytes).
		field.Bytes("key_hmac").Sensitive().Unique().Immutable().MinLen(32).MaxLen(32),
		// failures counts failed logins since window_started_at.
		field.Int("failures").NonNegative().Default(0),
		field.Time("window_started_at"),
		// locked_until refuses logins until then; it expires by itself.
		field.Time("locked_until").Optional().Nillable(),
		field.Time("updated_at"),
	}
}
