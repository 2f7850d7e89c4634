package auth

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/password"
)

// LoginPolicy limits login attempts (OWASP Authentication Cheat Sheet,
// "Account Lockout"; NIST SP 800-63B §5.2.2, "Rate Limiting"). Every
// attempt is counted before its password is checked, so concurrent
// guesses cannot outrun a limit, and an attempt whose password was right
// is taken back.
//
//   - Per pair: MaxFailures attempts within Window from one source for one
//     account lock that pair for Lockout. When the gateway says no source,
//     the pair is the account alone: the per-account lock of earlier
//     versions, kept as the fallback. A stranger's failures therefore lock
//     only the stranger's own source, never the owner out.
//   - Per account: attempts from sources that have not signed in to the
//     account before (and from unknown sources) are capped at
//     AccountDailyFailures a day whatever the sources, and past
//     MaxFailures of them in the day, each such attempt from a known
//     source waits AccountDelay before its password is checked.
//   - A source the account signed in from within TrustedFor is the
//     owner's: it is neither slowed nor capped per account (its own pair
//     still locks like any other).
type LoginPolicy struct {
	// MaxFailures attempts per pair within Window lock the pair for
	// Lockout. Zero disables the pair limit.
	MaxFailures int
	Window      time.Duration
	Lockout     time.Duration
	// AccountDailyFailures caps an account's attempts from untrusted
	// sources per 24 hours. Zero disables the cap.
	AccountDailyFailures int
	// AccountDelay slows untrusted attempts past MaxFailures a day.
	AccountDelay time.Duration
	// TrustedFor is how long a successful sign-in makes its source the
	// owner's.
	TrustedFor time.Duration
}

func (p LoginPolicy) pair() Limit {
	return Limit{Max: p.MaxFailures, Window: p.Window, Lock: p.Lockout}
}

func (p LoginPolicy) account() Limit {
	return Limit{Max: p.AccountDailyFailures, Window: 24 * time.Hour}
}

// trusted reports whether a source whose last sign-in to the account is
// signedIn (zero: never) is the owner's at now.
func (p LoginPolicy) trusted(signedIn, now time.Time) bool {
	return !signedIn.IsZero() && now.Sub(signedIn) < p.TrustedFor
}

// delay is how long an attempt waits before its password is checked: past
// MaxFailures untrusted attempts in the day (counted, this one included),
// AccountDelay for a known, untrusted source; nothing otherwise.
func (p LoginPolicy) delay(accountAttempts int, trusted, knownSource bool) time.Duration {
	if knownSource && !trusted && accountAttempts > p.MaxFailures {
		return p.AccountDelay
	}
	return 0
}

// loginGate is what admitting a login attempt decided.
type loginGate struct {
	pair, account counterRef
	trusted       bool
	// counted says which counters counted the attempt, to resolve or
	// take it back.
	pairCounted, accountCounted bool
	delay                       time.Duration
	// hashKey shares the hashing pool fairly between accounts.
	hashKey string
}

// maxPendingWaits bounds how many times an attempt waits for the pair's
// running attempts (each about one comparison) before it is refused.
const maxPendingWaits = 20

// errWaitPending says an attempt must wait for the pair's running ones.
var errWaitPending = errors.New("wait for the running attempts")

// admitLogin counts a login attempt for the canonical address from source
// (none: invalid prefix) before the password is checked, in one unit of
// work holding the counters locked. It returns ErrLoginThrottled (with the
// wait) when a limit refuses the attempt; the refusal that sets a lock is
// audited, the ones that find it set are not. An attempt that finds the
// pair's limit reached by attempts still running waits for them (they may
// all be the owner's, right) for at most maxPendingWaits comparisons.
func (s *Service) admitLogin(ctx context.Context, canonical string, source netip.Prefix, userID uuid.UUID, now time.Time) (loginGate, error) {
	p := s.o.Login
	g := loginGate{
		pair:    s.counter(PurposeLogin, canonical, source),
		account: s.counter(PurposeLoginAccount, canonical, netip.Prefix{}),
		hashKey: s.hashKey(canonical),
	}
	if source.IsValid() {
		c, ok, err := s.db.ReadCounter(ctx, s.counter(PurposeSignedIn, canonical, source).key)
		if err != nil {
			return g, err
		}
		g.trusted = ok && p.trusted(c.Last, now)
	}
	var until time.Time
	var locked bool
	for waits := 0; ; waits++ {
		err := s.db.InTx(ctx, func(tx Tx) error {
			c, err := tx.LockCounter(ctx, g.pair.purpose, g.pair.key, g.pair.account, now)
			if err != nil {
				return err
			}
			next, u, l, wait := p.pair().admitPending(c, now)
			if wait {
				return errWaitPending
			}
			if until, locked = u, l; next != c {
				if err := tx.SaveCounter(ctx, g.pair.key, next, now); err != nil {
					return err
				}
			}
			if !until.IsZero() {
				return nil
			}
			g.pairCounted = p.pair().Max > 0
			if g.trusted {
				return nil
			}
			if c, until, locked, err = takeIn(ctx, tx, g.account, p.account(), time.Time{}, now); err != nil || !until.IsZero() {
				if err == nil && g.pairCounted {
					// The pair admitted an attempt that will not run.
					g.pairCounted = false
					err = resolveIn(ctx, tx, g.pair, refunded, now)
				}
				return err
			}
			g.accountCounted = p.account().Max > 0
			g.delay = p.delay(c.Count, false, source.IsValid())
			return nil
		})
		if !errors.Is(err, errWaitPending) {
			if err != nil {
				return g, err
			}
			break
		}
		if waits == maxPendingWaits {
			return g, withRetry(ErrLoginThrottled, time.Second)
		}
		if err := s.o.Passwords.WaitLikeCompare(ctx); err != nil {
			return g, err
		}
	}
	if !until.IsZero() {
		if locked {
			s.audit(ctx, EventLoginThrottled, userID, "", now)
		}
		return g, withRetry(ErrLoginThrottled, until.Sub(now))
	}
	return g, nil
}

// attemptOutcome is what a login attempt admitted by the counters counts
// as, from its password comparison's result cmp: succeeded (nil), failed
// (password.ErrMismatch: a comparison ran and said no, whether or not the
// caller is still there), or refunded for anything else, where no
// comparison ran to an answer: the pool refused or shed the job
// (password.ErrBusy), the caller went away while it was queued (the
// context's error: a job a worker took runs to the end and answers), or
// the stored hash is unreadable. Only a comparison that answered is a
// guess; one taken back leaves the counters as if it never came, so a
// flood of cancelled or refused attempts cannot lock the owner out, while
// every answered guess counts (OWASP Authentication Cheat Sheet, "Account
// Lockout"). A failure of the database before the comparison (reading the
// account, counting the attempt) commits nothing and so counts nothing.
func attemptOutcome(cmp error) outcome {
	switch {
	case cmp == nil:
		return succeeded
	case errors.Is(cmp, password.ErrMismatch):
		return failed
	}
	return refunded
}

// resolveIn records the outcome of an attempt the counter admitted.
func resolveIn(ctx context.Context, tx Tx, ref counterRef, o outcome, now time.Time) error {
	c, err := tx.LockCounter(ctx, ref.purpose, ref.key, ref.account, now)
	if err != nil {
		return err
	}
	return tx.SaveCounter(ctx, ref.key, c.resolve(o), now)
}

// loginRefund takes back an attempt whose password was never checked (the
// pool was busy, the caller went away).
func (s *Service) loginRefund(ctx context.Context, g loginGate, now time.Time) {
	ctx = context.WithoutCancel(ctx)
	err := s.db.InTx(ctx, func(tx Tx) error {
		if g.pairCounted {
			if err := resolveIn(ctx, tx, g.pair, refunded, now); err != nil {
				return err
			}
		}
		if g.accountCounted {
			return refundIn(ctx, tx, g.account, now)
		}
		return nil
	})
	if err != nil {
		s.o.Log.ErrorContext(ctx, "login: refund an attempt", "error", err)
	}
}

// loginFailed counts a failed attempt on its pair and records the event.
func (s *Service) loginFailed(ctx context.Context, g loginGate, userID uuid.UUID, reason string, now time.Time) {
	ctx = context.WithoutCancel(ctx)
	err := s.db.InTx(ctx, func(tx Tx) error {
		if g.pairCounted {
			if err := resolveIn(ctx, tx, g.pair, failed, now); err != nil {
				return err
			}
		}
		return s.auditTx(ctx, tx, EventLoginFailed, userID, reason, now)
	})
	if err != nil {
		s.o.Log.ErrorContext(ctx, "login: record a failed attempt", "user_id", userID, "error", err)
	}
}

// loginSucceeded forgets the pair's failures, takes the attempt back from
// the account's count and, when trust holds (a verified account), records
// that the source signed in (so it is the owner's from now on).
func (s *Service) loginSucceeded(ctx context.Context, g loginGate, canonical string, source netip.Prefix, now time.Time, trust bool) error {
	return s.db.InTx(ctx, func(tx Tx) error {
		if g.pairCounted {
			if err := resolveIn(ctx, tx, g.pair, succeeded, now); err != nil {
				return err
			}
		}
		if g.accountCounted {
			if err := refundIn(ctx, tx, g.account, now); err != nil {
				return err
			}
		}
		if !trust || !source.IsValid() {
			return nil
		}
		ref := s.counter(PurposeSignedIn, canonical, source)
		if _, err := tx.LockCounter(ctx, ref.purpose, ref.key, ref.account, now); err != nil {
			return err
		}
		return tx.SaveCounter(ctx, ref.key, Counter{WindowStart: now, Last: now}, now)
	})
}
