package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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
}

// call performs one request for worker w (0 <= w < conc).
type call func(ctx context.Context, w int) error

// drive runs conc workers calling fn back to back for d and measures each
// call's latency.
func drive(ctx context.Context, name string, conc int, d time.Duration, fn call) result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		all       = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
		ok, fails atomic.Int64
		sample    atomic.Value
	)
	start := time.Now()
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
						return
					}
					continue
				}
				ok.Add(1)
			}
			mu.Lock()
			all.Merge(h)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := result{
		Scenario: name, Conc: conc, OK: ok.Load(), Errors: fails.Load(),
		RPS: float64(ok.Load()) / elapsed.Seconds(),
		P50: time.Duration(all.ValueAtQuantile(50)) * time.Microsecond,
		P95: time.Duration(all.ValueAtQuantile(95)) * time.Microsecond,
		P99: time.Duration(all.ValueAtQuantile(99)) * time.Microsecond,
	}
	if s, _ := sample.Load().(string); s != "" {
		r.ErrSample = s
	}
	return r
}

// errStop ends a worker (it ran out of prepared data).
var errStop = errors.New("worker out of data")
