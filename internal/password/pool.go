package password

import (
	"context"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Pool runs password hashing on a fixed number of workers with a bounded
// queue. With LowPriority each worker owns an OS thread in Linux's
// SCHED_IDLE class (or at nice 19 where that is refused), the lowest
// scheduling priority: while hashing saturates the CPU, the kernel runs
// cheap RPCs (token validation, look-ups) first, preempting a hash as soon
// as one wakes (the README's Performance section compares SCHED_IDLE with
// nice 19).
//
// The price: SCHED_IDLE has no aging. While normal-priority work keeps
// every CPU busy (a flood of cheap RPCs, or other processes on the host),
// hashing nearly stops; logins wait, the queue fills, and further logins
// are refused with ErrBusy at once. A Go stop-the-world (garbage
// collection) must also wait for a hashing thread to take its preemption
// signal, which on a host saturated by other processes can lengthen the
// pause. Give authd CPUs of its own (a container CPU request) in
// production. With OwnProcs the workers also never take the Go
// scheduler's processors away from the rest.
type Pool struct {
	jobs  chan job
	slots chan struct{}

	workers     int
	ownProcs    bool
	lowPriority bool
	mu          sync.Mutex
	running     int // jobs running now
	base        int // GOMAXPROCS before the pool raised it
}

// PoolOption configures a Pool.
type PoolOption func(*Pool)

// OwnProcs makes the pool raise GOMAXPROCS by its number of workers while
// any job runs and lower it back when the last one ends. Hashing then has
// processors of its own instead of holding the ones RPCs run on for whole
// time slices; and while no one hashes there are no extra idle
// processors, each of which makes the Go scheduler wake a sleeping thread
// more often (the README's Performance section gives the cost). Each
// change stops the world for microseconds, at most twice per busy period.
func OwnProcs() PoolOption { return func(p *Pool) { p.ownProcs = true } }

// LowPriority runs each worker on an OS thread of its own in SCHED_IDLE
// (nice 19 where that is refused); see Pool.
func LowPriority() PoolOption { return func(p *Pool) { p.lowPriority = true } }

type job struct {
	fn   func()
	done chan struct{}
}

// NewPool starts workers workers (at least 1) and admits at most queue
// waiting jobs beyond them.
func NewPool(workers, queue int, opts ...PoolOption) *Pool {
	if workers < 1 {
		workers = 1
	}
	if queue < 0 {
		queue = 0
	}
	p := &Pool{jobs: make(chan job), slots: make(chan struct{}, workers+queue), workers: workers}
	for _, o := range opts {
		o(p)
	}
	for range workers {
		go p.work()
	}
	return p
}

func (p *Pool) work() {
	if p.lowPriority {
		// The goroutine keeps its thread for good, so the lowered
		// priority stays with this work only. Pid 0 is the calling
		// thread.
		runtime.LockOSThread()
		if unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_IDLE}, 0) != nil {
			_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
		}
	}
	for j := range p.jobs {
		j.fn()
		close(j.done)
	}
}

// started and ended count the jobs handed to the pool and not yet done
// and, with OwnProcs, raise GOMAXPROCS when the first arrives and restore
// it when the last ends. They run on the callers' goroutines, never on a
// worker's thread: GOMAXPROCS stops the world until it returns, and a
// SCHED_IDLE thread could wait a long time for a CPU while normal work
// keeps them busy.
func (p *Pool) started() {
	if !p.ownProcs {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running++; p.running == 1 {
		p.base = runtime.GOMAXPROCS(0)
		runtime.GOMAXPROCS(p.base + p.workers)
	}
}

func (p *Pool) ended() {
	if !p.ownProcs {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running--; p.running == 0 {
		runtime.GOMAXPROCS(p.base)
	}
}

// Do runs fn on a worker and waits for it. It returns ErrBusy at once when
// the workers and the queue are all taken, and the context's error if ctx
// ends while fn still waits for a worker; once started, fn runs to the end.
func (p *Pool) Do(ctx context.Context, fn func()) error {
	release, err := p.Acquire()
	if err != nil {
		return err
	}
	defer release()
	return p.run(ctx, fn)
}

// Acquire takes a place among the workers and the queue without waiting:
// ErrBusy when there is none. Callers take it before any other work, so
// that a refused request costs next to nothing. The returned function gives
// the place back.
func (p *Pool) Acquire() (func(), error) {
	select {
	case p.slots <- struct{}{}:
		return func() { <-p.slots }, nil
	default:
		return nil, ErrBusy
	}
}

// run runs fn on a worker, for a caller holding a place.
func (p *Pool) run(ctx context.Context, fn func()) error {
	j := job{fn: fn, done: make(chan struct{})}
	p.started()
	defer p.ended()
	select {
	case p.jobs <- j:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-j.done
	return nil
}
