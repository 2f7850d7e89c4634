package auth_test

import (
	"strings"
	"testing"

	"github.com/placebrain/auth/internal/auth"
)

// The reasons metrics single out are the ones the service records.
func TestEventReasons(t *testing.T) {
	if got := strings.ToLower(auth.ErrOTPAttemptsExhausted.Reason); got != auth.ReasonOTPAttemptsExhausted {
		t.Errorf("an exhausted code is recorded with reason %q, not ReasonOTPAttemptsExhausted %q", got, auth.ReasonOTPAttemptsExhausted)
	}
}
