package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// result is one scenario at one concurrency.
type result struct {
	Scenario      string
	Conc          int
	OK, Errors    int64
	RPS           float64 // successful calls per second
	P50, P95, P99 time.Duration
	ErrSample     string
	// ServerCPU is authd's CPU time (user+system, all threads) per
	// successful call; for a ceiling measured without authd, its idle
	// CPU per call of that ceiling.
	ServerCPU time.Duration
	// ClientCPU is this load tool's CPU time per successful call (the
	// gRPC client, or the direct SQL of a ceiling).
	ClientCPU time.Duration
	// DBCPU is the PostgreSQL server processes' CPU time per successful
	// call (0 on SQLite, whose CPU is the caller's).
	DBCPU time.Duration
	// Syscalls is authd's read and write system calls per successful call.
	Syscalls float64
}

// call performs one request for worker w (0 <= w < conc).
type call func(ctx context.Context, w int) error

// tally accumulates the calls of one scenario over one or more timed runs.
type tally struct {
	hist       *hdrhistogram.Histogram // latencies in µs
	ok, errors int64
	elapsed    time.Duration
	cpu        time.Duration // authd's CPU time over the runs
	selfCPU    time.Duration // this process's CPU time over the runs
	dbCPU      time.Duration // PostgreSQL's CPU time over the runs
	syscalls   int64         // authd's read and write system calls over the runs
	sample     string        // one error message
}

func newTally() *tally {
	return &tally{hist: hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)}
}

func (t *tally) merge(o *tally) {
	t.hist.Merge(o.hist)
	t.ok += o.ok
	t.errors += o.errors
	t.elapsed += o.elapsed
	t.cpu += o.cpu
	t.selfCPU += o.selfCPU
	t.dbCPU += o.dbCPU
	t.syscalls += o.syscalls
	if t.sample == "" {
		t.sample = o.sample
	}
}

func (t *tally) result(name string, conc int) result {
	return result{
		Scenario: name, Conc: conc, OK: t.ok, Errors: t.errors,
		RPS:       float64(t.ok) / t.elapsed.Seconds(),
		P50:       time.Duration(t.hist.ValueAtQuantile(50)) * time.Microsecond,
		P95:       time.Duration(t.hist.ValueAtQuantile(95)) * time.Microsecond,
		P99:       time.Duration(t.hist.ValueAtQuantile(99)) * time.Microsecond,
		ErrSample: t.sample,
		ServerCPU: t.cpu / time.Duration(max(t.ok, 1)),
		ClientCPU: t.selfCPU / time.Duration(max(t.ok, 1)),
		DBCPU:     t.dbCPU / time.Duration(max(t.ok, 1)),
		Syscalls:  float64(t.syscalls) / float64(max(t.ok, 1)),
	}
}

// cpuMeter reads the server's cumulative CPU time.
type cpuMeter func() time.Duration

// dbMeter reads the database server's cumulative CPU time: postgresCPU
// while a PostgreSQL backend is measured, else nothing.
var dbMeter cpuMeter = func() time.Duration { return 0 }

// sysMeter reads authd's read and write system calls so far.
var sysMeter = func() int64 { return 0 }

// drive runs conc workers calling fn back to back for d and measures each
// call's latency and the server's CPU time (cpu may be nil).
func drive(ctx context.Context, name string, conc int, d time.Duration, fn call, cpu cpuMeter) result {
	return run(ctx, conc, d, fn, cpu).result(name, conc)
}

// alternate measures a scenario and its ceilings (calls, the scenario
// first) in turn, rounds slices of d/rounds each, so that whatever drifts on the machine during the run
// (PostgreSQL checkpoints and autovacuum, growing tables, other load)
// weighs on both alike.
func alternate(ctx context.Context, conc int, d time.Duration, rounds int, calls []call, cpu cpuMeter) []*tally {
	ts := make([]*tally, len(calls))
	for i := range ts {
		ts[i] = newTally()
	}
	slice := d / time.Duration(rounds)
	for range rounds {
		for i, fn := range calls {
			ts[i].merge(run(ctx, conc, slice, fn, cpu))
		}
	}
	return ts
}

func run(ctx context.Context, conc int, d time.Duration, fn call, cpu cpuMeter) *tally {
	if cpu == nil {
		cpu = func() time.Duration { return 0 }
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		t      = newTally()
		ok     atomic.Int64
		fails  atomic.Int64
		sample atomic.Value
	)
	start, cpu0, self0, db0, sys0 := time.Now(), cpu(), selfCPU(), dbMeter(), sysMeter()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
			for ctx.Err() == nil {
				t0 := time.Now()
				err := fn(ctx, w)
				if err != nil && (ctx.Err() != nil || !time.Now().Before(deadline)) {
					break // cut off by the deadline: not a result
				}
				_ = h.RecordValue(time.Since(t0).Microseconds())
				if err != nil {
					fails.Add(1)
					sample.CompareAndSwap(nil, err.Error())
					if errors.Is(err, errStop) {
						break
					}
					continue
				}
				ok.Add(1)
			}
			mu.Lock()
			t.hist.Merge(h)
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.elapsed, t.cpu, t.selfCPU, t.dbCPU, t.syscalls = time.Since(start), cpu()-cpu0, selfCPU()-self0, dbMeter()-db0, sysMeter()-sys0
	t.ok, t.errors = ok.Load(), fails.Load()
	if s, _ := sample.Load().(string); s != "" {
		t.sample = s
	}
	return t
}

// errStop ends a worker (it ran out of prepared data).
var errStop = errors.New("worker out of data")

// selfCPU is this process's CPU time so far, user and system.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
