package store

import (
	"context"
	"fmt"
	"time"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/internal/mail"
)

// OutboxBacklog returns what the outbox holds at now, for metrics: two
// statements outside any transaction, each a range of the (status,
// next_attempt_at) index, which sent and failed messages stay out of.
func (db *DB) OutboxBacklog(ctx context.Context, now time.Time) (mail.Backlog, error) {
	pending := db.Ent.OutboxMessage.Query().Where(outboxmessage.StatusEQ(outboxmessage.StatusPending))
	n, err := pending.Clone().Count(ctx)
	if err != nil {
		return mail.Backlog{}, fmt.Errorf("outbox backlog: count: %w", err)
	}
	b := mail.Backlog{Pending: n}
	if n == 0 {
		return b, nil
	}
	oldest, err := pending.Where(outboxmessage.NextAttemptAtLTE(now)).
		Order(ent.Asc(outboxmessage.FieldNextAttemptAt)).
		Select(outboxmessage.FieldNextAttemptAt).
		First(ctx)
	switch {
	case ent.IsNotFound(err):
	case err != nil:
		return mail.Backlog{}, fmt.Errorf("outbox backlog: oldest due: %w", err)
	default:
		b.OldestDue = oldest.NextAttemptAt
	}
	return b, nil
}
