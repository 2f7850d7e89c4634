package auth_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/ent/user"
	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/internal/testutil/authtest"
)

// manualCleanup is a service whose retention cleanup runs only when the
// test calls Cleanup.
func manualCleanup() authtest.Option {
	return authtest.ServerOptions(server.Options{NoCleanup: true})
}

func cleanup(t testing.TB, e *authtest.Env) auth.Cleaned {
	t.Helper()
	c, err := e.Service.Cleanup(context.Background())
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	return c
}

// exists reports whether the account id is still there.
func exists(t testing.TB, e *authtest.Env, id string) bool {
	t.Helper()
	return e.DB.Ent.User.Query().Where(user.ID(uuid.MustParse(id))).ExistX(context.Background())
}

// What each retention keeps, and what a replay answers before and after,
// along one account's life with the default retentions.
func TestRetention(t *testing.T) {
	e := newEnv(t, manualCleanup())
	ctx := context.Background()
	const day = 24 * time.Hour
	e.VerifiedUser(t, "keeper", "keeper@example.com", pw)
	r0 := e.Login(t, "keeper@example.com", pw).RefreshToken
	e.Login(t, "keeper@example.com", pw) // a session never refreshed
	z := e.Register(t, "z", "z@example.com", pw)
	legacy := e.Register(t, "legacy", "legacy@example.com", pw) // made before claims existed
	e.DB.Ent.User.UpdateOneID(uuid.MustParse(legacy)).ClearClaimedAt().ExecX(ctx)
	imported := uuid.NewString()
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf(`{"id": %q, "username": "imp", "email": "imp@example.com", "password_hash": %q, "is_verified": false, "created_at": "2024-01-01T00:00:00Z"}`, imported, hash)
	if _, err := auth.ImportUsers(ctx, e.DB, strings.NewReader(line), false, e.Clock.Now(), func(auth.ImportResult) {}); err != nil {
		t.Fatal(err)
	}
	if !exists(t, e, imported) {
		t.Fatal("import failed")
	}

	// Unverified accounts go 72 hours after their latest claim (an
	// imported one's counts from its import); older accounts stay.
	e.Clock.Advance(71 * time.Hour)
	cleanup(t, e)
	for _, id := range []string{z, legacy, imported} {
		if !exists(t, e, id) {
			t.Fatalf("account %s deleted before its TTL", id)
		}
	}
	e.Clock.Advance(2 * time.Hour)
	if c := cleanup(t, e); c.Users != 2 {
		t.Errorf("deleted accounts = %d, want 2", c.Users)
	}
	if exists(t, e, z) || exists(t, e, imported) || !exists(t, e, legacy) {
		t.Errorf("after the TTL: z %v, imported %v, legacy %v; want only legacy", exists(t, e, z), exists(t, e, imported), exists(t, e, legacy))
	}
	if again := e.Register(t, "z", "z@example.com", pw); again == z {
		t.Errorf("the address registered anew has the deleted account's id")
	}

	// A used token stays until its own expiry: a replay before it is
	// reuse, after it the token is unknown.
	e.Clock.Advance(day)
	r1, err := refresh(e, r0) // at 4 days: r1 expires at 34 days
	if err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(25 * day)
	r2, err := refresh(e, r1.RefreshToken) // r1 used at 29 days
	if err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(2 * day) // 31 days: r0 (30-day lifetime) expired, r1 not
	c := cleanup(t, e)
	if c.RefreshTokens != 2 || c.TokenFamilies != 1 {
		t.Errorf("deleted %d refresh tokens and %d families, want 2 (r0 and the unrefreshed session's) and 1", c.RefreshTokens, c.TokenFamilies)
	}
	if c.Codes == 0 || c.Mail == 0 {
		t.Errorf("codes and sent mail older than their retention were kept: %+v", c)
	}
	_, err = refresh(e, r0)
	wantErr(t, err, auth.ErrInvalidRefreshToken, "")
	_, err = refresh(e, r1.RefreshToken)
	wantErr(t, err, auth.ErrRefreshTokenReused, "")

	// A revoked family is kept 7 days: its tokens answer REVOKED, then
	// they are unknown.
	e.Clock.Advance(7*day - time.Minute)
	cleanup(t, e)
	_, err = refresh(e, r2.RefreshToken)
	wantErr(t, err, auth.ErrRefreshTokenRevoked, "")
	e.Clock.Advance(2 * time.Minute)
	if c := cleanup(t, e); c.TokenFamilies != 1 || c.RefreshTokens != 2 {
		t.Errorf("deleted %d families and %d tokens, want the revoked family and its 2 tokens", c.TokenFamilies, c.RefreshTokens)
	}
	_, err = refresh(e, r2.RefreshToken)
	wantErr(t, err, auth.ErrInvalidRefreshToken, "")

	// Within the defaults everything else goes too: what is left is the
	// verified account, the legacy one and what decides something.
	e.Clock.Advance(91 * day)
	cleanup(t, e)
	for name, n := range map[string]int{
		"refresh tokens": e.DB.Ent.RefreshToken.Query().CountX(ctx),
		"token families": e.DB.Ent.TokenFamily.Query().CountX(ctx),
		"codes":          e.DB.Ent.OtpRequest.Query().CountX(ctx),
		"outbox":         e.DB.Ent.OutboxMessage.Query().Where(outboxmessage.StatusNEQ(outboxmessage.StatusPending)).CountX(ctx),
		"audit events":   e.DB.Ent.AuditEvent.Query().CountX(ctx),
		"counters":       e.DB.Ent.RateLimit.Query().CountX(ctx),
	} {
		if n != 0 {
			t.Errorf("%d %s left", n, name)
		}
	}
	if n := e.DB.Ent.User.Query().CountX(ctx); n != 2 {
		t.Errorf("users = %d, want 2 (the verified one and the legacy one)", n)
	}
}

// tableCounts counts the rows of every table Cleanup deletes from.
func tableCounts(t testing.TB, e *authtest.Env) auth.Cleaned {
	t.Helper()
	ctx := context.Background()
	c := e.DB.Ent
	return auth.Cleaned{
		RefreshTokens:  c.RefreshToken.Query().CountX(ctx),
		TokenFamilies:  c.TokenFamily.Query().CountX(ctx),
		Codes:          c.OtpRequest.Query().CountX(ctx),
		Mail:           c.OutboxMessage.Query().CountX(ctx),
		Users:          c.User.Query().CountX(ctx),
		AuditEvents:    c.AuditEvent.Query().CountX(ctx),
		Counters:       c.RateLimit.Query().CountX(ctx),
		LoginThrottles: c.LoginThrottle.Query().CountX(ctx),
	}
}

// 10,000 dead rows in each table next to 100 live ones: two instances
// cleaning at once delete exactly the dead rows between them, in batches,
// without an error, and the live rows remain.
func TestConcurrentCleanup(t *testing.T) {
	const dead, live = 10_000, 100
	a := newEnv(t, manualCleanup())
	b := newEnv(t, manualCleanup(), authtest.SameDatabaseAs(a))
	ctx := context.Background()

	// The live rows: 100 verified users with a session each, a live code,
	// a recent e-mail, audit event, counter and throttle.
	owners, families := a.SeedLiveRows(t, live)
	a.SeedDeadRows(t, dead, owners, families)
	before := tableCounts(t, a)

	var wg sync.WaitGroup
	var got [2]auth.Cleaned
	var errs [2]error
	for i, e := range []*authtest.Env{a, b} {
		wg.Go(func() { got[i], errs[i] = e.Service.Cleanup(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
	t.Logf("instance 0 deleted %+v; instance 1 deleted %+v", got[0], got[1])
	sum := got[0]
	sum.Add(got[1])
	want := auth.Cleaned{RefreshTokens: dead, TokenFamilies: dead, Codes: dead, Mail: dead, Users: dead,
		AuditEvents: dead, Counters: dead, LoginThrottles: dead}
	if diff := cmp.Diff(want, sum); diff != "" {
		t.Errorf("rows deleted by both instances (-want +got):\n%s\ninstance 0: %+v\ninstance 1: %+v", diff, got[0], got[1])
	}
	after := tableCounts(t, a)
	wantLeft := before
	wantLeft.RefreshTokens -= dead
	wantLeft.TokenFamilies -= dead
	wantLeft.Codes -= dead
	wantLeft.Mail -= dead
	wantLeft.Users -= dead
	wantLeft.AuditEvents -= dead
	wantLeft.Counters -= dead
	wantLeft.LoginThrottles -= dead
	if diff := cmp.Diff(wantLeft, after); diff != "" {
		t.Errorf("rows left (-want +got):\n%s", diff)
	}
	if after.RefreshTokens != live || after.TokenFamilies != live || after.Users != live {
		t.Errorf("live rows left: %+v, want %d of each", after, live)
	}
}

// The service cleans at start: dead rows written while it was down are
// gone once it runs.
func TestCleanupRunsAtStart(t *testing.T) {
	a := newEnv(t, manualCleanup())
	owners, families := a.SeedLiveRows(t, 1)
	a.SeedDeadRows(t, 5, owners, families)
	a.Stop(t)
	b := newEnv(t, authtest.SameDatabaseAs(a))
	one := auth.Cleaned{RefreshTokens: 1, TokenFamilies: 1, Codes: 1, Mail: 1, Users: 1, AuditEvents: 1, Counters: 1, LoginThrottles: 1}
	deadline := time.Now().Add(10 * time.Second)
	for tableCounts(t, b) != one {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the start: rows %+v, want the live ones only, %+v", tableCounts(t, b), one)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
