package server

import (
	"net"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/placebrain/auth/internal/config"
)

// msgTooManyStreams is the RESOURCE_EXHAUSTED message of a streaming RPC
// refused by GRPC__MAX_STREAMING_RPCS.
const msgTooManyStreams = "too many open streams; try again later"

// transportOptions are the gRPC server options of the GRPC__ section's
// transport limits (see the README's "Limits (transport)"):
//
//   - GRPC__MAX_CONCURRENT_STREAMS per connection
//     (SETTINGS_MAX_CONCURRENT_STREAMS, RFC 9113 §6.5.2);
//   - the keepalive enforcement policy (GRPC__KEEPALIVE_MIN_TIME_SECONDS,
//     pings allowed without an RPC, since the gateway's channel may idle)
//     and the connection idle and age limits;
//   - GRPC__HANDSHAKE_TIMEOUT_SECONDS for a new connection's handshake;
//   - GRPC__MAX_STREAMING_RPCS open streaming RPCs over all connections.
//
// The memory a client that never reads can pin is then bounded: grpc-go
// holds at most one write quota (64 KiB) and one message per stream, and
// a unary RPC of AuthService answers a few hundred bytes, so the streams
// that can hold more are the streaming ones (health Watch, reflection,
// which answers the largest messages), and there are at most
// GRPC__MAX_STREAMING_RPCS of those.
func transportOptions(g config.GRPC) []grpc.ServerOption {
	slots := make(chan struct{}, g.MaxStreamingRPCs)
	limit := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		select {
		case slots <- struct{}{}:
		default:
			return status.Error(codes.ResourceExhausted, msgTooManyStreams)
		}
		defer func() { <-slots }()
		return handler(srv, ss)
	}
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(g.MaxConcurrentStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: g.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     g.MaxConnectionIdle,
			MaxConnectionAge:      g.MaxConnectionAge,
			MaxConnectionAgeGrace: g.MaxConnectionAgeGrace,
		}),
		grpc.ConnectionTimeout(g.HandshakeTimeout),
		grpc.ChainStreamInterceptor(limit),
	}
}

// limitListener caps lis at GRPC__MAX_CONNECTIONS open connections (none
// when 0): a connection past the cap waits in the listen backlog until
// another closes.
func limitListener(lis net.Listener, g config.GRPC) net.Listener {
	if g.MaxConnections <= 0 {
		return lis
	}
	return netutil.LimitListener(lis, g.MaxConnections)
}
