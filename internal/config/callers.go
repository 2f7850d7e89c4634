package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/placebrain/auth/proto/authpb"
)

// MinAPIKeyBytes is the shortest accepted GRPC__API_KEYS entry: 256 bits,
// like JWT__SECRET.
const MinAPIKeyBytes = 32

// Grant is one entry of GRPC__ALLOWED_CLIENTS or GRPC__API_KEYS: a caller
// (a client certificate identity or an API key) and the AuthService methods
// it may call. Methods is nil when the caller may call every method.
type Grant struct {
	Caller  string
	Methods []string
}

// Clients is GRPC__ALLOWED_CLIENTS: comma-separated client certificate
// identities (a DNS or URI SAN), each `IDENTITY` or
// `IDENTITY=Method|Method`.
type Clients []Grant

// EnvDecode parses GRPC__ALLOWED_CLIENTS.
func (c *Clients) EnvDecode(val string) error {
	g, err := parseGrants(val, false)
	*c = g
	return err
}

// Keys is GRPC__API_KEYS: comma-separated service keys, each `KEY` or
// `KEY=Method|Method`. It holds secrets: its String names only how many
// there are.
type Keys []Grant

// EnvDecode parses GRPC__API_KEYS. Its errors name entries by position,
// never by value.
func (k *Keys) EnvDecode(val string) error {
	g, err := parseGrants(val, true)
	*k = g
	return err
}

// String returns how many keys there are, never a key.
func (k Keys) String() string { return fmt.Sprintf("%d API keys", len(k)) }

// GoString is String, for %#v.
func (k Keys) GoString() string { return k.String() }

// valueError is a decoder's error about a variable's value, in words that
// never echo a secret; Load prefixes the variable's name.
type valueError string

func (e valueError) Error() string { return string(e) }

// AuthServiceMethods returns the names of AuthService's methods, the names
// the method lists of GRPC__ALLOWED_CLIENTS and GRPC__API_KEYS may use.
func AuthServiceMethods() []string {
	var names []string
	for _, m := range authpb.AuthService_ServiceDesc.Methods {
		names = append(names, m.MethodName)
	}
	for _, s := range authpb.AuthService_ServiceDesc.Streams {
		names = append(names, s.StreamName)
	}
	return names
}

// parseGrants parses comma-separated `CALLER` or `CALLER=Method|Method`
// entries. A caller is cut from its methods at the last '='; a key whose
// last '=' ends it (base64 padding) is taken whole. With secret, errors
// name entries by position, and an unknown method is named only when it
// looks like a method name (letters): a key holds no '=' but its trailing
// padding, yet a mistyped one must not be echoed.
func parseGrants(val string, secret bool) ([]Grant, error) {
	known := AuthServiceMethods()
	var grants []Grant
	seen := map[string]int{}
	n := 0
	for entry := range strings.SplitSeq(val, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		n++
		g, list := Grant{Caller: entry}, ""
		if i := strings.LastIndexByte(entry, '='); i >= 0 && (i < len(entry)-1 || !secret) {
			g.Caller, list = strings.TrimSpace(entry[:i]), entry[i+1:]
		}
		name := fmt.Sprintf("%q", g.Caller)
		if secret {
			name = fmt.Sprintf("entry %d", n)
		}
		switch {
		case g.Caller == "":
			return nil, valueError(fmt.Sprintf("entry %d: empty caller before '='", n))
		case secret && len(g.Caller) < MinAPIKeyBytes:
			return nil, valueError(fmt.Sprintf("%s: a key must be at least %d bytes", name, MinAPIKeyBytes))
		case !secret && strings.ContainsAny(g.Caller, " \t"):
			return nil, valueError(fmt.Sprintf("%s: an identity holds no spaces", name))
		case !secret && strings.HasSuffix(entry, "="):
			return nil, valueError(fmt.Sprintf("%s: no methods after '='", name))
		}
		if first, ok := seen[g.Caller]; ok {
			if secret {
				return nil, valueError(fmt.Sprintf("%s repeats entry %d", name, first))
			}
			return nil, valueError(fmt.Sprintf("%s is listed twice", name))
		}
		seen[g.Caller] = n
		if list != "" {
			g.Methods = []string{}
			for m := range strings.SplitSeq(list, "|") {
				m = strings.TrimSpace(m)
				if !slices.Contains(known, m) {
					shown := fmt.Sprintf(" %q", m)
					if secret && !isLetters(m) {
						shown = ""
					}
					return nil, valueError(fmt.Sprintf("%s: unknown method%s (AuthService methods: %s)", name, shown, strings.Join(known, ", ")))
				}
				if !slices.Contains(g.Methods, m) {
					g.Methods = append(g.Methods, m)
				}
			}
		}
		grants = append(grants, g)
	}
	return grants, nil
}

// isLetters reports whether s is 1 to 32 ASCII letters, the shape of a
// method name.
func isLetters(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
			return false
		}
	}
	return true
}
