package password

import (
	"context"
	"math"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Pool runs password hashing on a fixed number of workers with a bounded
// queue shared fairly between keys (Login keys its jobs by account;
// Register shares one key). A key's load is how many jobs it has asked
// for lately, refused ones included (each counting less as it ages, with
// a half-life of LoadHalfLife), plus the jobs it has waiting, and:
//
//   - a free worker takes the oldest job of the waiting key with the least
//     load, so a key that seldom hashes (an owner signing in) goes before
//     keys that hash all the time (a flood over many accounts), however
//     many they are, and flooding keys take turns among themselves;
//   - when the queue is full, a newcomer is not refused while a waiting key
//     has more load than the newcomer's: that key's newest waiting job is
//     shed instead (it gets ErrBusy). A flood's callers, who retry, soon
//     have more load than the keys they would shed, so they are refused
//     instead of churning the queue.
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
	waiting map[string][]*job // per key, oldest first
	asked   map[string]*asked
	nwait   int
	submits int // since asked was last swept
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

// LoadHalfLife is how fast the memory of a key's jobs fades.
const LoadHalfLife = time.Minute

// asked counts the jobs a key asked for lately, decayed to at.
type asked struct {
	n  float64
	at time.Time
}

// value is a decayed to now (0 for a key that never asked).
func (a *asked) value(now time.Time) float64 {
	if a == nil {
		return 0
	}
	return a.n * math.Exp2(-float64(now.Sub(a.at))/float64(LoadHalfLife))
}

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
	p := &Pool{workers: max(workers, 1), queue: max(queue, 0), waiting: map[string][]*job{}, asked: map[string]*asked{}}
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

// load is key's load at now. p.mu is held.
func (p *Pool) load(key string, now time.Time) float64 {
	return p.asked[key].value(now) + float64(len(p.waiting[key]))
}

// ask counts a job key asked for. p.mu is held.
func (p *Pool) ask(key string, now time.Time) {
	a := p.asked[key]
	if a == nil {
		a = &asked{}
		p.asked[key] = a
	}
	a.n, a.at = a.value(now)+1, now
	p.sweep(now)
}

// next takes the oldest job of the waiting key with the least load (ties:
// the oldest job). p.mu is held and a job waits.
func (p *Pool) next() *job {
	now := time.Now()
	var pick *job
	least := math.Inf(1)
	for k, q := range p.waiting {
		if l := p.load(k, now); l < least || (l == least && q[0].seq < pick.seq) {
			pick, least = q[0], l
		}
	}
	p.remove(pick)
	return pick
}

// heaviest returns the newest waiting job of the key with the most load,
// if that is more than own; nil otherwise. p.mu is held.
func (p *Pool) heaviest(key string, own float64, now time.Time) *job {
	var victim *job
	for k, q := range p.waiting {
		if l := p.load(k, now); k != key && l > own {
			victim, own = q[len(q)-1], l
		}
	}
	return victim
}

// sweep now and then forgets keys whose jobs have faded from memory and
// that have nothing waiting. p.mu is held.
func (p *Pool) sweep(now time.Time) {
	if p.submits++; p.submits < 1024 {
		return
	}
	p.submits = 0
	for k, a := range p.asked {
		if a.value(now) < 0.01 && len(p.waiting[k]) == 0 {
			delete(p.asked, k)
		}
	}
}

// Do runs fn on a worker for key and waits for it. It returns ErrBusy when
// the pool cannot take the job (the queue is full and no waiting key has
// more load than key would with the job waiting) or the job was shed from
// the queue for a newcomer of a key with less load, and the context's error
// if ctx ends while fn still waits; once started, fn runs to the end.
func (p *Pool) Do(ctx context.Context, key string, fn func()) error {
	j := &job{fn: fn, key: key, done: make(chan struct{})}
	p.mu.Lock()
	now := time.Now()
	p.ask(key, now)
	if p.running+p.nwait >= p.workers+p.queue && !p.shedFor(key, now) {
		p.shed++
		p.mu.Unlock()
		return ErrBusy
	}
	p.seq++
	j.seq = p.seq
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

// Admits reports whether Do would take a job of key now (a free place, or
// a waiting job of a key with more load, which it would shed). A caller
// asks before any other work, so that a job the pool would refuse costs
// next to nothing (a refusal counts in key's load); Do may still refuse
// it later.
func (p *Pool) Admits(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.running+p.nwait < p.workers+p.queue || p.heaviest(key, p.load(key, now)+1, now) != nil {
		return true
	}
	p.ask(key, now)
	p.shed++
	return false
}

// shedFor makes room for a newcomer of key (counted in its load) by
// shedding the newest waiting job of the key with the most load, if that is
// more than key's with the newcomer waiting; it reports whether it did.
// p.mu is held.
func (p *Pool) shedFor(key string, now time.Time) bool {
	victim := p.heaviest(key, p.load(key, now)+1, now)
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
