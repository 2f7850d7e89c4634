package password

import (
	"context"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Pool runs password hashing on a fixed number of workers with a bounded
// queue that is shared fairly between keys (Login and Register key their
// jobs by account and, when known, by the end user's address): the workers
// take the keys with waiting jobs in turn, so a flood on many keys delays
// a newcomer by one job per key ahead of it, and a flood on one key delays
// nobody else. When the queue is full a newcomer is not refused while some
// key has more jobs waiting than the newcomer's own: the newest waiting job
// of the heaviest key is shed instead (it gets ErrBusy).
//
// With LowPriority each worker owns an OS thread in Linux's SCHED_IDLE
// class (or at nice 19 where that is refused), the lowest scheduling
// priority: while hashing saturates the CPU, the kernel runs cheap RPCs
// (token validation, look-ups) first, preempting a hash as soon as one
// wakes (the README's Performance section compares SCHED_IDLE with nice
// 19).
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
	workers     int
	queue       int // waiting jobs allowed
	ownProcs    bool
	lowPriority bool

	mu      sync.Mutex
	ready   *sync.Cond
	keys    []string          // keys with waiting jobs, in the order of their turns
	waiting map[string][]*job // per key, oldest first
	nwait   int
	seq     uint64
	running int // jobs taken by workers
	active  int // jobs handed to the pool and not yet done (OwnProcs)
	base    int // GOMAXPROCS before the pool raised it
	shed    int // jobs shed so far
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

// job is one waiting or running hashing job.
type job struct {
	fn  func()
	key string
	seq uint64
	// done is closed when fn has run, or with shed set when the job was
	// shed from the queue.
	done chan struct{}
	shed bool
}

// NewPool starts workers workers (at least 1) and admits at most queue
// waiting jobs beyond the ones they run.
func NewPool(workers, queue int, opts ...PoolOption) *Pool {
	p := &Pool{workers: max(workers, 1), queue: max(queue, 0), waiting: map[string][]*job{}}
	p.ready = sync.NewCond(&p.mu)
	for _, o := range opts {
		o(p)
	}
	for range p.workers {
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
	for {
		p.mu.Lock()
		for p.nwait == 0 {
			p.ready.Wait()
		}
		j := p.next()
		p.running++
		p.mu.Unlock()
		j.fn()
		p.mu.Lock()
		p.running--
		p.mu.Unlock()
		close(j.done)
	}
}

// next takes the oldest job of the key whose turn it is; the key goes to
// the back of the line if it has more. p.mu is held and a job waits.
func (p *Pool) next() *job {
	key := p.keys[0]
	p.keys = p.keys[1:]
	q := p.waiting[key]
	j := q[0]
	if len(q) == 1 {
		delete(p.waiting, key)
	} else {
		p.waiting[key] = q[1:]
		p.keys = append(p.keys, key)
	}
	p.nwait--
	return j
}

// Do runs fn on a worker for key and waits for it. It returns ErrBusy when
// the pool cannot take the job (the queue is full and no other key has
// more jobs waiting than key) or the job was shed from the queue for a
// newcomer of a lighter key, and the context's error if ctx ends while fn
// still waits; once started, fn runs to the end.
func (p *Pool) Do(ctx context.Context, key string, fn func()) error {
	j := &job{fn: fn, key: key, done: make(chan struct{})}
	p.mu.Lock()
	if p.running+p.nwait >= p.workers+p.queue && !p.shedFor(key) {
		p.shed++
		p.mu.Unlock()
		return ErrBusy
	}
	p.seq++
	j.seq = p.seq
	if len(p.waiting[key]) == 0 {
		p.keys = append(p.keys, key)
	}
	p.waiting[key] = append(p.waiting[key], j)
	p.nwait++
	p.startedLocked()
	p.ready.Signal()
	p.mu.Unlock()
	defer p.ended()

	select {
	case <-j.done:
	case <-ctx.Done():
		p.mu.Lock()
		removed := p.remove(j)
		p.mu.Unlock()
		if removed {
			return ctx.Err()
		}
		<-j.done // a worker took it: it runs to the end
	}
	if j.shed {
		return ErrBusy
	}
	return nil
}

// shedFor makes room for a newcomer of key by shedding a waiting job of a
// key that has more jobs waiting than key has: of the heaviest such keys,
// the newest job, so jobs that have waited longest keep their place. It
// reports whether it shed one. p.mu is held.
func (p *Pool) shedFor(key string) bool {
	own := len(p.waiting[key])
	var victim *job
	heaviest := own
	for k, q := range p.waiting {
		if k == key || len(q) <= own || len(q) < heaviest {
			continue
		}
		if newest := q[len(q)-1]; len(q) > heaviest || victim == nil || newest.seq > victim.seq {
			victim, heaviest = newest, len(q)
		}
	}
	if victim == nil {
		return false
	}
	p.remove(victim)
	victim.shed = true
	p.shed++
	close(victim.done)
	return true
}

// remove takes j out of the queue; false when it is not waiting (a worker
// took it). p.mu is held.
func (p *Pool) remove(j *job) bool {
	q := p.waiting[j.key]
	for i, w := range q {
		if w != j {
			continue
		}
		q = append(q[:i:i], q[i+1:]...)
		p.nwait--
		if len(q) > 0 {
			p.waiting[j.key] = q
			return true
		}
		delete(p.waiting, j.key)
		for k, key := range p.keys {
			if key == j.key {
				p.keys = append(p.keys[:k:k], p.keys[k+1:]...)
				break
			}
		}
		return true
	}
	return false
}

// Stats are the pool's numbers now.
type Stats struct {
	// Waiting and Running are the jobs queued and being run.
	Waiting, Running int
	// Shed counts the jobs refused or shed with ErrBusy since the start.
	Shed int
}

// Stats returns the pool's numbers now.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Waiting: p.nwait, Running: p.running, Shed: p.shed}
}

// startedLocked and ended count the jobs handed to the pool and not yet
// done and, with OwnProcs, raise GOMAXPROCS when the first arrives and
// restore it when the last ends. They run on the callers' goroutines,
// never on a worker's thread: GOMAXPROCS stops the world until it returns,
// and a SCHED_IDLE thread could wait a long time for a CPU while normal
// work keeps them busy. startedLocked runs with p.mu held.
func (p *Pool) startedLocked() {
	if !p.ownProcs {
		return
	}
	if p.active++; p.active == 1 {
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
	if p.active--; p.active == 0 {
		runtime.GOMAXPROCS(p.base)
	}
}
