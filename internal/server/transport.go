package server

import (
	"net"
	"net/netip"
	"sync"

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
// another closes. Within the cap, one IP address holds at most
// GRPC__MAX_CONNECTIONS_PER_PEER (none when 0): one more from it is
// closed as soon as it is accepted, so a stranger holding idle connections
// cannot take every slot and keep the gateway from reconnecting.
func limitListener(lis net.Listener, g config.GRPC) net.Listener {
	if g.MaxConnections > 0 {
		lis = netutil.LimitListener(lis, g.MaxConnections)
	}
	if g.MaxConnectionsPerPeer > 0 {
		lis = &peerLimitListener{Listener: lis, max: g.MaxConnectionsPerPeer, open: map[netip.Addr]int{}}
	}
	return lis
}

// peerLimitListener closes accepted connections from a peer that already
// has max open.
type peerLimitListener struct {
	net.Listener
	max  int
	mu   sync.Mutex
	open map[netip.Addr]int // open connections per peer; no zero entries
}

func (l *peerLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := peerOf(c.RemoteAddr())
		l.mu.Lock()
		full := l.open[peer] >= l.max
		if !full {
			l.open[peer]++
		}
		l.mu.Unlock()
		if full {
			_ = c.Close()
			continue
		}
		return &peerConn{Conn: c, l: l, peer: peer}, nil
	}
}

// peerOf is the IP address of a TCP peer (the zero Addr for other
// networks, which then share one count).
func peerOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// peerConn gives its peer's slot back when closed (once).
type peerConn struct {
	net.Conn
	l      *peerLimitListener
	peer   netip.Addr
	closed sync.Once
}

func (c *peerConn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(func() {
		c.l.mu.Lock()
		defer c.l.mu.Unlock()
		if c.l.open[c.peer]--; c.l.open[c.peer] <= 0 {
			delete(c.l.open, c.peer)
		}
	})
	return err
}
