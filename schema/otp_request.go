package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// OtpRequest is one one-time code sent to a user's e-mail address to verify
// it. Only an HMAC of the code is stored. A code is usable while it is not
// consumed, not superseded by a newer code, not expired, and has had fewer
// wrong attempts than the configured cap.
type OtpRequest struct{ ent.Schema }

func (OtpRequest) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, createdMixin{}} }

func (OtpRequest) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("user_id", uuid.UUID{}).Immutable(),
		// purpose says what the code proves: an address (sign-up) or the
		// right to set a new password; a new code supersedes only codes of
		// its own purpose.
		field.Enum("purpose").Values("email_verification", "password_reset").Default("email_verification").Immutable(),
		// code_hmac is HMAC-SHA256 of the code under the server's OTP key.
		field.Bytes("code_hmac").Sensitive().Immutable().MinLen(32).MaxLen(32),
		// attempts counts verification attempts, right or wrong.
		field.Int("attempts").NonNegative().Default(0),
		field.Time("expires_at").Immutable(),
		field.Time("consumed_at").Optional().Nillable(),
		// superseded_at is set when a newer code replaced this one.
		field.Time("superseded_at").Optional().Nillable(),
		// requester_hmac names the source that asked for the code: the key
		// of its send counter (an HMAC, as rate_limits.key_hmac), so
		// that the account's daily checks keep the code's last attempts
		// for it; NULL when the source was unknown.
		field.Bytes("requester_hmac").Sensitive().Optional().Nillable().Immutable().MinLen(32).MaxLen(32),
	}
}

func (OtpRequest) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("user", User.Type).Ref("otp_requests").Field("user_id").
			Unique().Required().Immutable(),
	}
}

func (OtpRequest) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("user_id", "created_at"),
		// The cleanup finds codes that expired.
		index.Fields("expires_at"),
	}
}
