// Package password hashes and checks passwords with bcrypt.
package password

import (
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

const (
	// MinBytes is the shortest accepted password in bytes (OWASP ASVS
	// 5.0 V6.2.1 asks for at least 8 characters).
	MinBytes = 8
	// MaxBytes is the longest accepted password in bytes: bcrypt reads at
	// most 72 bytes, and a longer password is refused rather than
	// silently truncated.
	MaxBytes = 72
)

// ErrMismatch reports a password that does not match the hash.
var ErrMismatch = errors.New("password does not match")

// Validate checks the length rule, counted in bytes of UTF-8. Its error is
// a sentence fit to show a user.
func Validate(pw string) error {
	if len(pw) < MinBytes || len(pw) > MaxBytes {
		return fmt.Errorf("password must be %d to %d bytes long", MinBytes, MaxBytes)
	}
	return nil
}

// Hasher hashes passwords at a fixed bcrypt cost.
type Hasher struct {
	cost  int
	dummy []byte
}

// NewHasher returns a Hasher at cost (bcrypt.MinCost to bcrypt.MaxCost). It
// computes one dummy hash at that cost, used by CompareDummy.
func NewHasher(cost int) (*Hasher, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	dummy, err := bcrypt.GenerateFromPassword(b[:MaxBytes/3], cost)
	if err != nil {
		return nil, fmt.Errorf("password: dummy hash: %w", err)
	}
	return &Hasher{cost: cost, dummy: dummy}, nil
}

// Hash returns the bcrypt hash of pw in modular crypt format. pw must pass
// Validate.
func (h *Hasher) Hash(pw string) (string, error) {
	if err := Validate(pw); err != nil {
		return "", err
	}
	b, err := bcrypt.GenerateFromPassword([]byte(pw), h.cost)
	if err != nil {
		return "", fmt.Errorf("password: hash: %w", err)
	}
	return string(b), nil
}

// Compare returns nil when pw matches hash, ErrMismatch when it does not, or
// another error for a malformed hash.
func (h *Hasher) Compare(hash, pw string) error {
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw))
	if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return ErrMismatch
	}
	return err
}

// CompareDummy spends the time of one Compare at the configured cost and
// always fails. Login calls it for unknown e-mail addresses so that they
// cost what a wrong password costs (OWASP Authentication Cheat Sheet,
// "Authentication Responses").
func (h *Hasher) CompareDummy(pw string) {
	_ = bcrypt.CompareHashAndPassword(h.dummy, []byte(pw))
}

// NeedsRehash reports whether hash was made at a cost other than the
// configured one (or cannot be read), so that a successful login should
// store a fresh hash.
func (h *Hasher) NeedsRehash(hash string) bool {
	cost, err := bcrypt.Cost([]byte(hash))
	return err != nil || cost != h.cost
}
