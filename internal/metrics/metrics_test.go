package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/mail"
	"github.com/placebrain/auth/internal/metrics"
	"github.com/placebrain/auth/internal/password"
	"github.com/placebrain/auth/internal/testutil/testdb"
)

// What the domain and the dispatcher report costs no allocation: an event
// that is not a security event (RefreshTokens' token_refreshed, on the hot
// path) and one that is, a delivery, and all of it on a nil *Metrics
// (metrics off).
func TestReportsDoNotAllocate(t *testing.T) {
	db := testdb.Open(t)
	m := metrics.New(metrics.Sources{
		DB:      db.SQL,
		Backlog: db.OutboxBacklog,
		Pool:    password.NewPool(1, 0),
	})
	var off *metrics.Metrics
	for name, fn := range map[string]func(){
		"token refreshed":     func() { m.AuditEvent(auth.EventTokenRefreshed, "") },
		"reuse detected":      func() { m.AuditEvent(auth.EventRefreshTokenReused, "") },
		"code exhausted":      func() { m.AuditEvent(auth.EventOTPFailed, auth.ReasonOTPAttemptsExhausted) },
		"delivered":           func() { m.Delivered(mail.StatusSent) },
		"metrics off, event":  func() { off.AuditEvent(auth.EventRefreshTokenReused, "") },
		"metrics off, sent":   func() { off.Delivered(mail.StatusSent) },
		"metrics off, pruned": func() { off.CleanupDeleted("all", 3) },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
	// The registry gathers (the outbox's statements run on the database).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := db.OutboxBacklog(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Registry().Gather(); err != nil {
		t.Errorf("gather: %v", err)
	}
}
