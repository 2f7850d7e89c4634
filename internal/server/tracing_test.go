package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/telemetry"
	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/proto/authpb"
)

// traced starts a service whose spans go to an in-memory exporter.
func traced(t *testing.T, opts ...authtest.Option) (*authtest.Env, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e := authtest.New(t, append(opts, authtest.ServerOptions(server.Options{TracerProvider: tp}))...)
	return e, exp
}

// spansNamed returns the ended spans named name.
func spansNamed(exp *tracetest.InMemoryExporter, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// childrenOf returns the ended spans whose parent is p.
func childrenOf(exp *tracetest.InMemoryExporter, p tracetest.SpanStub) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Parent.SpanID() == p.SpanContext.SpanID() && s.Parent.TraceID() == p.SpanContext.TraceID() {
			out = append(out, s)
		}
	}
	return out
}

// attr returns the value of the span's attribute key.
func attr(s tracetest.SpanStub, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// logRecords returns the JSON log records whose msg is msg.
func logRecords(t *testing.T, e *authtest.Env, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(e.Log.String(), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// An RPC is a server span, continuing the caller's trace (W3C
// traceparent), with a child span for its unit of work; the log lines of
// the request carry its trace and span ids. Health checks are not traced.
func TestTracingRPC(t *testing.T) {
	e, exp := traced(t)
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
	r, err := e.Client.Register(ctx, &authpb.RegisterRequest{Username: "Alice", Email: "alice@example.com", Password: pw})
	if err != nil {
		t.Fatal(err)
	}

	var rpc tracetest.SpanStub
	eventually(t, "the Register span", func() bool {
		s := spansNamed(exp, "auth.AuthService/Register")
		if len(s) == 1 {
			rpc = s[0]
		}
		return len(s) == 1
	})
	if rpc.SpanKind != trace.SpanKindServer {
		t.Errorf("Register span kind = %v, want server", rpc.SpanKind)
	}
	if got := rpc.SpanContext.TraceID().String(); got != callerTrace {
		t.Errorf("Register span trace id = %s, want the caller's %s", got, callerTrace)
	}
	var units []string
	for _, c := range childrenOf(exp, rpc) {
		units = append(units, c.Name)
		if c.Name != "tx auth.Service.Register" {
			continue
		}
		if v, _ := attr(c, "db.transaction.outcome"); v.AsString() != "commit" {
			t.Errorf("unit of work outcome = %q, want commit", v.AsString())
		}
		if v, _ := attr(c, "db.system.name"); v.AsString() != "postgresql" && v.AsString() != "sqlite" {
			t.Errorf("db.system.name = %q", v.AsString())
		}
	}
	if !strings.Contains(strings.Join(units, ","), "tx auth.Service.Register") {
		t.Errorf("children of the Register span = %v, want its unit of work tx auth.Service.Register", units)
	}

	logged := logRecords(t, e, "user registered")
	if len(logged) != 1 {
		t.Fatalf("user registered lines = %d", len(logged))
	}
	if logged[0]["user_id"] != r.GetUserId() || logged[0][telemetry.TraceIDKey] != callerTrace ||
		logged[0][telemetry.SpanIDKey] != rpc.SpanContext.SpanID().String() {
		t.Errorf("log line %v: want the Register span's trace id %s and span id %s", logged[0], callerTrace, rpc.SpanContext.SpanID())
	}

	// A unit of work that fails with a domain error rolls back, and its
	// span is not an error: the database did nothing wrong. (A refresh
	// token of a session that ended.)
	if _, err := e.Client.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: "alice@example.com", Code: e.Code(t, "alice@example.com")}); err != nil {
		t.Fatal(err)
	}
	l, err := e.Client.Login(ctx, &authpb.LoginRequest{Email: "alice@example.com", Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.Logout(ctx, &authpb.LogoutRequest{RefreshToken: l.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	exp.Reset()
	_, err = e.Client.RefreshTokens(context.Background(), &authpb.RefreshTokensRequest{RefreshToken: l.GetRefreshToken()})
	if err == nil {
		t.Fatal("a refresh token of an ended session was rotated")
	}
	eventually(t, "the refresh's unit of work", func() bool { return len(spansNamed(exp, "tx auth.Service.Refresh")) == 1 })
	unit := spansNamed(exp, "tx auth.Service.Refresh")[0]
	if v, _ := attr(unit, "db.transaction.outcome"); v.AsString() != "rollback" || unit.Status.Code.String() == "Error" {
		t.Errorf("unit of work of a revoked token: outcome %q, status %v; want rollback, not an error", v.AsString(), unit.Status)
	}

	// A fresh token's rotation is one unit of work: the one statement on
	// PostgreSQL, the shorter transaction on SQLite.
	l, err = e.Client.Login(ctx, &authpb.LoginRequest{Email: "alice@example.com", Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	exp.Reset()
	if _, err := e.Client.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: l.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	want := store.RotateFreshSpan
	eventually(t, "the rotation's unit of work", func() bool { return len(spansNamed(exp, "auth.AuthService/RefreshTokens")) == 1 })
	var rotation []string
	for _, c := range childrenOf(exp, spansNamed(exp, "auth.AuthService/RefreshTokens")[0]) {
		rotation = append(rotation, c.Name)
	}
	if len(rotation) != 1 || rotation[0] != want {
		t.Errorf("units of work of a fresh rotation: %v, want [%s]", rotation, want)
	}

	if _, err := healthpb.NewHealthClient(e.Conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if s := spansNamed(exp, "grpc.health.v1.Health/Check"); len(s) != 0 {
		t.Errorf("health check traced: %d spans", len(s))
	}
}

// A delivery attempt is a span of its own with its outcome, and the
// dispatcher's log lines carry its trace id; no span names the recipient.
func TestTracingDelivery(t *testing.T) {
	e, exp := traced(t)
	e.Register(t, "Bob", "bob@example.com", pw)
	e.Code(t, "bob@example.com")
	var d tracetest.SpanStub
	eventually(t, "the delivery span", func() bool {
		s := spansNamed(exp, telemetry.DeliverySpan)
		if len(s) == 1 {
			d = s[0]
		}
		return len(s) == 1
	})
	if v, _ := attr(d, telemetry.AttrOutcome); v.AsString() != "sent" {
		t.Errorf("delivery outcome = %q, want sent", v.AsString())
	}
	if v, _ := attr(d, telemetry.AttrTemplate); v.AsString() == "" {
		t.Errorf("delivery span without its template")
	}
	if d.Parent.IsValid() {
		t.Errorf("delivery span has a parent: %v", d.Parent)
	}
	sent := logRecords(t, e, "email sent")
	if len(sent) != 1 || sent[0][telemetry.TraceIDKey] != d.SpanContext.TraceID().String() {
		t.Errorf("email sent lines %v: want the delivery's trace id %s", sent, d.SpanContext.TraceID())
	}
	for _, s := range exp.GetSpans() {
		for _, kv := range s.Attributes {
			if strings.Contains(kv.Value.Emit(), "bob@example.com") {
				t.Errorf("span %s attribute %s holds the address", s.Name, kv.Key)
			}
		}
	}

	// A failed delivery is an error span.
	e.Register(t, "Rejected", "reject@example.com", pw)
	eventually(t, "the failed delivery span", func() bool {
		for _, s := range spansNamed(exp, telemetry.DeliverySpan) {
			if v, _ := attr(s, telemetry.AttrOutcome); v.AsString() == "failed" {
				return s.Status.Code.String() == "Error" && !strings.Contains(s.Status.Description, "reject@example.com")
			}
		}
		return false
	})
}
