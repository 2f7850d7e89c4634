package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/auditevent"
	"github.com/placebrain/auth/ent/loginthrottle"
)

// audit records a security event with c. userID may be uuid.Nil; reason is
// a short machine-readable detail or "". Outside a transaction a failure to
// record is logged and ignored: it must not fail the operation.
func (s *Service) audit(ctx context.Context, c *ent.Client, event auditevent.Event, userID uuid.UUID, reason string, now time.Time) {
	_ = s.auditTx(ctx, c, event, userID, reason, now)
}

// auditTx records a security event with a transaction's client, so that it
// commits with the change it describes, and returns the error: a failed
// statement aborts a PostgreSQL transaction, so the caller must fail too.
func (s *Service) auditTx(ctx context.Context, c *ent.Client, event auditevent.Event, userID uuid.UUID, reason string, now time.Time) error {
	// The schema's checks, which ent's builders would run.
	if err := errors.Join(auditevent.EventValidator(event), auditevent.ReasonValidator(reason)); err != nil {
		return fmt.Errorf("audit %s: %w", event, err)
	}
	_, err := c.ExecContext(ctx, s.sql.insertAudit, uuid.New(), now, string(event), nullable(userID), nullable(reason))
	if err != nil {
		s.o.Log.ErrorContext(ctx, "audit: record event", "event", event, "user_id", userID, "error", err)
		return fmt.Errorf("audit %s: %w", event, err)
	}
	return nil
}

// Prune deletes audit events older than the retention and login throttle
// rows that no longer count or lock anything. It returns how many rows it
// deleted. The server runs it periodically.
func (s *Service) Prune(ctx context.Context) (int, error) {
	now := s.now()
	var total int
	if s.o.AuditRetention > 0 {
		n, err := s.db.AuditEvent.Delete().Where(auditevent.CreatedAtLT(now.Add(-s.o.AuditRetention))).Exec(ctx)
		if err != nil {
			return total, fmt.Errorf("prune audit events: %w", err)
		}
		total += n
	}
	n, err := s.db.LoginThrottle.Delete().Where(
		loginthrottle.WindowStartedAtLT(now.Add(-s.o.Login.Window)),
		loginthrottle.Or(loginthrottle.LockedUntilIsNil(), loginthrottle.LockedUntilLT(now)),
	).Exec(ctx)
	if err != nil {
		return total, fmt.Errorf("prune login throttles: %w", err)
	}
	return total + n, nil
}
