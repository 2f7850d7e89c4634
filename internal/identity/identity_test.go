package identity_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/placebrain/auth/internal/identity"
)

// addrOfLen returns a valid address of exactly n bytes (n >= 7) with a
// one-byte local part.
// addrOfLen returns a valid address of n bytes (n >= 7): a short local
// part and a domain of DNS labels of at most 63 bytes.
func addrOfLen(n int) string {
	rest := n - len("a@") - len(".com")
	var labels []string
	for rest > 0 {
		l := min(63, rest)
		if rest-l == 1 { // a dot needs a label after it
			l--
		}
		labels = append(labels, strings.Repeat("d", l))
		rest -= l + 1
	}
	return "a@" + strings.Join(labels, ".") + ".com"
}

func TestAddrOfLen(t *testing.T) {
	for _, n := range []int{7, 254, 255} {
		if got := len(addrOfLen(n)); got != n {
			t.Fatalf("len(addrOfLen(%d)) = %d", n, got)
		}
	}
}

func TestNormalizeEmail(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want identity.Email
	}{
		{"mixed case", "Alice@Example.COM", identity.Email{Address: "Alice@Example.COM", Canonical: "alice@example.com"}},
		{"surrounding spaces", "  Alice@Example.COM \t\n", identity.Email{Address: "Alice@Example.COM", Canonical: "alice@example.com"}},
		{"already canonical", "alice@example.com", identity.Email{Address: "alice@example.com", Canonical: "alice@example.com"}},
		{"plus tag kept", "a+tag@x.com", identity.Email{Address: "a+tag@x.com", Canonical: "a+tag@x.com"}},
		{"precomposed É", "\u00c9COLE@x.com", identity.Email{Address: "\u00c9COLE@x.com", Canonical: "\u00e9cole@x.com"}},
		{"decomposed É becomes NFC", "E\u0301COLE@x.com", identity.Email{Address: "\u00c9COLE@x.com", Canonical: "\u00e9cole@x.com"}},
		{"ß full case folding", "stra\u00dfe@x.com", identity.Email{Address: "stra\u00dfe@x.com", Canonical: "strasse@x.com"}},
		{"STRASSE", "STRASSE@x.com", identity.Email{Address: "STRASSE@x.com", Canonical: "strasse@x.com"}},
		{"64-byte local part", strings.Repeat("l", 64) + "@x.com", identity.Email{Address: strings.Repeat("l", 64) + "@x.com", Canonical: strings.Repeat("l", 64) + "@x.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := identity.NormalizeEmail(tt.in)
			if err != nil {
				t.Fatalf("NormalizeEmail(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NormalizeEmail(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestNormalizeEmailSameCanonical(t *testing.T) {
	first, err := identity.NormalizeEmail("Alice@Example.COM")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"alice@EXAMPLE.com", "ALICE@example.com", " alice@example.com "} {
		t.Run(in, func(t *testing.T) {
			got, err := identity.NormalizeEmail(in)
			if err != nil {
				t.Fatalf("NormalizeEmail(%q): %v", in, err)
			}
			if diff := cmp.Diff(first.Canonical, got.Canonical); diff != "" {
				t.Errorf("Canonical mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("decomposed and precomposed", func(t *testing.T) {
		pre, err := identity.NormalizeEmail("\u00c9COLE@x.com")
		if err != nil {
			t.Fatal(err)
		}
		dec, err := identity.NormalizeEmail("E\u0301COLE@x.com")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(pre, dec); diff != "" {
			t.Errorf("decomposed form normalizes differently (-want +got):\n%s", diff)
		}
	})
}

func TestNormalizeEmailLength(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"254 bytes", addrOfLen(254), ""},
		{"255 bytes", addrOfLen(255), "email must be at most 254 bytes"},
		{"local part 64 bytes", strings.Repeat("l", 64) + "@x.com", ""},
		{"local part 65 bytes", strings.Repeat("l", 65) + "@x.com", "email local part must be at most 64 bytes"},
		// 255 bytes after trimming only counts what is left.
		{"254 bytes plus spaces", "  " + addrOfLen(254) + "  ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := identity.NormalizeEmail(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NormalizeEmail(%d bytes): %v", len(tt.in), err)
				}
				if diff := cmp.Diff(strings.TrimSpace(tt.in), got.Address); diff != "" {
					t.Errorf("Address mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("NormalizeEmail(%d bytes) = %+v, want error %q", len(tt.in), got, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantErr, err.Error()); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNormalizeEmailInvalid(t *testing.T) {
	const (
		notValid  = "email is not a valid address"
		invisible = "email must not contain control or invisible characters"
	)
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"empty", "", "email is required"},
		{"only spaces", "   ", "email is required"},
		{"no at sign", "no-at-sign", notValid},
		{"empty local part", "@x.com", notValid},
		{"empty domain", "a@", notValid},
		{"display name", "A <a@x.com>", notValid},
		{"angle brackets only", "<a@x.com>", notValid},
		{"space inside", "a b@x.com", notValid},
		{"tab inside", "a\tb@x.com", invisible},
		{"double dot", "a..b@x.com", notValid},
		{"two addresses", "a@x.com, b@x.com", notValid},
		{"NUL", "a\x00b@x.com", invisible},
		{"newline inside", "a\nb@x.com", invisible},
		{"header injection", "a@x.com\nBcc: evil@y.com", invisible},
		{"zero-width space", "a\u200bb@x.com", invisible},
		{"right-to-left override", "a\u202eb@x.com", invisible},
		{"BOM", "\ufeffa@x.com", invisible},
		{"DEL", "a\x7fb@x.com", invisible},
		{"invalid UTF-8", "a\xff@x.com", "email must be valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := identity.NormalizeEmail(tt.in)
			if err == nil {
				t.Fatalf("NormalizeEmail(%q) = %+v, want an error", tt.in, got)
			}
			if diff := cmp.Diff(tt.wantErr, err.Error()); diff != "" {
				t.Errorf("NormalizeEmail(%q) error mismatch (-want +got):\n%s", tt.in, diff)
			}
			if diff := cmp.Diff(identity.Email{}, got); diff != "" {
				t.Errorf("NormalizeEmail(%q) returned a value with an error (-want +got):\n%s", tt.in, diff)
			}
		})
	}

	t.Run("UTF-8 message", func(t *testing.T) {
		_, err := identity.NormalizeEmail("a\xff@x.com")
		if err == nil || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("error = %v, want one that mentions UTF-8", err)
		}
	})
}

func TestNormalizeUsername(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{"plain", "alice", "alice", ""},
		{"case kept", "Alice", "Alice", ""},
		{"trimmed", "  alice \t\n", "alice", ""},
		{"inner space kept", "Alice Smith", "Alice Smith", ""},
		{"NFC", "Jose\u0301", "Jos\u00e9", ""},
		{"64 ASCII", strings.Repeat("a", 64), strings.Repeat("a", 64), ""},
		{"64 two-byte runes", strings.Repeat("é", 64), strings.Repeat("é", 64), ""},
		{"64 four-byte runes", strings.Repeat("😀", 64), strings.Repeat("😀", 64), ""},
		{"64 runes after NFC", strings.Repeat("e\u0301", 64), strings.Repeat("\u00e9", 64), ""},
		{"65 ASCII", strings.Repeat("a", 65), "", "username must be at most 64 characters"},
		{"65 runes", strings.Repeat("é", 65), "", "username must be at most 64 characters"},
		{"empty", "", "", "username is required"},
		{"only spaces", " \t ", "", "username is required"},
		{"NUL", "ali\x00ce", "", "username must not contain control or invisible characters"},
		{"newline", "ali\nce", "", "username must not contain control or invisible characters"},
		{"escape", "ali\x1b[31mce", "", "username must not contain control or invisible characters"},
		{"zero-width space", "ali\u200bce", "", "username must not contain control or invisible characters"},
		{"zero-width joiner", "ali\u200dce", "", "username must not contain control or invisible characters"},
		{"right-to-left override", "ali\u202ece", "", "username must not contain control or invisible characters"},
		{"invalid UTF-8", "ali\xffce", "", "username must be valid UTF-8"},
		{"truncated UTF-8", "ali\xc3", "", "username must be valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := identity.NormalizeUsername(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("NormalizeUsername(%q) = %q, want error %q", tt.in, got, tt.wantErr)
				}
				if diff := cmp.Diff(tt.wantErr, err.Error()); diff != "" {
					t.Errorf("error mismatch (-want +got):\n%s", diff)
				}
				if got != "" {
					t.Errorf("NormalizeUsername returned %q with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("NormalizeUsername(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NormalizeUsername(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// Hostile look-alikes and invisible characters found by attacking the
// service: refused, or folded into the one canonical form.
func TestNormalizeHostileInput(t *testing.T) {
	for _, bad := range []string{
		"x@[127.0.0.1]", "x@[IPv6:::1]", "x@-example-.com", "x@ex_ample.com", "x@localhost",
		"nb\u00a0sp@example.com", "ls\u2028x@example.com", "hf\u3164x@example.com", "zw\u200bx@example.com",
	} {
		if e, err := identity.NormalizeEmail(bad); err == nil {
			t.Errorf("identity.NormalizeEmail(%q) = %+v, want an error", bad, e)
		}
	}
	full, err := identity.NormalizeEmail("ｈome@ｅxample.com")
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := identity.NormalizeEmail("home@example.com")
	if full.Canonical != plain.Canonical {
		t.Errorf("full-width %q vs %q", full.Canonical, plain.Canonical)
	}
	idn, err := identity.NormalizeEmail("Anna@Bücher.DE")
	if err != nil || idn.Canonical != "anna@xn--bcher-kva.de" || idn.Address != "Anna@Bücher.DE" {
		t.Errorf("IDN = %+v, %v", idn, err)
	}
	for _, bad := range []string{"\u3164", "\u0301\u0301", "a\u2028b", "a\uffffb", "a\ue000b", "x\u200bz", "...", "\u115f\u1160"} {
		if got, err := identity.NormalizeUsername(bad); err == nil {
			t.Errorf("identity.NormalizeUsername(%q) = %q, want an error", bad, got)
		}
	}
	for in, want := range map[string]string{"  Alice   Smith ": "Alice Smith", "a\u00a0b": "a b", "ｈome": "home", "😀 fan": "😀 fan"} {
		if got, err := identity.NormalizeUsername(in); err != nil || got != want {
			t.Errorf("identity.NormalizeUsername(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
