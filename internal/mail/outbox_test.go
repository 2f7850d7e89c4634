package mail

import (
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

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/outboxmessage"
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

func setup(t *testing.T) (*ent.Client, *smtptest.Server, *testClock) {
	t.Helper()
	return testdb.Open(t).Ent, smtptest.Start(t), &testClock{t: time.Now().UTC()}
}

func newTestDispatcher(t *testing.T, client *ent.Client, s *smtptest.Server, clk *testClock) *Dispatcher {
	sender, err := NewSMTPSender(SMTPConfig{Host: s.Host, Port: s.Port, From: "no-reply@placebrain.test", TLS: TLSNone, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return NewDispatcher(client, sender, DispatcherOptions{Now: clk.Now, BatchSize: 4, Lease: time.Minute})
}

func enqueue(t *testing.T, client *ent.Client, to string, now time.Time) {
	t.Helper()
	err := store.WithTx(context.Background(), client, func(tx *ent.Tx) error {
		return Enqueue(context.Background(), tx, Message{UserID: uuid.New(), To: to, Template: TemplateOTP,
			Data: map[string]string{"code": "123456", "username": "u", "expiresMinutes": "10"}}, now)
	})
	if err != nil {
		t.Fatal(err)
	}
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
	if sent := client.OutboxMessage.Query().Where(outboxmessage.StatusEQ(outboxmessage.StatusSent), outboxmessage.Attempts(1)).CountX(context.Background()); sent != n {
		t.Errorf("sent after one attempt = %d, want %d", sent, n)
	}
}

// A message claimed by a dispatcher that died before recording the outcome
// (a crash or restart) is delivered by another once the lease runs out.
func TestClaimedMessageOfDeadSenderIsRedelivered(t *testing.T) {
	client, s, clk := setup(t)
	enqueue(t, client, "crash@example.com", clk.Now())
	dead := newTestDispatcher(t, client, s, clk)
	claimed, err := dead.claim(context.Background())
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
	m := client.OutboxMessage.Query().OnlyX(context.Background())
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
	sender, err := NewSMTPSender(SMTPConfig{Host: s.Host, Port: s.Port, From: "no-reply@placebrain.test", TLS: TLSNone, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher(client, sender, DispatcherOptions{Now: clk.Now, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	enqueue(t, client, "reject-me@example.com", clk.Now())
	enqueue(t, client, "tempfail-me@example.com", clk.Now())
	if _, err := d.DispatchOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, m := range client.OutboxMessage.Query().AllX(context.Background()) {
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
	sender, err := NewSMTPSender(SMTPConfig{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, From: "a@b.c", TLS: TLSNone, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- sender.Send(context.Background(), Envelope{To: "x@example.com"}, Rendered{Subject: "s", Text: "t", HTML: "h"})
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
	Sender
	cancel context.CancelFunc
}

func (c cancelAfterFirst) Send(ctx context.Context, env Envelope, r Rendered) error {
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
	sender, err := NewSMTPSender(SMTPConfig{Host: s.Host, Port: s.Port, From: "a@b.c", TLS: TLSNone, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := NewDispatcher(client, cancelAfterFirst{sender, cancel}, DispatcherOptions{Now: clk.Now, BatchSize: 3})
	if n, err := d.DispatchOnce(ctx); n != 3 || err != nil {
		t.Fatalf("DispatchOnce = %d, %v", n, err)
	}
	sent := client.OutboxMessage.Query().Where(outboxmessage.StatusEQ(outboxmessage.StatusSent)).CountX(context.Background())
	due := client.OutboxMessage.Query().Where(outboxmessage.StatusEQ(outboxmessage.StatusPending),
		outboxmessage.Attempts(0), outboxmessage.NextAttemptAtLTE(clk.Now())).CountX(context.Background())
	if sent != 1 || due != 2 {
		t.Errorf("sent=%d due-again=%d, want 1 and 2", sent, due)
	}
}
