package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent/auditevent"
	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/testutil/authtest"
)

// A stranger who registers an owner's address before or after the owner
// cannot get the account: competing claims adopt no password, and the
// owner sets one with ResetPassword.
func TestSignUpClaims(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	// A single claim is adopted.
	e.Register(t, "owner", "v@example.com", "owner-pass")
	if err := e.Service.VerifyOTP(ctx, "v@example.com", e.Code(t, "v@example.com")); err != nil {
		t.Fatal(err)
	}
	e.Login(t, "v@example.com", "owner-pass")
	_, err := e.Service.Register(ctx, "stranger", "V@example.com", "attacker-pass")
	wantErr(t, err, auth.ErrEmailTaken, "Email already registered")

	// Competing claims with different passwords: verifying adopts neither.
	id := e.Register(t, "owner", "w@example.com", "owner-pass")
	e.Code(t, "w@example.com")
	e.Clock.Advance(61 * time.Second)
	if again := e.Register(t, "attacker", "w@example.com", "attacker-pass"); again != id {
		t.Fatalf("a claim answered user_id %s, want the account's %s", again, id)
	}
	newest := e.Code(t, "w@example.com")
	if err := e.Service.VerifyOTP(ctx, "w@example.com", newest); err != nil {
		t.Fatalf("verify with the newest code: %v", err)
	}
	for _, pass := range []string{"attacker-pass", "owner-pass"} {
		_, err := e.Service.Login(ctx, "w@example.com", pass)
		wantErr(t, err, auth.ErrInvalidCredentials, "")
	}
	if n := auditCount(t, e, auditevent.EventOtpVerified, "claims_contested"); n != 1 {
		t.Errorf("contested verifications audited = %d, want 1", n)
	}
	u, err := e.Service.GetUserByEmail(ctx, "w@example.com")
	if err != nil || u.ID.String() != id || u.Username != "w" || !u.Verified {
		t.Errorf("GetUserByEmail = %+v, %v; want the address's local part as username, verified", u, err)
	}
	// The owner gets in with a reset.
	if err := e.Service.RequestPasswordReset(ctx, "w@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := e.Service.ResetPassword(ctx, "w@example.com", e.Code(t, "w@example.com"), "owner-new-pass"); err != nil {
		t.Fatalf("ResetPassword: %v", err)
	}
	e.Login(t, "w@example.com", "owner-new-pass")
}

// Claims with one password (the owner registering twice) are adopted, the
// newest claim's username with it; the claim's code is mailed within the
// cooldown, and supersedes the earlier one.
func TestSignUpClaimsWithOnePassword(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.Register(t, "first", "x@example.com", "same-pass")
	first := e.Code(t, "x@example.com")
	e.Clock.Advance(5 * time.Second) // within the cooldown
	e.Register(t, "second", "X@example.com", "same-pass")
	second := e.Code(t, "x@example.com")
	if first != second {
		err := e.Service.VerifyOTP(ctx, "x@example.com", first)
		wantErr(t, err, auth.ErrInvalidOTP, "")
	}
	// Before verification nothing changed: the account's own password
	// is the first claim's, and the address is not verified.
	_, err := e.Service.Login(ctx, "x@example.com", "same-pass")
	wantErr(t, err, auth.ErrEmailNotVerified, "")
	if err := e.Service.VerifyOTP(ctx, "x@example.com", second); err != nil {
		t.Fatal(err)
	}
	e.Login(t, "x@example.com", "same-pass")
	u, err := e.Service.GetUserByEmail(ctx, "x@example.com")
	if err != nil || u.Username != "second" {
		t.Errorf("GetUserByEmail = %+v, %v; want the newest claim's username", u, err)
	}
}

// A claim with another password contests the account even after the
// first claim's code expired: an owner late to verify must never adopt a
// stranger's password with the code the stranger's claim mailed.
func TestSignUpClaimAfterTheCodeExpired(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.Register(t, "owner", "late@example.com", "owner-pass")
	e.Code(t, "late@example.com")
	e.Clock.Advance(otpTTL + time.Minute)
	e.Register(t, "attacker", "late@example.com", "attacker-pass")
	if err := e.Service.VerifyOTP(ctx, "late@example.com", e.Code(t, "late@example.com")); err != nil {
		t.Fatal(err)
	}
	for _, pass := range []string{"attacker-pass", "owner-pass"} {
		_, err := e.Service.Login(ctx, "late@example.com", pass)
		wantErr(t, err, auth.ErrInvalidCredentials, "")
	}
}

// Claims count as registrations of their source and as codes of the
// address: the daily limit holds, whatever the cooldown.
func TestSignUpClaimsWithinTheLimits(t *testing.T) {
	e := newEnv(t, authtest.Set("OTP__ACCOUNT_DAILY_LIMIT", "3"))
	ctx := context.Background()
	e.Register(t, "a", "busy@example.com", "pass-one-1")
	e.Register(t, "b", "busy@example.com", "pass-two-2")
	e.Register(t, "c", "busy@example.com", "pass-three")
	_, err := e.Service.Register(ctx, "d", "busy@example.com", "pass-four-4")
	wantErr(t, err, auth.ErrOTPDailyLimit, "")
	// A refused claim changed nothing and queued nothing.
	if n := e.DB.Ent.OutboxMessage.Query().CountX(ctx); n != 3 {
		t.Errorf("outbox messages = %d, want 3", n)
	}
	u := e.DB.Ent.User.GetX(ctx, uuid.MustParse(accountID(t, e, "busy@example.com")))
	if u.ClaimUsername == nil || *u.ClaimUsername != "c" {
		t.Errorf("claim username = %v, want c", u.ClaimUsername)
	}
}

// accountID returns the id of the account of addr.
func accountID(t testing.TB, e *authtest.Env, addr string) string {
	t.Helper()
	u, err := e.DB.UserByEmail(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID.String()
}
