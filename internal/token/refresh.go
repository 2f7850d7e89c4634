package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
)

// RefreshTokenBytes is the entropy of a refresh token: 256 bits.
const RefreshTokenBytes = 32

// refreshTokenLen is the length of a refresh token's text: base64url
// without padding of RefreshTokenBytes bytes.
var refreshTokenLen = base64.RawURLEncoding.EncodedLen(RefreshTokenBytes)

// ErrMalformedRefreshToken reports text that cannot be a refresh token.
var ErrMalformedRefreshToken = errors.New("malformed refresh token")

// NewRefreshToken returns a new opaque refresh token: 256 bits from
// crypto/rand as unpadded base64url (43 characters), and its SHA-256, which
// is all the database keeps.
func NewRefreshToken() (text string, hash []byte, err error) {
	b := make([]byte, RefreshTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	text = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(text))
	return text, sum[:], nil
}

// HashRefreshToken returns the SHA-256 of a refresh token's text, or
// ErrMalformedRefreshToken when text is not one this package makes.
func HashRefreshToken(text string) ([]byte, error) {
	if len(text) != refreshTokenLen {
		return nil, ErrMalformedRefreshToken
	}
	// Decode and re-encode: the decoder skips line breaks, so only the
	// canonical text of exactly RefreshTokenBytes bytes is accepted.
	b, err := base64.RawURLEncoding.Strict().DecodeString(text)
	if err != nil || len(b) != RefreshTokenBytes || base64.RawURLEncoding.EncodeToString(b) != text {
		return nil, ErrMalformedRefreshToken
	}
	sum := sha256.Sum256([]byte(text))
	return sum[:], nil
}
