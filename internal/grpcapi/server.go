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

// Register registers the AuthService implementation on gs with
// ServiceDesc. gs must use Codec (see ServerOptions).
func Register(gs *grpc.Server, svc *auth.Service) {
	gs.RegisterService(ServiceDesc(), NewServer(svc))
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
