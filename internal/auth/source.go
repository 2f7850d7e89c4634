package auth

import (
	"context"
	"net/netip"
)

// A source is where an end user's request comes from: their address as
// the gateway saw it, IPv4 per address (/32) and IPv6 per /64 (one
// customer's usual allocation, so an attacker cannot rotate through the
// addresses of one network to look like many users). The limiter counts
// per (account, purpose, source) when the source is known.

type sourceKey struct{}

// SourceOf returns the source of an end user's address: the address
// itself for IPv4 (an IPv4-mapped IPv6 address counts as IPv4), its /64 for
// IPv6.
func SourceOf(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return netip.PrefixFrom(addr, 32)
	}
	p, _ := addr.Prefix(64)
	return p
}

// WithSource returns ctx carrying the request's source (see SourceOf).
// The transport sets it only for authenticated callers.
func WithSource(ctx context.Context, source netip.Prefix) context.Context {
	return context.WithValue(ctx, sourceKey{}, source)
}

// SourceFrom returns the request's source; ok is false when the caller
// did not say (the gateway sent none, or callers are not authenticated).
func SourceFrom(ctx context.Context) (source netip.Prefix, ok bool) {
	source, ok = ctx.Value(sourceKey{}).(netip.Prefix)
	return source, ok && source.IsValid()
}
