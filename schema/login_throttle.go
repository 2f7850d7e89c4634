package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// LoginThrottle counted failed logins per e-mail address before the
// limiter (RateLimit) replaced it. Nothing writes it any more; it stays so
// that instances of the previous release keep working during a rolling
// deploy, and a later migration drops it.
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
