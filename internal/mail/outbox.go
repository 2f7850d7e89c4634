// Package mail delivers e-mail through a transactional outbox: callers
// write an outbox row in the same transaction as the state the message
// announces (internal/store's EnqueueMail), and the Dispatcher sends due rows over SMTP with
// retries and backoff. No RPC waits for SMTP, and nothing is lost when the
// relay is down or the process restarts. A message's template data, which
// may hold a code, are sealed by the caller (Sealer) and opened only by
// the Dispatcher, just before rendering.
package mail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Message is an e-mail to queue. Its template data travel sealed (see
// Sealer): the outbox never holds them in clear.
type Message struct {
	// ID is the outbox message's id, chosen by the caller: the sealed
	// data are bound to it.
	ID uuid.UUID
	// UserID is the recipient's account, for logs (never the address).
	UserID uuid.UUID
	// To is the recipient's address.
	To string
	// Template names an embedded template (TemplateOTP).
	Template string
	// Sealed are the template's values sealed for ID (Sealer.Seal). They
	// may hold a secret such as a code; they are erased once the message
	// is sent or failed.
	Sealed []byte
	// ExpiresAt is when the code the message carries expires; the message
	// is not sent after it. Zero: it carries nothing that expires.
	ExpiresAt time.Time
}

// Validate reports a message that names no embedded template, has no id or
// carries no sealed data.
func (m Message) Validate() error {
	if _, ok := subjects[m.Template]; !ok {
		return fmt.Errorf("mail: unknown template %q", m.Template)
	}
	if m.ID == uuid.Nil {
		return errors.New("mail: message has no id")
	}
	if len(m.Sealed) == 0 {
		return errors.New("mail: message data are not sealed")
	}
	return nil
}

// Pending is a claimed outbox message.
type Pending struct {
	ID uuid.UUID
	// UserID is the recipient's account; nil when there is none.
	UserID    *uuid.UUID
	Recipient string
	Template  string
	// Sealed are the template's values sealed for ID (Sealer.Seal).
	Sealed []byte
	// Data are the template's values in clear, as messages queued before
	// sealing carry them (nil for the others).
	Data map[string]string
	// Attempts counts delivery attempts, this claim's included.
	Attempts int
	// ExpiresAt is when the message's code expires; nil when it carries
	// none (or was queued before the column existed).
	ExpiresAt *time.Time
}

// Status is where a message stands.
type Status int

const (
	// StatusPending is due at its next attempt.
	StatusPending Status = iota
	// StatusSent was delivered.
	StatusSent
	// StatusFailed failed for good.
	StatusFailed
	// StatusExpired was not sent because its code had expired, or would
	// have before the next attempt; it is stored as failed.
	StatusExpired
)

// ErrCodeExpired is the last_error of a message whose code expired before
// it could be delivered.
const ErrCodeExpired = "code expired before delivery"

// Outcome is what a delivery attempt leaves on a message.
type Outcome struct {
	Status Status
	// At is when the attempt ended (the sent time when sent).
	At time.Time
	// NextAttemptAt is when a pending message is due again.
	NextAttemptAt time.Time
	// LastError is the failure, redacted; "" when sent.
	LastError string
}

// Outbox is the outbox table as the dispatcher sees it; internal/store
// implements it. Sent and failed messages keep no data.
type Outbox interface {
	// ClaimOutbox takes up to n pending messages due at now for one sender:
	// in one transaction it counts an attempt on each and moves its next
	// attempt a lease ahead, so no other sender takes it meanwhile (FOR
	// UPDATE SKIP LOCKED on PostgreSQL). Oldest due first.
	ClaimOutbox(ctx context.Context, now time.Time, lease time.Duration, n int) ([]Pending, error)
	// RenewOutbox moves the next attempt of claimed messages to until,
	// each only while its claim is still the caller's; it returns the ids
	// whose claim was lost (another sender took the message over).
	RenewOutbox(ctx context.Context, msgs []Pending, until time.Time) (lost []uuid.UUID, err error)
	// RecordDelivery writes the outcome of a claimed message, only while
	// the claim is still the caller's (the message is pending with the
	// attempts of the claim); false when it was not.
	RecordDelivery(ctx context.Context, m Pending, o Outcome) (bool, error)
	// ReleaseOutbox hands a claimed, unsent message back: due at now, the
	// claim's attempt undone, while the claim is still the caller's.
	ReleaseOutbox(ctx context.Context, m Pending, now time.Time) error
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
	// Lease is how long a claimed message stays invisible to other
	// dispatchers; the dispatcher renews the leases of its batch's unsent
	// messages every third of it, so a message whose sender died is due
	// again within a lease. DefaultLease when zero.
	Lease time.Duration
	// BatchSize is how many messages one claim takes.
	BatchSize int
	// Sealer opens the messages' sealed data. A message it cannot open
	// (the key changed) fails at once.
	Sealer *Sealer
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	Log *slog.Logger
	// Delivered, when set, is told the outcome of each delivery attempt
	// (for metrics): StatusSent, StatusPending (it failed and will be
	// retried) or StatusFailed (it failed for good).
	Delivered func(Status)
	// Renew returns the ticks at which the leases of a batch's unsent
	// messages are renewed, every d (a time.Ticker's when nil; a test's
	// channel).
	Renew func(d time.Duration) <-chan time.Time
	// TraceDelivery, when set, is called as each delivery attempt starts
	// (for tracing): it returns the context the attempt runs in and the
	// function to call with its outcome when it ends.
	TraceDelivery func(ctx context.Context, m Pending) (context.Context, func(Outcome))
}

// Dispatcher sends due outbox messages. Several instances of the service
// may run one each: claims use FOR UPDATE SKIP LOCKED, and a claim moves
// next_attempt_at one lease ahead, so each message goes to one sender at a
// time.
type Dispatcher struct {
	db     Outbox
	sender Sender
	o      DispatcherOptions
	wake   chan struct{}
}

// DefaultBatchSize is how many messages one claim takes unless
// DispatcherOptions.BatchSize says otherwise.
const DefaultBatchSize = 10

// DefaultLease is a claimed message's lease unless DispatcherOptions.Lease
// says otherwise: renewed every third of it while its sender lives, so
// another instance sends the message within about 20 s of its sender's
// death.
const DefaultLease = 20 * time.Second

// NewDispatcher returns a dispatcher that sends through sender. The
// options' PollInterval, MaxAttempts, RetryBase, RetryMax and SendTimeout
// must be positive (the configuration's OUTBOX__ and SMTP__ sections), and
// Sealer set.
func NewDispatcher(db Outbox, sender Sender, o DispatcherOptions) *Dispatcher {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Delivered == nil {
		o.Delivered = func(Status) {}
	}
	if o.TraceDelivery == nil {
		o.TraceDelivery = func(ctx context.Context, _ Pending) (context.Context, func(Outcome)) {
			return ctx, func(Outcome) {}
		}
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.Renew == nil {
		// A ticker nobody references any more is collected, stopped or
		// not (Go 1.23 and later).
		o.Renew = func(d time.Duration) <-chan time.Time { return time.NewTicker(d).C }
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

// DispatchOnce claims up to BatchSize due messages and delivers them,
// renewing the leases of the batch's unsent messages every third of a
// lease meanwhile; a message whose claim was lost (its lease ran out and
// another sender took it) is skipped. It returns how many it claimed.
func (d *Dispatcher) DispatchOnce(ctx context.Context) (int, error) {
	if ctx.Err() != nil {
		return 0, nil
	}
	claimed, err := d.claim(ctx)
	if err != nil || len(claimed) == 0 {
		return 0, err
	}
	b := &batch{left: slices.Clone(claimed), lost: map[uuid.UUID]bool{}}
	renewCtx, stopRenew := context.WithCancel(context.WithoutCancel(ctx))
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		d.renew(renewCtx, b)
	}()
	defer func() { stopRenew(); <-renewed }()
	for i, m := range claimed {
		if ctx.Err() != nil {
			// Shutting down: hand the rest of the batch back at once
			// instead of holding it for the lease.
			d.release(claimed[i:])
			break
		}
		// A message after the batch's first starts with its lease
		// renewed, and not at all when its claim was lost meanwhile.
		if b.start(m) && (i == 0 || d.holdLease(ctx, m)) {
			// A started delivery and its bookkeeping finish even when
			// shutting down.
			d.deliver(context.WithoutCancel(ctx), m)
		}
		b.done(m)
	}
	return len(claimed), nil
}

// holdLease renews m's lease before its delivery starts; false when the
// claim was lost (another sender took m over) or could not be renewed (m
// is then due again when its lease ends).
func (d *Dispatcher) holdLease(ctx context.Context, m Pending) bool {
	lost, err := d.db.RenewOutbox(ctx, []Pending{m}, d.o.Now().UTC().Add(d.o.Lease))
	if err != nil {
		d.o.Log.Warn("outbox: renew lease", "message_id", m.ID, "error", err)
		return false
	}
	if len(lost) > 0 {
		d.o.Log.Info("outbox: claim lost to another sender; skipped", "message_id", m.ID)
		return false
	}
	return true
}

// batch is a claimed batch's messages not yet delivered (the one being
// delivered included), and those whose claim was lost.
type batch struct {
	mu   sync.Mutex
	left []Pending
	lost map[uuid.UUID]bool
}

// start reports whether m is still this dispatcher's to deliver.
func (b *batch) start(m Pending) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.lost[m.ID]
}

// done removes m from the messages whose leases are renewed.
func (b *batch) done(m Pending) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.left = slices.DeleteFunc(b.left, func(p Pending) bool { return p.ID == m.ID })
}

// renew renews the leases of b's messages at each of the Renew ticks,
// until ctx ends.
func (d *Dispatcher) renew(ctx context.Context, b *batch) {
	ticks := d.o.Renew(d.o.Lease / 3)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		b.mu.Lock()
		left := slices.Clone(b.left)
		b.mu.Unlock()
		if len(left) == 0 {
			continue
		}
		lost, err := d.db.RenewOutbox(ctx, left, d.o.Now().UTC().Add(d.o.Lease))
		if err != nil {
			if ctx.Err() == nil {
				d.o.Log.Warn("outbox: renew leases", "error", err)
			}
			continue
		}
		b.mu.Lock()
		for _, id := range lost {
			b.lost[id] = true
		}
		b.mu.Unlock()
	}
}

// release makes claimed but unsent messages due again, undoing their
// claim's attempt.
func (d *Dispatcher) release(msgs []Pending) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, m := range msgs {
		if err := d.db.ReleaseOutbox(ctx, m, d.o.Now().UTC()); err != nil {
			d.o.Log.Warn("outbox: release claimed message", "message_id", m.ID, "error", err)
		}
	}
}

// claim takes due messages for this dispatcher.
func (d *Dispatcher) claim(ctx context.Context) ([]Pending, error) {
	claimed, err := d.db.ClaimOutbox(ctx, d.o.Now().UTC(), d.o.Lease, d.o.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("mail: claim: %w", err)
	}
	return claimed, nil
}

// deliver sends one claimed message and records the outcome. The outcome
// is written only while the claim is still this dispatcher's (same attempt
// count, still pending), so a dispatcher that overran its lease cannot
// overwrite the result of the one that took the message over.
func (d *Dispatcher) deliver(ctx context.Context, m Pending) {
	ctx, traced := d.o.TraceDelivery(ctx, m)
	log := d.o.Log.With("message_id", m.ID, "template", m.Template, "attempt", m.Attempts)
	if m.UserID != nil {
		log = log.With("user_id", *m.UserID)
	}
	var err error
	expired := m.ExpiresAt != nil && !d.o.Now().Before(*m.ExpiresAt)
	if !expired {
		var data map[string]string
		if data, err = d.open(m); err == nil {
			var r Rendered
			if r, err = render(m.Template, data); err == nil {
				err = d.sender.Send(ctx, Envelope{ID: m.ID, To: m.Recipient, UserID: m.UserID, Data: data}, r)
			}
		}
	}
	now := d.o.Now().UTC()
	o := Outcome{Status: StatusPending, At: now}
	var permanent PermanentError
	var delay time.Duration
	if err != nil {
		delay = RetryDelay(m.Attempts, d.o.RetryBase, d.o.RetryMax)
	}
	switch {
	case expired:
		o.Status, o.LastError = StatusExpired, ErrCodeExpired
		log.WarnContext(ctx, "email not sent: its code expired")
	case err == nil:
		o.Status = StatusSent
		log.InfoContext(ctx, "email sent")
	case m.ExpiresAt != nil && !now.Add(delay).Before(*m.ExpiresAt) && !errors.As(err, &permanent):
		// The retry schedule ends within the code's lifetime.
		o.Status, o.LastError = StatusExpired, ErrCodeExpired+": "+redact(err, m.Recipient)
		log.ErrorContext(ctx, "email failed: its code expires before the next attempt", "error", o.LastError)
	case errors.As(err, &permanent) || m.Attempts >= d.o.MaxAttempts:
		o.Status, o.LastError = StatusFailed, redact(err, m.Recipient)
		log.ErrorContext(ctx, "email failed for good", "error", o.LastError, "permanent", errors.As(err, &permanent))
	default:
		o.NextAttemptAt, o.LastError = now.Add(delay), redact(err, m.Recipient)
		log.WarnContext(ctx, "email delivery failed; will retry", "error", o.LastError, "retry_in", delay.String())
	}
	ok, err := d.db.RecordDelivery(ctx, m, o)
	switch {
	case err != nil:
		log.ErrorContext(ctx, "outbox: record delivery outcome", "error", err)
	case !ok:
		log.WarnContext(ctx, "outbox: claim lost before the outcome was recorded")
	}
	// Told after the outcome is recorded, so whoever counts it then
	// finds the row in its new state.
	d.o.Delivered(o.Status)
	traced(o)
}

// open returns m's template values: its sealed data opened, or the data
// in clear of a message queued before sealing. Sealed data that do not
// open (the key changed, or they were altered) are a PermanentError:
// retrying cannot open them.
func (d *Dispatcher) open(m Pending) (map[string]string, error) {
	if len(m.Sealed) == 0 {
		return m.Data, nil
	}
	if d.o.Sealer == nil {
		return nil, PermanentError{errors.New("payload cannot be decrypted: the dispatcher has no key")}
	}
	data, err := d.o.Sealer.Open(m.ID, m.Sealed)
	if err != nil {
		return nil, PermanentError{err}
	}
	return data, nil
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
