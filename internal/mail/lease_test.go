package mail_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/mail"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/testutil/smtptest"
)

// enqueueExpiring queues a code e-mail to to whose code expires at
// expires, and returns its id.
func enqueueExpiring(t *testing.T, db *store.DB, to string, now, expires time.Time) uuid.UUID {
	t.Helper()
	id := uuid.New()
	sealed, err := testSealer.Seal(id, map[string]string{"code": testCode, "expiresMinutes": "10"})
	if err != nil {
		t.Fatal(err)
	}
	err = db.InTx(context.Background(), func(tx auth.Tx) error {
		return tx.EnqueueMail(context.Background(), mail.Message{ID: id, UserID: uuid.New(), To: to, Template: mail.TemplateOTP,
			Sealed: sealed, ExpiresAt: expires}, now)
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// heldSender is an SMTP sender whose first Send waits, once it started,
// until release is closed: a dispatcher stuck mid-delivery, or one that
// stops renewing its leases because it died.
type heldSender struct {
	next    mail.Sender
	started chan struct{}
	release chan struct{}
	once    sync.Once
	// held is the recipient of the held message, set before started is
	// closed.
	held string
}

func (h *heldSender) Send(ctx context.Context, env mail.Envelope, r mail.Rendered) error {
	first := false
	h.once.Do(func() { first = true })
	if first {
		h.held = env.To
		close(h.started)
		<-h.release
	}
	return h.next.Send(ctx, env, r)
}

// A dispatcher's leases hold while it renews them; once it stops (dies),
// another sends its messages after one lease, and the first one's late
// delivery of its message in flight is the only copy, with the same
// Message-ID; its outcome is not recorded and it skips the rest.
func TestLeaseHandover(t *testing.T) {
	db, s, clk := setup(t)
	t0 := clk.Now()
	ids := map[string]uuid.UUID{
		"first@example.com":  enqueue(t, db, "first@example.com", t0),
		"second@example.com": enqueue(t, db, "second@example.com", t0),
	}

	held := &heldSender{next: smtpSender(t, s.Port), started: make(chan struct{}), release: make(chan struct{})}
	renewA := make(chan time.Time)
	oa := options(clk)
	oa.Lease = mail.DefaultLease
	oa.Renew = func(time.Duration) <-chan time.Time { return renewA }
	a := mail.NewDispatcher(db, held, oa)
	ob := options(clk)
	ob.Lease = mail.DefaultLease
	b := mail.NewDispatcher(db, smtpSender(t, s.Port), ob)

	aDone := make(chan struct{})
	go func() {
		defer close(aDone)
		if n, err := a.DispatchOnce(context.Background()); n != 2 || err != nil {
			t.Errorf("A: claimed %d, %v; want 2", n, err)
		}
	}()
	<-held.started // A is sending the first message
	clk.Advance(20 * time.Second)
	renewA <- time.Now() // A renews: due at t0+50s
	renewA <- time.Now() // (taken once the renewal is done)
	clk.Advance(15 * time.Second)
	if n, err := b.DispatchOnce(context.Background()); n != 0 || err != nil {
		t.Fatalf("B within A's renewed lease: claimed %d, %v; want 0", n, err)
	}
	// A dies: no more renewals. One lease later B takes both.
	clk.Advance(mail.DefaultLease)
	if n, err := b.DispatchOnce(context.Background()); n != 2 || err != nil {
		t.Fatalf("B after A's lease: claimed %d, %v; want 2", n, err)
	}
	s.WaitFor(t, "first@example.com", 5*time.Second)
	s.WaitFor(t, "second@example.com", 5*time.Second)
	close(held.release) // A's stuck delivery goes out after all
	<-aDone

	inFlight, other := held.held, "first@example.com"
	if inFlight == other {
		other = "second@example.com"
	}
	copies := s.To(inFlight)
	if len(copies) != 2 {
		t.Fatalf("the message A held: %d copies, want 2 (B's and A's late one)", len(copies))
	}
	want := "<" + ids[inFlight].String() + "@placebrain.test>"
	for _, c := range copies {
		if got := c.Email.Headers.Get("Message-Id"); got != want {
			t.Errorf("Message-ID %q, want %q", got, want)
		}
	}
	if n := len(s.To(other)); n != 1 {
		t.Errorf("the other message: %d copies, want 1 (A skips a message whose claim it lost)", n)
	}
	for _, m := range db.Ent.OutboxMessage.Query().AllX(context.Background()) {
		if m.Status != outboxmessage.StatusSent || m.Attempts != 2 {
			t.Errorf("message %s: status %s, attempts %d; want sent by B's claim (2)", m.ID, m.Status, m.Attempts)
		}
	}
}

// A message whose code has expired is not sent: it fails with that
// reason, counted as expired.
func TestExpiredCodeNotSent(t *testing.T) {
	db, s, clk := setup(t)
	var outcomes []mail.Status
	o := options(clk)
	o.Delivered = func(st mail.Status) { outcomes = append(outcomes, st) }
	d := mail.NewDispatcher(db, smtpSender(t, s.Port), o)
	enqueueExpiring(t, db, "late@example.com", clk.Now(), clk.Now().Add(10*time.Minute))
	clk.Advance(10 * time.Minute) // the dispatcher was down meanwhile
	if n, err := d.DispatchOnce(context.Background()); n != 1 || err != nil {
		t.Fatalf("DispatchOnce: %d, %v", n, err)
	}
	if got := len(s.Messages()); got != 0 {
		t.Errorf("%d messages sent with an expired code", got)
	}
	m := db.Ent.OutboxMessage.Query().OnlyX(context.Background())
	if m.Status != outboxmessage.StatusFailed || m.LastError != mail.ErrCodeExpired || len(m.SealedData) != 0 {
		t.Errorf("status %s, last error %q, sealed %d bytes; want failed, %q, erased", m.Status, m.LastError, len(m.SealedData), mail.ErrCodeExpired)
	}
	if len(outcomes) != 1 || outcomes[0] != mail.StatusExpired || mail.OutcomeName(outcomes[0]) != "expired" {
		t.Errorf("outcomes %v, want one expired", outcomes)
	}
}

// Retries end within the code's lifetime: with the relay down and
// attempts to spare, the message fails as expired rather than being
// retried after its code expires.
func TestRetryScheduleEndsWithinCodeLifetime(t *testing.T) {
	db, _, clk := setup(t)
	o := options(clk)
	o.MaxAttempts, o.RetryBase, o.RetryMax = 100, 5*time.Second, 10*time.Minute
	d := mail.NewDispatcher(db, smtpSender(t, smtptest.FreePort(t)), o)
	expires := clk.Now().Add(10 * time.Minute)
	enqueueExpiring(t, db, "down@example.com", clk.Now(), expires)
	ctx := context.Background()
	for i := 0; ; i++ {
		if i > 20 {
			t.Fatal("still retrying after 20 attempts")
		}
		if _, err := d.DispatchOnce(ctx); err != nil {
			t.Fatal(err)
		}
		m := db.Ent.OutboxMessage.Query().OnlyX(ctx)
		if m.Status != outboxmessage.StatusPending {
			if m.Status != outboxmessage.StatusFailed || !strings.HasPrefix(m.LastError, mail.ErrCodeExpired) {
				t.Errorf("status %s, last error %q; want failed as expired", m.Status, m.LastError)
			}
			return
		}
		if !m.NextAttemptAt.Before(expires) {
			t.Fatalf("attempt %d: next attempt at %v, after the code expires at %v", m.Attempts, m.NextAttemptAt, expires)
		}
		clk.Advance(m.NextAttemptAt.Sub(clk.Now()))
	}
}
