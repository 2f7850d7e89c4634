package grpcapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/proto/authpb"
)

// Metadata keys read from authenticated callers.
const (
	// AuthorizationKey carries an API key: `Bearer KEY`.
	AuthorizationKey = "authorization"
	// RealIPKey carries the end user's address as the gateway worked it
	// out: one IP address.
	RealIPKey = "x-real-ip"
)

// healthPrefix is the method prefix of grpc.health.v1.Health, which
// answers every caller.
const healthPrefix = "/grpc.health.v1.Health/"

// Messages of refused calls: short, and the same whatever failed.
const (
	msgUnauthenticated = "caller not authenticated"
	msgDenied          = "caller may not call this method"
)

// Grant is a caller (a client certificate identity or an API key) and the
// AuthService methods it may call; Methods nil means every method.
type Grant struct {
	Caller  string
	Methods []string
}

// CallerOptions configure caller authentication (NewCallers). With neither
// ClientCerts nor Keys every caller may call every method.
type CallerOptions struct {
	// ClientCerts says the TLS layer verifies client certificates against
	// a client CA (mutual TLS), so a verified certificate authenticates
	// its caller.
	ClientCerts bool
	// Clients are the certificate identities (a DNS or URI SAN) that may
	// call. Empty with ClientCerts: every verified certificate, every
	// method.
	Clients []Grant
	// Keys are the API keys callers may present as `authorization: Bearer
	// KEY`.
	Keys []Grant
	// Log receives refused calls (discarded when nil), at most
	// RefusalLogBurst at once and one per RefusalLogEvery after.
	Log *slog.Logger
	// Now is the clock of that bound (time.Now when nil).
	Now func() time.Time
}

// Callers authenticates the processes that call authd and authorizes
// their methods: an interceptor for unary and stream calls (Unary,
// Stream). When caller authentication is configured, every call but
// grpc.health.v1's needs a verified client certificate whose identity is
// allowed, or a valid API key: otherwise UNAUTHENTICATED; an AuthService
// method outside the caller's list is PERMISSION_DENIED. An authenticated
// caller's x-real-ip becomes the request's source (auth.WithSource). When
// it is not configured, every call passes and address metadata is
// ignored.
//
// A nil *Callers lets every call pass.
type Callers struct {
	certs   bool
	anyCert bool
	clients map[string]methodSet
	keys    []apiKey
	log     *slog.Logger

	unauthenticated atomic.Uint64
	denied          atomic.Uint64

	// refusalLogs bounds the "caller refused" warnings (warnRefused);
	// suppressed counts those it kept from the log since the last one
	// written.
	refusalLogs *rate.Limiter
	suppressed  atomic.Uint64
	now         func() time.Time
}

// Refusal warnings a flood of strangers can write: RefusalLogBurst at
// once, then one per RefusalLogEvery. Every refusal is still counted
// (Refusals, and the metrics built on it); the next warning written
// carries how many were left out ("suppressed").
const (
	RefusalLogBurst = 20
	RefusalLogEvery = time.Second
)

// warnRefused logs an unauthenticated call unless refusals are coming
// faster than RefusalLogBurst and RefusalLogEvery allow: a stranger
// calling in a loop must not be able to fill the operator's disk with
// warnings. (An authenticated caller's calls outside its methods are
// always logged.)
func (c *Callers) warnRefused(ctx context.Context, attrs ...any) {
	if !c.refusalLogs.AllowN(c.now(), 1) {
		c.suppressed.Add(1)
		return
	}
	if n := c.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, "suppressed", n)
	}
	c.log.WarnContext(ctx, "caller refused", attrs...)
}

// methodSet is the AuthService methods a caller may call; nil is all.
type methodSet map[string]bool

func newMethodSet(methods []string) methodSet {
	if methods == nil {
		return nil
	}
	s := methodSet{}
	for _, m := range methods {
		s[m] = true
	}
	return s
}

// apiKey is a configured key: only its SHA-256 is kept.
type apiKey struct {
	digest  [sha256.Size]byte
	name    string
	methods methodSet
}

// caller is an authenticated caller.
type caller struct {
	name    string
	methods methodSet
}

// may reports whether the caller may call the AuthService method m.
func (c caller) may(m string) bool { return c.methods == nil || c.methods[m] }

// NewCallers returns the caller authentication o describes.
func NewCallers(o CallerOptions) *Callers {
	c := &Callers{certs: o.ClientCerts, anyCert: o.ClientCerts && len(o.Clients) == 0, log: o.Log,
		refusalLogs: rate.NewLimiter(rate.Every(RefusalLogEvery), RefusalLogBurst), now: o.Now}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if len(o.Clients) > 0 {
		c.clients = map[string]methodSet{}
		for _, g := range o.Clients {
			c.clients[g.Caller] = newMethodSet(g.Methods)
		}
	}
	for i, g := range o.Keys {
		c.keys = append(c.keys, apiKey{digest: sha256.Sum256([]byte(g.Caller)),
			name: "api key " + strconv.Itoa(i+1), methods: newMethodSet(g.Methods)})
	}
	return c
}

// Enabled reports whether callers must authenticate.
func (c *Callers) Enabled() bool { return c != nil && (c.certs || len(c.keys) > 0) }

// Refusals counts refused calls since start.
type Refusals struct {
	// Unauthenticated counts calls refused for want of a valid
	// certificate or key.
	Unauthenticated uint64
	// PermissionDenied counts authenticated callers' calls outside their
	// methods.
	PermissionDenied uint64
}

// Refused returns how many calls were refused since start, for metrics.
func (c *Callers) Refused() Refusals {
	if c == nil {
		return Refusals{}
	}
	return Refusals{Unauthenticated: c.unauthenticated.Load(), PermissionDenied: c.denied.Load()}
}

// Unary is the unary server interceptor.
func (c *Callers) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := c.admit(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// Stream is the stream server interceptor.
func (c *Callers) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := c.admit(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	w := middleware.WrapServerStream(ss)
	w.WrappedContext = ctx
	return handler(srv, w)
}

// AuthenticatedOnly are the AuthService methods that answer
// PERMISSION_DENIED unless caller authentication is configured (their
// handlers check, so other methods pay nothing): they act on a user_id the
// caller asserts (the gateway reads it from a verified access token) and
// change or reveal more than the platform's gateway ever asked for, so an
// unauthenticated port must not offer them.
var AuthenticatedOnly = map[string]bool{
	"ChangePassword": true, "LogoutAll": true, "ListSessions": true,
	"RevokeSession": true, "DeleteUser": true, "GetUsers": true,
}

// msgNeedsCallerAuth answers AuthenticatedOnly methods on a port without
// caller authentication.
const msgNeedsCallerAuth = "this method needs caller authentication (GRPC__API_KEYS or GRPC__CLIENT_CA_FILE)"

// admit authenticates and authorizes a call of method and returns its
// context, carrying the end user's source when the caller gave one.
func (c *Callers) admit(ctx context.Context, method string) (context.Context, error) {
	if !c.Enabled() || strings.HasPrefix(method, healthPrefix) {
		return ctx, nil
	}
	who, err := c.authenticate(ctx, method)
	if err != nil {
		return nil, err
	}
	if name, ok := strings.CutPrefix(method, "/"+authpb.AuthService_ServiceDesc.ServiceName+"/"); ok && !who.may(name) {
		c.denied.Add(1)
		// Not bounded: the caller is authenticated, and a stranger's flood
		// of refusals must not hide it.
		c.log.WarnContext(ctx, "caller refused", "reason", "method not allowed", "caller", who.name,
			"method", method, "peer", peerAddr(ctx))
		return nil, status.Error(codes.PermissionDenied, msgDenied)
	}
	src, ok, err := realIP(ctx)
	if err != nil {
		return nil, ToStatus(ctx, c.log, method, err)
	}
	if ok {
		ctx = auth.WithSource(ctx, src)
	}
	return ctx, nil
}

// authenticate finds who calls: a verified client certificate whose
// identity is allowed, else a valid API key. A refusal is counted and
// logged with the peer's address and, when the caller sent a key, the
// first 8 hex digits of its SHA-256, never the key.
func (c *Callers) authenticate(ctx context.Context, method string) (caller, error) {
	var identities []string
	if c.certs {
		if ids, ok := verifiedIdentities(ctx); ok {
			if c.anyCert {
				return caller{name: "certificate " + strings.Join(ids, " ")}, nil
			}
			who, found := caller{methods: methodSet{}}, false
			for _, id := range ids {
				ms, ok := c.clients[id]
				if !ok {
					continue
				}
				if !found {
					who.name = id
				}
				found = true
				if ms == nil || who.methods == nil {
					who.methods = nil
					continue
				}
				for m := range ms {
					who.methods[m] = true
				}
			}
			if found {
				return who, nil
			}
			identities = ids
		}
	}
	attrs := []any{"method", method, "peer", peerAddr(ctx)}
	reason := "no credentials"
	if identities != nil {
		reason = "certificate identity not allowed"
		attrs = append(attrs, "identities", identities)
	}
	if len(c.keys) > 0 {
		if vals := metadata.ValueFromIncomingContext(ctx, AuthorizationKey); len(vals) > 0 {
			sent := vals[0]
			if key, ok := bearer(sent); ok && len(vals) == 1 {
				if who, ok := c.matchKey(key); ok {
					return who, nil
				}
				sent = key
			}
			reason = "invalid key"
			sum := sha256.Sum256([]byte(sent))
			attrs = append(attrs, "sent_sha256_prefix", hex.EncodeToString(sum[:4]))
		}
	}
	c.unauthenticated.Add(1)
	c.warnRefused(ctx, append([]any{"reason", reason}, attrs...)...)
	return caller{}, status.Error(codes.Unauthenticated, msgUnauthenticated)
}

// matchKey compares key with every configured key in constant time (their
// SHA-256 digests, so lengths do not show either) and returns its caller.
func (c *Callers) matchKey(key string) (caller, bool) {
	d := sha256.Sum256([]byte(key))
	found := -1
	for i := range c.keys {
		if subtle.ConstantTimeCompare(d[:], c.keys[i].digest[:]) == 1 && found < 0 {
			found = i
		}
	}
	if found < 0 {
		return caller{}, false
	}
	return caller{name: c.keys[found].name, methods: c.keys[found].methods}, true
}

// bearer returns the key of an `authorization: Bearer KEY` value (the
// scheme is case-insensitive, RFC 9110 §11.1).
func bearer(v string) (string, bool) {
	scheme, key, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	key = strings.TrimSpace(key)
	return key, key != ""
}

// verifiedIdentities returns the DNS and URI SANs of the client
// certificate the TLS handshake verified; ok is false without one.
func verifiedIdentities(ctx context.Context) (ids []string, ok bool) {
	p, _ := peer.FromContext(ctx)
	if p == nil {
		return nil, false
	}
	ti, isTLS := p.AuthInfo.(credentials.TLSInfo)
	if !isTLS || len(ti.State.VerifiedChains) == 0 || len(ti.State.PeerCertificates) == 0 {
		return nil, false
	}
	leaf := ti.State.PeerCertificates[0]
	for _, u := range leaf.URIs {
		ids = append(ids, u.String())
	}
	ids = append(ids, leaf.DNSNames...)
	return ids, true
}

// realIP returns the source of the end user's address in x-real-ip; ok is
// false when the caller sent none. x-forwarded-for is not read: the
// gateway works the address out behind its own trusted proxy.
func realIP(ctx context.Context) (src netip.Prefix, ok bool, err error) {
	vals := metadata.ValueFromIncomingContext(ctx, RealIPKey)
	if len(vals) == 0 {
		return netip.Prefix{}, false, nil
	}
	if len(vals) == 1 {
		if addr, err := netip.ParseAddr(strings.TrimSpace(vals[0])); err == nil {
			return auth.SourceOf(addr), true, nil
		}
	}
	return netip.Prefix{}, false, auth.InvalidInput(RealIPKey, "x-real-ip metadata must be a single IP address")
}

// peerAddr is the network address of the caller, for logs.
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
