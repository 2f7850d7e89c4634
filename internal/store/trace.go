package store

import (
	"context"
	"reflect"
	"runtime"
	"strings"

	"entgo.io/ent/dialect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/placebrain/auth/internal/auth"
)

// tracerName is the instrumentation scope of the units of work's spans.
const tracerName = "github.com/placebrain/auth/internal/store"

// Attributes of a unit of work's span.
const (
	// attrOutcome is commit, or rollback (fn failed, or panicked).
	attrOutcome = attribute.Key("db.transaction.outcome")
)

// startUnit starts the span of a unit of work that runs fn, a child of the
// span in ctx, when that span is recording (a traced RPC); otherwise it
// returns ctx and nil, at the cost of one context look-up, so untraced
// units of work (tracing off, or not sampled) pay nothing else. The span is
// named "tx " and the function the unit of work runs, e.g.
// "tx auth.Service.Refresh", and uses the parent's tracer provider.
func (db *DB) startUnit(ctx context.Context, fn any) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return db.startSpan(ctx, "tx "+unitName(fn))
}

// startSpan starts a unit of work's span named name (as startUnit).
func (db *DB) startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, nil
	}
	system := "postgresql"
	if db.Dialect == dialect.SQLite {
		system = "sqlite"
	}
	return parent.TracerProvider().Tracer(tracerName).Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system.name", system)))
}

// endUnit ends a unit of work's span: fnErr is what its function returned
// (nil when it panicked before), err what InTx returns. A failure that is
// not a domain error (the database's), or is the database being
// unavailable, sets the span's status to error.
func endUnit(span trace.Span, fnErr, err error, returned bool) {
	outcome := "commit"
	if _, commit := auth.CommitCause(fnErr); !returned || (fnErr != nil && !commit) {
		outcome = "rollback"
	}
	span.SetAttributes(attrOutcome.String(outcome))
	if de, domain := auth.AsError(err); err != nil && (!domain || de.Kind == auth.KindUnavailable) {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// unitName names the function of a unit of work after its package, type
// and method: "auth.Service.Refresh" for a closure in
// github.com/placebrain/auth/internal/auth.(*Service).Refresh.
func unitName(fn any) string {
	f := runtime.FuncForPC(reflect.ValueOf(fn).Pointer())
	if f == nil {
		return "unit"
	}
	name := f.Name()
	name = name[strings.LastIndexByte(name, '/')+1:]
	// Closures are named after their function, then .func1, .func1.2,
	// .gowrap1...
	for {
		i := strings.LastIndexByte(name, '.')
		if i < 0 {
			break
		}
		last := name[i+1:]
		if !strings.HasPrefix(last, "func") && !strings.HasPrefix(last, "gowrap") && strings.Trim(last, "0123456789") != "" {
			break
		}
		name = name[:i]
	}
	return strings.ReplaceAll(strings.ReplaceAll(name, "(*", ""), ")", "")
}
