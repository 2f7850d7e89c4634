package token_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"github.com/google/uuid"
	"golang.org/x/crypto/hkdf"

	"github.com/placebrain/auth/internal/token"
)

// A sealed child opens with its parent's text only, whatever row id is
// given; it needs no row id to seal (the one-statement rotation seals
// before it reads the row).
func TestSealChild(t *testing.T) {
	parent, _, _ := token.NewRefreshToken()
	other, _, _ := token.NewRefreshToken()
	child, _, _ := token.NewRefreshToken()
	sealed, err := token.SealChild(parent, child)
	if err != nil {
		t.Fatal(err)
	}
	got, err := token.OpenChild(parent, uuid.New(), sealed)
	if err != nil || got != child {
		t.Fatalf("OpenChild = %q, %v; want the child", got, err)
	}
	if _, err := token.OpenChild(other, uuid.New(), sealed); !errors.Is(err, token.ErrChildUnreadable) {
		t.Errorf("another token's text opened it: %v", err)
	}
	damaged := append([]byte(nil), sealed...)
	damaged[len(damaged)-1] ^= 1
	for name, b := range map[string][]byte{"damaged": damaged, "short": sealed[:5], "empty": nil} {
		if _, err := token.OpenChild(parent, uuid.New(), b); !errors.Is(err, token.ErrChildUnreadable) {
			t.Errorf("%s: err = %v, want ErrChildUnreadable", name, err)
		}
	}
}

// Children sealed by the chain rule's first release, with the parent's
// row id as additional data, still open with that id (and only with it).
func TestOpenChildFirstRelease(t *testing.T) {
	parent, _, _ := token.NewRefreshToken()
	child, _, _ := token.NewRefreshToken()
	id := uuid.New()
	key := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, []byte(parent), nil, []byte("placebrain-auth refresh child v1")), key); err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	sealed := aead.Seal(append([]byte(nil), nonce...), nonce, []byte(child), id[:])
	if got, err := token.OpenChild(parent, id, sealed); err != nil || got != child {
		t.Fatalf("OpenChild = %q, %v; want the child", got, err)
	}
	if _, err := token.OpenChild(parent, uuid.New(), sealed); !errors.Is(err, token.ErrChildUnreadable) {
		t.Errorf("opened with another row id: %v", err)
	}
}
