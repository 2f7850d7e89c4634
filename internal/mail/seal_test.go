package mail_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/mail"
)

func TestSealOpen(t *testing.T) {
	s := newSealer(t, 1)
	id := uuid.New()
	data := map[string]string{"code": "042137", "expiresMinutes": "10"}
	sealed, err := s.Seal(id, data)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("042137")) {
		t.Errorf("sealed data hold the code in clear")
	}
	got, err := s.Open(id, sealed)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if diff := cmp.Diff(data, got); diff != "" {
		t.Errorf("opened data mismatch (-want +got):\n%s", diff)
	}
	// A fresh nonce per message: the same data seal differently.
	again, err := s.Seal(id, data)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sealed, again) {
		t.Errorf("two seals of the same data are equal")
	}
}

func TestOpenRefuses(t *testing.T) {
	s := newSealer(t, 1)
	id := uuid.New()
	sealed, err := s.Seal(id, map[string]string{"code": "042137"})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name   string
		opener *mail.Sealer
		id     uuid.UUID
		sealed []byte
		want   error
	}{
		{"another key", newSealer(t, 2), id, sealed, mail.ErrKeyChanged},
		{"another message", s, uuid.New(), sealed, mail.ErrPayloadDamaged},
		{"altered ciphertext", s, id, flip(len(sealed) - 1), mail.ErrPayloadDamaged},
		{"altered nonce", s, id, flip(5), mail.ErrPayloadDamaged},
		{"altered key id", s, id, flip(1), mail.ErrKeyChanged},
		{"unknown version", s, id, flip(0), mail.ErrPayloadDamaged},
		{"truncated", s, id, sealed[:20], mail.ErrPayloadDamaged},
		{"empty", s, id, nil, mail.ErrPayloadDamaged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opener.Open(tt.id, tt.sealed)
			if !errors.Is(err, tt.want) {
				t.Errorf("Open = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestNewSealerKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := mail.NewSealer(make([]byte, n)); err == nil {
			t.Errorf("NewSealer accepted a %d-byte key", n)
		}
	}
}
