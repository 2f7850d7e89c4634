package auth_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/internal/testutil/authtest"
)

// rawOutbox returns every column of every outbox row as the database
// driver hands it over, by column name; times are left out (their digits
// could match a code by chance).
func rawOutbox(t *testing.T, e *authtest.Env) []map[string][]byte {
	t.Helper()
	rows, err := e.DB.SQL.QueryContext(context.Background(), "SELECT * FROM outbox_messages")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string][]byte
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := map[string][]byte{}
		for i, v := range vals {
			switch v := v.(type) {
			case nil, time.Time:
			case []byte:
				row[cols[i]] = bytes.Clone(v)
			case string:
				row[cols[i]] = []byte(v)
			default:
				row[cols[i]] = fmt.Append(nil, v)
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A pending verification e-mail holds its code sealed: no column of its
// outbox row has the code in clear, nor the address or the username in
// its data. It is delivered with the right code, and the sealed data are
// erased once it is sent.
func TestPendingMailHoldsNoCodeInClear(t *testing.T) {
	e := newEnv(t, authtest.SMTPDown())
	ctx := context.Background()
	const addr, username = "sealed@example.com", "sealed-user"
	e.Register(t, username, addr, pw)
	pending := rawOutbox(t, e)
	if len(pending) != 1 {
		t.Fatalf("outbox rows = %d, want 1", len(pending))
	}
	row := pending[0]
	if len(row["sealed_data"]) == 0 || row["data"] != nil {
		t.Errorf("pending row: sealed_data %d bytes, data %q; want sealed data only", len(row["sealed_data"]), row["data"])
	}

	waitFirstAttempt(t, e)
	e.StartSMTP(t)
	e.Clock.Advance(time.Minute) // past the retry delay of the failed first attempt
	code := e.Code(t, addr)
	for col, raw := range row {
		if bytes.Contains(raw, []byte(code)) {
			t.Errorf("column %s of the pending row holds the code in clear", col)
		}
	}
	for _, col := range []string{"sealed_data", "data"} {
		for _, clear := range []string{addr, username} {
			if bytes.Contains(row[col], []byte(clear)) {
				t.Errorf("column %s holds %q in clear", col, clear)
			}
		}
	}
	if err := e.Service.VerifyOTP(ctx, addr, code); err != nil {
		t.Fatalf("VerifyOTP with the code from the e-mail: %v", err)
	}
	m := waitOutbox(t, e, outboxmessage.StatusSent)
	if m.SealedData != nil || m.Data != nil {
		t.Errorf("sent message keeps its data: sealed %d bytes, data %v", len(m.SealedData), m.Data)
	}
	if sent := rawOutbox(t, e)[0]; sent["sealed_data"] != nil {
		t.Errorf("sealed_data after sending = %d bytes, want NULL", len(sent["sealed_data"]))
	}
}

// waitFirstAttempt waits until the dispatcher has tried to send the only
// outbox message (the relay is down: the message then waits for its retry
// delay, which a test passes by advancing the clock).
func waitFirstAttempt(t *testing.T, e *authtest.Env) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m, err := e.DB.Ent.OutboxMessage.Query().Only(context.Background())
		if err == nil && m.Attempts > 0 && m.LastError != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox message = %+v, %v; want a failed first attempt", m, err)
		}
	}
}

// waitOutbox waits until the only outbox message has status and returns it.
func waitOutbox(t *testing.T, e *authtest.Env, status outboxmessage.Status) *ent.OutboxMessage {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m, err := e.DB.Ent.OutboxMessage.Query().Only(context.Background())
		if err == nil && m.Status == status {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox message = %+v, %v; want status %s", m, err, status)
		}
	}
}

// A verification e-mail queued by one instance and dispatched by another
// after a secret rotation: rotating OTP__SECRET, or JWT__SECRET while
// OTP__SECRET is empty, changes the outbox key, so the message fails at
// once with the reason and is never retried; rotating JWT__SECRET while
// OTP__SECRET is set does not.
func TestSecretRotationAndPendingMail(t *testing.T) {
	const (
		jwtA = "rotation-jwt-secret-a-0123456789abcdef"
		jwtB = "rotation-jwt-secret-b-0123456789abcdef"
		otpA = "rotation-otp-secret-a-0123456789abcdef"
		otpB = "rotation-otp-secret-b-0123456789abcdef"
	)
	tests := []struct {
		name          string
		before, after []string
		wantDelivered bool
	}{
		{"nothing rotated", []string{"OTP__SECRET", otpA}, []string{"OTP__SECRET", otpA}, true},
		{"OTP__SECRET rotated", []string{"OTP__SECRET", otpA}, []string{"OTP__SECRET", otpB}, false},
		{"JWT__SECRET rotated, no OTP__SECRET", []string{"JWT__SECRET", jwtA}, []string{"JWT__SECRET", jwtB, "JWT__PREVIOUS_SECRETS", jwtA}, false},
		{"JWT__SECRET rotated, OTP__SECRET kept", []string{"JWT__SECRET", jwtA, "OTP__SECRET", otpA},
			[]string{"JWT__SECRET", jwtB, "JWT__PREVIOUS_SECRETS", jwtA, "OTP__SECRET", otpA}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := newEnv(t, authtest.SMTPDown(), authtest.Set(tt.before...))
			first.Register(t, "rotation", "rotation@example.com", pw)
			// The first instance tries once (the relay is down), so the
			// message waits for its retry delay, then it stops.
			waitFirstAttempt(t, first)
			first.Stop(t)

			second := newEnv(t, authtest.SameDatabaseAs(first), authtest.Set(tt.after...))
			second.StartSMTP(t)
			attemptsBefore := second.DB.Ent.OutboxMessage.Query().OnlyX(context.Background()).Attempts
			second.Clock.Advance(time.Minute) // past the retry delay of a failed first attempt
			if tt.wantDelivered {
				code := second.Code(t, "rotation@example.com")
				if err := second.Service.VerifyOTP(context.Background(), "rotation@example.com", code); err != nil {
					t.Errorf("VerifyOTP with the delivered code: %v", err)
				}
				waitOutbox(t, second, outboxmessage.StatusSent)
				return
			}
			m := waitOutbox(t, second, outboxmessage.StatusFailed)
			if m.Attempts != attemptsBefore+1 {
				t.Errorf("attempts = %d, want %d: the message failed at its first attempt after the rotation", m.Attempts, attemptsBefore+1)
			}
			if !strings.Contains(m.LastError, "payload cannot be decrypted: the key changed") {
				t.Errorf("last_error = %q", m.LastError)
			}
			if m.SealedData != nil {
				t.Errorf("failed message keeps %d sealed bytes", len(m.SealedData))
			}
			second.Clock.Advance(time.Hour)
			time.Sleep(200 * time.Millisecond) // a few polls
			if m := second.DB.Ent.OutboxMessage.GetX(context.Background(), m.ID); m.Status != outboxmessage.StatusFailed || m.Attempts != attemptsBefore+1 {
				t.Errorf("after an hour: status=%s attempts=%d: retried", m.Status, m.Attempts)
			}
			if n := len(second.SMTP.Messages()); n != 0 {
				t.Errorf("messages delivered = %d, want 0", n)
			}
			logs := second.Log.String()
			if !strings.Contains(logs, "failed for good") || !strings.Contains(logs, m.ID.String()) {
				t.Errorf("the failure is not logged with the message id:\n%s", logs)
			}
		})
	}
}

// A production start without OTP__SECRET warns that the keys of codes and
// queued e-mails come from JWT__SECRET; with it, it does not.
func TestOTPSecretWarning(t *testing.T) {
	without := newEnv(t)
	if !strings.Contains(without.Log.String(), `"level":"WARN","msg":"OTP__SECRET is not set`) {
		t.Errorf("no warning without OTP__SECRET:\n%s", without.Log.String())
	}
	with := newEnv(t, authtest.Set("OTP__SECRET", "warning-otp-secret-0123456789-abcdefgh"))
	if strings.Contains(with.Log.String(), "OTP__SECRET is not set") {
		t.Errorf("warning with OTP__SECRET set:\n%s", with.Log.String())
	}
}
