package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/placebrain/auth/internal/config"
	"github.com/placebrain/auth/internal/grpcapi"
	"github.com/placebrain/auth/internal/mail"
	"github.com/placebrain/auth/internal/metrics"
	"github.com/placebrain/auth/internal/telemetry"
)

// tracingShutdownTimeout bounds the flush of the spans still batched at
// shutdown.
const tracingShutdownTimeout = 5 * time.Second

// startTracing returns the tracer provider of o, or the one the OTEL_*
// variables configure (telemetry.TracerProviderFromEnv) and the function
// that flushes and stops it; nil and a no-op when tracing is off.
func startTracing(ctx context.Context, o Options, log *slog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	noShutdown := func(context.Context) error { return nil }
	if o.TracerProvider != nil {
		return o.TracerProvider, noShutdown, nil
	}
	tp, err := telemetry.TracerProviderFromEnv(ctx)
	if err != nil {
		return nil, nil, err
	}
	if tp == nil {
		return nil, noShutdown, nil
	}
	// The SDK reports failed exports through otel.Handle, by default
	// with the log package: in JSON, to the service's log instead.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("opentelemetry", "error", err) }))
	exporter := os.Getenv("OTEL_TRACES_EXPORTER")
	if exporter == "" {
		exporter = "otlp"
	}
	log.Info("tracing on: OpenTelemetry spans exported as the OTEL_* variables say", "exporter", exporter)
	return tp, tp.Shutdown, nil
}

// traceDeliveries is the dispatcher's tracing hook; nil when tracing is
// off.
func traceDeliveries(tp trace.TracerProvider) func(context.Context, mail.Pending) (context.Context, func(mail.Outcome)) {
	if tp == nil {
		return nil
	}
	return telemetry.TraceDeliveries(tp)
}

// listenMetrics listens on METRICS__ADDR; nil when it is empty.
func listenMetrics(c *config.Config) (net.Listener, error) {
	if c.Metrics.Addr == "" {
		return nil, nil
	}
	lis, err := net.Listen("tcp", c.Metrics.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on METRICS__ADDR %q: %w", c.Metrics.Addr, err)
	}
	return lis, nil
}

// observedServerOptions are the gRPC server options of the request log
// (LOG__REQUESTS), the metrics and the tracing, each when on. They come
// before the service's own (grpcapi.ServerOptions): their interceptors run
// first and see the codes the callers get.
func observedServerOptions(c *config.Config, log *slog.Logger, m *metrics.Metrics, tp trace.TracerProvider) []grpc.ServerOption {
	var opts []grpc.ServerOption
	if level, on := c.Log.RequestLevel(); on {
		unary, stream := grpcapi.RequestLog(log, level)
		opts = append(opts, grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	}
	if m != nil {
		opts = append(opts, m.ServerOptions()...)
	}
	if tp != nil {
		// The gateway's traceparent, when it sends one, makes authd's
		// spans part of its trace. Health checks are not traced.
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tp),
			otelgrpc.WithPropagators(propagation.TraceContext{}),
			otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
			otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
		)))
	}
	return opts
}

// serveMetrics serves the metrics on lis until the returned function
// closes it.
func serveMetrics(lis net.Listener, m *metrics.Metrics, log *slog.Logger) func() {
	mux := http.NewServeMux()
	mux.Handle(metrics.Path, m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "error", err)
		}
	}()
	log.Info("metrics served", "addr", lis.Addr().String(), "path", metrics.Path)
	return func() { srv.Close() }
}

// stopTracing flushes the spans still batched and stops the exporter.
func (a *App) stopTracing() {
	ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
	defer cancel()
	if err := a.shutdownTracing(ctx); err != nil {
		a.log.Warn("tracing shutdown", "error", err)
	}
}
