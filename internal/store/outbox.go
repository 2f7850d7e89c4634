package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/internal/mail"
)

// EnqueueMail implements auth.Tx: it writes m to the outbox under m's id,
// its data sealed as they come (sealed_data; data stays empty), due at at.
func (t *Tx) EnqueueMail(ctx context.Context, m mail.Message, at time.Time) error {
	if err := m.Validate(); err != nil {
		return err
	}
	c := t.c.OutboxMessage.Create()
	if !m.ExpiresAt.IsZero() {
		c.SetExpiresAt(m.ExpiresAt)
	}
	err := c.
		SetID(m.ID).
		SetUserID(m.UserID).
		SetRecipient(m.To).
		SetTemplate(m.Template).
		SetSealedData(m.Sealed).
		SetCreatedAt(at).
		SetNextAttemptAt(at).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("mail: enqueue: %w", err)
	}
	return nil
}

// ClaimOutbox implements mail.Outbox.
func (db *DB) ClaimOutbox(ctx context.Context, now time.Time, lease time.Duration, n int) ([]mail.Pending, error) {
	var claimed []mail.Pending
	err := db.withTx(ctx, func(tx *Tx) error {
		msgs, err := tx.c.OutboxMessage.Query().
			Where(outboxmessage.StatusEQ(outboxmessage.StatusPending), outboxmessage.NextAttemptAtLTE(now)).
			Order(ent.Asc(outboxmessage.FieldNextAttemptAt)).
			Limit(n).
			Modify(skipLocked()).
			All(ctx)
		if err != nil || len(msgs) == 0 {
			return err
		}
		ids := make([]uuid.UUID, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
			claimed = append(claimed, mail.Pending{ID: m.ID, UserID: m.UserID, Recipient: m.Recipient,
				Template: m.Template, Sealed: m.SealedData, Data: m.Data, Attempts: m.Attempts + 1, ExpiresAt: m.ExpiresAt})
		}
		return tx.c.OutboxMessage.Update().
			Where(outboxmessage.IDIn(ids...)).
			AddAttempts(1).
			SetNextAttemptAt(now.Add(lease)).
			Exec(ctx)
	})
	if err != nil {
		return nil, err
	}
	return claimed, nil
}

// stillClaimed updates m while the claim is still the one the caller holds:
// pending, with the claim's attempts.
func (db *DB) stillClaimed(m mail.Pending) *ent.OutboxMessageUpdate {
	return db.Ent.OutboxMessage.Update().
		Where(outboxmessage.ID(m.ID), outboxmessage.Attempts(m.Attempts), outboxmessage.StatusEQ(outboxmessage.StatusPending))
}

// RecordDelivery implements mail.Outbox. Sent and failed messages lose
// their data, sealed or in clear (it may hold a code).
func (db *DB) RecordDelivery(ctx context.Context, m mail.Pending, o mail.Outcome) (bool, error) {
	upd := db.stillClaimed(m)
	switch o.Status {
	case mail.StatusSent:
		upd.SetStatus(outboxmessage.StatusSent).SetSentAt(o.At).ClearData().ClearSealedData().ClearLastError()
	case mail.StatusFailed, mail.StatusExpired:
		upd.SetStatus(outboxmessage.StatusFailed).ClearData().ClearSealedData().SetLastError(o.LastError)
	default:
		upd.SetNextAttemptAt(o.NextAttemptAt).SetLastError(o.LastError)
	}
	n, err := upd.Save(ctx)
	if err != nil {
		return false, fmt.Errorf("outbox: record delivery: %w", err)
	}
	return n == 1, nil
}

// RenewOutbox implements mail.Outbox: one statement per message, each
// only while the claim holds.
func (db *DB) RenewOutbox(ctx context.Context, msgs []mail.Pending, until time.Time) ([]uuid.UUID, error) {
	var lost []uuid.UUID
	for _, m := range msgs {
		n, err := db.stillClaimed(m).SetNextAttemptAt(until).Save(ctx)
		if err != nil {
			return lost, fmt.Errorf("outbox: renew lease: %w", err)
		}
		if n == 0 {
			lost = append(lost, m.ID)
		}
	}
	return lost, nil
}

// ReleaseOutbox implements mail.Outbox.
func (db *DB) ReleaseOutbox(ctx context.Context, m mail.Pending, now time.Time) error {
	err := db.stillClaimed(m).
		SetAttempts(m.Attempts - 1).
		SetNextAttemptAt(now).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("outbox: release: %w", err)
	}
	return nil
}

var _ mail.Outbox = (*DB)(nil)
