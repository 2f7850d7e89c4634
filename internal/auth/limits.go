package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"net/netip"
	"time"
)

// The limiter: one model for every abuse budget, counted in the database
// so that every instance sees it. A counter is keyed by (purpose, account,
// source): the account is the canonical e-mail address (so an address
// without an account is counted the same way), the source the end user's
// address when the gateway says it (see source.go), and either may be
// empty. Keys are stored only as an HMAC, so the database keeps no address
// of anyone.

// Purpose is what a limiter counter counts.
type Purpose string

// The purposes.
const (
	// PurposeLogin counts login attempts for one (account, source) pair,
	// or for the account alone when the source is unknown.
	PurposeLogin Purpose = "login"
	// PurposeLoginAccount counts an account's login attempts from sources
	// that have not signed in before, whatever the sources.
	PurposeLoginAccount Purpose = "login_account"
	// PurposeSignedIn marks a source an account signed in from (Last is
	// the sign-in).
	PurposeSignedIn Purpose = "signed_in"
	// PurposeCodeCheck counts verification attempts on an account's code
	// from one source (or from any, when the source is unknown); it starts
	// anew with each code.
	PurposeCodeCheck Purpose = "code_check"
	// PurposeCodeCheckAccount counts an account's verification attempts,
	// whatever the sources.
	PurposeCodeCheckAccount Purpose = "code_check_account"
	// PurposeCodeSend counts codes mailed to an account at the request of
	// one source (or of any, when the source is unknown).
	PurposeCodeSend Purpose = "code_send"
	// PurposeCodeSendAccount counts codes mailed to an account, whatever
	// the sources.
	PurposeCodeSendAccount Purpose = "code_send_account"
	// PurposeRegister counts registrations from one source.
	PurposeRegister Purpose = "register"
	// PurposeResetCheck counts attempts on an account's password-reset
	// code from one source (or from any); it starts anew with each code.
	PurposeResetCheck Purpose = "reset_check"
	// PurposeResetCheckAccount counts an account's reset-code attempts,
	// whatever the sources.
	PurposeResetCheckAccount Purpose = "reset_check_account"
	// PurposeResetSend counts reset codes mailed to an account at the
	// request of one source (or of any).
	PurposeResetSend Purpose = "reset_send"
)

// Purposes lists every limiter purpose (the store's schema must accept
// each).
var Purposes = []Purpose{PurposeLogin, PurposeLoginAccount, PurposeSignedIn, PurposeCodeCheck,
	PurposeCodeCheckAccount, PurposeCodeSend, PurposeCodeSendAccount, PurposeRegister,
	PurposeResetCheck, PurposeResetCheckAccount, PurposeResetSend}

// Counter is what a limiter counter holds.
type Counter struct {
	// Count counts events since WindowStart.
	Count int
	// Pending counts events admitted whose outcome is not known yet
	// (see Limit.admitPending).
	Pending     int
	WindowStart time.Time
	// LockedUntil refuses events until then; zero when not locked.
	LockedUntil time.Time
	// Last is when the last event was counted; zero when none was.
	Last time.Time
}

// Limit allows Max events per Window for one counter. The event after
// them is refused and locks the counter: for Lock from then, or, with Lock
// zero, until the window ends. Events while locked are refused and change
// nothing; after a lock, counting starts anew.
type Limit struct {
	Max    int
	Window time.Duration
	Lock   time.Duration
}

// current is c as an unlocked counter stands at now: one whose lock has
// ended or whose window is over starts a new window at now (keeping
// Last).
func (l Limit) current(c Counter, now time.Time) Counter {
	if !c.LockedUntil.IsZero() || !now.Before(c.WindowStart.Add(l.Window)) {
		return Counter{WindowStart: now, Last: c.Last}
	}
	return c
}

// take counts one event at now on c. It returns what to store, and when
// the event is refused, the end of the lock (zero when admitted) and
// whether this event set the lock (so that a refusal is recorded once per
// lock). A Limit with Max zero admits everything.
func (l Limit) take(c Counter, now time.Time) (next Counter, lockedUntil time.Time, locked bool) {
	if l.Max <= 0 {
		return c, time.Time{}, false
	}
	if now.Before(c.LockedUntil) {
		return c, c.LockedUntil, false
	}
	c = l.current(c, now)
	if c.Count >= l.Max {
		until := c.WindowStart.Add(l.Window)
		if l.Lock > 0 {
			until = now.Add(l.Lock)
		}
		return Counter{WindowStart: now, LockedUntil: until, Last: c.Last}, until, true
	}
	c.Count++
	c.Last = now
	return c, time.Time{}, false
}

// reserved reports whether an event at now would leave fewer than
// reserve of l's events in c's window (or finds c locked), and if so until
// when: the lock's end or the window's. It counts and locks nothing, so
// the events it keeps back stay available to take. A Limit with Max zero,
// or a reserve of zero, keeps nothing back.
func (l Limit) reserved(c Counter, now time.Time, reserve int) (until time.Time, full bool) {
	if l.Max <= 0 || reserve <= 0 {
		return time.Time{}, false
	}
	if now.Before(c.LockedUntil) {
		return c.LockedUntil, true
	}
	c = l.current(c, now)
	if c.Count+reserve >= l.Max {
		return c.WindowStart.Add(l.Window), true
	}
	return time.Time{}, false
}

// admitPending is take for events whose outcome is known only later
// (logins, whose password is checked after they are admitted): Count
// counts the failures and Pending the events still running, and an event
// is admitted while both together stay under Max, so concurrent events
// cannot outrun the limit. At Max with events still running, the caller
// waits for them (wait true), since they may all succeed; at Max with none
// running, the event locks the counter as take does. A window that passes
// or a lock that ends also forgets events left running (a crashed
// instance's).
func (l Limit) admitPending(c Counter, now time.Time) (next Counter, lockedUntil time.Time, locked, wait bool) {
	if l.Max <= 0 {
		return c, time.Time{}, false, false
	}
	if now.Before(c.LockedUntil) {
		return c, c.LockedUntil, false, false
	}
	c = l.current(c, now)
	if c.Count+c.Pending >= l.Max {
		if c.Pending > 0 {
			return c, time.Time{}, false, true
		}
		until := now.Add(l.Lock)
		return Counter{WindowStart: now, LockedUntil: until, Last: c.Last}, until, true, false
	}
	c.Pending++
	c.Last = now
	return c, time.Time{}, false, false
}

// resolve records the outcome of an event admitted by admitPending: a
// failure counts; a success forgets the failures; a refund (the event
// never ran) only ends it.
func (c Counter) resolve(o outcome) Counter {
	if c.Pending > 0 {
		c.Pending--
	}
	switch o {
	case failed:
		c.Count++
	case succeeded:
		c.Count = 0
	}
	return c
}

// outcome is how an admitted event ended.
type outcome int

const (
	failed outcome = iota + 1
	succeeded
	refunded
)

// full reports whether the next event on c at now would be refused,
// without counting it.
func (l Limit) full(c Counter, now time.Time) bool {
	_, until, _ := l.take(c, now)
	return !until.IsZero()
}

// since returns c, or a fresh counter whose window starts at t when c's
// started before t (t zero: c).
func (c Counter) since(t time.Time) Counter {
	if c.WindowStart.Before(t) {
		return Counter{WindowStart: t, Last: c.Last}
	}
	return c
}

// refund takes back one counted event (an attempt that turned out not to
// be a failure).
func refund(c Counter) Counter {
	if c.Count > 0 {
		c.Count--
	}
	return c
}

// limiterKey names a counter: HMAC-SHA256 under key of the purpose, the
// account and the source (each may be empty), 32 bytes.
func limiterKey(key []byte, p Purpose, account string, source netip.Prefix) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(p))
	m.Write([]byte{0})
	m.Write([]byte(account))
	m.Write([]byte{0})
	if source.IsValid() {
		m.Write([]byte(source.String()))
	}
	return m.Sum(nil)
}

// counterRef names one counter of a request.
type counterRef struct {
	purpose Purpose
	key     []byte
	// account names the account the counter belongs to (nil: none).
	account []byte
}

// accountPurpose is the purpose limiterKey names an account by, so that
// its counters can be found together (Tx.DeleteAccountCounters).
const accountPurpose Purpose = "account"

// accountKey names the account whose canonical address is canonical.
func (s *Service) accountKey(canonical string) []byte {
	return limiterKey(s.o.LimiterKey, accountPurpose, canonical, netip.Prefix{})
}

// counter names the counter of purpose p for account (a canonical
// address, or "" for none) and source (invalid: none).
func (s *Service) counter(p Purpose, account string, source netip.Prefix) counterRef {
	ref := counterRef{purpose: p, key: limiterKey(s.o.LimiterKey, p, account, source)}
	if account != "" {
		ref.account = s.accountKey(account)
	}
	return ref
}

// takeIn counts one event on the counter in tx under l, and stores the
// result; a counter whose window started before since (when not zero)
// starts anew at since. It returns the counter after the event and, when
// the event is refused, the end of the lock and whether this event set it.
func takeIn(ctx context.Context, tx Tx, ref counterRef, l Limit, since, now time.Time) (next Counter, until time.Time, locked bool, err error) {
	c, err := tx.LockCounter(ctx, ref.purpose, ref.key, ref.account, now)
	if err != nil {
		return Counter{}, time.Time{}, false, err
	}
	return takeLocked(ctx, tx, ref, c, l, since, now)
}

// takeLocked is takeIn on c, the counter ref already locked in tx.
func takeLocked(ctx context.Context, tx Tx, ref counterRef, c Counter, l Limit, since, now time.Time) (next Counter, until time.Time, locked bool, err error) {
	c = c.since(since)
	next, until, locked = l.take(c, now)
	if next != c {
		err = tx.SaveCounter(ctx, ref.key, next, now)
	}
	return next, until, locked, err
}

// refundIn takes back one counted event on the counter in tx.
func refundIn(ctx context.Context, tx Tx, ref counterRef, now time.Time) error {
	c, err := tx.LockCounter(ctx, ref.purpose, ref.key, ref.account, now)
	if err != nil || c.Count == 0 {
		return err
	}
	return tx.SaveCounter(ctx, ref.key, refund(c), now)
}
