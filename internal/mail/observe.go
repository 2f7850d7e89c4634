package mail

import "time"

// Backlog is what the outbox holds at a moment, for metrics.
type Backlog struct {
	// Pending counts the messages neither sent nor failed: due, waiting
	// for a retry, or claimed by a dispatcher.
	Pending int
	// OldestDue is the next attempt time of the message due the longest,
	// at or before the moment; zero when none is due.
	OldestDue time.Time
}

// OutcomeName names a delivery attempt's outcome: sent, retry (it failed
// and will be retried), failed (for good) or expired (its code expired
// before it could be sent).
func OutcomeName(s Status) string {
	switch s {
	case StatusSent:
		return "sent"
	case StatusFailed:
		return "failed"
	case StatusExpired:
		return "expired"
	}
	return "retry"
}
