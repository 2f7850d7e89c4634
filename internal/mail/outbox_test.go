package mail

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/testutil/testdb"
	"github.com/placebrain/auth/internal/testutil/smtptest"
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

func newTestDispatcher(client *ent.Client, s *smtptest.Server, clk *testClock) *Dispatcher {
	return NewDispatcher(client, NewSMTPSender(SMTPConfig{Host: s.Host, Port: s.Port, From: "no-reply@placebrain.test", TLS: TLSNone, Timeout: 5 * time.Second}),
		DispatcherOptions{Now: clk.Now, BatchSize: 4, Lease: time.Minute})
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
		d := newTestDispatcher(client, s, clk)
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
	dead := newTestDispatcher(client, s, clk)
	claimed, err := dead.claim(context.Background())
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim = %d, %v", len(claimed), err)
	}
	fresh := newTestDispatcher(client, s, clk)
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
	d := newTestDispatcher(client, s, clk)
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
