package grpcapi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/placebrain/auth/internal/grpcapi"
	"github.com/placebrain/auth/internal/testutil/authtest"
	"github.com/placebrain/auth/proto/authpb"
)

const gatewayKey = "gateway-key-0123456789-abcdefghijklmnopq"

// With no caller authentication configured, the account-management RPCs
// that act on a user_id answer PERMISSION_DENIED (the platform's gateway
// calls none of them, so the drop-in loses nothing) and change nothing;
// the password-reset ones serve everyone.
func TestAccountRPCsNeedCallerAuth(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.VerifiedUser(t, "ann", "ann@example.com", pw)
	c := e.Client
	calls := map[string]func() error{
		"ChangePassword": func() error {
			_, err := c.ChangePassword(ctx, &authpb.ChangePasswordRequest{UserId: id, CurrentPassword: pw, NewPassword: "a brand new password"})
			return err
		},
		"LogoutAll":    func() error { _, err := c.LogoutAll(ctx, &authpb.LogoutAllRequest{UserId: id}); return err },
		"ListSessions": func() error { _, err := c.ListSessions(ctx, &authpb.ListSessionsRequest{UserId: id}); return err },
		"RevokeSession": func() error {
			_, err := c.RevokeSession(ctx, &authpb.RevokeSessionRequest{UserId: id, SessionId: uuid.NewString()})
			return err
		},
		"DeleteUser": func() error {
			_, err := c.DeleteUser(ctx, &authpb.DeleteUserRequest{UserId: id, Password: pw})
			return err
		},
		"GetUsers": func() error { _, err := c.GetUsers(ctx, &authpb.GetUsersRequest{UserIds: []string{id}}); return err },
	}
	if len(calls) != len(grpcapi.AuthenticatedOnly) {
		t.Fatalf("the test covers %d methods, AuthenticatedOnly has %d", len(calls), len(grpcapi.AuthenticatedOnly))
	}
	for name, call := range calls {
		if !grpcapi.AuthenticatedOnly[name] {
			t.Errorf("%s is not in AuthenticatedOnly", name)
		}
		wantStatus(t, call(), codes.PermissionDenied, "", "")
	}
	if me, err := c.GetMe(ctx, &authpb.GetMeRequest{UserId: id}); err != nil || me.GetEmail() != "ann@example.com" {
		t.Errorf("the user after refused calls: %v, %v", me, err)
	}
	e.Login(t, "ann@example.com", pw) // the password is unchanged
	if _, err := c.RequestPasswordReset(ctx, &authpb.RequestPasswordResetRequest{Email: "ann@example.com"}); err != nil {
		t.Errorf("RequestPasswordReset without caller auth: %v", err)
	}
}

// One round trip per new RPC, with an API key: every field goes in and
// comes back.
func TestAccountRPCRoundTrips(t *testing.T) {
	e := newEnv(t, authtest.Set("GRPC__API_KEYS", gatewayKey))
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+gatewayKey)
	c := e.Client
	id := e.VerifiedUser(t, "Bea", "bea@example.com", pw)
	first := e.Login(t, "bea@example.com", pw)

	sessions, err := c.ListSessions(ctx, &authpb.ListSessionsRequest{UserId: id})
	if err != nil || len(sessions.GetSessions()) != 1 {
		t.Fatalf("ListSessions = %v, %v", sessions, err)
	}
	s := sessions.GetSessions()[0]
	if _, err := uuid.Parse(s.GetSessionId()); err != nil || !s.GetCreatedAt().AsTime().Equal(e.Clock.Now()) ||
		!s.GetLastUsedAt().AsTime().Equal(e.Clock.Now()) || !s.GetExpiresAt().AsTime().After(e.Clock.Now()) {
		t.Errorf("session = %v", s)
	}
	users, err := c.GetUsers(ctx, &authpb.GetUsersRequest{UserIds: []string{id, id, uuid.NewString()}})
	if err != nil || len(users.GetUsers()) != 1 {
		t.Fatalf("GetUsers = %v, %v", users, err)
	}
	if u := users.GetUsers()[0]; u.GetUserId() != id || u.GetUsername() != "Bea" || u.GetEmail() != "bea@example.com" || !u.GetIsVerified() {
		t.Errorf("GetUsers user = %v", u)
	}
	_, err = c.GetUsers(ctx, &authpb.GetUsersRequest{UserIds: make([]string, 501)})
	wantStatus(t, err, codes.InvalidArgument, "user_ids must hold at most 500 ids", "INVALID_INPUT")
	if f := errorInfo(err).GetMetadata()["field"]; f != "user_ids" {
		t.Errorf("field = %q", f)
	}

	_, err = c.ChangePassword(ctx, &authpb.ChangePasswordRequest{UserId: id, CurrentPassword: "wrong password", NewPassword: "a brand new password"})
	wantStatus(t, err, codes.InvalidArgument, "Current password is incorrect", "PASSWORD_INCORRECT")
	pair, err := c.ChangePassword(ctx, &authpb.ChangePasswordRequest{UserId: id, CurrentPassword: pw, NewPassword: "a brand new password"})
	if err != nil || pair.GetAccessToken() == "" || pair.GetRefreshToken() == "" {
		t.Fatalf("ChangePassword = %v, %v", pair, err)
	}
	_, err = c.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: first.RefreshToken})
	wantStatus(t, err, codes.Unauthenticated, "", "REFRESH_TOKEN_REVOKED")

	_, err = c.RevokeSession(ctx, &authpb.RevokeSessionRequest{UserId: id, SessionId: uuid.NewString()})
	wantStatus(t, err, codes.NotFound, "Session not found", "SESSION_NOT_FOUND")
	sessions, _ = c.ListSessions(ctx, &authpb.ListSessionsRequest{UserId: id})
	if r, err := c.RevokeSession(ctx, &authpb.RevokeSessionRequest{UserId: id, SessionId: sessions.GetSessions()[0].GetSessionId()}); err != nil || !r.GetSuccess() {
		t.Fatalf("RevokeSession = %v, %v", r, err)
	}
	e.Login(t, "bea@example.com", "a brand new password")
	e.Login(t, "bea@example.com", "a brand new password")
	if r, err := c.LogoutAll(ctx, &authpb.LogoutAllRequest{UserId: id}); err != nil || r.GetSessionsEnded() != 2 {
		t.Fatalf("LogoutAll = %v, %v", r, err)
	}

	if r, err := c.RequestPasswordReset(ctx, &authpb.RequestPasswordResetRequest{Email: "bea@example.com"}); err != nil || !r.GetSuccess() {
		t.Fatalf("RequestPasswordReset = %v, %v", r, err)
	}
	code := e.Code(t, "bea@example.com")
	_, err = c.ResetPassword(ctx, &authpb.ResetPasswordRequest{Email: "bea@example.com", Code: code, NewPassword: "short"})
	wantStatus(t, err, codes.InvalidArgument, "", "INVALID_INPUT")
	if r, err := c.ResetPassword(ctx, &authpb.ResetPasswordRequest{Email: "bea@example.com", Code: code, NewPassword: "the reset password"}); err != nil || !r.GetSuccess() {
		t.Fatalf("ResetPassword = %v, %v", r, err)
	}

	_, err = c.DeleteUser(ctx, &authpb.DeleteUserRequest{UserId: id, Password: "a brand new password"})
	wantStatus(t, err, codes.InvalidArgument, "Current password is incorrect", "PASSWORD_INCORRECT")
	if r, err := c.DeleteUser(ctx, &authpb.DeleteUserRequest{UserId: id, Password: "the reset password"}); err != nil || !r.GetSuccess() {
		t.Fatalf("DeleteUser = %v, %v", r, err)
	}
	me, err := c.GetMe(ctx, &authpb.GetMeRequest{UserId: id})
	if err != nil || me.GetUserId() != id || me.GetUsername() != "Deleted user" || me.GetEmail() != "" || me.GetIsVerified() {
		t.Errorf("GetMe(deleted) = %v, %v", me, err)
	}
	if !strings.Contains(e.Log.String(), "user deleted") {
		t.Errorf("deletion not logged")
	}
}
