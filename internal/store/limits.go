package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/ratelimit"
	"github.com/placebrain/auth/internal/auth"
)

// counterOf turns a rate_limits row into the domain's counter.
func counterOf(r *ent.RateLimit) auth.Counter {
	c := auth.Counter{Count: r.Count, Pending: r.Pending, WindowStart: r.WindowStartedAt}
	if r.LockedUntil != nil {
		c.LockedUntil = *r.LockedUntil
	}
	if r.LastAt != nil {
		c.Last = *r.LastAt
	}
	return c
}

// ReadCounter implements auth.Queries.
func (q queries) ReadCounter(ctx context.Context, key []byte) (auth.Counter, bool, error) {
	r, err := q.c.RateLimit.Query().Where(ratelimit.KeyHmac(key)).Only(ctx)
	if ent.IsNotFound(err) {
		return auth.Counter{}, false, nil
	}
	if err != nil {
		return auth.Counter{}, false, fmt.Errorf("read limiter counter: %w", err)
	}
	return counterOf(r), true, nil
}

// DeleteCounter implements auth.Queries.
func (q queries) DeleteCounter(ctx context.Context, key []byte) error {
	if _, err := q.c.RateLimit.Delete().Where(ratelimit.KeyHmac(key)).Exec(ctx); err != nil {
		return fmt.Errorf("delete limiter counter: %w", err)
	}
	return nil
}

// LockCounter implements auth.Tx with one prebuilt upsert that returns the
// row (see statements.lockCounter): on PostgreSQL its conflict branch
// locks an existing row, and a concurrent creator waits for the first and
// then gets its row, so no caller ever finds the row missing.
func (t *Tx) LockCounter(ctx context.Context, purpose auth.Purpose, key, account []byte, now time.Time) (auth.Counter, error) {
	if err := ratelimit.PurposeValidator(ratelimit.Purpose(purpose)); err != nil {
		return auth.Counter{}, fmt.Errorf("lock limiter counter: %w", err)
	}
	if err := ratelimit.KeyHmacValidator(key); err != nil {
		return auth.Counter{}, fmt.Errorf("lock limiter counter: %w", err)
	}
	var acct any // NULL for a counter of no account
	if account != nil {
		if err := ratelimit.AccountHmacValidator(account); err != nil {
			return auth.Counter{}, fmt.Errorf("lock limiter counter: %w", err)
		}
		acct = account
	}
	rows, err := t.c.QueryContext(ctx, t.sql.lockCounter, uuid.New(), key, string(purpose), acct, now, now)
	if err != nil {
		return auth.Counter{}, fmt.Errorf("lock limiter counter: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return auth.Counter{}, fmt.Errorf("lock limiter counter: %w", err)
		}
		return auth.Counter{}, fmt.Errorf("lock limiter counter: no row returned")
	}
	var c auth.Counter
	var locked, last sql.NullTime
	if err := rows.Scan(&c.Count, &c.Pending, &c.WindowStart, &locked, &last); err != nil {
		return auth.Counter{}, fmt.Errorf("lock limiter counter: %w", err)
	}
	c.LockedUntil, c.Last = locked.Time, last.Time
	return c, rows.Close()
}

// SaveCounter implements auth.Tx.
func (t *Tx) SaveCounter(ctx context.Context, key []byte, c auth.Counter, now time.Time) error {
	upd := t.c.RateLimit.Update().Where(ratelimit.KeyHmac(key)).
		SetCount(c.Count).SetPending(c.Pending).SetWindowStartedAt(c.WindowStart).SetUpdatedAt(now)
	if c.LockedUntil.IsZero() {
		upd.ClearLockedUntil()
	} else {
		upd.SetLockedUntil(c.LockedUntil)
	}
	if c.Last.IsZero() {
		upd.ClearLastAt()
	} else {
		upd.SetLastAt(c.Last)
	}
	if err := upd.Exec(ctx); err != nil {
		return fmt.Errorf("save limiter counter: %w", err)
	}
	return nil
}

// DeleteAccountCounters implements auth.Tx.
func (t *Tx) DeleteAccountCounters(ctx context.Context, account []byte, purposes ...auth.Purpose) error {
	ps := make([]ratelimit.Purpose, len(purposes))
	for i, p := range purposes {
		ps[i] = ratelimit.Purpose(p)
	}
	if _, err := t.c.RateLimit.Delete().Where(ratelimit.AccountHmac(account), ratelimit.PurposeIn(ps...)).Exec(ctx); err != nil {
		return fmt.Errorf("delete account's limiter counters: %w", err)
	}
	return nil
}
