package grpcapi_test

import (
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/placebrain/auth/internal/testutil/authtest"
)

const (
	pw            = "correct horse battery"
	refreshGrace  = 10 * time.Second
	loginMaxFails = 10
)

// newEnv starts the service as production assembles it and connects to it
// over gRPC.
func newEnv(t testing.TB, opts ...authtest.Option) *authtest.Env {
	t.Helper()
	return authtest.New(t, opts...)
}

// wantStatus checks an RPC error's code, message (when msg != "") and
// ErrorInfo reason (when reason != "").
func wantStatus(t *testing.T, err error, code codes.Code, msg, reason string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || err == nil {
		t.Fatalf("got error %v, want status %v", err, code)
	}
	if st.Code() != code {
		t.Fatalf("code = %v (%q), want %v", st.Code(), st.Message(), code)
	}
	if msg != "" && st.Message() != msg {
		t.Errorf("message = %q, want %q", st.Message(), msg)
	}
	if reason != "" {
		if got := errorInfo(err); got == nil || got.GetReason() != reason {
			t.Errorf("reason = %v, want %s", got, reason)
		}
	}
}

func errorInfo(err error) *errdetails.ErrorInfo {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}
