package token

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"

	"golang.org/x/crypto/hkdf"
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

// childInfo is the HKDF purpose of the key that seals a token's child.
const childInfo = "placebrain-auth refresh child v1"

// ErrChildUnreadable reports sealed child text that does not open with the
// parent's text: not this parent's child, or damaged.
var ErrChildUnreadable = errors.New("sealed child token does not open")

// childAEAD is AES-256-GCM under a key derived from the parent token's
// text with HKDF-SHA256 (RFC 5869): only whoever presents the parent can
// open its child, so the database (and a backup, with every server secret)
// holds no usable token.
func childAEAD(parentText string) (cipher.AEAD, error) {
	key := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, []byte(parentText), nil, []byte(childInfo)), key); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// SealChild seals the text of the token a rotation issued (the child) for
// storage in its parent's row: a random nonce and the AES-GCM ciphertext.
// Only the parent's text opens it (OpenChild): the key is derived from it,
// so a sealed child moved to another row opens with nothing that row's
// token could present. It needs nothing from the parent's row, so a
// rotation can seal before it reads the row (the one-statement rotation).
func SealChild(parentText, childText string) ([]byte, error) {
	aead, err := childAEAD(parentText)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(childText)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, []byte(childText), nil), nil
}

// OpenChild opens what SealChild sealed for the parent presented as
// parentText; ErrChildUnreadable when it does not open. Children sealed
// by the chain rule's first release, which bound the parent's row id as
// additional data, open too (parentID).
func OpenChild(parentText string, parentID [16]byte, sealed []byte) (string, error) {
	aead, err := childAEAD(parentText)
	if err != nil {
		return "", err
	}
	if len(sealed) < aead.NonceSize() {
		return "", ErrChildUnreadable
	}
	nonce, box := sealed[:aead.NonceSize()], sealed[aead.NonceSize():]
	text, err := aead.Open(nil, nonce, box, nil)
	if err != nil {
		if text, err = aead.Open(nil, nonce, box, parentID[:]); err != nil {
			return "", ErrChildUnreadable
		}
	}
	return string(text), nil
}
