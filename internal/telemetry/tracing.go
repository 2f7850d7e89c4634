package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// ServiceName is the service.name of authd's traces unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES names another.
const ServiceName = "authd"

// TracingRequested reports whether the OTEL_* variables, read through
// lookup, ask for traces: OTEL_TRACES_EXPORTER names an exporter other than
// none, or it is unset and an OTLP endpoint is
// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT); and
// OTEL_SDK_DISABLED is not true. The contrib autoexport package would
// export to an OTLP collector on localhost when nothing is set; authd
// traces nothing then instead.
func TracingRequested(lookup func(string) (string, bool)) bool {
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	if strings.EqualFold(get("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch exp := get("OTEL_TRACES_EXPORTER"); {
	case exp == "none":
		return false
	case exp != "":
		return true
	}
	return get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || get("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

// TracerProviderFromEnv returns a tracer provider whose exporter, sampler,
// batching and resource the standard OTEL_* variables configure (the
// exporter through go.opentelemetry.io/contrib/exporters/autoexport:
// OTEL_TRACES_EXPORTER otlp or console, OTEL_EXPORTER_OTLP_PROTOCOL and
// the OTLP exporters' variables; the sampler through OTEL_TRACES_SAMPLER,
// parent-based always-on by default), or nil when TracingRequested says
// no. The caller shuts it down, which flushes the spans still batched.
func TracerProviderFromEnv(ctx context.Context) (*sdktrace.TracerProvider, error) {
	if !TracingRequested(os.LookupEnv) {
		return nil, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTEL_TRACES_EXPORTER: %w", err)
	}
	if autoexport.IsNoneSpanExporter(exp) {
		return nil, nil
	}
	// Later detectors win: the environment's service name over authd.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", ServiceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
