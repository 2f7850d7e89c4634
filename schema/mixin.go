package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/mixin"
	"github.com/google/uuid"
)

// idMixin gives an entity a random UUID primary key.
type idMixin struct{ mixin.Schema }

func (idMixin) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New).Immutable(),
	}
}

// timeIDMixin gives an entity of the write-heavy tables (refresh tokens,
// token families, audit events) a time-ordered UUIDv7 primary key (RFC 9562
// §5.7): new rows append to the end of the primary-key index instead of
// landing on a random page. The service makes these ids with
// auth.NewRowID, an identical function.
type timeIDMixin struct{ mixin.Schema }

func (timeIDMixin) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(newTimeID).Immutable(),
	}
}

func newTimeID() uuid.UUID { return uuid.Must(uuid.NewV7()) }

// createdMixin records when a row was created (UTC).
type createdMixin struct{ mixin.Schema }

func (createdMixin) Fields() []ent.Field {
	return []ent.Field{
		field.Time("created_at").Default(now).Immutable(),
	}
}

func now() time.Time { return time.Now().UTC() }
