package auth

import (
	"errors"
	"time"
)

// Kind is the class of a domain error. The set is closed: the transport
// maps each kind to exactly one gRPC code.
type Kind int

const (
	// KindInvalidArgument: the request is malformed or a code is wrong.
	KindInvalidArgument Kind = iota + 1
	// KindNotFound: the named user does not exist.
	KindNotFound
	// KindAlreadyExists: the e-mail address is taken.
	KindAlreadyExists
	// KindUnauthenticated: credentials or a token are invalid.
	KindUnauthenticated
	// KindFailedPrecondition: the account is not in a state that allows
	// the operation (e-mail not verified).
	KindFailedPrecondition
	// KindResourceExhausted: a cooldown or an attempt cap; RetryAfter says
	// when to try again.
	KindResourceExhausted
	// KindUnavailable: the database cannot serve the request now
	// (unreachable, shutting down, refusing connections, not answering
	// within its timeouts, or the connection was lost); the request may be
	// retried after RetryAfter.
	KindUnavailable
)

// Error is a domain error: a kind, a stable machine-readable reason
// (UPPER_SNAKE_CASE, carried in google.rpc.ErrorInfo) and a short sentence
// fit to show a user. It never holds a secret.
type Error struct {
	Kind    Kind
	Reason  string
	Message string
	// RetryAfter is how long to wait before retrying, for
	// KindResourceExhausted (google.rpc.RetryInfo).
	RetryAfter time.Duration
	// Metadata is extra ErrorInfo metadata, e.g. the invalid field.
	Metadata map[string]string
}

func (e *Error) Error() string { return e.Message }

// Is matches domain errors by reason, so errors.Is(err, ErrOTPDailyLimit)
// holds for a daily-limit error with any RetryAfter.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason
}

// The domain errors. Messages are what the gateway shows users; the web
// client matches ErrEmailNotVerified's message exactly.
var (
	ErrInvalidCredentials   = &Error{Kind: KindUnauthenticated, Reason: "INVALID_CREDENTIALS", Message: "Invalid email or password"}
	ErrEmailNotVerified     = &Error{Kind: KindFailedPrecondition, Reason: "EMAIL_NOT_VERIFIED", Message: "Email not verified"}
	ErrEmailTaken           = &Error{Kind: KindAlreadyExists, Reason: "EMAIL_TAKEN", Message: "Email already registered"}
	ErrUserNotFound         = &Error{Kind: KindNotFound, Reason: "USER_NOT_FOUND", Message: "User not found"}
	ErrSessionNotFound      = &Error{Kind: KindNotFound, Reason: "SESSION_NOT_FOUND", Message: "Session not found"}
	ErrWrongPassword        = &Error{Kind: KindInvalidArgument, Reason: "PASSWORD_INCORRECT", Message: "Current password is incorrect"}
	ErrInvalidRefreshToken  = &Error{Kind: KindUnauthenticated, Reason: "INVALID_REFRESH_TOKEN", Message: "Invalid refresh token"}
	ErrRefreshTokenExpired  = &Error{Kind: KindUnauthenticated, Reason: "REFRESH_TOKEN_EXPIRED", Message: "Refresh token expired; sign in again"}
	ErrRefreshTokenRevoked  = &Error{Kind: KindUnauthenticated, Reason: "REFRESH_TOKEN_REVOKED", Message: "Refresh token revoked; sign in again"}
	ErrRefreshTokenReused   = &Error{Kind: KindUnauthenticated, Reason: "REFRESH_TOKEN_REUSED", Message: "Refresh token already used; sign in again"}
	ErrInvalidOTP           = &Error{Kind: KindInvalidArgument, Reason: "OTP_INVALID", Message: "Invalid code"}
	ErrOTPExpired           = &Error{Kind: KindInvalidArgument, Reason: "OTP_EXPIRED", Message: "Code expired; request a new one"}
	ErrOTPAttemptsExhausted = &Error{Kind: KindResourceExhausted, Reason: "OTP_ATTEMPTS_EXHAUSTED", Message: "Too many wrong codes; request a new one"}
	ErrServerBusy           = &Error{Kind: KindResourceExhausted, Reason: "SERVER_BUSY", Message: "Server busy; try again shortly"}
	ErrLoginThrottled       = &Error{Kind: KindResourceExhausted, Reason: "LOGIN_THROTTLED", Message: "Too many failed sign-in attempts; try again later"}
	ErrRegisterThrottled    = &Error{Kind: KindResourceExhausted, Reason: "REGISTER_THROTTLED", Message: "Too many sign-ups from your network; try again later"}
	ErrOTPDailyLimit        = &Error{Kind: KindResourceExhausted, Reason: "OTP_DAILY_LIMIT", Message: "Too many codes requested today; try again later"}
	ErrMalformedRequest     = &Error{Kind: KindInvalidArgument, Reason: "MALFORMED_REQUEST", Message: "Malformed request: every string field must be valid UTF-8"}
	ErrInvalidInput         = &Error{Kind: KindInvalidArgument, Reason: "INVALID_INPUT", Message: "Invalid input"}
	// ErrUnavailable is what the data layer wraps around a database failure
	// that says nothing about the request (see Unavailable).
	ErrUnavailable = &Error{Kind: KindUnavailable, Reason: "DATABASE_UNAVAILABLE", Message: "Service temporarily unavailable; try again shortly", RetryAfter: UnavailableRetry}
)

// UnavailableRetry is the retry delay ErrUnavailable suggests: about how
// long the health check takes to notice that the database is back.
const UnavailableRetry = time.Second

// Unavailable returns an error that is ErrUnavailable (for AsError and
// errors.Is) and wraps cause (for errors.Is and the log): the data layer's
// way of saying that the database could not serve the request.
func Unavailable(cause error) error {
	return &unavailableError{cause: cause}
}

type unavailableError struct{ cause error }

func (e *unavailableError) Error() string   { return "database unavailable: " + e.cause.Error() }
func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.cause} }

// IsUnavailable reports whether err is (or wraps) ErrUnavailable.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// invalidInput is an INVALID_INPUT error about one request field; msg is
// the sentence shown to the user.
func invalidInput(field, msg string) *Error {
	return &Error{Kind: KindInvalidArgument, Reason: ErrInvalidInput.Reason, Message: msg,
		Metadata: map[string]string{"field": field}}
}

// InvalidInput returns an INVALID_INPUT error about one part of a request
// that the transport checks itself (a metadata key such as x-real-ip):
// field names it, msg is the sentence shown to the user.
func InvalidInput(field, msg string) *Error { return invalidInput(field, msg) }

// withRetry returns a copy of e carrying a retry delay.
func withRetry(e *Error, d time.Duration) *Error {
	c := *e
	if d < 0 {
		d = 0
	}
	c.RetryAfter = d
	return &c
}

// withMeta returns a copy of e carrying metadata.
func withMeta(e *Error, kv ...string) *Error {
	c := *e
	c.Metadata = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Metadata[kv[i]] = kv[i+1]
	}
	return &c
}

// AsError returns the domain error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
