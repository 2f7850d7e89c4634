package auth

import (
	"context"
	"time"
)

// RetentionPolicy says how long rows that no longer decide anything are
// kept before Cleanup deletes them.
type RetentionPolicy struct {
	// RevokedFamilies is how long a revoked token family (and its tokens)
	// is kept: within it a replay of one of its tokens still answers
	// REFRESH_TOKEN_REVOKED (or REUSED), after it INVALID_REFRESH_TOKEN.
	RevokedFamilies time.Duration
	// UnverifiedAccounts is how long after its latest sign-up claim an
	// unverified account is kept (accounts made before claims existed
	// are exempt).
	UnverifiedAccounts time.Duration
	// Mail is how long sent and failed outbox messages are kept (they
	// hold the recipient's address).
	Mail time.Duration
	// Audit is how long audit events are kept; zero: forever.
	Audit time.Duration
	// BatchSize is the most rows one statement deletes, in a transaction
	// of its own.
	BatchSize int
}

// codeRetention is how long a code is kept after it expired (consumed
// and superseded codes expire within OTPPolicy.TTL of being issued).
const codeRetention = 24 * time.Hour

// loginThrottleRetention is how long a row of the login_throttles table,
// which the limiter replaced, is kept after its last change: longer than
// any window or lockout it held.
const loginThrottleRetention = 24 * time.Hour

// Cleaned counts the rows a cleanup deleted, per table.
type Cleaned struct {
	RefreshTokens  int
	TokenFamilies  int
	Codes          int
	Mail           int
	Users          int
	AuditEvents    int
	Counters       int
	LoginThrottles int
}

// Add adds o's counts to c's.
func (c *Cleaned) Add(o Cleaned) {
	c.RefreshTokens += o.RefreshTokens
	c.TokenFamilies += o.TokenFamilies
	c.Codes += o.Codes
	c.Mail += o.Mail
	c.Users += o.Users
	c.AuditEvents += o.AuditEvents
	c.Counters += o.Counters
	c.LoginThrottles += o.LoginThrottles
}

// Tables returns the counts by table name, every table included.
func (c Cleaned) Tables() map[string]int {
	return map[string]int{
		"refresh_tokens": c.RefreshTokens, "token_families": c.TokenFamilies, "otp_requests": c.Codes,
		"outbox_messages": c.Mail, "users": c.Users, "audit_events": c.AuditEvents, "rate_limits": c.Counters,
		"login_throttles": c.LoginThrottles,
	}
}

// Total is the number of rows deleted.
func (c Cleaned) Total() int {
	return c.RefreshTokens + c.TokenFamilies + c.Codes + c.Mail + c.Users + c.AuditEvents + c.Counters + c.LoginThrottles
}

// Purger deletes dead rows for Cleanup. Each method deletes at most limit
// rows of its kind, with what depends on them, in one short transaction,
// and reports every row it deleted; rows another transaction holds are
// skipped (FOR UPDATE SKIP LOCKED on PostgreSQL), so that a cleanup never
// waits on an RPC and several instances can clean at once, each deleting
// rows the others do not. batch is the count of the rows of its kind
// (the first of its report's counts that Cleanup compares with limit).
type Purger interface {
	// PurgeRefreshTokens deletes refresh tokens of unrevoked families
	// that expired before t, used or not.
	PurgeRefreshTokens(ctx context.Context, t time.Time, limit int) (c Cleaned, batch int, err error)
	// PurgeTokenFamilies deletes token families revoked before revoked,
	// unrevoked ones started before started (zero: none) and unrevoked
	// ones with no refresh token left, with their tokens.
	PurgeTokenFamilies(ctx context.Context, revoked, started time.Time, limit int) (c Cleaned, batch int, err error)
	// PurgeCodes deletes one-time codes that expired before t.
	PurgeCodes(ctx context.Context, t time.Time, limit int) (c Cleaned, batch int, err error)
	// PurgeMail deletes sent and failed outbox messages queued before t.
	PurgeMail(ctx context.Context, t time.Time, limit int) (c Cleaned, batch int, err error)
	// PurgeUnverifiedUsers deletes unverified accounts (not tombstones)
	// whose latest sign-up claim was made before t, with their codes,
	// sessions and outbox messages.
	PurgeUnverifiedUsers(ctx context.Context, t time.Time, limit int) (c Cleaned, batch int, err error)
	// PurgeAuditEvents deletes audit events recorded before t.
	PurgeAuditEvents(ctx context.Context, t time.Time, limit int) (c Cleaned, batch int, err error)
	// PurgeCounters deletes limiter counters of purpose whose last event
	// was before last (or that have none) and that lock nothing at now.
	PurgeCounters(ctx context.Context, purpose Purpose, last, now time.Time, limit int) (c Cleaned, batch int, err error)
	// PurgeLoginThrottles deletes rows of the retired login_throttles
	// table last changed before t.
	PurgeLoginThrottles(ctx context.Context, t time.Time, limit int) (c Cleaned, batch int, err error)
}

// Cleanup deletes every row that no longer decides anything, table by
// table, in batches of at most RetentionPolicy.BatchSize rows (fewer while
// batches are slow; see nextBatch), each in a transaction of its own and
// followed by a rest as long as it took, until a batch comes back short;
// several instances may run it at once. What it deletes, at the retentions of RetentionPolicy:
//
//   - refresh tokens past their own expiry, in unrevoked families (until
//     then a replay of a used one is reuse; afterwards it is unknown);
//   - revoked token families after RevokedFamilies, unrevoked ones past
//     the session's lifetime or with no token left, with their tokens;
//   - codes a day after they expired (consumed and superseded ones
//     included);
//   - sent and failed outbox messages after Mail;
//   - unverified accounts whose latest sign-up claim is older than
//     UnverifiedAccounts;
//   - audit events after Audit;
//   - limiter counters once they can no longer count or lock anything,
//     and the retired login_throttles rows.
//
// It returns the rows it deleted per table (those of the batches that
// committed, also on error).
func (s *Service) Cleanup(ctx context.Context) (Cleaned, error) {
	r := s.o.Retention
	now := s.now()
	var started time.Time
	if s.o.Refresh.SessionMax > 0 {
		started = now.Add(-s.o.Refresh.SessionMax)
	}
	steps := []func(limit int) (Cleaned, int, error){
		func(n int) (Cleaned, int, error) { return s.db.PurgeRefreshTokens(ctx, now, n) },
		func(n int) (Cleaned, int, error) {
			return s.db.PurgeTokenFamilies(ctx, now.Add(-r.RevokedFamilies), started, n)
		},
		func(n int) (Cleaned, int, error) {
			return s.db.PurgeUnverifiedUsers(ctx, now.Add(-r.UnverifiedAccounts), n)
		},
		func(n int) (Cleaned, int, error) { return s.db.PurgeCodes(ctx, now.Add(-codeRetention), n) },
		func(n int) (Cleaned, int, error) { return s.db.PurgeMail(ctx, now.Add(-r.Mail), n) },
		func(n int) (Cleaned, int, error) {
			return s.db.PurgeLoginThrottles(ctx, now.Add(-loginThrottleRetention), n)
		},
	}
	if r.Audit > 0 {
		steps = append(steps, func(n int) (Cleaned, int, error) { return s.db.PurgeAuditEvents(ctx, now.Add(-r.Audit), n) })
	}
	for _, c := range s.counterLifetimes() {
		steps = append(steps, func(n int) (Cleaned, int, error) {
			return s.db.PurgeCounters(ctx, c.purpose, now.Add(-c.idle), now, n)
		})
	}
	limit := max(r.BatchSize, 1)
	n := limit
	var total Cleaned
	for _, step := range steps {
		for {
			start := time.Now()
			c, batch, err := step(n)
			took := time.Since(start)
			total.Add(c)
			if err != nil {
				return total, err
			}
			if batch < n {
				break
			}
			n = nextBatch(n, took, limit)
			// Rest as long as the batch took: RPCs waiting for what it
			// held (on SQLite, the database) go first.
			if err := sleep(ctx, min(took, maxCleanupRest)); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

// The cleanup's batches adapt to the database: one that holds its locks
// longer than slowBatch halves the next (down to minBatch rows), one
// quicker than a quarter of it doubles the next (up to the batch size),
// so that an RPC never waits long behind one, whatever the rows cost.
const (
	slowBatch      = 20 * time.Millisecond
	minBatch       = 50
	maxCleanupRest = 100 * time.Millisecond
)

// nextBatch is the size of the batch after one of n rows that took took,
// at most limit.
func nextBatch(n int, took time.Duration, limit int) int {
	switch {
	case took > slowBatch:
		return max(n/2, min(minBatch, limit))
	case took < slowBatch/4:
		return min(n*2, limit)
	}
	return n
}
