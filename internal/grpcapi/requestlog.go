package grpcapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/placebrain/auth/internal/telemetry"
)

// RequestIDKey is the metadata key of a request id: read from the caller,
// and sent back in the response header.
const RequestIDKey = "x-request-id"

// MaxRequestIDBytes bounds a caller's request id.
const MaxRequestIDBytes = 128

// RequestLogMessage is the message of the request log's lines.
const RequestLogMessage = "rpc"

// RequestLog returns the interceptors of the request log: each RPC but
// grpc.health.v1's (load balancers' probes, counted in the metrics) gets a
// request id, the caller's x-request-id when it sent one of 1 to
// MaxRequestIDBytes printable ASCII characters, else 16 random bytes in
// hex; the id goes back in the response header x-request-id and into the
// context (telemetry.WithRequestID, so every line logged with it carries
// request_id), and when the RPC ends one line is logged at level:
// RequestLogMessage with method, code, duration_ms and, when known,
// user_id: the request's user_id field, else the one the response
// carries (Register, GetMe, GetUserByEmail, ValidateToken; not Login or
// RefreshTokens, whose user is only in a token). The request id comes
// through log's handler, which must be a telemetry.NewLogHandler. No
// e-mail address, token or other field is logged; a user_id that is not
// a UUID is left out.
//
// server.New installs them before the service's interceptors (see
// ServerOptions), so the code is the one the caller gets.
func RequestLog(log *slog.Logger, level slog.Level) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if strings.HasPrefix(info.FullMethod, healthPrefix) {
			return handler(ctx, req)
		}
		start := time.Now()
		ctx = withRequestID(ctx)
		resp, err := handler(ctx, req)
		logRPC(ctx, log, level, info.FullMethod, err, start, userIDOf(req, resp))
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if strings.HasPrefix(info.FullMethod, healthPrefix) {
			return handler(srv, ss)
		}
		start := time.Now()
		ctx := withRequestID(ss.Context())
		w := &requestStream{ServerStream: ss, ctx: ctx}
		err := handler(srv, w)
		logRPC(ctx, log, level, info.FullMethod, err, start, "")
		return err
	}
	return unary, stream
}

// requestStream is a server stream whose context carries the request id.
type requestStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *requestStream) Context() context.Context { return s.ctx }

// withRequestID picks the RPC's request id, sends it in the response
// header and returns ctx carrying it.
func withRequestID(ctx context.Context) context.Context {
	id := ""
	if vals := metadata.ValueFromIncomingContext(ctx, RequestIDKey); len(vals) == 1 && ValidRequestID(vals[0]) {
		id = vals[0]
	} else {
		id = newRequestID()
	}
	// Fails only outside a server RPC; the id still goes to the log.
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDKey, id))
	return telemetry.WithRequestID(ctx, id)
}

// ValidRequestID reports whether a caller's request id is kept: 1 to
// MaxRequestIDBytes characters, each printable ASCII (space to tilde).
func ValidRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// newRequestID returns 16 random bytes in hex.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// logRPC writes the request log's line of one RPC.
func logRPC(ctx context.Context, log *slog.Logger, level slog.Level, method string, err error, start time.Time, userID string) {
	if !log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", status.Code(err).String()),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
	}
	if userID != "" {
		attrs = append(attrs, slog.String("user_id", userID))
	}
	log.LogAttrs(ctx, level, RequestLogMessage, attrs...)
}

// userIDer is a message with a user_id field.
type userIDer interface{ GetUserId() string }

// userIDOf returns the user an RPC is about: the request's user_id, else
// the response's; "" when neither has a UUID there.
func userIDOf(req, resp any) string {
	for _, m := range []any{req, resp} {
		u, ok := m.(userIDer)
		if !ok {
			continue
		}
		if raw := u.GetUserId(); raw != "" {
			// Only a UUID: a caller may put anything in the field.
			id, err := uuid.Parse(raw)
			if err != nil {
				return ""
			}
			return id.String()
		}
	}
	return ""
}
