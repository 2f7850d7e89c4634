package server

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Health follows the database within about a second each way, from two
// signals: a probe (a ping with HealthProbeTimeout) every
// HealthProbeInterval, and the outcome of every unit of work and query the
// RPCs run (store.DB.ObserveAvailability), which flips it at once: a
// database failure classified as unavailable turns it NOT_SERVING, a
// success SERVING. The probe alone bounds the error for an idle service to
// an interval plus a timeout; under load the RPCs themselves move it first.
const (
	// HealthProbeInterval is how often the database is pinged: four
	// trivial round trips a second per instance, so that a database that
	// stops answering right after a ping is noticed within an interval and
	// a timeout (750 ms), well inside the second health is allowed.
	HealthProbeInterval = 250 * time.Millisecond
	// HealthProbeTimeout is how long a ping may take before the database
	// counts as not answering.
	HealthProbeTimeout = 500 * time.Millisecond
)

// dbHealth holds the database's state as health reports it, and reports
// each change through set (health's SetServingStatus for the server and
// AuthService) and the log.
type dbHealth struct {
	set func(healthpb.HealthCheckResponse_ServingStatus)
	log *slog.Logger

	// up is read without the lock first: every query reports, and
	// nearly every report changes nothing.
	up atomic.Bool
	mu sync.Mutex
}

func newDBHealth(set func(healthpb.HealthCheckResponse_ServingStatus), log *slog.Logger) *dbHealth {
	h := &dbHealth{set: set, log: log}
	h.up.Store(true)
	return h
}

// observe records an outcome: nil when the database answered, otherwise
// the error that says it was unavailable.
func (h *dbHealth) observe(err error) {
	up := err == nil
	if h.up.Load() == up {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.up.Load() == up {
		return
	}
	h.up.Store(up)
	if up {
		h.log.Info("database reachable again")
		h.set(healthpb.HealthCheckResponse_SERVING)
		return
	}
	h.log.Error("database unreachable", "error", err)
	h.set(healthpb.HealthCheckResponse_NOT_SERVING)
}

// probe pings the database at each tick of ticks until ctx ends, each ping
// within HealthProbeTimeout, and records the outcome.
func (h *dbHealth) probe(ctx context.Context, ticks <-chan time.Time, ping func(context.Context) error) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		pctx, cancel := context.WithTimeout(ctx, HealthProbeTimeout)
		err := ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		h.observe(err)
	}
}
