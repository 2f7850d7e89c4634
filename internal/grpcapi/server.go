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

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/proto/authpb"
)

// Server implements authpb.AuthServiceServer on an auth.Service. Handlers
// return domain errors; the ErrorInterceptor turns them into statuses.
type Server struct {
	authpb.UnimplementedAuthServiceServer
	svc *auth.Service
}

// NewServer returns the AuthService implementation.
func NewServer(svc *auth.Service) *Server { return &Server{svc: svc} }

// Interceptors returns the unary interceptors in order: panic recovery
// (a panic is answered INTERNAL "internal error" and logged with its
// stack), then error mapping through ToStatus.
func Interceptors(log *slog.Logger) []grpc.UnaryServerInterceptor {
	return []grpc.UnaryServerInterceptor{
		recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
			log.ErrorContext(ctx, "panic in handler", "panic", p, "stack", string(debug.Stack()))
			return status.Error(codes.Internal, "internal error")
		})),
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			resp, err := handler(ctx, req)
			if err != nil {
				return nil, ToStatus(ctx, log, info.FullMethod, err)
			}
			return resp, nil
		},
	}
}

func (s *Server) Register(ctx context.Context, r *authpb.RegisterRequest) (*authpb.RegisterResponse, error) {
	id, err := s.svc.Register(ctx, r.GetUsername(), r.GetEmail(), r.GetPassword())
	if err != nil {
		return nil, err
	}
	return &authpb.RegisterResponse{UserId: id.String()}, nil
}

func (s *Server) Login(ctx context.Context, r *authpb.LoginRequest) (*authpb.LoginResponse, error) {
	p, err := s.svc.Login(ctx, r.GetEmail(), r.GetPassword())
	if err != nil {
		return nil, err
	}
	return &authpb.LoginResponse{AccessToken: p.AccessToken, RefreshToken: p.RefreshToken}, nil
}

func (s *Server) RefreshTokens(ctx context.Context, r *authpb.RefreshTokensRequest) (*authpb.RefreshTokensResponse, error) {
	p, err := s.svc.Refresh(ctx, r.GetRefreshToken())
	if err != nil {
		return nil, err
	}
	return &authpb.RefreshTokensResponse{AccessToken: p.AccessToken, RefreshToken: p.RefreshToken}, nil
}

func (s *Server) Logout(ctx context.Context, r *authpb.LogoutRequest) (*authpb.LogoutResponse, error) {
	if err := s.svc.Logout(ctx, r.GetRefreshToken()); err != nil {
		return nil, err
	}
	return &authpb.LogoutResponse{Success: true}, nil
}

func (s *Server) GetMe(ctx context.Context, r *authpb.GetMeRequest) (*authpb.GetMeResponse, error) {
	u, err := s.svc.GetUser(ctx, r.GetUserId())
	if err != nil {
		return nil, err
	}
	return &authpb.GetMeResponse{UserId: u.ID.String(), Username: u.Username, Email: u.Email, IsVerified: u.Verified}, nil
}

func (s *Server) GetUserByEmail(ctx context.Context, r *authpb.GetUserByEmailRequest) (*authpb.GetUserByEmailResponse, error) {
	u, err := s.svc.GetUserByEmail(ctx, r.GetEmail())
	if err != nil {
		return nil, err
	}
	return &authpb.GetUserByEmailResponse{UserId: u.ID.String(), Username: u.Username, Email: u.Email}, nil
}

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

func (s *Server) SendOtp(ctx context.Context, r *authpb.SendOtpRequest) (*authpb.SendOtpResponse, error) {
	if err := s.svc.SendOtp(ctx, r.GetEmail()); err != nil {
		return nil, err
	}
	return &authpb.SendOtpResponse{Success: true}, nil
}

func (s *Server) VerifyOtp(ctx context.Context, r *authpb.VerifyOtpRequest) (*authpb.VerifyOtpResponse, error) {
	if err := s.svc.VerifyOtp(ctx, r.GetEmail(), r.GetCode()); err != nil {
		return nil, err
	}
	return &authpb.VerifyOtpResponse{Success: true}, nil
}
