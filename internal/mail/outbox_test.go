package mail_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	"github.com/placebrain/auth/internal/testutil/testdb"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func setup(t *testing.T) (*store.DB, *smtptest.Server, *testClock) {
	t.Helper()
	return testdb.Open(t), smtptest.Start(t), &testClock{t: time.Now().UTC()}
}

// newSealer returns a sealer with a key of fill bytes.
func newSealer(t testing.TB, fill byte) *mail.Sealer {
	t.Helper()
	s, err := mail.NewSealer(bytes.Repeat([]byte{fill}, mail.SealKeySize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testSealer seals the messages enqueue writes and opens them in the
// dispatchers options makes.
var testSealer = func() *mail.Sealer {
	s, err := mail.NewSealer(bytes.Repeat([]byte{1}, mail.SealKeySize))
	if err != nil {
		panic(err)
	}
	return s
}()

// options are the dispatcher's options for the tests: 3 attempts, retries
// after 5 s doubling up to a minute, batches of 4 leased for a minute,
// testSealer's key.
func options(clk *testClock) mail.DispatcherOptions {
	return mail.DispatcherOptions{Now: clk.Now, PollInterval: 50 * time.Millisecond, SendTimeout: 5 * time.Second,
		MaxAttempts: 3, RetryBase: 5 * time.Second, RetryMax: time.Minute, BatchSize: 4, Lease: time.Minute, Sealer: testSealer}
}

func smtpSender(t *testing.T, port int) *mail.SMTPSender {
	t.Helper()
	sender, err := mail.NewSMTPSender(mail.SMTPConfig{Host: "127.0.0.1", Port: port, From: "no-reply@placebrain.test", TLS: mail.TLSNone, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return sender
}

func newTestDispatcher(t *testing.T, db *store.DB, s *smtptest.Server, clk *testClock) *mail.Dispatcher {
	return mail.NewDispatcher(db, smtpSender(t, s.Port), options(clk))
}

// testCode is the code in the messages enqueue writes.
const testCode = "123456"

// enqueue queues a code e-mail to to, sealed by testSealer, and returns
// its id.
func enqueue(t *testing.T, db *store.DB, to string, now time.Time) uuid.UUID {
	t.Helper()
	return enqueueSealed(t, db, testSealer, to, now)
}

// enqueueSealed queues a code e-mail to to, sealed by s, and returns its
// id.
func enqueueSealed(t *testing.T, db *store.DB, s *mail.Sealer, to string, now time.Time) uuid.UUID {
	t.Helper()
	id := uuid.New()
	sealed, err := s.Seal(id, map[string]string{"code": testCode, "expiresMinutes": "10"})
	if err != nil {
		t.Fatal(err)
	}
	err = db.InTx(context.Background(), func(tx auth.Tx) error {
		return tx.EnqueueMail(context.Background(), mail.Message{ID: id, UserID: uuid.New(), To: to, Template: mail.TemplateOTP, Sealed: sealed}, now)
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Several dispatchers (as in several service instances) deliver each
// message exactly once: claims use FOR UPDATE SKIP LOCKED.
func TestConcurrentDispatchersDeliverOnce(t *testing.T) {
	client, s, clk := setup(t)
	const n = 30
	for i := range n {
		enqueue(t, client, fmt.Sprintf("user%d@example.com", i), clk.Now())
	}
	var wg sync.WaitGroup
	for range 3 {
		d := newTestDispatcher(t, client, s, clk)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := d.DispatchOnce(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				if got == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for _, m := range s.Messages() {
		for _, to := range m.To {
			seen[to]++
		}
	}
	if len(seen) != n {
		t.Errorf("distinct recipients = %d, want %d", len(seen), n)
	}
	for to, c := range seen {
		if c != 1 {
			t.Errorf("%s got %d messages", to, c)
		}
	}
	if sent := client.Ent.OutboxMessage.Query().Where(outboxmessage.StatusEQ(outboxmessage.StatusSent), outboxmessage.Attempts(1)).CountX(context.Background()); sent != n {
		t.Errorf("sent after one attempt = %d, want %d", sent, n)
	}
}

// A message claimed by a dispatcher that died before recording the outcome
// (a crash or restart) is delivered by another once the lease runs out.
func TestClaimedMessageOfDeadSenderIsRedelivered(t *testing.T) {
	client, s, clk := setup(t)
	enqueue(t, client, "crash@example.com", clk.Now())
	claimed, err := client.ClaimOutbox(context.Background(), clk.Now(), time.Minute, 4) // a dispatcher that dies
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim = %d, %v", len(claimed), err)
	}
	fresh := newTestDispatcher(t, client, s, clk)
	if n, _ := fresh.DispatchOnce(context.Background()); n != 0 {
		t.Fatalf("claimed message taken again within its lease")
	}
	clk.Advance(time.Minute)
	if n, err := fresh.DispatchOnce(context.Background()); n != 1 || err != nil {
		t.Fatalf("after lease: %d, %v", n, err)
	}
	s.WaitFor(t, "crash@example.com", 5*time.Second)
	m := client.Ent.OutboxMessage.Query().OnlyX(context.Background())
	if m.Status != outboxmessage.StatusSent || m.Attempts != 2 {
		t.Errorf("status=%s attempts=%d", m.Status, m.Attempts)
	}
}

// Run stops when its context ends and delivers woken work promptly.
func TestRunDeliversAndStops(t *testing.T) {
	client, s, clk := setup(t)
	d := newTestDispatcher(t, client, s, clk)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	enqueue(t, client, "run@example.com", clk.Now())
	d.Wake()
	s.WaitFor(t, "run@example.com", 10*time.Second)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// A 5xx reply is final: the message fails at once, and the stored error
// and the log do not hold the address the relay echoed.
func TestPermanentRejectionFailsAtOnce(t *testing.T) {
	client, s, clk := setup(t)
	var logs strings.Builder
	sender, err := mail.NewSMTPSender(mail.SMTPConfig{Host: s.Host, Port: s.Port, From: "no-reply@placebrain.test", TLS: mail.TLSNone, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	o := options(clk)
	o.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	d := mail.NewDispatcher(client, sender, o)
	enqueue(t, client, "reject-me@example.com", clk.Now())
	enqueue(t, client, "tempfail-me@example.com", clk.Now())
	if _, err := d.DispatchOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, m := range client.Ent.OutboxMessage.Query().AllX(context.Background()) {
		want := outboxmessage.StatusPending
		if m.Recipient == "reject-me@example.com" {
			want = outboxmessage.StatusFailed
		}
		if m.Status != want || m.Attempts != 1 {
			t.Errorf("%s: status=%s attempts=%d, want %s after 1", m.Recipient, m.Status, m.Attempts, want)
		}
		if !strings.Contains(m.LastError, "<recipient>") || strings.Contains(m.LastError, "-me@example.com") {
			t.Errorf("last_error = %q", m.LastError)
		}
	}
	if strings.Contains(logs.String(), "-me@example.com") {
		t.Errorf("log holds an address: %s", logs.String())
	}
}

// A relay that accepts the connection and never answers costs one
// timeout, not a stuck dispatcher.
func TestHungRelayTimesOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	sender, err := mail.NewSMTPSender(mail.SMTPConfig{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, From: "a@b.c", TLS: mail.TLSNone, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- sender.Send(context.Background(), mail.Envelope{To: "x@example.com"}, mail.Rendered{Subject: "s", Text: "t", HTML: "h"})
	}()
	select {
	case err := <-done:
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("Send = %v, want a timeout", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Send did not return")
	}
}

// cancelAfterFirst cancels the dispatcher's context during the first
// delivery, as a shutdown would.
type cancelAfterFirst struct {
	mail.Sender
	cancel context.CancelFunc
}

func (c cancelAfterFirst) Send(ctx context.Context, env mail.Envelope, r mail.Rendered) error {
	c.cancel()
	return c.Sender.Send(ctx, env, r)
}

// On shutdown the delivery in progress finishes and the rest of the batch
// is handed back at once, not held for the lease.
func TestShutdownReleasesTheBatch(t *testing.T) {
	client, s, clk := setup(t)
	for i := range 3 {
		enqueue(t, client, fmt.Sprintf("batch%d@example.com", i), clk.Now())
	}
	sender, err := mail.NewSMTPSender(mail.SMTPConfig{Host: s.Host, Port: s.Port, From: "a@b.c", TLS: mail.TLSNone, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := options(clk)
	o.BatchSize = 3
	d := mail.NewDispatcher(client, cancelAfterFirst{sender, cancel}, o)
	if n, err := d.DispatchOnce(ctx); n != 3 || err != nil {
		t.Fatalf("DispatchOnce = %d, %v", n, err)
	}
	sent := client.Ent.OutboxMessage.Query().Where(outboxmessage.StatusEQ(outboxmessage.StatusSent)).CountX(context.Background())
	due := client.Ent.OutboxMessage.Query().Where(outboxmessage.StatusEQ(outboxmessage.StatusPending),
		outboxmessage.Attempts(0), outboxmessage.NextAttemptAtLTE(clk.Now())).CountX(context.Background())
	if sent != 1 || due != 2 {
		t.Errorf("sent=%d due-again=%d, want 1 and 2", sent, due)
	}
}

// While the relay is down a message waits and is retried with backoff;
// once it is up the message is delivered, and its data erased.
func TestOutboxSurvivesSMTPOutage(t *testing.T) {
	db, _, clk := setup(t)
	ctx := context.Background()
	port := smtptest.FreePort(t)
	d := mail.NewDispatcher(db, smtpSender(t, port), options(clk))
	enqueue(t, db, "olga@example.com", clk.Now())
	if _, err := d.DispatchOnce(ctx); err != nil {
		t.Fatal(err)
	}
	m := db.Ent.OutboxMessage.Query().OnlyX(ctx)
	if m.Status != outboxmessage.StatusPending || m.Attempts != 1 || m.LastError == "" || !m.NextAttemptAt.After(clk.Now()) {
		t.Fatalf("after failed delivery: status=%s attempts=%d last_error=%q next=%v", m.Status, m.Attempts, m.LastError, m.NextAttemptAt)
	}
	// Not due yet: nothing is claimed.
	if n, _ := d.DispatchOnce(ctx); n != 0 {
		t.Errorf("claimed %d before the retry delay", n)
	}

	// SMTP comes up; after the backoff the e-mail is delivered.
	s := smtptest.StartOn(t, port)
	clk.Advance(5 * time.Second)
	if n, err := d.DispatchOnce(ctx); n != 1 || err != nil {
		t.Fatalf("DispatchOnce after the delay = %d, %v", n, err)
	}
	s.WaitFor(t, "olga@example.com", 5*time.Second)
	m = db.Ent.OutboxMessage.Query().OnlyX(ctx)
	if m.Status != outboxmessage.StatusSent || m.Attempts != 2 || len(m.Data) != 0 || m.SealedData != nil {
		t.Errorf("after delivery: status=%s attempts=%d data=%d keys sealed=%d bytes", m.Status, m.Attempts, len(m.Data), len(m.SealedData))
	}
	if got := len(s.Messages()); got != 1 {
		t.Errorf("messages delivered = %d, want 1", got)
	}
}

// After MaxAttempts failed deliveries a message fails for good, loses its
// data and is never claimed again.
func TestOutboxGivesUpAfterMaxAttempts(t *testing.T) {
	db, _, clk := setup(t)
	ctx := context.Background()
	d := mail.NewDispatcher(db, smtpSender(t, smtptest.FreePort(t)), options(clk))
	enqueue(t, db, "pia@example.com", clk.Now())
	for range 3 { // MaxAttempts
		if _, err := d.DispatchOnce(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute)
	}
	m := db.Ent.OutboxMessage.Query().OnlyX(ctx)
	if m.Status != outboxmessage.StatusFailed || m.Attempts != 3 || len(m.Data) != 0 || m.SealedData != nil {
		t.Fatalf("status=%s attempts=%d data=%d keys sealed=%d bytes", m.Status, m.Attempts, len(m.Data), len(m.SealedData))
	}
	if n, _ := d.DispatchOnce(ctx); n != 0 {
		t.Errorf("failed message claimed again")
	}
}

// A message sealed under another key (the secret was rotated while it
// waited) fails at once with the reason, is never retried, and its sealed
// data are erased; the log names the message.
func TestKeyChangeFailsAtOnce(t *testing.T) {
	db, s, clk := setup(t)
	ctx := context.Background()
	var logs strings.Builder
	o := options(clk)
	o.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	d := mail.NewDispatcher(db, smtpSender(t, s.Port), o)
	id := enqueueSealed(t, db, newSealer(t, 2), "rotated@example.com", clk.Now())
	if n, err := d.DispatchOnce(ctx); n != 1 || err != nil {
		t.Fatalf("DispatchOnce = %d, %v", n, err)
	}
	m := db.Ent.OutboxMessage.GetX(ctx, id)
	if m.Status != outboxmessage.StatusFailed || m.Attempts != 1 || m.SealedData != nil {
		t.Errorf("status=%s attempts=%d sealed=%d bytes, want failed after 1 attempt, erased", m.Status, m.Attempts, len(m.SealedData))
	}
	if !strings.Contains(m.LastError, "payload cannot be decrypted: the key changed") {
		t.Errorf("last_error = %q", m.LastError)
	}
	clk.Advance(time.Hour)
	if n, err := d.DispatchOnce(ctx); n != 0 || err != nil {
		t.Errorf("DispatchOnce later = %d, %v: the message was retried", n, err)
	}
	if got := len(s.Messages()); got != 0 {
		t.Errorf("messages delivered = %d, want 0", got)
	}
	if !strings.Contains(logs.String(), id.String()) || !strings.Contains(logs.String(), "failed for good") {
		t.Errorf("log does not report the message's failure by id:\n%s", logs.String())
	}
}

// Sealed data copied onto another message do not open there: that
// message fails at once, and nothing is sent to its recipient.
func TestMovedPayloadFailsAtOnce(t *testing.T) {
	db, s, clk := setup(t)
	ctx := context.Background()
	from := enqueue(t, db, "owner@example.com", clk.Now())
	to := enqueue(t, db, "thief@example.com", clk.Now())
	db.Ent.OutboxMessage.UpdateOneID(to).SetSealedData(db.Ent.OutboxMessage.GetX(ctx, from).SealedData).ExecX(ctx)
	if n, err := newTestDispatcher(t, db, s, clk).DispatchOnce(ctx); n != 2 || err != nil {
		t.Fatalf("DispatchOnce = %d, %v", n, err)
	}
	m := db.Ent.OutboxMessage.GetX(ctx, to)
	if m.Status != outboxmessage.StatusFailed || !strings.Contains(m.LastError, "payload cannot be decrypted") {
		t.Errorf("moved payload: status=%s last_error=%q", m.Status, m.LastError)
	}
	if got := s.To("thief@example.com"); len(got) != 0 {
		t.Errorf("the moved payload was sent")
	}
	s.WaitFor(t, "owner@example.com", 5*time.Second)
}

// A message queued before sealing (its data in clear in data, nothing in
// sealed_data) is still delivered, and its data erased.
func TestPlainDataOfEarlierMessageIsDelivered(t *testing.T) {
	db, s, clk := setup(t)
	ctx := context.Background()
	m := db.Ent.OutboxMessage.Create().
		SetUserID(uuid.New()).
		SetRecipient("early@example.com").
		SetTemplate(mail.TemplateOTP).
		SetData(map[string]string{"code": "654321", "username": "early", "expiresMinutes": "10"}).
		SetCreatedAt(clk.Now()).
		SetNextAttemptAt(clk.Now()).
		SaveX(ctx)
	if n, err := newTestDispatcher(t, db, s, clk).DispatchOnce(ctx); n != 1 || err != nil {
		t.Fatalf("DispatchOnce = %d, %v", n, err)
	}
	got := s.WaitFor(t, "early@example.com", 5*time.Second)
	if !strings.Contains(string(got.Email.Text), "654321") || !strings.Contains(string(got.Email.HTML), "654321") {
		t.Errorf("e-mail lacks the code:\n%s", got.Email.Text)
	}
	m = db.Ent.OutboxMessage.GetX(ctx, m.ID)
	if m.Status != outboxmessage.StatusSent || len(m.Data) != 0 {
		t.Errorf("after delivery: status=%s data=%d keys", m.Status, len(m.Data))
	}
}
