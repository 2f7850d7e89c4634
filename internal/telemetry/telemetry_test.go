package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/placebrain/auth/internal/telemetry"
)

// Tracing is on only when the variables name an exporter or an OTLP
// endpoint, never by autoexport's default (otlp to localhost).
func TestTracingRequested(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"exporter empty", map[string]string{"OTEL_TRACES_EXPORTER": ""}, false},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none"}, false},
		{"exporter otlp", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"exporter console", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{"endpoint but exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, false},
		{"protocol alone", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false},
		{"sdk not disabled", map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			if got := telemetry.TracingRequested(lookup); got != tt.want {
				t.Errorf("TracingRequested = %v, want %v", got, tt.want)
			}
		})
	}
}

// TracerProviderFromEnv builds a provider only when asked, and reports an
// exporter it does not know.
func TestTracerProviderFromEnv(t *testing.T) {
	ctx := context.Background()
	for _, v := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"} {
		t.Setenv(v, "")
	}
	if tp, err := telemetry.TracerProviderFromEnv(ctx); tp != nil || err != nil {
		t.Errorf("nothing set: %v, %v; want no provider", tp, err)
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	tp, err := telemetry.TracerProviderFromEnv(ctx)
	if err != nil || tp == nil {
		t.Fatalf("console: %v, %v", tp, err)
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "zipkin")
	if tp, err := telemetry.TracerProviderFromEnv(ctx); err == nil {
		_ = tp.Shutdown(ctx)
		t.Error("an unknown exporter: no error")
	}
}

// The log handler adds the request id and the span's trace and span ids
// of the context a line is logged with, and nothing without them.
func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("test").Start(context.Background(), "op")
	defer span.End()
	ctx = telemetry.WithRequestID(ctx, "req-1")

	log.InfoContext(ctx, "traced", "k", "v")
	log.Info("plain")
	var lines []map[string]any
	for line := range bytes.SplitSeq(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		delete(rec, "time")
		lines = append(lines, rec)
	}
	sc := span.SpanContext()
	want := []map[string]any{
		{"level": "INFO", "msg": "traced", "component": "test", "k": "v", "request_id": "req-1",
			"trace_id": sc.TraceID().String(), "span_id": sc.SpanID().String()},
		{"level": "INFO", "msg": "plain", "component": "test"},
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("log lines (-want +got):\n%s", diff)
	}
	if telemetry.RequestID(context.Background()) != "" {
		t.Error("request id from an empty context")
	}
}
