package identity_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/placebrain/auth/internal/identity"
)

// FuzzNormalizeEmail checks that normalization never panics, and that what
// it accepts is valid UTF-8, within the length limits, stable (normalizing
// the canonical form again gives it back) and case-insensitive.
func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{"Alice@Example.COM", " bob@example.com ", "ｈome@ｅxample.com", "straße@x.com", "a@[127.0.0.1]", "x\u200b@y.z", "\xff@x.com", "\"q\"@x.com", "Anna@Bücher.DE", "İİ@x.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := identity.NormalizeEmail(s)
		if err != nil {
			return
		}
		if !utf8.ValidString(e.Address) || !utf8.ValidString(e.Canonical) {
			t.Fatalf("invalid UTF-8 out of %q", s)
		}
		if len(e.Address) > identity.MaxEmailBytes || e.Address == "" || !strings.Contains(e.Canonical, "@") {
			t.Fatalf("bad forms %+v from %q", e, s)
		}
		again, err := identity.NormalizeEmail(e.Address)
		if err != nil || again.Canonical != e.Canonical {
			t.Fatalf("not stable: %q -> %+v -> %+v, %v", s, e, again, err)
		}
		upper, err := identity.NormalizeEmail(strings.ToUpper(e.Address))
		if err == nil && upper.Canonical != e.Canonical && strings.ToLower(strings.ToUpper(e.Address)) == strings.ToLower(e.Address) {
			t.Fatalf("case-sensitive: %q vs %q", upper.Canonical, e.Canonical)
		}
	})
}

// FuzzNormalizeUsername checks that usernames never panic and that what is
// accepted is trimmed, 1 to 64 characters, and stable.
func FuzzNormalizeUsername(f *testing.F) {
	for _, s := range []string{"Alice", "  Alice   Smith ", "\u3164", "😀 fan", "e\u0301", "a\x00b", "\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := identity.NormalizeUsername(s)
		if err != nil {
			return
		}
		if n := utf8.RuneCountInString(u); n == 0 || n > identity.MaxUsernameRunes || strings.TrimSpace(u) != u {
			t.Fatalf("bad username %q from %q", u, s)
		}
		if again, err := identity.NormalizeUsername(u); err != nil || again != u {
			t.Fatalf("not stable: %q -> %q -> %q, %v", s, u, again, err)
		}
	})
}
