package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// RateLimit is one counter of the limiter: the events of one purpose
// (login attempts, code checks, codes sent, registrations, a sign-in)
// counted for one key (an account, a source, or the pair) within a window,
// in the database so that the limits hold across instances. The key is
// kept only as an HMAC, so neither the address of an account nor the IP
// address of a source is readable here.
type RateLimit struct{ ent.Schema }

func (RateLimit) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

func (RateLimit) Fields() []ent.Field {
	return []ent.Field{
		// key_hmac is HMAC-SHA256 of the purpose, account and source (32
		// bytes).
		field.Bytes("key_hmac").Sensitive().Unique().Immutable().MinLen(32).MaxLen(32),
		field.Enum("purpose").Values(
			"login", "login_account", "signed_in",
			"code_check", "code_check_account", "code_send", "code_send_account",
			"register",
			"reset_check", "reset_check_account", "reset_send",
		).Immutable(),
		// count counts events since window_started_at.
		field.Int("count").NonNegative().Default(0),
		// pending counts events admitted whose outcome is not known yet
		// (logins whose password is being checked).
		field.Int("pending").NonNegative().Default(0),
		field.Time("window_started_at"),
		// locked_until refuses events until then; it ends by itself.
		field.Time("locked_until").Optional().Nillable(),
		// last_at is when the last event was counted.
		field.Time("last_at").Optional().Nillable(),
		field.Time("updated_at"),
		// account_hmac names the account a counter belongs to (HMAC of its
		// canonical address), so that a password reset can clear the
		// account's login locks; NULL for counters of no account.
		field.Bytes("account_hmac").Sensitive().Optional().Nillable().Immutable().MinLen(32).MaxLen(32),
	}
}

func (RateLimit) Indexes() []ent.Index {
	return []ent.Index{
		// The periodic pruning deletes idle counters per purpose.
		index.Fields("purpose", "updated_at"),
		index.Fields("account_hmac"),
	}
}
