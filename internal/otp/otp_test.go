package otp_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/otp"
)

var (
	reqA = uuid.MustParse("11111111-1111-4111-8111-111111111111")
	reqB = uuid.MustParse("22222222-2222-4222-8222-222222222222")
	keyA = bytes.Repeat([]byte{0xA5}, 32)
	keyB = bytes.Repeat([]byte{0x5A}, 32)
)

func newKeyer(t *testing.T, key, fallback []byte) *otp.Keyer {
	t.Helper()
	k, err := otp.NewKeyer(key, fallback)
	if err != nil {
		t.Fatalf("NewKeyer: %v", err)
	}
	return k
}

func isASCIIDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func TestNewCodeFormat(t *testing.T) {
	for range 2000 {
		c, err := otp.NewCode()
		if err != nil {
			t.Fatalf("NewCode: %v", err)
		}
		if len(c) != otp.Digits || !isASCIIDigits(c) {
			t.Fatalf("NewCode() = %q, want %d ASCII digits", c, otp.Digits)
		}
		if err := otp.CheckFormat(c); err != nil {
			t.Fatalf("CheckFormat(NewCode() = %q) = %v", c, err)
		}
	}
}

// TestNewCodeLeadingZeros checks that codes below 100000 keep their leading
// zeros. Each draw starts with '0' with probability 1/10, so 5000 draws
// without one happen with probability 0.9^5000 (about 1e-229).
func TestNewCodeLeadingZeros(t *testing.T) {
	for range 5000 {
		c, err := otp.NewCode()
		if err != nil {
			t.Fatalf("NewCode: %v", err)
		}
		if c[0] == '0' {
			if len(c) != otp.Digits {
				t.Fatalf("NewCode() = %q, want %d digits", c, otp.Digits)
			}
			return
		}
	}
	t.Errorf("no code with a leading zero in 5000 draws")
}

func TestCheckFormat(t *testing.T) {
	tests := []struct {
		name    string
		code    string
		wantErr bool
	}{
		{"empty", "", true},
		{"5 digits", "12345", true},
		{"7 digits", "1234567", true},
		{"letter", "12345a", true},
		{"full-width digits", "１２３４５６", true},
		{"leading space", " 12345", true},
		{"trailing space", "12345 ", true},
		{"sign", "-12345", true},
		{"arabic-indic digits", "١٢٣٤٥٦", true},
		{"6 digits", "123456", false},
		{"leading zeros", "000042", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := otp.CheckFormat(tt.code)
			if tt.wantErr {
				if !errors.Is(err, otp.ErrFormat) {
					t.Errorf("CheckFormat(%q) = %v, want ErrFormat", tt.code, err)
				}
				return
			}
			if err != nil {
				t.Errorf("CheckFormat(%q) = %v, want nil", tt.code, err)
			}
		})
	}
}

func TestMAC(t *testing.T) {
	ka := newKeyer(t, keyA, nil)
	kb := newKeyer(t, keyB, nil)

	base := ka.MAC(reqA, "123456")
	if len(base) != 32 {
		t.Fatalf("len(MAC) = %d, want 32", len(base))
	}
	if diff := cmp.Diff(base, ka.MAC(reqA, "123456")); diff != "" {
		t.Errorf("MAC is not deterministic (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(base, newKeyer(t, keyA, nil).MAC(reqA, "123456")); diff != "" {
		t.Errorf("MAC differs between two keyers with one key (-want +got):\n%s", diff)
	}

	tests := []struct {
		name string
		mac  []byte
	}{
		{"other request id", ka.MAC(reqB, "123456")},
		{"other code", ka.MAC(reqA, "123457")},
		{"other key", kb.MAC(reqA, "123456")},
		{"empty code", ka.MAC(reqA, "")},
		{"nil request id", ka.MAC(uuid.Nil, "123456")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.mac) != 32 {
				t.Errorf("len(MAC) = %d, want 32", len(tt.mac))
			}
			if bytes.Equal(base, tt.mac) {
				t.Errorf("MAC equals the base MAC %x", base)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	k := newKeyer(t, keyA, nil)
	mac := k.MAC(reqA, "042137")
	tests := []struct {
		name string
		req  uuid.UUID
		code string
		mac  []byte
		want bool
	}{
		{"right code", reqA, "042137", mac, true},
		{"wrong code", reqA, "042138", mac, false},
		{"without leading zero", reqA, "42137", mac, false},
		{"other request", reqB, "042137", mac, false},
		{"nil mac", reqA, "042137", nil, false},
		{"truncated mac", reqA, "042137", mac[:16], false},
		{"mac under another key", reqA, "042137", newKeyer(t, keyB, nil).MAC(reqA, "042137"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := k.Verify(tt.req, tt.code, tt.mac); got != tt.want {
				t.Errorf("Verify(%v, %q) = %v, want %v", tt.req, tt.code, got, tt.want)
			}
		})
	}
}

func TestNewKeyer(t *testing.T) {
	fallback := []byte("a-jwt-secret-of-at-least-32-bytes!!")

	explicit := newKeyer(t, fallback, nil)
	derived := newKeyer(t, nil, fallback)
	if bytes.Equal(explicit.MAC(reqA, "123456"), derived.MAC(reqA, "123456")) {
		t.Errorf("a key derived from fallback gives the same MAC as fallback used as the key")
	}
	// Derivation is deterministic: restarting the server keeps codes valid.
	if diff := cmp.Diff(derived.MAC(reqA, "123456"), newKeyer(t, nil, fallback).MAC(reqA, "123456")); diff != "" {
		t.Errorf("derived key is not deterministic (-want +got):\n%s", diff)
	}
	// An explicit key wins over the fallback.
	withBoth := newKeyer(t, keyA, fallback)
	if diff := cmp.Diff(newKeyer(t, keyA, nil).MAC(reqA, "123456"), withBoth.MAC(reqA, "123456")); diff != "" {
		t.Errorf("explicit key does not take precedence over fallback (-want +got):\n%s", diff)
	}
	// Different fallbacks derive different keys.
	if bytes.Equal(derived.MAC(reqA, "123456"), newKeyer(t, nil, []byte("another-secret-of-at-least-32-bytes")).MAC(reqA, "123456")) {
		t.Errorf("two fallbacks derive the same key")
	}

	errTests := []struct {
		name          string
		key, fallback []byte
	}{
		{"both nil", nil, nil},
		{"both empty", []byte{}, []byte{}},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := otp.NewKeyer(tt.key, tt.fallback)
			if err == nil {
				t.Fatalf("NewKeyer(%q, %q) = %v, nil; want an error", tt.key, tt.fallback, k)
			}
			if k != nil {
				t.Errorf("NewKeyer returned a keyer with an error")
			}
		})
	}
}
