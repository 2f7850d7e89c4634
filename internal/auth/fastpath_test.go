package auth_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	"github.com/google/go-cmp/cmp"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/internal/testutil/authtest"
)

// rotationFacts is what presenting a refresh token did, in terms that do
// not depend on which user or family it was: the answer, and the rows of
// the presented token's family and user afterwards.
type rotationFacts struct {
	Err string // the domain error's reason; "" for success
	// ReturnedChild: the returned refresh token is the presented token's
	// child row (a rotation, a replay or a recovery).
	ReturnedChild bool
	// PresentedUsedNow: the presented token's used_at is the present.
	PresentedUsed, PresentedUsedNow, PresentedSealed bool
	FamilyRevoked                                    string // revoke reason; "" while live
	Tokens, Unused                                   int    // of the family
	// ChildLife is the child's expiry minus its creation; ChildNow: it was
	// created at the present.
	ChildLife time.Duration
	ChildNow  bool
	Audit     []string // the user's audit events after the setup, "event/reason"
}

// facts reads what presenting raw at now left in e's database; auditFrom
// is the number of the user's audit events before it was presented.
func facts(t *testing.T, e *authtest.Env, raw string, p auth.TokenPair, err error, now time.Time, auditFrom int) rotationFacts {
	t.Helper()
	ctx := context.Background()
	var f rotationFacts
	if err != nil {
		de, ok := auth.AsError(err)
		if !ok {
			t.Fatalf("Refresh: %v", err)
		}
		f.Err = de.Reason
	}
	h := sha256.Sum256([]byte(raw))
	var (
		id, user, family string
		used             sql.NullTime
		sealed           []byte
	)
	row := e.DB.SQL.QueryRowContext(ctx, ph(e, `SELECT id, user_id, family_id, used_at, child_sealed FROM refresh_tokens WHERE token_hash = ?`), h[:])
	if err := row.Scan(&id, &user, &family, &used, &sealed); errors.Is(err, sql.ErrNoRows) {
		return f
	} else if err != nil {
		t.Fatal(err)
	}
	f.PresentedUsed, f.PresentedUsedNow, f.PresentedSealed = used.Valid, used.Valid && used.Time.Equal(now), sealed != nil
	var reason sql.NullString
	if err := e.DB.SQL.QueryRowContext(ctx, ph(e, `SELECT revoke_reason FROM token_families WHERE id = ?`), family).Scan(&reason); err != nil {
		t.Fatal(err)
	}
	f.FamilyRevoked = reason.String
	if err := e.DB.SQL.QueryRowContext(ctx, ph(e, `SELECT COUNT(*), COUNT(*) FILTER (WHERE used_at IS NULL) FROM refresh_tokens WHERE family_id = ?`), family).
		Scan(&f.Tokens, &f.Unused); err != nil {
		t.Fatal(err)
	}
	var childHash []byte
	var created, expires time.Time
	err = e.DB.SQL.QueryRowContext(ctx, ph(e, `SELECT token_hash, created_at, expires_at FROM refresh_tokens WHERE parent_id = ?`), id).Scan(&childHash, &created, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		t.Fatal(err)
	default:
		f.ChildLife, f.ChildNow = expires.Sub(created), created.Equal(now)
		if p.RefreshToken != "" {
			got := sha256.Sum256([]byte(p.RefreshToken))
			f.ReturnedChild = string(got[:]) == string(childHash)
		}
	}
	rows, err := e.DB.SQL.QueryContext(ctx, ph(e, `SELECT event, COALESCE(reason, '') FROM audit_events WHERE user_id = ? ORDER BY created_at, event LIMIT 1000000 OFFSET ?`), user, auditFrom)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var ev, r string
		if err := rows.Scan(&ev, &r); err != nil {
			t.Fatal(err)
		}
		f.Audit = append(f.Audit, ev+"/"+r)
	}
	return f
}

// userAuditCount is the number of audit events of the user whose refresh
// token raw is (0 when the token is gone).
func userAuditCount(t *testing.T, e *authtest.Env, raw string) int {
	t.Helper()
	h := sha256.Sum256([]byte(raw))
	var n int
	err := e.DB.SQL.QueryRowContext(context.Background(), ph(e, `SELECT COUNT(*) FROM audit_events a JOIN refresh_tokens t ON t.user_id = a.user_id WHERE t.token_hash = ?`), h[:]).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ph rewrites the ? placeholders of query as $1, $2... on PostgreSQL.
func ph(e *authtest.Env, query string) string {
	if e.DB.Dialect != dialect.Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestRotationPathsAgree: every state a presented refresh token can be in
// is set up twice, once for a service that rotates fresh tokens with
// Store.RotateFresh (one statement on PostgreSQL, a shorter transaction on
// SQLite) and once for one on the full path only (same database, same
// clock), and presenting it gives the same answer and leaves the same
// rows on both.
func TestRotationPathsAgree(t *testing.T) {
	fast := newEnv(t)
	full := newEnv(t, authtest.SameDatabaseAs(fast), authtest.ServerOptions(server.Options{FullPathOnly: true}))
	ctx := context.Background()
	n := 0
	// login signs up a new user and returns the first refresh token of a
	// new session; rotate rotates on the full path (the setup is the same
	// for both).
	login := func(t *testing.T) string {
		n++
		addr := fmt.Sprintf("agree%d@example.com", n)
		full.VerifiedUser(t, fmt.Sprintf("agree%d", n), addr, pw)
		return full.Login(t, addr, pw).RefreshToken
	}
	rotate := func(t *testing.T, raw string) string {
		p, err := full.Service.Refresh(ctx, raw)
		if err != nil {
			t.Fatalf("setup rotation: %v", err)
		}
		return p.RefreshToken
	}
	// startedEarlier moves the start of raw's family d earlier.
	startedEarlier := func(t *testing.T, raw string, d time.Duration) {
		h := sha256.Sum256([]byte(raw))
		var family string
		var started time.Time
		if err := fast.DB.SQL.QueryRowContext(ctx, ph(fast, `SELECT f.id, f.created_at FROM token_families f JOIN refresh_tokens t ON t.family_id = f.id WHERE t.token_hash = ?`), h[:]).
			Scan(&family, &started); err != nil {
			t.Fatal(err)
		}
		if _, err := fast.DB.SQL.ExecContext(ctx, ph(fast, `UPDATE token_families SET created_at = ? WHERE id = ?`), started.Add(-d), family); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name    string
		setup   func(t *testing.T) string // returns the token to present
		advance time.Duration             // after both setups, before presenting
		want    string                    // the answer: a domain error's reason, or "" for a new pair
	}{
		{"fresh", login, 0, ""},
		{"used within grace", func(t *testing.T) string { r := login(t); rotate(t, r); return r }, refreshGrace / 2, ""},
		{"used after grace, child unused, within recovery", func(t *testing.T) string { r := login(t); rotate(t, r); return r }, refreshGrace + time.Second, ""},
		{"used after grace, child unused, past recovery", func(t *testing.T) string { r := login(t); rotate(t, r); return r }, refreshRecovery, auth.ErrRefreshTokenReused.Reason},
		{"used, child used", func(t *testing.T) string { r := login(t); rotate(t, rotate(t, r)); return r }, refreshGrace, auth.ErrRefreshTokenReused.Reason},
		{"used within grace, child used", func(t *testing.T) string { r := login(t); rotate(t, rotate(t, r)); return r }, time.Second, ""},
		{"revoked family", func(t *testing.T) string {
			r := login(t)
			if err := full.Service.Logout(ctx, r); err != nil {
				t.Fatal(err)
			}
			return r
		}, 0, auth.ErrRefreshTokenRevoked.Reason},
		{"used token of a revoked family", func(t *testing.T) string {
			r := login(t)
			if err := full.Service.Logout(ctx, rotate(t, r)); err != nil {
				t.Fatal(err)
			}
			return r
		}, 0, auth.ErrRefreshTokenReused.Reason},
		{"expired token", login, refreshTTL, auth.ErrRefreshTokenExpired.Reason},
		{"expired a moment ago", login, refreshTTL + time.Millisecond, auth.ErrRefreshTokenExpired.Reason},
		{"a moment before expiry", login, refreshTTL - time.Millisecond, ""},
		{"family past its lifetime", func(t *testing.T) string {
			r := login(t)
			// A session that began before SESSION_MAX_DAYS was lowered:
			// its token is live, its family is not.
			startedEarlier(t, r, 91*24*time.Hour)
			return r
		}, 0, auth.ErrRefreshTokenExpired.Reason},
		{"family near its end: the child's lifetime is capped", func(t *testing.T) string {
			r := login(t)
			startedEarlier(t, r, 80*24*time.Hour)
			return r
		}, 0, ""},
		{"deleted user", func(t *testing.T) string {
			r := login(t)
			p, err := full.Service.Refresh(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			sub, _, err := full.Service.ValidateToken(ctx, p.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			if err := full.Service.DeleteUser(ctx, sub.UserID.String(), pw); err != nil {
				t.Fatal(err)
			}
			return p.RefreshToken
		}, 0, auth.ErrInvalidRefreshToken.Reason},
		{"unknown token", func(t *testing.T) string {
			r := login(t)
			h := sha256.Sum256([]byte(r))
			if _, err := fast.DB.SQL.ExecContext(ctx, ph(fast, `DELETE FROM refresh_tokens WHERE token_hash = ?`), h[:]); err != nil {
				t.Fatal(err)
			}
			return r
		}, 0, auth.ErrInvalidRefreshToken.Reason},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rawFast, rawFull := tc.setup(t), tc.setup(t)
			fromFast, fromFull := userAuditCount(t, fast, rawFast), userAuditCount(t, full, rawFull)
			fast.Clock.Advance(tc.advance)
			now := fast.Clock.Now()
			pFast, errFast := fast.Service.Refresh(ctx, rawFast)
			pFull, errFull := full.Service.Refresh(ctx, rawFull)
			got, want := facts(t, fast, rawFast, pFast, errFast, now, fromFast), facts(t, full, rawFull, pFull, errFull, now, fromFull)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("one-statement path vs full path (-full +fast):\n%s", diff)
			}
			if got.Err != tc.want {
				t.Errorf("answer %q, want %q", got.Err, tc.want)
			}
			if tc.want == "" && (!got.ReturnedChild || pFast.AccessToken == "") {
				t.Errorf("the answer is not the presented token's child with an access token: %+v", got)
			}
		})
	}
}
