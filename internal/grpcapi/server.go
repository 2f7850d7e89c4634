// Package grpcapi is the gRPC transport of AuthService: it turns requests
// into calls of the domain service and domain errors into gRPC statuses
// (ToStatus), and holds the server's interceptors.
package grpcapi

import (
	"context"
	"log/slog"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/proto/authpb"
)

// Server implements authpb.AuthServiceServer on an auth.Service. Handlers
// return domain errors; the ErrorInterceptor turns them into statuses.
type Server struct {
	authpb.UnimplementedAuthServiceServer
	svc *auth.Service
	// callerAuth says callers authenticate (AuthenticatedOnly methods are
	// served).
	callerAuth bool
}

// NewServer returns the AuthService implementation; callers is the caller
// authentication in front of it (nil: none).
func NewServer(svc *auth.Service, callers *Callers) *Server {
	return &Server{svc: svc, callerAuth: callers.Enabled()}
}

// Register registers the AuthService implementation on gs with
// ServiceDesc. gs must use Codec (see ServerOptions).
func Register(gs *grpc.Server, svc *auth.Service, callers *Callers) {
	gs.RegisterService(ServiceDesc(), NewServer(svc, callers))
}

// needsCallerAuth refuses an AuthenticatedOnly method on a port without
// caller authentication.
func (s *Server) needsCallerAuth() error {
	if s.callerAuth {
		return nil
	}
	return status.Error(codes.PermissionDenied, msgNeedsCallerAuth)
}

// ServiceDesc returns AuthService's service description with every
// method's request decoding checked for the mark Codec leaves on a request
// it could not decode, which is then answered INVALID_ARGUMENT (reason
// MALFORMED_REQUEST).
func ServiceDesc() *grpc.ServiceDesc {
	desc := authpb.AuthService_ServiceDesc
	desc.Methods = make([]grpc.MethodDesc, len(authpb.AuthService_ServiceDesc.Methods))
	for i, m := range authpb.AuthService_ServiceDesc.Methods {
		handler := m.Handler
		m.Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			return handler(srv, ctx, func(v any) error {
				if err := dec(v); err != nil {
					return err
				}
				if isMalformed(v) {
					return domainStatus(codes.InvalidArgument, auth.ErrMalformedRequest)
				}
				return nil
			}, ic)
		}
		desc.Methods[i] = m
	}
	return &desc
}

// Interceptors returns the unary interceptors in order: panic recovery
// (a panic is answered INTERNAL "internal error" and logged with its
// stack), caller authentication when callers has it enabled (see
// Callers), then error mapping through ToStatus.
func Interceptors(log *slog.Logger, callers *Callers) []grpc.UnaryServerInterceptor {
	ics := []grpc.UnaryServerInterceptor{
		recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
			log.ErrorContext(ctx, "panic in handler", "panic", p, "stack", string(debug.Stack()))
			return status.Error(codes.Internal, "internal error")
		})),
	}
	if callers.Enabled() {
		ics = append(ics, callers.Unary)
	}
	return append(ics, func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return nil, ToStatus(ctx, log, info.FullMethod, err)
		}
		return resp, nil
	})
}

// Register creates an unverified user and queues its first code.
func (s *Server) Register(ctx context.Context, r *authpb.RegisterRequest) (*authpb.RegisterResponse, error) {
	id, err := s.svc.Register(ctx, r.GetUsername(), r.GetEmail(), r.GetPassword())
	if err != nil {
		return nil, err
	}
	return &authpb.RegisterResponse{UserId: id.String()}, nil
}

// Login starts a session and returns an access and a refresh token.
func (s *Server) Login(ctx context.Context, r *authpb.LoginRequest) (*authpb.LoginResponse, error) {
	p, err := s.svc.Login(ctx, r.GetEmail(), r.GetPassword())
	if err != nil {
		return nil, err
	}
	return &authpb.LoginResponse{AccessToken: p.AccessToken, RefreshToken: p.RefreshToken}, nil
}

// RefreshTokens rotates a refresh token.
func (s *Server) RefreshTokens(ctx context.Context, r *authpb.RefreshTokensRequest) (*authpb.RefreshTokensResponse, error) {
	p, err := s.svc.Refresh(ctx, r.GetRefreshToken())
	if err != nil {
		return nil, err
	}
	return &authpb.RefreshTokensResponse{AccessToken: p.AccessToken, RefreshToken: p.RefreshToken}, nil
}

// Logout ends the refresh token's session; success is always true.
func (s *Server) Logout(ctx context.Context, r *authpb.LogoutRequest) (*authpb.LogoutResponse, error) {
	if err := s.svc.Logout(ctx, r.GetRefreshToken()); err != nil {
		return nil, err
	}
	return &authpb.LogoutResponse{Success: true}, nil
}

// GetMe returns a user's profile by id.
func (s *Server) GetMe(ctx context.Context, r *authpb.GetMeRequest) (*authpb.GetMeResponse, error) {
	u, err := s.svc.GetUser(ctx, r.GetUserId())
	if err != nil {
		return nil, err
	}
	return &authpb.GetMeResponse{UserId: u.ID.String(), Username: u.Username, Email: u.Email, IsVerified: u.Verified}, nil
}

// GetUserByEmail looks a user up by e-mail address.
func (s *Server) GetUserByEmail(ctx context.Context, r *authpb.GetUserByEmailRequest) (*authpb.GetUserByEmailResponse, error) {
	u, err := s.svc.GetUserByEmail(ctx, r.GetEmail())
	if err != nil {
		return nil, err
	}
	return &authpb.GetUserByEmailResponse{UserId: u.ID.String(), Username: u.Username, Email: u.Email}, nil
}

// ValidateToken verifies an access token; valid=false for any failure.
func (s *Server) ValidateToken(ctx context.Context, r *authpb.ValidateTokenRequest) (*authpb.ValidateTokenResponse, error) {
	sub, ok, err := s.svc.ValidateToken(ctx, r.GetAccessToken())
	if err != nil {
		return nil, err
	}
	if !ok {
		return &authpb.ValidateTokenResponse{Valid: false}, nil
	}
	return &authpb.ValidateTokenResponse{Valid: true, UserId: sub.UserID.String(), Email: sub.Email, Username: sub.Username}, nil
}

// SendOtp issues a new verification code.
func (s *Server) SendOtp(ctx context.Context, r *authpb.SendOtpRequest) (*authpb.SendOtpResponse, error) {
	if err := s.svc.SendOTP(ctx, r.GetEmail()); err != nil {
		return nil, err
	}
	return &authpb.SendOtpResponse{Success: true}, nil
}

// VerifyOtp checks a verification code.
func (s *Server) VerifyOtp(ctx context.Context, r *authpb.VerifyOtpRequest) (*authpb.VerifyOtpResponse, error) {
	if err := s.svc.VerifyOTP(ctx, r.GetEmail(), r.GetCode()); err != nil {
		return nil, err
	}
	return &authpb.VerifyOtpResponse{Success: true}, nil
}

// RequestPasswordReset mails a password-reset code; the answer does not
// tell whether the address has an account.
func (s *Server) RequestPasswordReset(ctx context.Context, r *authpb.RequestPasswordResetRequest) (*authpb.RequestPasswordResetResponse, error) {
	if err := s.svc.RequestPasswordReset(ctx, r.GetEmail()); err != nil {
		return nil, err
	}
	return &authpb.RequestPasswordResetResponse{Success: true}, nil
}

// ResetPassword sets a new password with a reset code.
func (s *Server) ResetPassword(ctx context.Context, r *authpb.ResetPasswordRequest) (*authpb.ResetPasswordResponse, error) {
	if err := s.svc.ResetPassword(ctx, r.GetEmail(), r.GetCode(), r.GetNewPassword()); err != nil {
		return nil, err
	}
	return &authpb.ResetPasswordResponse{Success: true}, nil
}

// ChangePassword sets a new password after checking the current one.
func (s *Server) ChangePassword(ctx context.Context, r *authpb.ChangePasswordRequest) (*authpb.ChangePasswordResponse, error) {
	if err := s.needsCallerAuth(); err != nil {
		return nil, err
	}
	p, err := s.svc.ChangePassword(ctx, r.GetUserId(), r.GetCurrentPassword(), r.GetNewPassword())
	if err != nil {
		return nil, err
	}
	return &authpb.ChangePasswordResponse{AccessToken: p.AccessToken, RefreshToken: p.RefreshToken}, nil
}

// LogoutAll ends every session of the user.
func (s *Server) LogoutAll(ctx context.Context, r *authpb.LogoutAllRequest) (*authpb.LogoutAllResponse, error) {
	if err := s.needsCallerAuth(); err != nil {
		return nil, err
	}
	n, err := s.svc.LogoutAll(ctx, r.GetUserId())
	if err != nil {
		return nil, err
	}
	return &authpb.LogoutAllResponse{SessionsEnded: int32(n)}, nil
}

// ListSessions lists the user's live sessions.
func (s *Server) ListSessions(ctx context.Context, r *authpb.ListSessionsRequest) (*authpb.ListSessionsResponse, error) {
	if err := s.needsCallerAuth(); err != nil {
		return nil, err
	}
	sessions, err := s.svc.ListSessions(ctx, r.GetUserId())
	if err != nil {
		return nil, err
	}
	out := &authpb.ListSessionsResponse{Sessions: make([]*authpb.Session, len(sessions))}
	for i, x := range sessions {
		out.Sessions[i] = &authpb.Session{SessionId: x.ID.String(), CreatedAt: timestamppb.New(x.CreatedAt),
			LastUsedAt: timestamppb.New(x.LastUsedAt), ExpiresAt: timestamppb.New(x.ExpiresAt)}
	}
	return out, nil
}

// RevokeSession ends one of the user's sessions.
func (s *Server) RevokeSession(ctx context.Context, r *authpb.RevokeSessionRequest) (*authpb.RevokeSessionResponse, error) {
	if err := s.needsCallerAuth(); err != nil {
		return nil, err
	}
	if err := s.svc.RevokeSession(ctx, r.GetUserId(), r.GetSessionId()); err != nil {
		return nil, err
	}
	return &authpb.RevokeSessionResponse{Success: true}, nil
}

// DeleteUser erases the user after checking the password.
func (s *Server) DeleteUser(ctx context.Context, r *authpb.DeleteUserRequest) (*authpb.DeleteUserResponse, error) {
	if err := s.needsCallerAuth(); err != nil {
		return nil, err
	}
	if err := s.svc.DeleteUser(ctx, r.GetUserId(), r.GetPassword()); err != nil {
		return nil, err
	}
	return &authpb.DeleteUserResponse{Success: true}, nil
}

// GetUsers returns up to 500 users by id.
func (s *Server) GetUsers(ctx context.Context, r *authpb.GetUsersRequest) (*authpb.GetUsersResponse, error) {
	if err := s.needsCallerAuth(); err != nil {
		return nil, err
	}
	users, err := s.svc.GetUsers(ctx, r.GetUserIds())
	if err != nil {
		return nil, err
	}
	out := &authpb.GetUsersResponse{Users: make([]*authpb.User, len(users))}
	for i, u := range users {
		out.Users[i] = &authpb.User{UserId: u.ID.String(), Username: u.Username, Email: u.Email, IsVerified: u.Verified}
	}
	return out, nil
}
