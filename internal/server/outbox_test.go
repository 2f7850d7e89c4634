package server_test

import (
	"testing"

	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/internal/testutil/authtest"
)

// The code e-mail queued where the code is issued carries the code's
// expiry.
func TestQueuedCodeCarriesExpiry(t *testing.T) {
	e := authtest.New(t, authtest.SMTPDown())
	e.Register(t, "ada", "ada@example.com", pw)
	m, err := e.DB.Ent.OutboxMessage.Query().Where(outboxmessage.StatusEQ(outboxmessage.StatusPending)).Only(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := m.CreatedAt.Add(e.Config.OTP.TTL); m.ExpiresAt == nil || !m.ExpiresAt.Equal(want) {
		t.Errorf("expires_at %v, want %v (created + OTP__EXPIRE_MINUTES)", m.ExpiresAt, want)
	}
}
