package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"entgo.io/ent/dialect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/placebrain/auth/ent/auditevent"
	"github.com/placebrain/auth/ent/loginthrottle"
	"github.com/placebrain/auth/ent/otprequest"
	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/ent/ratelimit"
	"github.com/placebrain/auth/ent/refreshtoken"
	"github.com/placebrain/auth/ent/tokenfamily"
	"github.com/placebrain/auth/ent/user"
	"github.com/placebrain/auth/internal/auth"
)

// The cleanup's transactions (auth.Purger). Each picks at most limit dead
// rows with FOR UPDATE SKIP LOCKED on PostgreSQL, so rows an RPC holds are
// left for the next run, then deletes them and what depends on them. A
// row the picked ones depend on may still be held by an RPC that locks in
// another order (a rotation locks a token, then its family); the cleanup's
// transactions give up such a wait after cleanupLockTimeout, always before
// PostgreSQL's deadlock detection (1 s by default) would choose between
// them and the RPC, and the batch is left for the next run. On SQLite a
// transaction holds the database's write lock and waits for nothing.

// cleanupLockTimeout bounds how long a cleanup transaction waits for a
// row lock on PostgreSQL.
const cleanupLockTimeout = "100ms"

// idRow is one picked row's id.
type idRow struct {
	ID uuid.UUID `json:"id"`
}

func idsOf(rows []idRow) []uuid.UUID {
	ids := make([]uuid.UUID, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	return ids
}

// purge runs fn in a cleanup transaction (see above). A batch given up on
// a lock wait is not an error: it reports nothing deleted and a short
// batch, so the cleanup moves on.
func (db *DB) purge(ctx context.Context, fn func(*Tx) (auth.Cleaned, int, error)) (auth.Cleaned, int, error) {
	var c auth.Cleaned
	var batch int
	err := db.withTx(ctx, func(tx *Tx) error {
		if db.Dialect == dialect.Postgres {
			if _, err := tx.c.ExecContext(ctx, "SET LOCAL lock_timeout = '"+cleanupLockTimeout+"'"); err != nil {
				return fmt.Errorf("cleanup: set lock timeout: %w", err)
			}
		}
		var err error
		c, batch, err = fn(tx)
		return err
	})
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "55P03" { // lock_not_available
		return auth.Cleaned{}, 0, nil
	}
	if err != nil {
		return auth.Cleaned{}, 0, err
	}
	return c, batch, nil
}

// PurgeRefreshTokens implements auth.Purger.
func (db *DB) PurgeRefreshTokens(ctx context.Context, t time.Time, limit int) (auth.Cleaned, int, error) {
	return db.purge(ctx, func(tx *Tx) (auth.Cleaned, int, error) {
		var rows []idRow
		err := tx.c.RefreshToken.Query().
			Where(refreshtoken.ExpiresAtLT(t), refreshtoken.HasFamilyWith(tokenfamily.RevokedAtIsNil())).
			Limit(limit).Select(refreshtoken.FieldID).Modify(skipLocked()).Scan(ctx, &rows)
		if err != nil || len(rows) == 0 {
			return auth.Cleaned{}, 0, wrapErr("cleanup: pick refresh tokens", err)
		}
		n, err := tx.c.RefreshToken.Delete().Where(refreshtoken.IDIn(idsOf(rows)...)).Exec(ctx)
		return auth.Cleaned{RefreshTokens: n}, len(rows), wrapErr("cleanup: delete refresh tokens", err)
	})
}

// PurgeTokenFamilies implements auth.Purger. A family can hold thousands
// of tokens (a revoked session keeps every one), so the batch bounds rows,
// not families: it first deletes at most limit tokens of dead families,
// then, with what is left of limit, dead families that have no token left.
// Tokens go before their families, the order a rotation locks them in.
func (db *DB) PurgeTokenFamilies(ctx context.Context, revoked, started time.Time, limit int) (auth.Cleaned, int, error) {
	return db.purge(ctx, func(tx *Tx) (auth.Cleaned, int, error) {
		dead := tokenfamily.Or(
			tokenfamily.RevokedAtLT(revoked),
			tokenfamily.And(tokenfamily.RevokedAtIsNil(), tokenfamily.Not(tokenfamily.HasRefreshTokens())),
		)
		if !started.IsZero() {
			dead = tokenfamily.Or(dead, tokenfamily.And(tokenfamily.RevokedAtIsNil(), tokenfamily.CreatedAtLT(started)))
		}
		var c auth.Cleaned
		var tokens []idRow
		err := tx.c.RefreshToken.Query().Where(refreshtoken.HasFamilyWith(dead)).
			Limit(limit).Select(refreshtoken.FieldID).Modify(skipLocked()).Scan(ctx, &tokens)
		if err != nil {
			return auth.Cleaned{}, 0, wrapErr("cleanup: pick the dead families' refresh tokens", err)
		}
		if len(tokens) > 0 {
			if c.RefreshTokens, err = tx.c.RefreshToken.Delete().Where(refreshtoken.IDIn(idsOf(tokens)...)).Exec(ctx); err != nil {
				return auth.Cleaned{}, 0, wrapErr("cleanup: delete the dead families' refresh tokens", err)
			}
		}
		if len(tokens) >= limit {
			return c, len(tokens), nil
		}
		var families []idRow
		err = tx.c.TokenFamily.Query().Where(dead, tokenfamily.Not(tokenfamily.HasRefreshTokens())).
			Limit(limit-len(tokens)).Select(tokenfamily.FieldID).Modify(skipLocked()).Scan(ctx, &families)
		if err != nil || len(families) == 0 {
			return c, len(tokens), wrapErr("cleanup: pick token families", err)
		}
		c.TokenFamilies, err = tx.c.TokenFamily.Delete().Where(tokenfamily.IDIn(idsOf(families)...)).Exec(ctx)
		return c, len(tokens) + len(families), wrapErr("cleanup: delete token families", err)
	})
}

// PurgeCodes implements auth.Purger.
func (db *DB) PurgeCodes(ctx context.Context, t time.Time, limit int) (auth.Cleaned, int, error) {
	return db.purge(ctx, func(tx *Tx) (auth.Cleaned, int, error) {
		var rows []idRow
		err := tx.c.OtpRequest.Query().Where(otprequest.ExpiresAtLT(t)).
			Limit(limit).Select(otprequest.FieldID).Modify(skipLocked()).Scan(ctx, &rows)
		if err != nil || len(rows) == 0 {
			return auth.Cleaned{}, 0, wrapErr("cleanup: pick codes", err)
		}
		n, err := tx.c.OtpRequest.Delete().Where(otprequest.IDIn(idsOf(rows)...)).Exec(ctx)
		return auth.Cleaned{Codes: n}, len(rows), wrapErr("cleanup: delete codes", err)
	})
}

// PurgeMail implements auth.Purger.
func (db *DB) PurgeMail(ctx context.Context, t time.Time, limit int) (auth.Cleaned, int, error) {
	return db.purge(ctx, func(tx *Tx) (auth.Cleaned, int, error) {
		var rows []idRow
		err := tx.c.OutboxMessage.Query().
			Where(outboxmessage.StatusIn(outboxmessage.StatusSent, outboxmessage.StatusFailed), outboxmessage.CreatedAtLT(t)).
			Limit(limit).Select(outboxmessage.FieldID).Modify(skipLocked()).Scan(ctx, &rows)
		if err != nil || len(rows) == 0 {
			return auth.Cleaned{}, 0, wrapErr("cleanup: pick outbox messages", err)
		}
		n, err := tx.c.OutboxMessage.Delete().Where(outboxmessage.IDIn(idsOf(rows)...)).Exec(ctx)
		return auth.Cleaned{Mail: n}, len(rows), wrapErr("cleanup: delete outbox messages", err)
	})
}

// PurgeUnverifiedUsers implements auth.Purger. The accounts' sessions go
// with them (ON DELETE CASCADE; an unverified account has none); their
// codes and outbox messages are deleted first, and counted.
func (db *DB) PurgeUnverifiedUsers(ctx context.Context, t time.Time, limit int) (auth.Cleaned, int, error) {
	return db.purge(ctx, func(tx *Tx) (auth.Cleaned, int, error) {
		var rows []idRow
		err := tx.c.User.Query().
			Where(user.IsVerified(false), user.ClaimedAtLT(t), user.DeletedAtIsNil()).
			Limit(limit).Select(user.FieldID).Modify(skipLocked()).Scan(ctx, &rows)
		if err != nil || len(rows) == 0 {
			return auth.Cleaned{}, 0, wrapErr("cleanup: pick unverified accounts", err)
		}
		ids := idsOf(rows)
		var c auth.Cleaned
		if c.Mail, err = tx.c.OutboxMessage.Delete().Where(outboxmessage.UserIDIn(ids...)).Exec(ctx); err != nil {
			return auth.Cleaned{}, 0, wrapErr("cleanup: delete the accounts' outbox messages", err)
		}
		if c.Codes, err = tx.c.OtpRequest.Delete().Where(otprequest.UserIDIn(ids...)).Exec(ctx); err != nil {
			return auth.Cleaned{}, 0, wrapErr("cleanup: delete the accounts' codes", err)
		}
		c.Users, err = tx.c.User.Delete().Where(user.IDIn(ids...)).Exec(ctx)
		return c, len(rows), wrapErr("cleanup: delete unverified accounts", err)
	})
}

// PurgeAuditEvents implements auth.Purger.
func (db *DB) PurgeAuditEvents(ctx context.Context, t time.Time, limit int) (auth.Cleaned, int, error) {
	return db.purge(ctx, func(tx *Tx) (auth.Cleaned, int, error) {
		var rows []idRow
		err := tx.c.AuditEvent.Query().Where(auditevent.CreatedAtLT(t)).
			Limit(limit).Select(auditevent.FieldID).Modify(skipLocked()).Scan(ctx, &rows)
		if err != nil || len(rows) == 0 {
			return auth.Cleaned{}, 0, wrapErr("cleanup: pick audit events", err)
		}
		n, err := tx.c.AuditEvent.Delete().Where(auditevent.IDIn(idsOf(rows)...)).Exec(ctx)
		return auth.Cleaned{AuditEvents: n}, len(rows), wrapErr("cleanup: delete audit events", err)
	})
}

// PurgeCounters implements auth.Purger.
func (db *DB) PurgeCounters(ctx context.Context, purpose auth.Purpose, last, now time.Time, limit int) (auth.Cleaned, int, error) {
	return db.purge(ctx, func(tx *Tx) (auth.Cleaned, int, error) {
		var rows []idRow
		err := tx.c.RateLimit.Query().Where(
			ratelimit.PurposeEQ(ratelimit.Purpose(purpose)),
			ratelimit.UpdatedAtLT(last),
			ratelimit.Or(ratelimit.LockedUntilIsNil(), ratelimit.LockedUntilLT(now)),
		).Limit(limit).Select(ratelimit.FieldID).Modify(skipLocked()).Scan(ctx, &rows)
		if err != nil || len(rows) == 0 {
			return auth.Cleaned{}, 0, wrapErr("cleanup: pick limiter counters", err)
		}
		n, err := tx.c.RateLimit.Delete().Where(ratelimit.IDIn(idsOf(rows)...)).Exec(ctx)
		return auth.Cleaned{Counters: n}, len(rows), wrapErr("cleanup: delete limiter counters", err)
	})
}

// PurgeLoginThrottles implements auth.Purger.
func (db *DB) PurgeLoginThrottles(ctx context.Context, t time.Time, limit int) (auth.Cleaned, int, error) {
	return db.purge(ctx, func(tx *Tx) (auth.Cleaned, int, error) {
		var rows []idRow
		err := tx.c.LoginThrottle.Query().Where(loginthrottle.UpdatedAtLT(t)).
			Limit(limit).Select(loginthrottle.FieldID).Modify(skipLocked()).Scan(ctx, &rows)
		if err != nil || len(rows) == 0 {
			return auth.Cleaned{}, 0, wrapErr("cleanup: pick login throttles", err)
		}
		n, err := tx.c.LoginThrottle.Delete().Where(loginthrottle.IDIn(idsOf(rows)...)).Exec(ctx)
		return auth.Cleaned{LoginThrottles: n}, len(rows), wrapErr("cleanup: delete login throttles", err)
	})
}
