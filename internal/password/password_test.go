package password_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/placebrain/auth/internal/password"
)

var ctx = context.Background()

func newHasher(t *testing.T) *password.Hasher {
	t.Helper()
	h, err := password.NewHasher(bcrypt.MinCost, password.NewPool(1, 8))
	if err != nil {
		t.Fatalf("NewHasher: %v", err)
	}
	return h
}

const emoji = "😀" // 4 bytes of UTF-8

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		pw      string
		wantErr bool
	}{
		{"empty", "", true},
		{"7 bytes", strings.Repeat("a", 7), true},
		{"8 bytes", strings.Repeat("a", 8), false},
		{"72 bytes", strings.Repeat("a", 72), false},
		{"73 bytes", strings.Repeat("a", 73), true},
		{"18 emoji (72 bytes)", strings.Repeat(emoji, 18), false},
		{"19 emoji (76 bytes)", strings.Repeat(emoji, 19), true},
		{"2 emoji (8 bytes, 2 characters)", strings.Repeat(emoji, 2), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := password.Validate(tt.pw)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("Validate(%d bytes) err = %v, wantErr %v", len(tt.pw), err, tt.wantErr)
			}
			if err != nil && err.Error() != "password must be 8 to 72 bytes long" {
				t.Errorf("Validate error = %q, want %q", err, "password must be 8 to 72 bytes long")
			}
		})
	}
}

func TestHashCompare(t *testing.T) {
	h := newHasher(t)
	tests := []struct {
		name string
		pw   string
	}{
		{"ascii", "correct horse battery staple"},
		{"8 bytes", "12345678"},
		{"72 bytes", strings.Repeat("x", 72)},
		{"18 emoji", strings.Repeat(emoji, 18)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hash, err := h.Hash(ctx, "k", tt.pw)
			if err != nil {
				t.Fatalf("Hash: %v", err)
			}
			if !strings.HasPrefix(hash, "$2a$04$") {
				t.Errorf("hash %q is not bcrypt at cost 4", hash)
			}
			if strings.Contains(hash, tt.pw) {
				t.Errorf("hash contains the password")
			}
			if err := h.Compare(ctx, "k", hash, tt.pw); err != nil {
				t.Errorf("Compare(right password) = %v, want nil", err)
			}
			// Change the first byte: bcrypt ignores bytes past the 72nd.
			wrong := "X" + tt.pw[1:]
			if err := h.Compare(ctx, "k", hash, wrong); !errors.Is(err, password.ErrMismatch) {
				t.Errorf("Compare(wrong password) = %v, want ErrMismatch", err)
			}
			if err := h.Compare(ctx, "k", hash, ""); !errors.Is(err, password.ErrMismatch) {
				t.Errorf("Compare(empty) = %v, want ErrMismatch", err)
			}
		})
	}

	t.Run("salted", func(t *testing.T) {
		a, err := h.Hash(ctx, "k", "same password")
		if err != nil {
			t.Fatal(err)
		}
		b, err := h.Hash(ctx, "k", "same password")
		if err != nil {
			t.Fatal(err)
		}
		if a == b {
			t.Errorf("two hashes of one password are equal: %q", a)
		}
	})
}

func TestCompareMalformedHash(t *testing.T) {
	h := newHasher(t)
	tests := []struct {
		name string
		hash string
	}{
		{"empty", ""},
		{"not bcrypt", "plaintext-password"},
		{"truncated", "$2a$04$abcdefghijklmnopqrstuu"},
		{"bad cost", "$2a$99$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.Compare(ctx, "k", tt.hash, "password123")
			if err == nil {
				t.Fatalf("Compare(%q) = nil, want an error", tt.hash)
			}
			if errors.Is(err, password.ErrMismatch) {
				t.Errorf("Compare(%q) = ErrMismatch, want another error", tt.hash)
			}
		})
	}
}

// Hash refuses what bcrypt would truncate; the length rules are the
// caller's where a password is set, so a short password (an imported
// account's, rehashed at login) hashes.
func TestHashRefusesInvalid(t *testing.T) {
	h := newHasher(t)
	if hash, err := h.Hash(ctx, "k", "1234567"); err != nil || h.Compare(ctx, "k", hash, "1234567") != nil {
		t.Errorf("Hash(7 bytes) = %q, %v", hash, err)
	}
	tests := []struct {
		name string
		pw   string
	}{
		{"73 bytes", strings.Repeat("a", 73)},
		{"19 emoji", strings.Repeat(emoji, 19)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hash, err := h.Hash(ctx, "k", tt.pw)
			if err == nil {
				t.Fatalf("Hash(%d bytes) = %q, want an error", len(tt.pw), hash)
			}
			if hash != "" {
				t.Errorf("Hash returned %q with an error", hash)
			}
		})
	}
}

func TestNewHasherCost(t *testing.T) {
	tests := []struct {
		name    string
		cost    int
		wantErr bool
	}{
		{"min cost", bcrypt.MinCost, false},
		{"above max cost", bcrypt.MaxCost + 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := password.NewHasher(tt.cost, password.NewPool(1, 8))
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("NewHasher(%d) err = %v, wantErr %v", tt.cost, err, tt.wantErr)
			}
		})
	}
}

// WaitLikeCompare waits a duration drawn from the comparisons the hasher
// has timed, and needs no place in the pool.
func TestWaitLikeCompare(t *testing.T) {
	pool := password.NewPool(1, 0)
	h, err := password.NewHasher(bcrypt.MinCost, pool)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := h.Hash(ctx, "k", "some password")
	if err != nil {
		t.Fatal(err)
	}
	// Hold the only worker: WaitLikeCompare still returns.
	release := make(chan struct{})
	held := make(chan struct{})
	go pool.Do(ctx, "holder", func() { close(held); <-release })
	<-held
	defer close(release)
	start := time.Now()
	if err := h.WaitLikeCompare(ctx); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("WaitLikeCompare waited for the pool")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := h.WaitLikeCompare(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitLikeCompare(cancelled) = %v", err)
	}
	_ = hash
}

// An account without a password matches no password, not even the empty
// one, and answers as a wrong password does.
func TestCompareNone(t *testing.T) {
	h := newHasher(t)
	for _, pw := range []string{"", "password123", strings.Repeat("x", 72)} {
		if err := h.CompareNone(ctx, "k", pw); !errors.Is(err, password.ErrMismatch) {
			t.Errorf("CompareNone(%q) = %v, want ErrMismatch", pw, err)
		}
	}
}
