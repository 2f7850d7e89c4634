package auth_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/ent/otprequest"
	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/ent/refreshtoken"
	"github.com/placebrain/auth/ent/tokenfamily"
	"github.com/placebrain/auth/ent/user"
	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/internal/testutil/sqlcount"
)

// RequestPasswordReset answers an unknown address and a known one alike;
// only the known one gets an e-mail.
func TestRequestPasswordResetLooksAlike(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "kay", "kay@example.com", pw)
	errKnown := e.Service.RequestPasswordReset(ctx, "KAY@example.com")
	errUnknown := e.Service.RequestPasswordReset(ctx, "nobody@example.com")
	if errKnown != nil || errUnknown != nil {
		t.Fatalf("RequestPasswordReset: known %v, unknown %v", errKnown, errUnknown)
	}
	msg := e.SMTP.WaitForCount(t, "kay@example.com", 2, 10*time.Second)
	if !strings.Contains(msg.Email.Subject, "password reset") {
		t.Errorf("subject %q", msg.Email.Subject)
	}
	if n := len(e.SMTP.To("nobody@example.com")); n != 0 {
		t.Errorf("%d e-mails to an address without an account", n)
	}
	// A second request within the cooldown also answers success, and sends
	// nothing.
	if err := e.Service.RequestPasswordReset(ctx, "kay@example.com"); err != nil {
		t.Errorf("within the cooldown: %v", err)
	}
	err := e.Service.RequestPasswordReset(ctx, "not an address")
	wantErr(t, err, auth.ErrInvalidInput, "")
}

// resetCode requests a reset code for addr and returns it from the e-mail.
func resetCode(t *testing.T, e *authtest.Env, addr string) string {
	t.Helper()
	if err := e.Service.RequestPasswordReset(context.Background(), addr); err != nil {
		t.Fatal(err)
	}
	return e.Code(t, addr)
}

// A reset code does not verify a sign-up and a sign-up code does not
// reset a password; ResetPassword ends every session, lifts the account's
// locks, verifies the address and sets the new password.
func TestResetPassword(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.Register(t, "rose", "rose@example.com", pw)
	signup := e.Code(t, "rose@example.com")
	reset := resetCode(t, e, "rose@example.com")
	if reset == signup {
		t.Skip("codes collided")
	}
	err := e.Service.VerifyOTP(ctx, "rose@example.com", reset)
	wantErr(t, err, auth.ErrInvalidOTP, "")
	err = e.Service.ResetPassword(ctx, "rose@example.com", signup, "a brand new password")
	wantErr(t, err, auth.ErrInvalidOTP, "")
	if err := e.Service.VerifyOTP(ctx, "rose@example.com", signup); err != nil {
		t.Fatalf("the sign-up code still verifies: %v", err)
	}

	// Sessions and a lock before the reset.
	old := e.Login(t, "rose@example.com", pw)
	for range loginMaxFails {
		e.Service.Login(ctx, "rose@example.com", "wrong password")
	}
	_, err = e.Service.Login(ctx, "rose@example.com", pw)
	wantErr(t, err, auth.ErrLoginThrottled, "")

	err = e.Service.ResetPassword(ctx, "rose@example.com", reset, "short")
	wantInput(t, err, "new_password", "8 to 72 bytes")
	if err := e.Service.ResetPassword(ctx, "rose@example.com", reset, "a brand new password"); err != nil {
		t.Fatalf("ResetPassword: %v", err)
	}
	_, err = e.Service.Refresh(ctx, old.RefreshToken)
	wantErr(t, err, auth.ErrRefreshTokenRevoked, "")
	_, err = e.Service.Login(ctx, "rose@example.com", pw)
	wantErr(t, err, auth.ErrInvalidCredentials, "")
	e.Login(t, "rose@example.com", "a brand new password")
	// The code is single-use.
	err = e.Service.ResetPassword(ctx, "rose@example.com", reset, "yet another password")
	wantErr(t, err, auth.ErrInvalidOTP, "")

	// A reset verifies an unverified address (the code proves it).
	e.Register(t, "una", "una@example.com", pw)
	e.Code(t, "una@example.com")
	e.Clock.Advance(otpCooldown)
	if err := e.Service.ResetPassword(ctx, "una@example.com", resetCode(t, e, "una@example.com"), "una's new password"); err != nil {
		t.Fatal(err)
	}
	e.Login(t, "una@example.com", "una's new password")
	// An unknown address answers like a wrong code.
	err = e.Service.ResetPassword(ctx, "nobody@example.com", "123456", "a brand new password")
	wantErr(t, err, auth.ErrInvalidOTP, "")
}

// Reset codes allow RESET__MAX_ATTEMPTS (3) wrong guesses per code, with no
// hashing: the code burns at the cap.
func TestResetCodeAttempts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "tim", "tim@example.com", pw)
	code := resetCode(t, e, "tim@example.com")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	for i := range 3 {
		err := e.Service.ResetPassword(ctx, "tim@example.com", wrong, "a brand new password")
		if i < 2 {
			if de := wantErr(t, err, auth.ErrInvalidOTP, ""); de.Metadata["attempts_left"] != fmt.Sprint(2-i) {
				t.Errorf("attempts_left = %q", de.Metadata["attempts_left"])
			}
		} else {
			wantErr(t, err, auth.ErrOTPAttemptsExhausted, "")
		}
	}
	err := e.Service.ResetPassword(ctx, "tim@example.com", code, "a brand new password")
	wantErr(t, err, auth.ErrOTPAttemptsExhausted, "")
	e.Login(t, "tim@example.com", pw) // unchanged
}

// ChangePassword checks the current password like Login: a wrong one
// answers INVALID_ARGUMENT PASSWORD_INCORRECT and counts as a failed
// login; a right one sets the new password, ends every session and
// returns a new one.
func TestChangePassword(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.VerifiedUser(t, "cam", "cam@example.com", pw)
	other := e.Login(t, "cam@example.com", pw)

	_, err := e.Service.ChangePassword(ctx, id, "wrong password", "a brand new password")
	wantErr(t, err, auth.ErrWrongPassword, "Current password is incorrect")
	for range loginMaxFails - 1 {
		e.Service.ChangePassword(ctx, id, "wrong password", "a brand new password")
	}
	// Five failures (ChangePassword's) lock the account's logins too.
	_, err = e.Service.Login(ctx, "cam@example.com", pw)
	wantErr(t, err, auth.ErrLoginThrottled, "")
	e.Clock.Advance(loginLockout)

	_, err = e.Service.ChangePassword(ctx, id, pw, "short")
	wantInput(t, err, "new_password", "8 to 72 bytes")
	p, err := e.Service.ChangePassword(ctx, id, pw, "a brand new password")
	if err != nil || p.RefreshToken == "" || p.AccessToken == "" {
		t.Fatalf("ChangePassword = %v, %v", p, err)
	}
	_, err = e.Service.Refresh(ctx, other.RefreshToken)
	wantErr(t, err, auth.ErrRefreshTokenRevoked, "")
	if _, err := e.Service.Refresh(ctx, p.RefreshToken); err != nil {
		t.Errorf("the new session: %v", err)
	}
	e.Login(t, "cam@example.com", "a brand new password")
	_, err = e.Service.ChangePassword(ctx, uuid.NewString(), pw, "a brand new password")
	wantErr(t, err, auth.ErrUserNotFound, "")
}

// Sessions: two logins list two; revoking one leaves the other working;
// another user's session is NOT_FOUND and not revoked; LogoutAll ends all.
func TestSessions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.VerifiedUser(t, "sid", "sid@example.com", pw)
	otherID := e.VerifiedUser(t, "oz", "oz@example.com", pw)
	laptop := e.Login(t, "sid@example.com", pw)
	e.Clock.Advance(time.Minute)
	phone := e.Login(t, "sid@example.com", pw)
	e.Login(t, "oz@example.com", pw)
	e.Clock.Advance(time.Minute)
	rotated, err := e.Service.Refresh(ctx, phone.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}

	sessions, err := e.Service.ListSessions(ctx, id)
	if err != nil || len(sessions) != 2 {
		t.Fatalf("ListSessions = %v, %v; want two", sessions, err)
	}
	first, second := sessions[0], sessions[1]
	if !second.CreatedAt.After(first.CreatedAt) || !second.LastUsedAt.Equal(e.Clock.Now()) || !first.LastUsedAt.Equal(first.CreatedAt) {
		t.Errorf("sessions: %+v", sessions)
	}
	if !second.ExpiresAt.Equal(e.Clock.Now().Add(refreshTTL)) {
		t.Errorf("expiry %v, want %v", second.ExpiresAt, e.Clock.Now().Add(refreshTTL))
	}

	// Another user's session: NOT_FOUND, and it still works.
	otherSessions, _ := e.Service.ListSessions(ctx, otherID)
	err = e.Service.RevokeSession(ctx, id, otherSessions[0].ID.String())
	wantErr(t, err, auth.ErrSessionNotFound, "Session not found")
	err = e.Service.RevokeSession(ctx, id, uuid.NewString())
	wantErr(t, err, auth.ErrSessionNotFound, "")
	if n := e.DB.Ent.TokenFamily.Query().Where(tokenfamily.RevokedAtNotNil()).CountX(ctx); n != 0 {
		t.Errorf("%d sessions revoked by refused calls", n)
	}

	// Revoke the laptop: the phone still refreshes.
	if err := e.Service.RevokeSession(ctx, id, first.ID.String()); err != nil {
		t.Fatal(err)
	}
	_, err = e.Service.Refresh(ctx, laptop.RefreshToken)
	wantErr(t, err, auth.ErrRefreshTokenRevoked, "")
	rotated, err = e.Service.Refresh(ctx, rotated.RefreshToken)
	if err != nil {
		t.Fatalf("the other session: %v", err)
	}
	if s, _ := e.Service.ListSessions(ctx, id); len(s) != 1 {
		t.Errorf("sessions after revoking one: %d", len(s))
	}

	// LogoutAll ends the rest (the calling session too).
	e.Login(t, "sid@example.com", pw)
	n, err := e.Service.LogoutAll(ctx, id)
	if err != nil || n != 2 {
		t.Fatalf("LogoutAll = %d, %v; want 2", n, err)
	}
	_, err = e.Service.Refresh(ctx, rotated.RefreshToken)
	wantErr(t, err, auth.ErrRefreshTokenRevoked, "")
	if s, _ := e.Service.ListSessions(ctx, id); len(s) != 0 {
		t.Errorf("sessions after LogoutAll: %d", len(s))
	}
	if s, _ := e.Service.ListSessions(ctx, otherID); len(s) != 1 {
		t.Errorf("the other user's sessions: %d", len(s))
	}
	err = e.Service.RevokeSession(ctx, id, "42")
	wantInput(t, err, "session_id", "session_id")
}

// DeleteUser erases the user from every table but the audit log, leaves a
// tombstone that GetUser answers, and frees the address.
func TestDeleteUser(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.VerifiedUser(t, "del", "Del@Example.com", pw)
	uid := uuid.MustParse(id)
	e.Login(t, "del@example.com", pw)
	e.Service.RequestPasswordReset(ctx, "del@example.com") // a code and an e-mail

	err := e.Service.DeleteUser(ctx, id, "wrong password")
	wantErr(t, err, auth.ErrWrongPassword, "")
	if err := e.Service.DeleteUser(ctx, id, pw); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	me, err := e.Service.GetUser(ctx, id)
	if err != nil || me != (auth.User{ID: uid, Username: "Deleted user"}) {
		t.Errorf("GetUser(tombstone) = %+v, %v", me, err)
	}
	u := e.DB.Ent.User.GetX(ctx, uid)
	if u.DeletedAt == nil || u.Email != "" || u.PasswordHash != "" || strings.Contains(strings.ToLower(u.EmailNormalized), "del@") || u.Username == "del" {
		t.Errorf("tombstone keeps data: %+v", u)
	}
	for name, n := range map[string]int{
		"token families": e.DB.Ent.TokenFamily.Query().Where(tokenfamily.UserID(uid)).CountX(ctx),
		"refresh tokens": e.DB.Ent.RefreshToken.Query().Where(refreshtoken.UserID(uid)).CountX(ctx),
		"codes":          e.DB.Ent.OtpRequest.Query().Where(otprequest.UserID(uid)).CountX(ctx),
		"e-mails":        e.DB.Ent.OutboxMessage.Query().Where(outboxmessage.UserID(uid)).CountX(ctx),
		"users with the address": e.DB.Ent.User.Query().Where(user.Or(user.EmailEqualFold("del@example.com"),
			user.EmailNormalized("del@example.com"))).CountX(ctx),
	} {
		if n != 0 {
			t.Errorf("%s left: %d", name, n)
		}
	}
	if n := e.DB.Ent.AuditEvent.Query().CountX(ctx); n == 0 {
		t.Errorf("audit events were deleted")
	}
	_, err = e.Service.Login(ctx, "del@example.com", pw)
	wantErr(t, err, auth.ErrInvalidCredentials, "")
	err = e.Service.DeleteUser(ctx, id, pw)
	wantErr(t, err, auth.ErrUserNotFound, "")
	// The address registers anew, as another user.
	if again := e.Register(t, "del2", "del@example.com", pw); again == id {
		t.Errorf("the new registration has the deleted user's id")
	}
}

// GetUsers answers 100 ids, some unknown and some repeated, with one
// statement, each known user once; more than 500 is INVALID_INPUT.
func TestGetUsers(t *testing.T) {
	var counter sqlcount.Counter
	e := newEnv(t, authtest.ServerOptions(server.Options{WrapConnector: counter.Wrap}))
	ctx := context.Background()
	var known, ids []string
	for i := range 30 {
		known = append(known, e.Register(t, fmt.Sprintf("u%d", i), fmt.Sprintf("u%d@example.com", i), pw))
	}
	ids = append(ids, known...)
	ids = append(ids, known[:30]...) // repeated
	for range 40 {
		ids = append(ids, uuid.NewString()) // unknown
	}
	counter.Reset()
	users, err := e.Service.GetUsers(counter.Mark(ctx), ids)
	if err != nil {
		t.Fatal(err)
	}
	if calls := counter.Calls(); !slices.Equal(calls, []string{"query"}) {
		t.Errorf("round trips %v, want one query", calls)
	}
	var got []string
	for _, u := range users {
		got = append(got, u.ID.String())
		if !strings.HasPrefix(u.Email, u.Username+"@") {
			t.Errorf("user %+v", u)
		}
	}
	slices.Sort(got)
	want := slices.Clone(known)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("GetUsers returned %d users, want the %d known once each", len(got), len(want))
	}
	_, err = e.Service.GetUsers(ctx, make([]string, 501))
	wantInput(t, err, "user_ids", "at most 500")
	_, err = e.Service.GetUsers(ctx, []string{"not-a-uuid"})
	wantInput(t, err, "user_ids", "UUID")
}

// Login bounds only the bytes bcrypt reads: a short password (an imported
// account's) is compared, and a wrong one counts toward the lock.
func TestLoginShortPassword(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.VerifiedUser(t, "sh", "sh@example.com", pw)
	for range loginMaxFails {
		_, err := e.Service.Login(ctx, "sh@example.com", "abc")
		wantErr(t, err, auth.ErrInvalidCredentials, "")
	}
	_, err := e.Service.Login(ctx, "sh@example.com", pw)
	wantErr(t, err, auth.ErrLoginThrottled, "")
	_, err = e.Service.Login(ctx, "sh@example.com", strings.Repeat("p", 73))
	wantInput(t, err, "password", "at most 72 bytes")
}
