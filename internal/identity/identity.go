// Package identity normalizes and validates the identifiers people type:
// e-mail addresses and usernames. Every RPC that takes an e-mail address
// goes through NormalizeEmail, so look-ups and the database's unique index
// agree on one canonical form.
package identity

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

const (
	// MaxEmailBytes is the longest address RFC 5321 §4.5.3.1.3 allows in a
	// forward path (256 octets less the angle brackets).
	MaxEmailBytes = 254
	// MaxEmailLocalBytes is the longest local part, RFC 5321 §4.5.3.1.1.
	MaxEmailLocalBytes = 64
	// MaxUsernameRunes is the longest username, in characters.
	MaxUsernameRunes = 64
)

// Email is a validated e-mail address in two forms.
type Email struct {
	// Address is the address as typed, trimmed and in Unicode NFC: what
	// mail is sent to and what is shown.
	Address string
	// Canonical is Address case-folded (Unicode full case folding) and in
	// NFC: the form that is stored in the unique index and looked up.
	Canonical string
}

// NormalizeEmail validates s as a bare e-mail address (no display name) and
// returns its forms. Errors are short sentences fit to show a user.
func NormalizeEmail(s string) (Email, error) {
	s, err := clean(s, "email")
	if err != nil {
		return Email{}, err
	}
	if s == "" {
		return Email{}, errors.New("email is required")
	}
	if len(s) > MaxEmailBytes {
		return Email{}, fmt.Errorf("email must be at most %d bytes", MaxEmailBytes)
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || strings.ContainsAny(s, " \t<>") {
		return Email{}, errors.New("email is not a valid address")
	}
	if at > MaxEmailLocalBytes {
		return Email{}, fmt.Errorf("email local part must be at most %d bytes", MaxEmailLocalBytes)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return Email{}, errors.New("email is not a valid address")
	}
	return Email{Address: s, Canonical: norm.NFC.String(cases.Fold().String(s))}, nil
}

// NormalizeUsername trims s, puts it in NFC and checks it has 1 to 64
// characters and no control or invisible formatting characters.
func NormalizeUsername(s string) (string, error) {
	s, err := clean(s, "username")
	if err != nil {
		return "", err
	}
	n := utf8.RuneCountInString(s)
	if n == 0 {
		return "", errors.New("username is required")
	}
	if n > MaxUsernameRunes {
		return "", fmt.Errorf("username must be at most %d characters", MaxUsernameRunes)
	}
	return s, nil
}

// clean checks that s is valid UTF-8 without control or format (invisible)
// characters, trims surrounding white space and returns it in NFC.
func clean(s, field string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%s must be valid UTF-8", field)
	}
	s = norm.NFC.String(strings.TrimSpace(s))
	for _, r := range s {
		if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) {
			return "", fmt.Errorf("%s must not contain control or invisible characters", field)
		}
	}
	return s, nil
}
