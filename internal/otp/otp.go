// Package otp makes one-time e-mail verification codes and their keyed
// hashes. Codes are 6 decimal digits from crypto/rand; only an HMAC-SHA256
// of a code under a server key is stored, so a database leak does not
// reveal live codes.
package otp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/uuid"
	"golang.org/x/crypto/hkdf"
)

// Digits is the number of decimal digits in a code.
const Digits = 6

var modulus = big.NewInt(1_000_000)

// ErrFormat reports a code that is not Digits ASCII digits.
var ErrFormat = fmt.Errorf("code must be %d digits", Digits)

// Keyer computes code HMACs under one key.
type Keyer struct{ key []byte }

// NewKeyer returns a Keyer with key when it is set, or else with a 32-byte
// key derived from fallback by HKDF-SHA256 (RFC 5869) so the derived key
// differs from any other use of fallback.
func NewKeyer(key, fallback []byte) (*Keyer, error) {
	if len(key) > 0 {
		return &Keyer{key: key}, nil
	}
	if len(fallback) == 0 {
		return nil, errors.New("otp: no key")
	}
	k := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, fallback, nil, []byte("placebrain-auth otp hmac v1")), k); err != nil {
		return nil, fmt.Errorf("otp: derive key: %w", err)
	}
	return &Keyer{key: k}, nil
}

// NewCode returns a uniformly random code of Digits digits.
func NewCode() (string, error) {
	n, err := rand.Int(rand.Reader, modulus)
	if err != nil {
		return "", fmt.Errorf("otp: random: %w", err)
	}
	return fmt.Sprintf("%0*d", Digits, n.Int64()), nil
}

// CheckFormat returns ErrFormat unless code is exactly Digits ASCII digits.
func CheckFormat(code string) error {
	if len(code) != Digits {
		return ErrFormat
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return ErrFormat
		}
	}
	return nil
}

// MAC returns HMAC-SHA256 (32 bytes) of the code bound to the OTP request
// id, so a stored MAC is useless for any other request.
func (k *Keyer) MAC(requestID uuid.UUID, code string) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write(requestID[:])
	m.Write([]byte(code))
	return m.Sum(nil)
}

// Verify reports, in constant time, whether code matches mac.
func (k *Keyer) Verify(requestID uuid.UUID, code string, mac []byte) bool {
	return hmac.Equal(k.MAC(requestID, code), mac)
}
