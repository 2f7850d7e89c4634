package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// OutboxMessage is an e-mail waiting in the transactional outbox. It is
// written in the same transaction as the state it announces (for example a
// new OTP) and sent later by the dispatcher, which retries with backoff.
type OutboxMessage struct{ ent.Schema }

func (OutboxMessage) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, createdMixin{}} }

func (OutboxMessage) Fields() []ent.Field {
	return []ent.Field{
		// user_id names the account the message is for, for logs.
		field.UUID("user_id", uuid.UUID{}).Optional().Nillable().Immutable(),
		field.String("recipient").Sensitive().NotEmpty().MaxLen(254).Immutable(),
		// template names an embedded mail template, e.g. "otp".
		field.String("template").NotEmpty().MaxLen(64).Immutable(),
		// data holds the template's values in clear, as messages queued
		// before sealed_data existed have them. It is no longer written;
		// it is read for those messages and cleared like sealed_data.
		field.JSON("data", map[string]string{}).Sensitive().Optional(),
		// sealed_data holds the template's values (may hold a code)
		// sealed by mail.Sealer: AES-256-GCM bound to the row's id. It is
		// cleared once the message is sent or has failed for good.
		field.Bytes("sealed_data").Sensitive().Optional(),
		field.Enum("status").Values("pending", "sent", "failed").Default("pending"),
		// attempts counts delivery attempts (claims).
		field.Int("attempts").NonNegative().Default(0),
		// next_attempt_at is when the message is due; a claim moves it one
		// lease ahead so a crashed sender's message becomes due again.
		field.Time("next_attempt_at").Default(now),
		field.String("last_error").Optional().MaxLen(1024),
		field.Time("sent_at").Optional().Nillable(),
		// expires_at is when the code the message carries expires: the
		// message is not sent after it (it fails, "code expired"). NULL
		// for messages queued before the column existed.
		field.Time("expires_at").Optional().Nillable().Immutable(),
	}
}

func (OutboxMessage) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("status", "next_attempt_at"),
		// The cleanup finds sent and failed messages past the retention.
		index.Fields("status", "created_at"),
	}
}
