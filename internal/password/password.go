// Package password hashes and checks passwords with bcrypt.
package password

import (
	"context"
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

// ErrBusy reports that the hashing pool's queue is full: the request is
// refused at once instead of waiting (and piling up goroutines).
var ErrBusy = errors.New("password hashing is saturated")

// Hasher hashes passwords at a fixed bcrypt cost, optionally in a bounded
// pool (see Pool).
type Hasher struct {
	cost  int
	dummy []byte
	pool  *Pool
}

// NewHasher returns a Hasher at cost (bcrypt.MinCost to bcrypt.MaxCost)
// that runs its work in pool, or inline when pool is nil. It computes one
// dummy hash at that cost, used by CompareDummy.
func NewHasher(cost int, pool ...*Pool) (*Hasher, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	dummy, err := bcrypt.GenerateFromPassword(b[:MaxBytes/3], cost)
	if err != nil {
		return nil, fmt.Errorf("password: dummy hash: %w", err)
	}
	h := &Hasher{cost: cost, dummy: dummy}
	if len(pool) > 0 {
		h.pool = pool[0]
	}
	return h, nil
}

// run runs fn in the pool, or inline without one. Inside a Reserve, the
// reservation's place is used.
func (h *Hasher) run(ctx context.Context, fn func()) error {
	if h.pool == nil {
		fn()
		return nil
	}
	if reserved(ctx) {
		return h.pool.run(ctx, fn)
	}
	return h.pool.Do(ctx, fn)
}

type reservedKey struct{}

func reserved(ctx context.Context) bool { return ctx.Value(reservedKey{}) != nil }

// Reserve takes a place in the hashing pool up front, without waiting:
// ErrBusy when there is none. Hashing with the returned context uses that
// place; release gives it back. Login reserves before touching the
// database, so that a refused login costs next to nothing.
func (h *Hasher) Reserve(ctx context.Context) (context.Context, func(), error) {
	if h.pool == nil || reserved(ctx) {
		return ctx, func() {}, nil
	}
	release, err := h.pool.Acquire()
	if err != nil {
		return ctx, nil, err
	}
	return context.WithValue(ctx, reservedKey{}, true), release, nil
}

// Hash returns the bcrypt hash of pw in modular crypt format. pw must pass
// Validate. Errors: ErrBusy, the context's error while queued.
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	if err := Validate(pw); err != nil {
		return "", err
	}
	var (
		b   []byte
		err error
	)
	if perr := h.run(ctx, func() { b, err = bcrypt.GenerateFromPassword([]byte(pw), h.cost) }); perr != nil {
		return "", perr
	}
	if err != nil {
		return "", fmt.Errorf("password: hash: %w", err)
	}
	return string(b), nil
}

// Compare returns nil when pw matches hash, ErrMismatch when it does not,
// ErrBusy when the pool is saturated, or another error for a malformed
// hash.
func (h *Hasher) Compare(ctx context.Context, hash, pw string) error {
	var err error
	if perr := h.run(ctx, func() { err = bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) }); perr != nil {
		return perr
	}
	if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return ErrMismatch
	}
	return err
}

// CompareDummy spends the time of one Compare at the configured cost, in
// the same pool, and always fails (with ErrMismatch, or ErrBusy like
// Compare). Login calls it for unknown e-mail addresses so that they cost
// and answer what a wrong password does (OWASP Authentication Cheat Sheet,
// "Authentication Responses").
func (h *Hasher) CompareDummy(ctx context.Context, pw string) error {
	if err := h.run(ctx, func() { _ = bcrypt.CompareHashAndPassword(h.dummy, []byte(pw)) }); err != nil {
		return err
	}
	return ErrMismatch
}

// NeedsRehash reports whether hash was made at a cost other than the
// configured one (or cannot be read), so that a successful login should
// store a fresh hash.
func (h *Hasher) NeedsRehash(hash string) bool {
	cost, err := bcrypt.Cost([]byte(hash))
	return err != nil || cost != h.cost
}
