package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/placebrain/auth/internal/mail"
)

// tracerName is the instrumentation scope of the spans this package
// starts.
const tracerName = "github.com/placebrain/auth/internal/telemetry"

// DeliverySpan is the name of an e-mail delivery attempt's span: one
// outbox message opened, rendered, handed to the SMTP relay and its
// outcome recorded.
const DeliverySpan = "outbox deliver"

// Attributes of a delivery's span; never the recipient.
const (
	AttrMessageID = attribute.Key("outbox.message_id")
	AttrTemplate  = attribute.Key("outbox.template")
	AttrAttempt   = attribute.Key("outbox.attempt")
	// AttrOutcome is sent, retry or failed (mail.OutcomeName).
	AttrOutcome = attribute.Key("outbox.outcome")
)

// TraceDeliveries returns the dispatcher's TraceDelivery hook for tp: each
// delivery attempt is a root span (the RPC that queued the message has
// long ended) named DeliverySpan, with the message's id, template and
// attempt, and its outcome; a failure sets the status to error with the
// redacted reason the outbox records.
func TraceDeliveries(tp trace.TracerProvider) func(context.Context, mail.Pending) (context.Context, func(mail.Outcome)) {
	tracer := tp.Tracer(tracerName)
	return func(ctx context.Context, m mail.Pending) (context.Context, func(mail.Outcome)) {
		ctx, span := tracer.Start(ctx, DeliverySpan, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(AttrMessageID.String(m.ID.String()), AttrTemplate.String(m.Template), AttrAttempt.Int(m.Attempts)))
		return ctx, func(o mail.Outcome) {
			span.SetAttributes(AttrOutcome.String(mail.OutcomeName(o.Status)))
			if o.Status != mail.StatusSent {
				span.SetStatus(codes.Error, o.LastError)
			}
			span.End()
		}
	}
}
