package auth_test

// Races and abuse found in review of sessions, sign-up claims and the
// retention cleanup: each test failed before its fix.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"entgo.io/ent/dialect"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/internal/testutil/testdb"
)

// lockWaits reports whether another session of e's database waits for a
// lock while running a statement that starts with prefix.
func lockWaits(t *testing.T, e *authtest.Env, prefix string) bool {
	t.Helper()
	var n int
	err := e.DB.SQL.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()
		AND wait_event_type = 'Lock' AND query LIKE $1 || '%'`, prefix).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// waitForLockWait waits until another session of e's database waits for a
// lock while running a statement that starts with prefix (synchronization,
// not a timed assertion: it polls until the state is reached).
func waitForLockWait(t *testing.T, e *authtest.Env, prefix string) {
	t.Helper()
	for range 2000 {
		if lockWaits(t, e, prefix) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no session waits for a lock in %q", prefix)
}

// DeleteUser racing a rotation of one of the user's tokens: a rotation
// locks the token's row first, then its family's (FOR UPDATE OF t, f, on
// both paths), and EraseUser deletes the tokens before the families, so
// the two take their locks in the same order and cannot deadlock (they
// did when EraseUser deleted the families first). The interleaving is
// forced: another transaction holds a token of the user's first session,
// so DeleteUser stops inside its DELETE of the tokens; the rotation of
// the second session's token then either waits behind it or completes
// before it. Either way DeleteUser succeeds and the rotation answers
// success or INVALID_REFRESH_TOKEN, and nothing of the user's sessions is
// left.
func TestDeleteUserRacingRotation(t *testing.T) {
	testdb.SkipUnless(t, dialect.Postgres)
	for _, path := range []struct {
		name, waits string // waits: how the rotation's waiting statement starts
		opts        []authtest.Option
	}{
		{"one statement", `WITH t AS`, nil},
		{"full path", `SELECT "t"."id"`, []authtest.Option{authtest.ServerOptions(server.Options{FullPathOnly: true})}},
	} {
		t.Run(path.name, func(t *testing.T) {
			e := newEnv(t, path.opts...)
			ctx := context.Background()
			id := e.VerifiedUser(t, "dl", "dl@example.com", pw)
			first := e.Login(t, "dl@example.com", pw).RefreshToken  // session 1
			second := e.Login(t, "dl@example.com", pw).RefreshToken // session 2

			holder, err := e.DB.SQL.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Rollback()
			h := sha256.Sum256([]byte(first))
			if _, err := holder.ExecContext(ctx, `SELECT id FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE`, h[:]); err != nil {
				t.Fatal(err)
			}

			var wg sync.WaitGroup
			var delErr, refreshErr error
			wg.Go(func() { delErr = e.Service.DeleteUser(ctx, id, pw) })
			waitForLockWait(t, e, `DELETE FROM "refresh_tokens"`)
			refreshed := make(chan struct{})
			wg.Go(func() { _, refreshErr = e.Service.Refresh(ctx, second); close(refreshed) })
			for waiting := false; !waiting; {
				select {
				case <-refreshed:
					waiting = true
				default:
					waiting = lockWaits(t, e, path.waits)
					time.Sleep(time.Millisecond)
				}
			}
			if err := holder.Rollback(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			var left int
			if err := e.DB.SQL.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM refresh_tokens WHERE user_id = $1) + (SELECT COUNT(*) FROM token_families WHERE user_id = $1)`, id).Scan(&left); err != nil {
				t.Fatal(err)
			}
			if left != 0 {
				t.Errorf("%d tokens and families of the deleted user are left", left)
			}

			if delErr != nil {
				t.Errorf("DeleteUser: %v; want success", delErr)
			}
			if refreshErr != nil && !errors.Is(refreshErr, auth.ErrInvalidRefreshToken) {
				t.Errorf("Refresh: %v; want INVALID_REFRESH_TOKEN", refreshErr)
			}
		})
	}
}

// Two sign-ups for one new address at once (the owner's and a stranger's):
// the second finds the first's uncommitted account invisible when it looks
// the address up, and its own insert is refused by the unique index.
// Register then retries as a claim on the first account, so both are
// claims (contested) and verifying adopts neither password; it used to
// answer EMAIL_TAKEN, leaving the first (perhaps the stranger's) claim to
// be adopted. The interleaving is forced: another transaction holds the
// address's code counter, so the first sign-up stops with its account
// inserted but not committed.
func TestConcurrentSignUpsBothClaim(t *testing.T) {
	testdb.SkipUnless(t, dialect.Postgres)
	e := newEnv(t)
	ctx := context.Background()
	const addr = "race-claim@example.com"
	// An earlier sign-up of the address, gone (as the cleanup deletes an
	// unverified account past its TTL), left the address's counters.
	e.Register(t, "earlier", addr, "earlier-pass")
	e.Code(t, addr)
	if _, err := e.DB.SQL.ExecContext(ctx, `DELETE FROM users WHERE email_normalized = $1`, addr); err != nil {
		t.Fatal(err)
	}

	holder, err := e.DB.SQL.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	if _, err := holder.ExecContext(ctx, `SELECT 1 FROM rate_limits FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var strangerErr, ownerErr error
	wg.Go(func() { _, strangerErr = e.Service.Register(ctx, "stranger", addr, "attacker-pass") })
	waitForLockWait(t, e, `INSERT INTO "rate_limits"`)
	wg.Go(func() { _, ownerErr = e.Service.Register(ctx, "owner", addr, "owner-pass") })
	waitForLockWait(t, e, `INSERT INTO "users"`)
	if err := holder.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if strangerErr != nil {
		t.Fatalf("the first sign-up: %v", strangerErr)
	}
	if ownerErr != nil {
		t.Errorf("the second sign-up for an unverified address: %v; want it accepted as a (contested) claim", ownerErr)
	}
	// The earlier sign-up's, the stranger's and the owner's codes: the
	// newest is the owner's.
	e.SMTP.WaitForCount(t, addr, 3, 10*time.Second)
	if err := e.Service.VerifyOTP(ctx, addr, e.Code(t, addr)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Service.Login(ctx, addr, "attacker-pass"); err == nil {
		t.Errorf("after the owner verified, the stranger's password logs in")
	}
}

// A sign-up claim racing the cleanup's deletion of the unverified account
// it claims (its TTL just ran out): Register read the account before the
// deletion committed and its unit of work then finds no account to lock;
// it registers the address anew (it used to answer NOT_FOUND). The
// deletion is forced to be in flight: another transaction deletes the
// account, as PurgeUnverifiedUsers does, and commits once Register waits
// for the account's row.
func TestClaimRacingUnverifiedCleanup(t *testing.T) {
	testdb.SkipUnless(t, dialect.Postgres)
	e := newEnv(t)
	ctx := context.Background()
	const addr = "ttl-race@example.com"
	id := e.Register(t, "first", addr, "first-pass")
	e.Code(t, addr)
	e.Clock.Advance(73 * time.Hour) // past USERS__UNVERIFIED_TTL_HOURS

	cleaner, err := e.DB.SQL.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cleaner.Rollback()
	if _, err := cleaner.ExecContext(ctx, `DELETE FROM users WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var regErr error
	wg.Go(func() { _, regErr = e.Service.Register(ctx, "second", addr, "second-pass") })
	waitForLockWait(t, e, `SELECT`)
	if err := cleaner.Commit(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if regErr != nil {
		t.Errorf("Register while its account was being deleted: %v; want a new registration", regErr)
	}
}

// CLEANUP__BATCH_SIZE is the most rows one cleanup statement deletes,
// families included: a revoked session keeps every token of its last 30
// days (2,880 at one refresh every 15 minutes), and a batch of families
// that deleted all their tokens at once was one DELETE of up to millions
// of rows. Here: one session rotated 60 times, logged out, 8 days on;
// batches of 5 take its 61 tokens five at a time, then the family.
func TestCleanupBatchBoundsRowsPerStatement(t *testing.T) {
	e := newEnv(t, manualCleanup())
	ctx := context.Background()
	e.VerifiedUser(t, "long", "long@example.com", pw)
	r := e.Login(t, "long@example.com", pw).RefreshToken
	for range 60 {
		p, err := e.Service.Refresh(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		r = p.RefreshToken
	}
	if err := e.Service.Logout(ctx, r); err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(8 * 24 * time.Hour) // past JWT__REVOKED_RETENTION_DAYS
	const limit = 5
	now := e.Clock.Now()
	c, batch, err := e.DB.PurgeTokenFamilies(ctx, now.Add(-7*24*time.Hour), now.Add(-sessionMax), limit)
	if err != nil {
		t.Fatal(err)
	}
	if c.RefreshTokens > limit || batch != limit {
		t.Errorf("one batch of limit %d deleted %d refresh tokens (batch %d)", limit, c.RefreshTokens, batch)
	}
	// Batches after it take the rest, then the family.
	total := c
	for batch == limit {
		if c, batch, err = e.DB.PurgeTokenFamilies(ctx, now.Add(-7*24*time.Hour), now.Add(-sessionMax), limit); err != nil {
			t.Fatal(err)
		}
		if c.RefreshTokens+c.TokenFamilies > limit {
			t.Errorf("a batch of limit %d deleted %+v", limit, c)
		}
		total.RefreshTokens += c.RefreshTokens
		total.TokenFamilies += c.TokenFamilies
	}
	if total.RefreshTokens != 61 || total.TokenFamilies != 1 {
		t.Errorf("the batches deleted %d tokens and %d families, want 61 and 1", total.RefreshTokens, total.TokenFamilies)
	}
}

// A contested account keeps no claim's username (verifiedCredentials): no
// RPC changes a username, so a stranger who registered the owner's address
// first would otherwise choose the name the owner's verified account
// carries for good (GetMe, GetUsers, the access token's username claim).
func TestContestedClaimTakesNoClaimsUsername(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const addr = "named@example.com"
	e.Register(t, "stranger-pick", addr, "attacker-pass")
	e.Code(t, addr)
	e.Clock.Advance(61 * time.Second)
	e.Register(t, "owner", addr, "owner-pass")
	if err := e.Service.VerifyOTP(ctx, addr, e.Code(t, addr)); err != nil {
		t.Fatal(err)
	}
	u, err := e.Service.GetUserByEmail(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if u.Username == "stranger-pick" {
		t.Errorf("the owner's verified account carries the stranger's username %q", u.Username)
	}
}

// A stranger who registers the owner's address first and logs in with
// their own password gets EMAIL_NOT_VERIFIED, and their source must not
// become the account's own (PurposeSignedIn, LOGIN__TRUSTED_FOR): after
// the owner takes the address over (contested claims, ResetPassword), the
// stranger's guesses at the owner's new password stay under the
// account-wide cap and delay meant for strangers. (A reset also forgets
// every source the account signed in from.)
func TestStrangersClaimLeavesNoTrustedSource(t *testing.T) {
	rec := &sleeps{}
	e := newEnv(t, authtest.ServerOptions(server.Options{Sleep: rec.Sleep}))
	const addr = "trust@example.com"
	stranger, owner := from("203.0.113.9"), from("198.51.100.7")
	if _, err := e.Service.Register(stranger, "stranger", addr, "attacker-pass"); err != nil {
		t.Fatal(err)
	}
	e.Code(t, addr)
	_, err := e.Service.Login(stranger, addr, "attacker-pass")
	wantErr(t, err, auth.ErrEmailNotVerified, "")

	e.Clock.Advance(61 * time.Second)
	if _, err := e.Service.Register(owner, "owner", addr, "owner-pass"); err != nil {
		t.Fatal(err)
	}
	if err := e.Service.VerifyOTP(owner, addr, e.Code(t, addr)); err != nil {
		t.Fatal(err)
	}
	if err := e.Service.RequestPasswordReset(owner, addr); err != nil {
		t.Fatal(err)
	}
	if err := e.Service.ResetPassword(owner, addr, e.Code(t, addr), "owner-new-pass"); err != nil {
		t.Fatal(err)
	}
	// Strangers' wrong guesses from other sources, past LOGIN__MAX_FAILURES
	// for the day: from now on an untrusted source's attempt is slowed.
	for i := range loginMaxFails + 1 {
		_, err := e.Service.Login(from(fmt.Sprintf("192.0.2.%d", i+1)), addr, "wrong password")
		wantErr(t, err, auth.ErrInvalidCredentials, "")
	}
	before := rec.count()
	_, err = e.Service.Login(from("192.0.2.200"), addr, "wrong password")
	wantErr(t, err, auth.ErrInvalidCredentials, "")
	if rec.count() == before {
		t.Fatalf("an untrusted source's attempt was not slowed; the test's premise fails")
	}
	before = rec.count()
	_, err = e.Service.Login(stranger, addr, "wrong password")
	wantErr(t, err, auth.ErrInvalidCredentials, "")
	if rec.count() == before {
		t.Errorf("the stranger's source is trusted for the owner's account: its guess was neither slowed nor counted against the account's cap")
	}
}

// Strangers who spend an account's daily reset checks with wrong guesses
// from many addresses do not lock the owner out of the code the owner
// asked for: the last RESET__MAX_ATTEMPTS (3) of the day's
// RESET__ACCOUNT_DAILY_FAILURES (10) are kept for the source that
// requested the live code, and the day's checks stay within the 10.
func TestResetRequesterNotLockedOutByStrangers(t *testing.T) {
	e := newEnv(t)
	const addr = "rita@example.com"
	e.VerifiedUser(t, "rita", addr, pw)
	owner := from("198.51.100.7")
	if err := e.Service.RequestPasswordReset(owner, addr); err != nil {
		t.Fatal(err)
	}
	code := e.Code(t, addr)
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	// Seven strangers, one guess each, then the eighth is refused: the
	// last three checks of the day are the requester's.
	for i := range 7 {
		err := e.Service.ResetPassword(from(fmt.Sprintf("203.0.113.%d", i+1)), addr, wrong, "a stranger's password")
		wantErr(t, err, auth.ErrInvalidOTP, "")
	}
	err := e.Service.ResetPassword(from("203.0.113.99"), addr, code, "a stranger's password")
	wantErr(t, err, auth.ErrOTPAttemptsExhausted, "") // even the right code

	// The owner's own guesses are bounded by the code's attempts.
	err = e.Service.ResetPassword(owner, addr, wrong, "the owner's new password")
	if de := wantErr(t, err, auth.ErrInvalidOTP, ""); de.Metadata["attempts_left"] != "2" {
		t.Errorf("the owner's first wrong guess: attempts_left = %q, want 2", de.Metadata["attempts_left"])
	}
	if err := e.Service.ResetPassword(owner, addr, code, "the owner's new password"); err != nil {
		t.Fatalf("the owner's right code after strangers spent the account's caps: %v", err)
	}
	e.Login(t, addr, "the owner's new password")

	// A requester past its own attempts is refused like anyone.
	const addr2 = "ravi@example.com"
	e.VerifiedUser(t, "ravi", addr2, pw)
	if err := e.Service.RequestPasswordReset(owner, addr2); err != nil {
		t.Fatal(err)
	}
	code2 := e.Code(t, addr2)
	for range 3 {
		e.Service.ResetPassword(owner, addr2, wrongFor(code2), "the owner's new password")
	}
	err = e.Service.ResetPassword(owner, addr2, code2, "the owner's new password")
	wantErr(t, err, auth.ErrOTPAttemptsExhausted, "")

	// A source that did not ask for the live code gets no exemption,
	// even one that asked for an earlier code.
	const addr3 = "rosa@example.com"
	e.VerifiedUser(t, "rosa", addr3, pw)
	if err := e.Service.RequestPasswordReset(owner, addr3); err != nil {
		t.Fatal(err)
	}
	e.Code(t, addr3)
	e.Clock.Advance(10 * time.Minute) // past the cooldown
	other := from("198.51.100.8")
	if err := e.Service.RequestPasswordReset(other, addr3); err != nil {
		t.Fatal(err)
	}
	code3 := e.Code(t, addr3)
	for i := range 7 {
		e.Service.ResetPassword(from(fmt.Sprintf("203.0.113.%d", i+1)), addr3, wrongFor(code3), "a stranger's password")
	}
	err = e.Service.ResetPassword(owner, addr3, code3, "the owner's new password")
	wantErr(t, err, auth.ErrOTPAttemptsExhausted, "")
	if err := e.Service.ResetPassword(other, addr3, code3, "the requester's new password"); err != nil {
		t.Fatalf("the live code's requester: %v", err)
	}

	// A check without a source is not the requester's either.
	const addr5 = "remy@example.com"
	e.VerifiedUser(t, "remy", addr5, pw)
	if err := e.Service.RequestPasswordReset(owner, addr5); err != nil {
		t.Fatal(err)
	}
	code5 := e.Code(t, addr5)
	for i := range 7 {
		e.Service.ResetPassword(from(fmt.Sprintf("203.0.113.%d", i+1)), addr5, wrongFor(code5), "a stranger's password")
	}
	err = e.Service.ResetPassword(context.Background(), addr5, code5, "a stranger's password")
	wantErr(t, err, auth.ErrOTPAttemptsExhausted, "")
	if err := e.Service.ResetPassword(owner, addr5, code5, "the owner's new password"); err != nil {
		t.Fatalf("the requester after a check without a source was refused: %v", err)
	}

	// The requester's checks count toward the cap too: the day's checks
	// against an account never exceed it. Seven strangers, then three
	// wrong guesses of the requester's own, and the requester's next code
	// is refused for the day.
	const addr4 = "rudi@example.com"
	e.VerifiedUser(t, "rudi", addr4, pw)
	if err := e.Service.RequestPasswordReset(owner, addr4); err != nil {
		t.Fatal(err)
	}
	code4 := e.Code(t, addr4)
	for i := range 7 {
		e.Service.ResetPassword(from(fmt.Sprintf("203.0.113.%d", i+1)), addr4, wrongFor(code4), "a stranger's password")
	}
	for range 3 {
		e.Service.ResetPassword(owner, addr4, wrongFor(code4), "the owner's new password")
	}
	e.Clock.Advance(10 * time.Minute)
	if err := e.Service.RequestPasswordReset(owner, addr4); err != nil {
		t.Fatal(err)
	}
	code4 = e.Code(t, addr4)
	err = e.Service.ResetPassword(owner, addr4, code4, "the owner's new password")
	wantErr(t, err, auth.ErrOTPAttemptsExhausted, "")
}

// wrongFor returns a well-formed code that is not code.
func wrongFor(code string) string {
	if code == "000000" {
		return "111111"
	}
	return "000000"
}

// The same holds for sign-up codes: strangers who spend the account's
// daily checks (OTP__ACCOUNT_DAILY_FAILURES, set to 8 here) with wrong
// codes from other addresses leave the last OTP__MAX_ATTEMPTS (5) to the
// source that registered, which verifies with the code it was sent.
func TestVerifyRequesterNotLockedOutByStrangers(t *testing.T) {
	e := newEnv(t, authtest.Set("OTP__ACCOUNT_DAILY_FAILURES", "8"))
	const addr = "vera@example.com"
	owner := from("198.51.100.9")
	if _, err := e.Service.Register(owner, "vera", addr, pw); err != nil {
		t.Fatal(err)
	}
	code := e.Code(t, addr)
	for i := range 3 {
		err := e.Service.VerifyOTP(from(fmt.Sprintf("203.0.113.%d", i+1)), addr, wrongFor(code))
		wantErr(t, err, auth.ErrInvalidOTP, "")
	}
	err := e.Service.VerifyOTP(from("203.0.113.99"), addr, code)
	wantErr(t, err, auth.ErrOTPAttemptsExhausted, "")
	if err := e.Service.VerifyOTP(owner, addr, code); err != nil {
		t.Fatalf("the registering source's code after strangers spent the account's checks: %v", err)
	}
	e.Login(t, addr, pw)
}
