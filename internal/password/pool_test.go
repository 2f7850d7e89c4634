package password

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// Jobs run on threads below the caller's priority: SCHED_IDLE, or nice 19
// where the kernel refuses it (the caller's thread keeps its own).
func TestPoolWorkersLowestPriority(t *testing.T) {
	type prio struct {
		idle bool // SCHED_IDLE, as far as sched_getattr tells
		nice int
	}
	read := func() prio {
		var p prio
		if a, err := unix.SchedGetAttr(0, 0); err == nil {
			p.idle = a.Policy == unix.SCHED_IDLE
		}
		n, _ := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid()) // 20 - nice
		p.nice = 20 - n
		return p
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	caller := read()
	if caller.idle || caller.nice == 19 {
		t.Skip("the test runs at the lowest priority already")
	}
	var worker prio
	if err := NewPool(1, 0, LowPriority()).Do(context.Background(), "k", func() { worker = read() }); err != nil {
		t.Fatal(err)
	}
	if !worker.idle && worker.nice != 19 {
		t.Errorf("worker thread: SCHED_IDLE %v, nice %d; want SCHED_IDLE or nice 19 (caller: nice %d)", worker.idle, worker.nice, caller.nice)
	}
	if after := read(); after != caller {
		t.Errorf("the caller's thread went from %+v to %+v", caller, after)
	}
}

// waitFor spins until cond holds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
	}
}

// The pool runs at most workers+queue jobs at once and refuses the rest at
// once with ErrBusy.
func TestPoolBoundsAndFailsFast(t *testing.T) {
	ctx := context.Background()
	pool := NewPool(1, 1)
	release := make(chan struct{})
	results := make(chan error, 2)
	for range 2 {
		go func() { results <- pool.Do(ctx, "k", func() { <-release }) }()
	}
	waitFor(t, func() bool { s := pool.Stats(); return s.Running == 1 && s.Waiting == 1 })
	if err := pool.Do(ctx, "k", func() {}); !errors.Is(err, ErrBusy) {
		t.Fatalf("third job: %v, want ErrBusy", err)
	}
	close(release)
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("admitted job: %v", err)
		}
	}
	if err := pool.Do(ctx, "k", func() {}); err != nil {
		t.Errorf("after draining: %v", err)
	}
	if s := pool.Stats(); s.Shed != 1 {
		t.Errorf("shed = %d, want 1", s.Shed)
	}
}

// A free worker takes the key with the least load first: a key with one
// job goes before a key with five waiting, however long those have waited.
func TestPoolServesTheLeastLoadFirst(t *testing.T) {
	ctx := context.Background()
	pool := NewPool(1, 16)
	release := make(chan struct{})
	held := make(chan struct{})
	go pool.Do(ctx, "holder", func() { close(held); <-release })
	<-held
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	add := func(key string) {
		wg.Add(1)
		n := pool.Stats().Waiting
		go func() {
			defer wg.Done()
			pool.Do(ctx, key, func() { mu.Lock(); order = append(order, key); mu.Unlock() })
		}()
		waitFor(t, func() bool { return pool.Stats().Waiting == n+1 })
	}
	for range 5 {
		add("flood")
	}
	add("owner")
	close(release)
	wg.Wait()
	if diff := cmp.Diff([]string{"owner", "flood", "flood", "flood", "flood", "flood"}, order); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// A full queue sheds the newest job of the key with the most load to admit
// a newcomer of a key with less; a newcomer of that key is refused instead.
func TestPoolShedsTheHeaviestKey(t *testing.T) {
	ctx := context.Background()
	pool := NewPool(1, 3)
	release := make(chan struct{})
	held := make(chan struct{})
	go pool.Do(ctx, "holder", func() { close(held); <-release })
	<-held
	results := map[string]chan error{}
	submit := func(name, key string) {
		ch := make(chan error, 1)
		results[name] = ch
		n := pool.Stats().Waiting
		go func() { ch <- pool.Do(ctx, key, func() {}) }()
		if n < 3 {
			waitFor(t, func() bool { return pool.Stats().Waiting == n+1 })
		}
	}
	submit("a1", "a")
	submit("a2", "a")
	submit("b1", "b") // the queue is full now
	if err := pool.Do(ctx, "a", func() {}); !errors.Is(err, ErrBusy) {
		t.Errorf("newcomer of the heaviest key: %v, want ErrBusy", err)
	}
	submit("c1", "c") // sheds a2, the newest of the heaviest key (the holder's job ran: it has served load)
	if err := <-results["a2"]; !errors.Is(err, ErrBusy) {
		t.Errorf("a2 = %v, want ErrBusy (shed)", err)
	}
	close(release)
	for _, name := range []string{"a1", "b1", "c1"} {
		if err := <-results[name]; err != nil {
			t.Errorf("%s = %v", name, err)
		}
	}
}

// A queued job whose context ends stops waiting.
func TestPoolQueuedJobHonoursContext(t *testing.T) {
	pool := NewPool(1, 1)
	release := make(chan struct{})
	go pool.Do(context.Background(), "k", func() { <-release })
	waitFor(t, func() bool { return pool.Stats().Running == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pool.Do(ctx, "k", func() { t.Error("ran a cancelled job") }); !errors.Is(err, context.Canceled) {
		t.Errorf("Do = %v, want context.Canceled", err)
	}
	close(release)
}

// With OwnProcs, GOMAXPROCS rises by the workers while jobs run and is
// back where it was once the last one ended.
func TestPoolOwnProcs(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	pool := NewPool(2, 0, OwnProcs())
	ctx := context.Background()
	release := make(chan struct{})
	during := make(chan int, 2)
	done := make(chan error, 2)
	for range 2 {
		go func() {
			done <- pool.Do(ctx, "k", func() { during <- runtime.GOMAXPROCS(0); <-release })
		}()
	}
	for range 2 {
		if got := <-during; got != base+2 {
			t.Errorf("GOMAXPROCS while hashing = %d, want %d", got, base+2)
		}
	}
	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Errorf("GOMAXPROCS after hashing = %d, want %d", got, base)
	}
	if err := pool.Do(ctx, "k", func() { during <- runtime.GOMAXPROCS(0) }); err != nil || <-during != base+2 {
		t.Errorf("a later job does not get its processors back")
	}
}
