// Package identity normalizes and validates the identifiers people type:
// e-mail addresses and usernames, with the PRECIS framework (RFC 8264) and
// IDNA (RFC 5891) from golang.org/x/text and golang.org/x/net. Every RPC
// that takes an e-mail address goes through NormalizeEmail, so look-ups and
// the database's unique index agree on one canonical form.
package identity

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/cases"
	"golang.org/x/text/secure/precis"
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
	// Address is the address to send mail to and to show: the local part
	// as typed after width folding and NFC, and the domain as typed in
	// NFC.
	Address string
	// Canonical is the form stored in the unique index and looked up: the
	// local part case-folded (Unicode full case folding) in NFC, and the
	// domain in lower-case ASCII (IDNA A-labels).
	Canonical string
}

// domains validates and converts domain names for look-up (RFC 5891):
// letters, digits and hyphens per label, no leading or trailing hyphen,
// Unicode labels as A-labels.
var domains = idna.New(idna.MapForLookup(), idna.StrictDomainName(true), idna.BidiRule(),
	idna.ValidateLabels(true), idna.VerifyDNSLength(true))

// NormalizeEmail validates s as a bare e-mail address (no display name, no
// quoted local part, no IP-literal domain) and returns its forms. The local
// part must be a PRECIS identifier (RFC 8265 UsernameCasePreserved: no
// spaces, controls, invisible or unassigned characters) and the domain a
// host name with at least one dot. Errors are short sentences fit to show a
// user.
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
	if a, err := mail.ParseAddress(s); err != nil || a.Address != s || a.Name != "" {
		return Email{}, errors.New("email is not a valid address")
	}
	local, domain := s[:at], s[at+1:]
	local, err = precis.UsernameCasePreserved.String(local)
	if err != nil || strings.HasPrefix(local, `"`) {
		return Email{}, errors.New("email has characters that are not allowed in an address")
	}
	ascii, err := domains.ToASCII(domain)
	if err != nil || !strings.Contains(ascii, ".") {
		return Email{}, errors.New("email domain is not a valid host name")
	}
	return Email{
		Address:   local + "@" + domain,
		Canonical: norm.NFC.String(cases.Fold().String(local)) + "@" + strings.ToLower(ascii),
	}, nil
}

// NormalizeUsername enforces the PRECIS Nickname profile (RFC 8266): spaces
// mapped to ASCII space, trimmed and collapsed, NFKC, no control, invisible
// or unassigned characters. It must have 1 to 64 characters, at least one
// of them a letter, digit or symbol (not only marks or punctuation).
func NormalizeUsername(s string) (string, error) {
	s, err := clean(s, "username")
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", errors.New("username is required")
	}
	s, err = precis.Nickname.String(s)
	if err != nil {
		return "", errors.New("username must not contain control or invisible characters")
	}
	if n := utf8.RuneCountInString(s); n > MaxUsernameRunes {
		return "", fmt.Errorf("username must be at most %d characters", MaxUsernameRunes)
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.In(r, unicode.L, unicode.N, unicode.S) }) < 0 {
		return "", errors.New("username must contain a letter, digit or symbol")
	}
	return s, nil
}

// clean checks that s is valid UTF-8 without control, format (invisible)
// or default-ignorable characters, trims surrounding white space and
// returns it in NFC.
func clean(s, field string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%s must be valid UTF-8", field)
	}
	s = norm.NFC.String(strings.TrimSpace(s))
	for _, r := range s {
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Zl, unicode.Zp, unicode.Other_Default_Ignorable_Code_Point) ||
			!unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Zs) {
			return "", fmt.Errorf("%s must not contain control or invisible characters", field)
		}
	}
	return s, nil
}
