// Package mail delivers e-mail through a transactional outbox: callers
// write an outbox row in the same transaction as the state the message
// announces (Enqueue), and the Dispatcher sends due rows over SMTP with
// retries and backoff. No RPC waits for SMTP, and nothing is lost when the
// relay is down or the process restarts.
package mail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/internal/store"
)

// Message is an e-mail to queue.
type Message struct {
	// UserID is the recipient's account, for logs (never the address).
	UserID uuid.UUID
	// To is the recipient's address.
	To string
	// Template names an embedded template (TemplateOTP).
	Template string
	// Data are the template's values. They may hold a secret such as a
	// code; they are erased once the message is sent or failed.
	Data map[string]string
}

// Enqueue writes m to the outbox in tx, due at now.
func Enqueue(ctx context.Context, tx *ent.Tx, m Message, now time.Time) error {
	if _, ok := subjects[m.Template]; !ok {
		return fmt.Errorf("mail: unknown template %q", m.Template)
	}
	err := tx.OutboxMessage.Create().
		SetUserID(m.UserID).
		SetRecipient(m.To).
		SetTemplate(m.Template).
		SetData(m.Data).
		SetCreatedAt(now).
		SetNextAttemptAt(now).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("mail: enqueue: %w", err)
	}
	return nil
}

// DispatcherOptions configure a Dispatcher.
type DispatcherOptions struct {
	// PollInterval is how often to look for due messages when not woken.
	PollInterval time.Duration
	// MaxAttempts is how many deliveries a message gets before it is
	// marked failed.
	MaxAttempts int
	// RetryBase is the delay after the first failure; it doubles per
	// failure up to RetryMax.
	RetryBase, RetryMax time.Duration
	// SendTimeout is the sender's bound on one delivery.
	SendTimeout time.Duration
	// Lease is how long a claimed batch stays invisible to other
	// dispatchers; a message whose sender died is due again after it. By
	// default BatchSize*SendTimeout plus 30 s, so a batch is always
	// finished within its lease.
	Lease time.Duration
	// BatchSize is how many messages one claim takes.
	BatchSize int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	Log *slog.Logger
}

// Dispatcher sends due outbox messages. Several instances of the service
// may run one each: claims use FOR UPDATE SKIP LOCKED, and a claim moves
// next_attempt_at one lease ahead, so each message goes to one sender at a
// time.
type Dispatcher struct {
	db     *ent.Client
	sender Sender
	o      DispatcherOptions
	wake   chan struct{}
}

// NewDispatcher returns a dispatcher that sends through sender.
func NewDispatcher(db *ent.Client, sender Sender, o DispatcherOptions) *Dispatcher {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 5 * time.Second
	}
	if o.RetryMax < o.RetryBase {
		o.RetryMax = o.RetryBase
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 10
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 15 * time.Second
	}
	if o.Lease <= 0 {
		o.Lease = time.Duration(o.BatchSize)*o.SendTimeout + 30*time.Second
	}
	return &Dispatcher{db: db, sender: sender, o: o, wake: make(chan struct{}, 1)}
}

// Wake asks the dispatcher to look for due messages now. It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run dispatches until ctx is done, then returns after the delivery in
// progress, if any, has finished.
func (d *Dispatcher) Run(ctx context.Context) {
	t := time.NewTicker(d.o.PollInterval)
	defer t.Stop()
	for {
		for {
			n, err := d.DispatchOnce(ctx)
			if err != nil && ctx.Err() == nil {
				d.o.Log.Error("outbox dispatch", "error", err)
			}
			if n < d.o.BatchSize || err != nil || ctx.Err() != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-t.C:
		}
	}
}

// DispatchOnce claims up to BatchSize due messages and delivers them. It
// returns how many it claimed.
func (d *Dispatcher) DispatchOnce(ctx context.Context) (int, error) {
	if ctx.Err() != nil {
		return 0, nil
	}
	claimed, err := d.claim(ctx)
	if err != nil {
		return 0, err
	}
	for i, m := range claimed {
		if ctx.Err() != nil {
			// Shutting down: hand the rest of the batch back at once
			// instead of holding it for the lease.
			d.release(claimed[i:])
			break
		}
		// A started delivery and its bookkeeping finish even when
		// shutting down.
		d.deliver(context.WithoutCancel(ctx), m)
	}
	return len(claimed), nil
}

// release makes claimed but unsent messages due again, undoing their
// claim's attempt.
func (d *Dispatcher) release(msgs []*ent.OutboxMessage) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, m := range msgs {
		err := d.db.OutboxMessage.Update().
			Where(outboxmessage.ID(m.ID), outboxmessage.Attempts(m.Attempts), outboxmessage.StatusEQ(outboxmessage.StatusPending)).
			SetAttempts(m.Attempts - 1).
			SetNextAttemptAt(d.o.Now().UTC()).
			Exec(ctx)
		if err != nil {
			d.o.Log.Warn("outbox: release claimed message", "message_id", m.ID, "error", err)
		}
	}
}

// claim takes due messages for this dispatcher: one attempt is counted and
// next_attempt_at moves a lease ahead, in one transaction.
func (d *Dispatcher) claim(ctx context.Context) ([]*ent.OutboxMessage, error) {
	var claimed []*ent.OutboxMessage
	err := store.WithTx(ctx, d.db, func(tx *ent.Tx) error {
		now := d.o.Now().UTC()
		msgs, err := tx.OutboxMessage.Query().
			Where(outboxmessage.StatusEQ(outboxmessage.StatusPending), outboxmessage.NextAttemptAtLTE(now)).
			Order(ent.Asc(outboxmessage.FieldNextAttemptAt)).
			Limit(d.o.BatchSize).
			Modify(store.SkipLocked()).
			All(ctx)
		if err != nil || len(msgs) == 0 {
			return err
		}
		ids := make([]uuid.UUID, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
			m.Attempts++
		}
		claimed = msgs
		return tx.OutboxMessage.Update().
			Where(outboxmessage.IDIn(ids...)).
			AddAttempts(1).
			SetNextAttemptAt(now.Add(d.o.Lease)).
			Exec(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("mail: claim: %w", err)
	}
	return claimed, nil
}

// deliver sends one claimed message and records the outcome. The outcome
// is written only while the claim is still this dispatcher's (same attempt
// count, still pending), so a dispatcher that overran its lease cannot
// overwrite the result of the one that took the message over.
func (d *Dispatcher) deliver(ctx context.Context, m *ent.OutboxMessage) {
	log := d.o.Log.With("message_id", m.ID, "template", m.Template, "attempt", m.Attempts)
	if m.UserID != nil {
		log = log.With("user_id", *m.UserID)
	}
	r, err := render(m.Template, m.Data)
	if err == nil {
		err = d.sender.Send(ctx, Envelope{To: m.Recipient, UserID: m.UserID, Data: m.Data}, r)
	}
	now := d.o.Now().UTC()
	upd := d.db.OutboxMessage.Update().
		Where(outboxmessage.ID(m.ID), outboxmessage.Attempts(m.Attempts), outboxmessage.StatusEQ(outboxmessage.StatusPending))
	var permanent PermanentError
	switch {
	case err == nil:
		upd.SetStatus(outboxmessage.StatusSent).SetSentAt(now).ClearData().ClearLastError()
		log.Info("email sent")
	case errors.As(err, &permanent) || m.Attempts >= d.o.MaxAttempts:
		reason := redact(err, m.Recipient)
		upd.SetStatus(outboxmessage.StatusFailed).ClearData().SetLastError(reason)
		log.Error("email failed for good", "error", reason, "permanent", errors.As(err, &permanent))
	default:
		reason := redact(err, m.Recipient)
		delay := RetryDelay(m.Attempts, d.o.RetryBase, d.o.RetryMax)
		upd.SetNextAttemptAt(now.Add(delay)).SetLastError(reason)
		log.Warn("email delivery failed; will retry", "error", reason, "retry_in", delay.String())
	}
	n, err := upd.Save(ctx)
	switch {
	case err != nil:
		log.Error("outbox: record delivery outcome", "error", err)
	case n == 0:
		log.Warn("outbox: claim lost before the outcome was recorded")
	}
}

// redact returns err's text, at most 1024 bytes, with the recipient's
// address replaced: relays echo it in their replies, and addresses stay out
// of logs.
func redact(err error, recipient string) string {
	s := err.Error()
	if recipient != "" {
		s = regexp.MustCompile("(?i)"+regexp.QuoteMeta(recipient)).ReplaceAllString(s, "<recipient>")
	}
	return truncate(s, 1024)
}

// RetryDelay is the wait after the attempt-th failed delivery (1-based):
// base, 2*base, 4*base, ... capped at max.
func RetryDelay(attempt int, base, max time.Duration) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	f := float64(base) * math.Pow(2, float64(attempt-1))
	if f > float64(max) {
		return max
	}
	return time.Duration(f)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
