package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// AuditEvent is one security event: what happened, to which user, when and
// why. It never holds a secret or an e-mail address. Events are kept for
// AUDIT__RETENTION_DAYS and have no foreign key, so they outlive the rows
// they describe.
type AuditEvent struct{ ent.Schema }

func (AuditEvent) Mixin() []ent.Mixin { return []ent.Mixin{timeIDMixin{}, createdMixin{}} }

func (AuditEvent) Fields() []ent.Field {
	return []ent.Field{
		field.Enum("event").Values(
			"register",
			"login_succeeded", "login_failed", "login_throttled",
			"token_refreshed", "refresh_token_reused", "token_family_revoked", "logout",
			"otp_sent", "otp_verified", "otp_failed",
			"register_throttled", "server_busy",
			"password_reset_requested", "password_reset", "password_changed",
			"logout_all", "session_revoked", "user_deleted", "user_imported",
			"refresh_recovered",
		).Immutable(),
		// user_id is the account concerned; nil for a failed login with an
		// unknown address.
		field.UUID("user_id", uuid.UUID{}).Optional().Nillable().Immutable(),
		// reason is a short machine-readable detail, e.g. wrong_password.
		field.String("reason").Optional().MaxLen(64).Immutable(),
	}
}

func (AuditEvent) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("created_at"),
		index.Fields("user_id", "created_at"),
	}
}
