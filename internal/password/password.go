// Package password hashes and checks passwords with bcrypt.
package password

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

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

// ValidateLength checks only that pw fits bcrypt (MaxBytes): the bound
// where a password is checked rather than set (Login). Its error is a
// sentence fit to show a user.
func ValidateLength(pw string) error {
	if len(pw) > MaxBytes {
		return fmt.Errorf("password must be at most %d bytes long", MaxBytes)
	}
	return nil
}

// CheckBcrypt reports a hash that is not bcrypt in modular crypt format
// ($2a$, $2b$ or $2y$, a cost bcrypt accepts), naming the scheme it has
// without echoing the hash.
func CheckBcrypt(hash string) error {
	if len(hash) < 4 || hash[0] != '$' || !(hash[1:4] == "2a$" || hash[1:4] == "2b$" || hash[1:4] == "2y$") {
		scheme := "unknown"
		if len(hash) > 1 && hash[0] == '$' {
			if end := strings.IndexByte(hash[1:], '$'); end > 0 && end <= 32 {
				scheme = hash[1 : 1+end]
			}
		}
		return fmt.Errorf("scheme %q is not bcrypt ($2a$, $2b$, $2y$)", scheme)
	}
	if _, err := bcrypt.Cost([]byte(hash)); err != nil {
		return errors.New("not a well-formed bcrypt hash")
	}
	return nil
}

// ErrBusy reports that the hashing pool's queue is full (or the job was
// shed for a lighter key's): the request is refused at once instead of
// waiting (and piling up goroutines).
var ErrBusy = errors.New("password hashing is saturated")

// Hasher hashes passwords at a fixed bcrypt cost in a Pool, and keeps the
// durations of its recent comparisons so that a caller can wait as long as
// one takes without doing one (WaitLikeCompare).
type Hasher struct {
	cost  int
	pool  *Pool
	sleep func(context.Context, time.Duration) error

	// none is a hash at cost of a random password nobody holds
	// (CompareNone).
	none []byte

	mu     sync.Mutex
	recent [64]time.Duration // a ring of recent comparison durations
	n      int               // comparisons recorded, at most len(recent) count
}

// NewHasher returns a Hasher at cost (bcrypt.MinCost to bcrypt.MaxCost)
// that runs its work in pool. It times one comparison at that cost at
// once, so WaitLikeCompare has a duration before the first login.
func NewHasher(cost int, pool *Pool) (*Hasher, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	hash, err := bcrypt.GenerateFromPassword(b[:MaxBytes/3], cost)
	if err != nil {
		return nil, fmt.Errorf("password: calibration hash: %w", err)
	}
	h := &Hasher{cost: cost, pool: pool, sleep: sleep, none: hash}
	start := time.Now()
	_ = bcrypt.CompareHashAndPassword(hash, b)
	h.record(time.Since(start))
	return h, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// record remembers one comparison's duration.
func (h *Hasher) record(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recent[h.n%len(h.recent)] = d
	h.n++
}

// Hash returns the bcrypt hash of pw in modular crypt format, computed in
// the pool under key (see Pool). pw must fit bcrypt (ValidateLength); the
// length rules (Validate) are the caller's where a password is set, not
// where one is rehashed. Errors: ErrBusy, the context's error while
// queued.
func (h *Hasher) Hash(ctx context.Context, key, pw string) (string, error) {
	if err := ValidateLength(pw); err != nil {
		return "", err
	}
	var (
		b   []byte
		err error
	)
	if perr := h.pool.Do(ctx, key, func() { b, err = bcrypt.GenerateFromPassword([]byte(pw), h.cost) }); perr != nil {
		return "", perr
	}
	if err != nil {
		return "", fmt.Errorf("password: hash: %w", err)
	}
	return string(b), nil
}

// Compare returns nil when pw matches hash, ErrMismatch when it does not,
// ErrBusy when the pool refused or shed the job, the context's error while
// queued, or another error for a malformed hash. It runs in the pool under
// key (see Pool).
func (h *Hasher) Compare(ctx context.Context, key, hash, pw string) error {
	return h.compare(ctx, key, []byte(hash), pw)
}

// CompareNone is Compare for an account that has no password: no
// password matches, and the answer, ErrMismatch, comes after as long a
// comparison as any other (against a hash of a random password), so that
// it does not tell.
func (h *Hasher) CompareNone(ctx context.Context, key, pw string) error {
	if err := h.compare(ctx, key, h.none, pw); err != nil && !errors.Is(err, ErrMismatch) {
		return err
	}
	return ErrMismatch
}

func (h *Hasher) compare(ctx context.Context, key string, hash []byte, pw string) error {
	var err error
	if perr := h.pool.Do(ctx, key, func() {
		start := time.Now()
		err = bcrypt.CompareHashAndPassword(hash, []byte(pw))
		h.record(time.Since(start))
	}); perr != nil {
		return perr
	}
	if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return ErrMismatch
	}
	return err
}

// WaitLikeCompare waits as long as a comparison takes, without doing one
// and without a place in the pool: a duration drawn from the recent
// comparisons (so the distribution, not only the median, matches). Login
// calls it for unknown e-mail addresses, so that they answer in the time a
// wrong password does (OWASP Authentication Cheat Sheet, "Authentication
// Responses") while taking no hashing capacity from real logins. It
// returns the context's error if ctx ends first.
func (h *Hasher) WaitLikeCompare(ctx context.Context) error {
	h.mu.Lock()
	d := h.recent[mrand.IntN(min(h.n, len(h.recent)))]
	h.mu.Unlock()
	return h.sleep(ctx, d)
}

// NeedsRehash reports whether hash was made at a cost other than the
// configured one (or cannot be read), so that a successful login should
// store a fresh hash.
func (h *Hasher) NeedsRehash(hash string) bool {
	cost, err := bcrypt.Cost([]byte(hash))
	return err != nil || cost != h.cost
}

// Pool returns the hasher's pool.
func (h *Hasher) Pool() *Pool { return h.pool }

// Admits reports whether the pool would take a job of key now (see
// Pool.Admits); ErrBusy when not.
func (h *Hasher) Admits(key string) error {
	if h.pool.Admits(key) {
		return nil
	}
	return ErrBusy
}
