package grpcapi

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/placebrain/auth/internal/auth"
)

// ErrorDomain is google.rpc.ErrorInfo.domain on every error.
const ErrorDomain = "auth.placebrain"

// codeOf maps each domain error kind to its gRPC code, following the
// gateway's HTTP table (see the README's error table).
var codeOf = map[auth.Kind]codes.Code{
	auth.KindInvalidArgument:    codes.InvalidArgument,
	auth.KindNotFound:           codes.NotFound,
	auth.KindAlreadyExists:      codes.AlreadyExists,
	auth.KindUnauthenticated:    codes.Unauthenticated,
	auth.KindFailedPrecondition: codes.FailedPrecondition,
	auth.KindResourceExhausted:  codes.ResourceExhausted,
	auth.KindUnavailable:        codes.Unavailable,
}

// ToStatus is the one place where errors become gRPC statuses. A domain
// error keeps its message and gets a google.rpc.ErrorInfo with its stable
// reason (and a google.rpc.RetryInfo when it has a retry delay: a
// cooldown or cap, or the database being unavailable, which the data
// layer reports as auth.ErrUnavailable and is answered UNAVAILABLE). A
// cancelled or timed-out context maps to CANCELLED or DEADLINE_EXCEEDED.
// Anything else is INTERNAL with the message "internal error"; its cause
// is logged, never returned.
func ToStatus(ctx context.Context, log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status (e.g. from an interceptor)
	}
	// A request the client cancelled or let time out fails in the driver
	// with errors that do not always wrap the context's; the context says
	// what happened.
	switch ctx.Err() {
	case context.Canceled:
		return status.Error(codes.Canceled, "request cancelled")
	case context.DeadlineExceeded:
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	if de, ok := auth.AsError(err); ok {
		if code, ok := codeOf[de.Kind]; ok {
			return domainStatus(code, de)
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	log.ErrorContext(ctx, "internal error", "method", method, "error", err)
	return status.Error(codes.Internal, "internal error")
}

func domainStatus(code codes.Code, de *auth.Error) error {
	st := status.New(code, de.Message)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: de.Reason, Domain: ErrorDomain, Metadata: de.Metadata}}
	if de.Kind == auth.KindResourceExhausted || de.Kind == auth.KindUnavailable {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(de.RetryAfter)})
	}
	if withDetails, err := st.WithDetails(details...); err == nil {
		st = withDetails
	}
	return st.Err()
}
