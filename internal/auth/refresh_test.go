package auth_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	"github.com/google/go-cmp/cmp"

	"github.com/placebrain/auth/ent/auditevent"
	"github.com/placebrain/auth/ent/refreshtoken"
	"github.com/placebrain/auth/ent/tokenfamily"
	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/internal/testutil/sqlcount"
)

func refresh(e *authtest.Env, rt string) (auth.TokenPair, error) {
	return e.Service.Refresh(context.Background(), rt)
}

func TestRefreshRotationAndReuseDetection(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "dave", "dave@example.com", pw)
	r0 := e.Login(t, "dave@example.com", pw).RefreshToken

	// R0 -> R1 -> R2, each step after the grace window.
	e.Clock.Advance(refreshGrace)
	r1, err := refresh(e, r0)
	if err != nil {
		t.Fatalf("refresh r0: %v", err)
	}
	if r1.RefreshToken == r0 || r1.AccessToken == "" {
		t.Fatalf("rotation returned %v", r1)
	}
	e.Clock.Advance(refreshGrace)
	r2, err := refresh(e, r1.RefreshToken)
	if err != nil {
		t.Fatalf("refresh r1: %v", err)
	}
	// All three tokens are one family; r0 and r1 are used.
	all := e.DB.Ent.RefreshToken.Query().AllX(ctx)
	if len(all) != 3 {
		t.Fatalf("tokens = %d, want 3", len(all))
	}
	for _, rt := range all[1:] {
		if rt.FamilyID != all[0].FamilyID {
			t.Fatalf("token outside the family")
		}
	}

	// Reuse of r0 after the grace window is refused and revokes the whole
	// family, r2 included.
	e.Clock.Advance(refreshGrace)
	_, err = refresh(e, r0)
	wantErr(t, err, auth.ErrRefreshTokenReused, "Refresh token already used; sign in again")
	if n := e.DB.Ent.TokenFamily.Query().Where(tokenfamily.RevokedAtIsNil()).CountX(ctx); n != 0 {
		t.Errorf("unrevoked token families after reuse = %d, want 0", n)
	}
	_, err = refresh(e, r2.RefreshToken)
	wantErr(t, err, auth.ErrRefreshTokenRevoked, "Refresh token revoked; sign in again")

	// Another login opens a new family that the revocation did not touch.
	r3 := e.Login(t, "dave@example.com", pw).RefreshToken
	if _, err := refresh(e, r3); err != nil {
		t.Fatalf("new family: %v", err)
	}
}

func TestRefreshErrors(t *testing.T) {
	e := newEnv(t)
	e.VerifiedUser(t, "erin", "erin@example.com", pw)
	r0 := e.Login(t, "erin@example.com", pw).RefreshToken

	_, err := refresh(e, "")
	wantErr(t, err, auth.ErrInvalidInput, "refresh_token is required")
	_, err = refresh(e, "garbage")
	wantErr(t, err, auth.ErrInvalidRefreshToken, "Invalid refresh token")
	_, err = refresh(e, strings.Repeat("A", 43))
	wantErr(t, err, auth.ErrInvalidRefreshToken, "Invalid refresh token")

	e.Clock.Advance(refreshTTL)
	_, err = refresh(e, r0)
	wantErr(t, err, auth.ErrRefreshTokenExpired, "Refresh token expired; sign in again")
}

// refreshAtOnce presents the refresh token rt in n Refresh calls at once
// and returns each call's answer and error, in call order.
func refreshAtOnce(e *authtest.Env, rt string, n int) ([]auth.TokenPair, []error) {
	var wg sync.WaitGroup
	got := make([]auth.TokenPair, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { got[i], errs[i] = refresh(e, rt) })
	}
	wg.Wait()
	return got, errs
}

// Login gives R0; five Refresh(R0) at the same moment all succeed and
// return one refresh token, byte for byte (the family stays a chain), and
// a refresh with any returned token succeeds.
func TestConcurrentRefreshWithinGrace(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "fay", "fay@example.com", pw)
	r0 := e.Login(t, "fay@example.com", pw).RefreshToken
	const n = 5
	got, errs := refreshAtOnce(e, r0, n)
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent refresh %d: %v", i, errs[i])
		}
		if got[i].RefreshToken != got[0].RefreshToken {
			t.Errorf("concurrent refresh %d returned another refresh token than refresh 0", i)
		}
	}
	if n := e.DB.Ent.RefreshToken.Query().CountX(ctx); n != 2 {
		t.Errorf("refresh tokens = %d, want 2 (R0 and its one child)", n)
	}
	e.Clock.Advance(refreshGrace) // the follow-ups are ordinary rotations
	for i, r := range got {
		if _, err := refresh(e, r.RefreshToken); err != nil {
			t.Errorf("refresh with returned token %d: %v", i, err)
		}
	}
	if n := e.DB.Ent.TokenFamily.Query().Where(tokenfamily.RevokedAtIsNil()).CountX(ctx); n != 1 {
		t.Errorf("live families = %d, want 1", n)
	}
}

// A family is a chain: a replay of R0 within the grace window returns R1
// exactly; once R1 has been rotated and the grace window is over, R0 is
// reuse and revokes the family.
func TestRefreshChain(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "chain", "chain@example.com", pw)
	r0 := e.Login(t, "chain@example.com", pw).RefreshToken
	r1, err := refresh(e, r0)
	if err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(2 * time.Second)
	again, err := refresh(e, r0)
	if err != nil {
		t.Fatalf("replay within the grace window: %v", err)
	}
	if again.RefreshToken != r1.RefreshToken {
		t.Fatalf("replay within the grace window returned another token than R1")
	}
	if again.AccessToken == "" {
		t.Fatalf("replay returned no access token")
	}
	e.Clock.Advance(refreshGrace)
	r2, err := refresh(e, r1.RefreshToken)
	if err != nil {
		t.Fatalf("refresh R1 after the grace window: %v", err)
	}
	if r2.RefreshToken == r1.RefreshToken {
		t.Fatalf("R1 was not rotated")
	}
	_, err = refresh(e, r0)
	wantErr(t, err, auth.ErrRefreshTokenReused, "")
	if n := e.DB.Ent.TokenFamily.Query().Where(tokenfamily.RevokedAtIsNil()).CountX(ctx); n != 0 {
		t.Errorf("live families after reuse = %d, want 0", n)
	}
	_, err = refresh(e, r2.RefreshToken)
	wantErr(t, err, auth.ErrRefreshTokenRevoked, "")
	// A replay of R0 within R1's grace window is reuse too: R0's child
	// was used.
	s0 := e.Login(t, "chain@example.com", pw).RefreshToken
	s1, err := refresh(e, s0)
	if err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(refreshGrace)
	if _, err := refresh(e, s1.RefreshToken); err != nil {
		t.Fatal(err)
	}
	_, err = refresh(e, s0)
	wantErr(t, err, auth.ErrRefreshTokenReused, "")
}

// Without a grace or recovery window, concurrent refreshes of one fresh
// token are serialized by the token's row lock: exactly one rotates it,
// every other one sees it used and revokes the family (reuse detection),
// and the token the winner got is revoked with it.
func TestConcurrentRefreshWithoutGrace(t *testing.T) {
	e := newEnv(t, authtest.Set("JWT__REFRESH_REUSE_GRACE_SECONDS", "0", "JWT__REFRESH_RECOVERY_MINUTES", "0"))
	e.VerifiedUser(t, "gus", "gus@example.com", pw)
	for round := range 5 {
		r0 := e.Login(t, "gus@example.com", pw).RefreshToken
		const n = 6
		got, errs := refreshAtOnce(e, r0, n)
		var winner string
		for i := range n {
			if errs[i] == nil {
				if winner != "" {
					t.Fatalf("round %d: two refreshes of one token succeeded", round)
				}
				winner = got[i].RefreshToken
				continue
			}
			wantErr(t, errs[i], auth.ErrRefreshTokenReused, "")
		}
		if winner == "" {
			t.Fatalf("round %d: no refresh succeeded: %v", round, errs)
		}
		_, err := refresh(e, winner)
		wantErr(t, err, auth.ErrRefreshTokenRevoked, "")
	}
}

// A client that lost the response carrying R1 retries with R0: within
// the grace window and, while R1 is unused, within the recovery window it
// gets R1 itself (after the grace window recorded as refresh_recovered),
// and R1 works. After the recovery window the retry is reuse and ends the
// session.
func TestLostResponseRecovery(t *testing.T) {
	e := newEnv(t)
	e.VerifiedUser(t, "lost", "lost@example.com", pw)

	r0 := e.Login(t, "lost@example.com", pw).RefreshToken
	r1, err := refresh(e, r0) // response "lost"
	if err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(refreshGrace - time.Second)
	retry, err := refresh(e, r0)
	if err != nil {
		t.Fatalf("retry within the grace window: %v", err)
	}
	if retry.RefreshToken != r1.RefreshToken {
		t.Fatalf("retry within the grace window returned another token than R1")
	}
	e.Clock.Advance(time.Minute)
	retry, err = refresh(e, r0)
	if err != nil {
		t.Fatalf("retry after the grace window: %v", err)
	}
	if retry.RefreshToken != r1.RefreshToken {
		t.Fatalf("retry after the grace window returned another token than R1")
	}
	if n := auditCount(t, e, auditevent.EventRefreshRecovered, ""); n != 1 {
		t.Errorf("refresh_recovered events = %d, want 1", n)
	}
	if _, err := refresh(e, r1.RefreshToken); err != nil {
		t.Errorf("R1 after recovery: %v", err)
	}

	s0 := e.Login(t, "lost@example.com", pw).RefreshToken
	s1, err := refresh(e, s0) // lost
	if err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(refreshRecovery)
	_, err = refresh(e, s0)
	wantErr(t, err, auth.ErrRefreshTokenReused, "")
	_, err = refresh(e, s1.RefreshToken)
	wantErr(t, err, auth.ErrRefreshTokenRevoked, "")
}

// A session ends JWT__SESSION_MAX_DAYS after its login however often it
// is refreshed: refreshed every 29 days, the first refresh after 90 days
// answers REFRESH_TOKEN_EXPIRED, and the last token issued expires at the
// session's end, not 30 days after its rotation.
func TestSessionLifetime(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "long", "long@example.com", pw)
	login := e.Clock.Now()
	rt := e.Login(t, "long@example.com", pw).RefreshToken
	for e.Clock.Now().Sub(login) < sessionMax {
		e.Clock.Advance(29 * 24 * time.Hour)
		p, err := refresh(e, rt)
		if e.Clock.Now().Sub(login) >= sessionMax {
			wantErr(t, err, auth.ErrRefreshTokenExpired, "Refresh token expired; sign in again")
			break
		}
		if err != nil {
			t.Fatalf("refresh %v after login: %v", e.Clock.Now().Sub(login), err)
		}
		rt = p.RefreshToken
	}
	last := e.DB.Ent.RefreshToken.Query().Where(refreshtoken.UsedAtIsNil()).OnlyX(ctx)
	if want := login.Add(sessionMax); !last.ExpiresAt.Equal(want) {
		t.Errorf("last token expires at %v, want the session's end %v", last.ExpiresAt, want)
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "gus", "gus@example.com", pw)
	lr := e.Login(t, "gus@example.com", pw)
	other := e.Login(t, "gus@example.com", pw) // another session

	if err := e.Service.Logout(ctx, lr.RefreshToken); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	_, err := refresh(e, lr.RefreshToken)
	wantErr(t, err, auth.ErrRefreshTokenRevoked, "")

	// A second Logout with the same token succeeds again (RFC 7009 §2.2):
	// the token is unusable either way.
	if err := e.Service.Logout(ctx, lr.RefreshToken); err != nil {
		t.Fatalf("second Logout: %v", err)
	}
	if err := e.Service.Logout(ctx, "not-a-token"); err != nil {
		t.Fatalf("Logout(garbage): %v", err)
	}
	err = e.Service.Logout(ctx, "")
	wantErr(t, err, auth.ErrInvalidInput, "refresh_token is required")

	// The other session is untouched.
	if _, err := refresh(e, other.RefreshToken); err != nil {
		t.Fatalf("other session: %v", err)
	}
}

func TestLogoutAfterRotationEndsTheSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "hal", "hal@example.com", pw)
	r0 := e.Login(t, "hal@example.com", pw).RefreshToken
	r1, err := refresh(e, r0)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Service.Logout(ctx, r1.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if n := e.DB.Ent.TokenFamily.Query().Where(tokenfamily.RevokedAtIsNil()).CountX(ctx); n != 0 {
		t.Errorf("unrevoked token families after logout = %d", n)
	}
}

// A logout racing a rotation of the same session leaves nothing usable:
// whatever the rotation returned is refused afterwards.
func TestLogoutRacingRefreshEndsTheSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "race", "race@example.com", pw)
	for round := range 10 {
		r0 := e.Login(t, "race@example.com", pw).RefreshToken
		var wg sync.WaitGroup
		var refreshed auth.TokenPair
		var refreshErr, logoutErr error
		wg.Go(func() { refreshed, refreshErr = refresh(e, r0) })
		wg.Go(func() { logoutErr = e.Service.Logout(ctx, r0) })
		wg.Wait()
		if logoutErr != nil {
			t.Fatalf("round %d: Logout: %v", round, logoutErr)
		}
		if refreshErr == nil {
			_, err := refresh(e, refreshed.RefreshToken)
			wantErr(t, err, auth.ErrRefreshTokenRevoked, "")
		}
	}
}

// Reuse detected while the thief rotates the current token: the thief's
// new token is refused too.
func TestReuseRacingRotationRevokesEverything(t *testing.T) {
	e := newEnv(t)
	e.VerifiedUser(t, "thief", "thief@example.com", pw)
	for round := range 10 {
		r0 := e.Login(t, "thief@example.com", pw).RefreshToken
		r1, err := refresh(e, r0)
		if err != nil {
			t.Fatal(err)
		}
		e.Clock.Advance(refreshRecovery) // R0 is no lost response any more
		var wg sync.WaitGroup
		var thief auth.TokenPair
		var thiefErr, ownerErr error
		wg.Go(func() { thief, thiefErr = refresh(e, r1.RefreshToken) })
		wg.Go(func() { _, ownerErr = refresh(e, r0) })
		wg.Wait()
		wantErr(t, ownerErr, auth.ErrRefreshTokenReused, "")
		if thiefErr == nil {
			if _, err := refresh(e, thief.RefreshToken); err == nil {
				t.Fatalf("round %d: the family outlived reuse detection", round)
			}
		}
	}
}

// A rotation is one round trip on PostgreSQL: the one statement of the
// common case (Store.RotateFresh). On SQLite it is one transaction of
// five: BEGIN, marking the token used (returning what the rest needs), the
// audit event, the new token, COMMIT. A change that adds a statement to the
// hot path fails here and has to say so.
func TestRotationRoundTrips(t *testing.T) {
	var counter sqlcount.Counter
	e := newEnv(t, authtest.ServerOptions(server.Options{WrapConnector: counter.Wrap}))
	e.VerifiedUser(t, "trips", "trips@example.com", pw)
	rt := e.Login(t, "trips@example.com", pw).RefreshToken
	want := map[string][]string{
		dialect.Postgres: {"query"},
		dialect.SQLite:   {"begin", "query", "exec", "exec", "commit"},
	}[e.DB.Dialect]
	for i := range 3 { // the first rotation (new prepared statements on PostgreSQL) and later ones
		counter.Reset()
		p, err := e.Service.Refresh(counter.Mark(context.Background()), rt)
		if err != nil {
			t.Fatal(err)
		}
		rt = p.RefreshToken
		if diff := cmp.Diff(want, counter.Calls()); diff != "" {
			t.Errorf("rotation %d on %s: round trips (-want +got):\n%s", i+1, e.DB.Dialect, diff)
		}
	}
}

// The rows a sign-in and its rotations write (token family, refresh
// tokens, audit events) get time-ordered UUIDv7 ids on both rotation
// paths, so each table's primary-key index grows at its end.
func TestRowIDsAreTimeOrdered(t *testing.T) {
	for _, path := range []struct {
		name string
		opts []authtest.Option
	}{
		{"fast path", nil},
		{"full path", []authtest.Option{authtest.ServerOptions(server.Options{FullPathOnly: true})}},
	} {
		t.Run(path.name, func(t *testing.T) {
			e := newEnv(t, path.opts...)
			ctx := context.Background()
			e.VerifiedUser(t, "v7", "v7@example.com", pw)
			rt := e.Login(t, "v7@example.com", pw).RefreshToken
			for range 3 {
				e.Clock.Advance(refreshGrace)
				p, err := refresh(e, rt)
				if err != nil {
					t.Fatal(err)
				}
				rt = p.RefreshToken
			}
			tokens := e.DB.Ent.RefreshToken.Query().Order(refreshtoken.ByCreatedAt()).AllX(ctx)
			if len(tokens) != 4 {
				t.Fatalf("tokens = %d, want 4", len(tokens))
			}
			for i, tok := range tokens {
				if v := tok.ID.Version(); v != 7 {
					t.Errorf("token %d id is version %d, want 7", i, v)
				}
				if i > 0 && strings.Compare(tok.ID.String(), tokens[i-1].ID.String()) <= 0 {
					t.Errorf("token %d id %s does not sort after its parent's %s", i, tok.ID, tokens[i-1].ID)
				}
			}
			if v := e.DB.Ent.TokenFamily.Query().OnlyX(ctx).ID.Version(); v != 7 {
				t.Errorf("token family id is version %d, want 7", v)
			}
			events := e.DB.Ent.AuditEvent.Query().Where(auditevent.EventEQ(auditevent.EventTokenRefreshed)).AllX(ctx)
			if len(events) != 3 {
				t.Fatalf("token_refreshed events = %d, want 3", len(events))
			}
			for _, ev := range events {
				if v := ev.ID.Version(); v != 7 {
					t.Errorf("audit event id is version %d, want 7", v)
				}
			}
		})
	}
}
