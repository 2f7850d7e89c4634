package password

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"golang.org/x/crypto/bcrypt"
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
	if err := NewPool(1, 0, LowPriority()).Do(context.Background(), func() { worker = read() }); err != nil {
		t.Fatal(err)
	}
	if !worker.idle && worker.nice != 19 {
		t.Errorf("worker thread: SCHED_IDLE %v, nice %d; want SCHED_IDLE or nice 19 (caller: nice %d)", worker.idle, worker.nice, caller.nice)
	}
	if after := read(); after != caller {
		t.Errorf("the caller's thread went from %+v to %+v", caller, after)
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
		go func() { results <- pool.Do(ctx, func() { <-release }) }()
	}
	for len(pool.slots) < 2 { // one job runs, one waits
		runtime.Gosched()
	}
	if err := pool.Do(ctx, func() {}); !errors.Is(err, ErrBusy) {
		t.Fatalf("third job: %v, want ErrBusy", err)
	}
	close(release)
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("admitted job: %v", err)
		}
	}
	if err := pool.Do(ctx, func() {}); err != nil {
		t.Errorf("after draining: %v", err)
	}
	h, err := NewHasher(bcrypt.MinCost, pool)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := h.Hash(ctx, "pooled password")
	if err != nil || h.Compare(ctx, hash, "pooled password") != nil || !errors.Is(h.CompareDummy(ctx, "x"), ErrMismatch) {
		t.Errorf("hashing through the pool: %v", err)
	}
}

// A queued job whose context ends stops waiting.
func TestPoolQueuedJobHonoursContext(t *testing.T) {
	pool := NewPool(1, 1)
	release := make(chan struct{})
	go pool.Do(context.Background(), func() { <-release })
	for len(pool.slots) < 1 {
		runtime.Gosched()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pool.Do(ctx, func() { t.Error("ran a cancelled job") }); !errors.Is(err, context.Canceled) {
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
			done <- pool.Do(ctx, func() { during <- runtime.GOMAXPROCS(0); <-release })
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
	if err := pool.Do(ctx, func() { during <- runtime.GOMAXPROCS(0) }); err != nil || <-during != base+2 {
		t.Errorf("a later job does not get its processors back")
	}
}
