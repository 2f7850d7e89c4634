package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The probe and the RPCs' outcomes move health; only changes are
// reported.
func TestDBHealthSignals(t *testing.T) {
	var got []healthpb.HealthCheckResponse_ServingStatus
	h := newDBHealth(func(s healthpb.HealthCheckResponse_ServingStatus) { got = append(got, s) }, slog.New(slog.DiscardHandler))
	down := errors.New("connection refused")
	pingErr := make(chan error)
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		h.probe(ctx, ticks, func(pctx context.Context) error {
			select {
			case err := <-pingErr:
				return err
			case <-pctx.Done():
				return pctx.Err()
			}
		})
		close(done)
	}()
	probe := func(err error) {
		ticks <- time.Time{}
		pingErr <- err
	}
	h.observe(nil)  // up already: nothing reported
	h.observe(down) // an RPC failed: NOT_SERVING at once
	h.observe(down)
	probe(down)
	probe(nil) // the probe sees it back: SERVING
	probe(nil) // (a probe's tick is taken once the previous outcome is recorded)
	h.observe(nil)
	probe(down) // the probe sees it gone
	// The probe's outcome is recorded before it takes the next tick; its
	// next ping then waits until the end.
	ticks <- time.Time{}
	h.observe(nil) // an RPC succeeded: SERVING at once
	cancel()
	<-done
	want := []healthpb.HealthCheckResponse_ServingStatus{
		healthpb.HealthCheckResponse_NOT_SERVING,
		healthpb.HealthCheckResponse_SERVING,
		healthpb.HealthCheckResponse_NOT_SERVING,
		healthpb.HealthCheckResponse_SERVING,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reported statuses (-want +got):\n%s", diff)
	}
}

// A ping that does not answer counts as down after HealthProbeTimeout:
// the probe's context ends.
func TestDBHealthProbeTimeout(t *testing.T) {
	var got []healthpb.HealthCheckResponse_ServingStatus
	h := newDBHealth(func(s healthpb.HealthCheckResponse_ServingStatus) { got = append(got, s) }, slog.New(slog.DiscardHandler))
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(t.Context())
	pinged := make(chan struct{})
	var once sync.Once
	go func() {
		h.probe(ctx, ticks, func(pctx context.Context) error {
			<-pctx.Done() // a blackholed database
			defer once.Do(func() { close(pinged) })
			if _, ok := pctx.Deadline(); !ok {
				t.Error("the ping has no deadline")
			}
			return pctx.Err()
		})
	}()
	ticks <- time.Time{}
	<-pinged
	ticks <- time.Time{} // taken once the outcome is recorded
	cancel()
	if h.up.Load() {
		t.Error("a ping past its timeout left health SERVING")
	}
}
