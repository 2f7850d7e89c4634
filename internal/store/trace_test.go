package store_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/testutil/testdb"
)

// In a traced request each unit of work is a child span named after the
// function it runs, with its outcome: commit, rollback, or commit of a
// failure that must be recorded (auth.CommitAnd). A database failure sets
// the span's status to error; a domain error does not. Without a
// recording parent no span is made.
func TestUnitOfWorkSpans(t *testing.T) {
	db := testdb.Open(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	ctx, parent := tp.Tracer("test").Start(context.Background(), "rpc")

	units := []struct {
		fn      func(auth.Tx) error
		outcome string
		failed  bool
	}{
		{func(auth.Tx) error { return nil }, "commit", false},
		{func(auth.Tx) error { return auth.ErrUserNotFound }, "rollback", false},
		{func(auth.Tx) error { return auth.CommitAnd(auth.ErrRefreshTokenReused) }, "commit", false},
		{func(auth.Tx) error { return errors.New("database gone") }, "rollback", true},
	}
	for _, u := range units {
		_ = db.InTx(ctx, u.fn)
	}
	parent.End()
	_ = db.InTx(context.Background(), func(auth.Tx) error { return nil }) // not traced

	spans := exp.GetSpans()
	if len(spans) != len(units)+1 {
		t.Fatalf("spans = %d, want %d units and the parent", len(spans), len(units))
	}
	for i, u := range units {
		s := spans[i]
		if s.Name != "tx store_test.TestUnitOfWorkSpans" {
			t.Errorf("unit %d: name %q", i, s.Name)
		}
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("unit %d: not a child of the request's span", i)
		}
		outcome := ""
		for _, kv := range s.Attributes {
			if kv.Key == "db.transaction.outcome" {
				outcome = kv.Value.AsString()
			}
		}
		if outcome != u.outcome || (s.Status.Code == codes.Error) != u.failed {
			t.Errorf("unit %d: outcome %q, status %v; want %q, error %v", i, outcome, s.Status, u.outcome, u.failed)
		}
	}
}
