// Package token issues and verifies access tokens (JWT, HS256) and makes
// opaque refresh tokens.
package token

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
)

// TypeAccess is the value of the token_type claim in access tokens.
const TypeAccess = "access"

// ErrInvalid reports an access token that failed verification for any
// reason: bad signature, wrong algorithm, expired, wrong type or issuer.
var ErrInvalid = errors.New("invalid access token")

// Claims are the claims of an access token. `sub` is the user's UUID. No
// `aud` is set: the gateway's PyJWT rejects tokens with an audience it was
// not told to expect.
type Claims struct {
	Email     string `json:"email"`
	Username  string `json:"username"`
	TokenType string `json:"token_type"`
	jwt.RegisteredClaims
}

// Subject is what an access token says about its user.
type Subject struct {
	UserID   uuid.UUID
	Email    string
	Username string
}

// Issuer signs access tokens with the current HMAC secret and verifies
// them with it or with a previous (retired, verify-only) secret, chosen by
// the token's `kid`.
type Issuer struct {
	secret []byte
	kid    string
	keys   map[string][]byte // kid -> secret, current and previous
	issuer string
	ttl    time.Duration
	leeway time.Duration
	now    func() time.Time
	parser *jwt.Parser
	cache  *lru.Cache[string, verified] // nil: no cache
}

// verified is a cache entry: a token that passed Verify, and when it
// stops being valid.
type verified struct {
	sub Subject
	exp time.Time
}

// Options are optional Issuer settings.
type Options struct {
	// Previous are retired secrets: tokens they signed still verify until
	// they are removed; nothing new is signed with them.
	Previous [][]byte
	// Leeway is the clock skew allowed on exp and iat.
	Leeway time.Duration
	// CacheSize is how many verified tokens Verify remembers (LRU), so
	// that a token presented again skips parsing and the HMAC until it
	// expires; 0 disables the cache. Entries are keyed by the token's
	// exact text, so only byte-identical tokens hit.
	CacheSize int
}

// NewIssuer returns an Issuer that signs with secret (at least 32 bytes,
// RFC 7518 §3.2), sets `iss` to issuer and makes tokens valid for ttl. now
// is the clock (time.Now when nil). opts, if given, adds previous secrets
// and a leeway.
func NewIssuer(secret []byte, issuer string, ttl time.Duration, now func() time.Time, opts ...Options) (*Issuer, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if now == nil {
		now = time.Now
	}
	keys := map[string][]byte{}
	for i, k := range append([][]byte{secret}, o.Previous...) {
		if len(k) < 32 {
			if i == 0 {
				return nil, errors.New("token: secret must be at least 32 bytes")
			}
			return nil, fmt.Errorf("token: previous secret %d must be at least 32 bytes", i)
		}
		keys[KeyID(k)] = k
	}
	var cache *lru.Cache[string, verified]
	if o.CacheSize > 0 {
		var err error
		if cache, err = lru.New[string, verified](o.CacheSize); err != nil {
			return nil, fmt.Errorf("token: cache: %w", err)
		}
	}
	return &Issuer{
		secret: secret,
		kid:    KeyID(secret),
		keys:   keys,
		issuer: issuer,
		ttl:    ttl,
		leeway: o.Leeway,
		cache:  cache,
		now:    now,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithIssuer(issuer),
			jwt.WithTimeFunc(now),
			jwt.WithLeeway(o.Leeway),
		),
	}, nil
}

// key picks the secret named by the token's `kid`. A token without `kid`
// (as the platform's previous auth service issued them) is checked against
// the current secret only; an unknown `kid` is refused.
func (i *Issuer) key(t *jwt.Token) (any, error) {
	raw, present := t.Header["kid"]
	if !present {
		return i.secret, nil
	}
	kid, _ := raw.(string)
	k, ok := i.keys[kid]
	if !ok {
		return nil, fmt.Errorf("unknown kid %q", kid)
	}
	return k, nil
}

// KeyID returns the `kid` of a secret: the first 8 bytes of its SHA-256,
// base64url. It names the key without revealing it.
func KeyID(secret []byte) string {
	sum := sha256.Sum256(secret)
	return base64.RawURLEncoding.EncodeToString(sum[:8])
}

// Sign returns a signed access token for s and its expiry time.
func (i *Issuer) Sign(s Subject) (string, time.Time, error) {
	now := i.now().UTC().Truncate(time.Second)
	exp := now.Add(i.ttl)
	claims := Claims{
		Email:     s.Email,
		Username:  s.Username,
		TokenType: TypeAccess,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   s.UserID.String(),
			Issuer:    i.issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        uuid.NewString(),
		},
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	t.Header["kid"] = i.kid
	signed, err := t.SignedString(i.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token: sign: %w", err)
	}
	return signed, exp, nil
}

// Verify checks an access token: algorithm HS256 only, a `kid` naming the
// current or a previous secret, the signature, `exp` present and in the
// future and `iat` not in the future (both within the leeway), `iss`, and
// token_type access. Any failure is ErrInvalid (wrapping the cause).
func (i *Issuer) Verify(raw string) (Subject, error) {
	if i.cache != nil {
		if v, ok := i.cache.Get(raw); ok {
			if i.now().Before(v.exp.Add(i.leeway)) {
				return v.sub, nil
			}
			i.cache.Remove(raw)
		}
	}
	var c Claims
	_, err := i.parser.ParseWithClaims(raw, &c, i.key)
	if err != nil {
		return Subject{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.TokenType != TypeAccess {
		return Subject{}, fmt.Errorf("%w: token_type %q", ErrInvalid, c.TokenType)
	}
	id, err := uuid.Parse(c.Subject)
	if err != nil {
		return Subject{}, fmt.Errorf("%w: sub is not a UUID", ErrInvalid)
	}
	sub := Subject{UserID: id, Email: c.Email, Username: c.Username}
	if i.cache != nil {
		i.cache.Add(raw, verified{sub: sub, exp: c.ExpiresAt.Time})
	}
	return sub, nil
}
