package password

import (
	"context"
	"runtime"

	"golang.org/x/sys/unix"
)

// Pool runs password hashing on a fixed number of workers with a bounded
// queue. Each worker owns an OS thread at the lowest scheduling priority
// (nice 19), so that while hashing saturates the CPU the kernel still runs
// cheap RPCs (token validation, look-ups) first; the caller raises
// GOMAXPROCS by Workers so those workers never take the Go scheduler's
// processors away from the rest (see ExtraProcs).
type Pool struct {
	jobs  chan job
	slots chan struct{}
}

type job struct {
	fn   func()
	done chan struct{}
}

// NewPool starts workers workers (at least 1) and admits at most queue
// waiting jobs beyond them.
func NewPool(workers, queue int) *Pool {
	if workers < 1 {
		workers = 1
	}
	if queue < 0 {
		queue = 0
	}
	p := &Pool{jobs: make(chan job), slots: make(chan struct{}, workers+queue)}
	for range workers {
		go p.work()
	}
	return p
}

func (p *Pool) work() {
	// The goroutine keeps its thread for good, so the lowered priority
	// stays with this work only.
	runtime.LockOSThread()
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
	for j := range p.jobs {
		j.fn()
		close(j.done)
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
	select {
	case p.jobs <- j:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-j.done
	return nil
}
