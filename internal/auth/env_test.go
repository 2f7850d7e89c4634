package auth_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/testutil/authtest"
)

// The policies the tests below assume: the service's defaults, except
// LOGIN__MAX_FAILURES (5, to keep the throttling tests short).
const (
	otpTTL          = 10 * time.Minute
	otpCooldown     = 60 * time.Second
	otpMaxAttempts  = 5
	otpDailyLimit   = 10
	refreshGrace    = 10 * time.Second
	refreshRecovery = 15 * time.Minute
	sessionMax      = 90 * 24 * time.Hour
	loginMaxFails   = 5
	loginWindow     = 15 * time.Minute
	loginLockout    = 15 * time.Minute
	refreshTTL      = 30 * 24 * time.Hour
	accessTTL       = 15 * time.Minute
)

const pw = "correct horse battery"

// newEnv starts the service as production assembles it, on a database of
// the suite's backend.
func newEnv(t testing.TB, opts ...authtest.Option) *authtest.Env {
	t.Helper()
	opts = append([]authtest.Option{authtest.Set("LOGIN__MAX_FAILURES", strconv.Itoa(loginMaxFails))}, opts...)
	return authtest.New(t, opts...)
}

// wantErr checks that err is the domain error want (by reason) and, when
// msg is not empty, carries that message.
func wantErr(t testing.TB, err error, want *auth.Error, msg string) *auth.Error {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %s", err, want.Reason)
	}
	de, _ := auth.AsError(err)
	if msg != "" && de.Message != msg {
		t.Errorf("message = %q, want %q", de.Message, msg)
	}
	return de
}

// wantInput checks that err is INVALID_INPUT about field, with a message
// that contains msg.
func wantInput(t testing.TB, err error, field, msg string) {
	t.Helper()
	de := wantErr(t, err, auth.ErrInvalidInput, "")
	if de.Metadata["field"] != field {
		t.Errorf("field = %q, want %q", de.Metadata["field"], field)
	}
	if !strings.Contains(de.Message, msg) {
		t.Errorf("message %q lacks %q", de.Message, msg)
	}
}
