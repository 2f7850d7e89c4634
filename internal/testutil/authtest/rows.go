package authtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/auditevent"
	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/ent/ratelimit"
)

// Rows for the retention cleanup's tests and benchmark, written straight
// to the database at the env's clock with the default retentions in
// mind: SeedLiveRows' rows are all kept, SeedDeadRows' all deleted.

func random32() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// SeedLiveRows writes n verified users, each with a session (token family)
// holding one live refresh token, and one row of each other kind that the
// cleanup must keep: a code expired less than a day ago, an e-mail sent 6
// days ago, an audit event 89 days old, a registration counter 30
// minutes idle and a login throttle 23 hours idle. It returns the users'
// and the sessions' ids.
func (e *Env) SeedLiveRows(t testing.TB, n int) (users, families []uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	c := e.DB.Ent
	now := e.Clock.Now()
	for i := range n {
		u := c.User.Create().SetUsername("live").SetEmail(fmt.Sprintf("live%d@example.com", i)).
			SetEmailNormalized(fmt.Sprintf("live%d@example.com", i)).SetPasswordHash("x").
			SetIsVerified(true).SetClaimedAt(now.Add(-100 * 24 * time.Hour)).SaveX(ctx)
		f := c.TokenFamily.Create().SetUserID(u.ID).SetCreatedAt(now.Add(-time.Hour)).SaveX(ctx)
		c.RefreshToken.Create().SetUserID(u.ID).SetFamilyID(f.ID).SetTokenHash(random32()).
			SetExpiresAt(now.Add(30 * 24 * time.Hour)).ExecX(ctx)
		c.OtpRequest.Create().SetUserID(u.ID).SetCodeHmac(random32()).SetExpiresAt(now.Add(-23 * time.Hour)).ExecX(ctx)
		c.OutboxMessage.Create().SetRecipient("live@example.com").SetTemplate("otp").
			SetStatus(outboxmessage.StatusSent).SetCreatedAt(now.Add(-6 * 24 * time.Hour)).ExecX(ctx)
		c.AuditEvent.Create().SetEvent(auditevent.EventLoginFailed).SetCreatedAt(now.Add(-89 * 24 * time.Hour)).ExecX(ctx)
		c.RateLimit.Create().SetKeyHmac(random32()).SetPurpose(ratelimit.PurposeRegister).
			SetWindowStartedAt(now.Add(-30 * time.Minute)).SetUpdatedAt(now.Add(-30 * time.Minute)).ExecX(ctx)
		c.LoginThrottle.Create().SetKeyHmac(random32()).SetWindowStartedAt(now).SetUpdatedAt(now.Add(-23 * time.Hour)).ExecX(ctx)
		users, families = append(users, u.ID), append(families, f.ID)
	}
	return users, families
}

// SeedDeadRows writes n dead rows into each table the cleanup deletes
// from: refresh tokens expired in the live families, families revoked 8
// days ago or left without a token (half each), codes expired 25 hours
// ago, sent and failed e-mails 8 days old, unverified users whose claim is
// 73 hours old, audit events 91 days old, registration counters 2 hours
// idle and login throttles 2 days idle. The tokens, families and codes
// belong to owners (and families), which must exist.
func (e *Env) SeedDeadRows(t testing.TB, n int, owners, families []uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	c := e.DB.Ent
	now := e.Clock.Now()
	const chunk = 200 // rows per INSERT: SQLite allows 32766 bind parameters
	for from := 0; from < n; from += chunk {
		var (
			tokens   []*ent.RefreshTokenCreate
			fams     []*ent.TokenFamilyCreate
			codes    []*ent.OtpRequestCreate
			mail     []*ent.OutboxMessageCreate
			users    []*ent.UserCreate
			events   []*ent.AuditEventCreate
			counters []*ent.RateLimitCreate
			throttle []*ent.LoginThrottleCreate
		)
		for i := from; i < min(from+chunk, n); i++ {
			owner := owners[i%len(owners)]
			used := now.Add(-40 * 24 * time.Hour)
			tokens = append(tokens, c.RefreshToken.Create().SetUserID(owner).SetFamilyID(families[i%len(families)]).
				SetTokenHash(random32()).SetCreatedAt(used).SetUsedAt(used).SetExpiresAt(now.Add(-time.Hour)))
			f := c.TokenFamily.Create().SetUserID(owner).SetCreatedAt(now.Add(-20 * 24 * time.Hour))
			if i%2 == 0 {
				f.SetRevokedAt(now.Add(-8 * 24 * time.Hour)).SetRevokeReason("logout")
			}
			fams = append(fams, f)
			codes = append(codes, c.OtpRequest.Create().SetUserID(owner).SetCodeHmac(random32()).
				SetCreatedAt(now.Add(-26*time.Hour)).SetExpiresAt(now.Add(-25*time.Hour)))
			status := outboxmessage.StatusSent
			if i%3 == 0 {
				status = outboxmessage.StatusFailed
			}
			mail = append(mail, c.OutboxMessage.Create().SetRecipient("old@example.com").SetTemplate("otp").
				SetStatus(status).SetCreatedAt(now.Add(-8*24*time.Hour)))
			addr := fmt.Sprintf("gone%d-%s@example.com", i, uuid.NewString()[:8])
			users = append(users, c.User.Create().SetUsername("gone").SetEmail(addr).SetEmailNormalized(addr).
				SetPasswordHash("x").SetCreatedAt(now.Add(-73*time.Hour)).SetClaimedAt(now.Add(-73*time.Hour)))
			events = append(events, c.AuditEvent.Create().SetEvent(auditevent.EventLoginFailed).SetCreatedAt(now.Add(-91*24*time.Hour)))
			counters = append(counters, c.RateLimit.Create().SetKeyHmac(random32()).SetPurpose(ratelimit.PurposeRegister).
				SetWindowStartedAt(now.Add(-3*time.Hour)).SetUpdatedAt(now.Add(-2*time.Hour)))
			throttle = append(throttle, c.LoginThrottle.Create().SetKeyHmac(random32()).
				SetWindowStartedAt(now.Add(-3*24*time.Hour)).SetUpdatedAt(now.Add(-2*24*time.Hour)))
		}
		c.RefreshToken.CreateBulk(tokens...).ExecX(ctx)
		c.TokenFamily.CreateBulk(fams...).ExecX(ctx)
		c.OtpRequest.CreateBulk(codes...).ExecX(ctx)
		c.OutboxMessage.CreateBulk(mail...).ExecX(ctx)
		c.User.CreateBulk(users...).ExecX(ctx)
		c.AuditEvent.CreateBulk(events...).ExecX(ctx)
		c.RateLimit.CreateBulk(counters...).ExecX(ctx)
		c.LoginThrottle.CreateBulk(throttle...).ExecX(ctx)
	}
}
