package auth

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/identity"
	"github.com/placebrain/auth/internal/password"
)

// Sign-up claims. An unverified account is a pending claim on an address:
// whoever registered it first does not hold it. Register for the address
// makes a new claim, mailed its own code (the newest code supersedes the
// older ones), and the account's username and password change only when
// the address is verified:
//
//   - claims that all carry one password (a single one, or the same
//     person registering twice) are adopted: verifying sets the newest
//     claim's username and that password;
//   - once claims with different passwords were made, verifying proves the
//     address but adopts no password and no claim's username (the
//     address's local part is the username): the owner sets a password
//     with ResetPassword. This is not forgotten when a claim's code expires, so
//     an owner late to verify never adopts a stranger's password;
//   - an account whose latest claim is older than UsersPolicy.UnverifiedTTL
//     is deleted (Cleanup), and its address can be registered anew.
//
// This closes the pre-verification account takeover of OWASP's
// Authentication Cheat Sheet ("registering an account with someone
// else's address"): a stranger's claim can delay the owner (a reset) but
// never give the stranger the account.

// claimHash is the hash of the password of the account's latest claim.
func (a Account) claimHash() string {
	if a.ClaimPasswordHash != "" {
		return a.ClaimPasswordHash
	}
	return a.PasswordHash
}

// claimUsername is the username of the account's latest claim.
func (a Account) claimUsername() string {
	if a.ClaimPasswordHash != "" {
		return a.ClaimUsername
	}
	return a.Username
}

// verifiedCredentials is the username and password hash an unverified
// account keeps when its address is verified: its latest claim's, or, when
// its claims are contested, no password (an empty hash, which no password
// matches) and a username taken from the verified address itself
// (addressUsername), since any claim's username may be a stranger's
// choice, shown to everyone the owner shares a place with.
func verifiedCredentials(a Account) (username, passwordHash string) {
	if !a.ContestedAt.IsZero() {
		return addressUsername(a.Email), ""
	}
	return a.claimUsername(), a.claimHash()
}

// addressUsername is the username an account whose claims were contested
// gets: its address's local part, normalized as a username (see
// identity.NormalizeUsername) and cut to its maximum length, or "user"
// when the local part makes none.
func addressUsername(email string) string {
	local := email
	if i := strings.LastIndexByte(email, '@'); i >= 0 {
		local = email[:i]
	}
	if r := []rune(local); len(r) > identity.MaxUsernameRunes {
		local = string(r[:identity.MaxUsernameRunes])
	}
	if name, err := identity.NormalizeUsername(local); err == nil {
		return name
	}
	return "user"
}

// comparePassword compares pw with an account's password hash in the
// hashing pool under key (password.Hasher.Compare); an empty hash is an
// account without a password (see verifiedCredentials), which no password
// matches, after as long a comparison as any.
func (s *Service) comparePassword(ctx context.Context, key, hash, pw string) error {
	if hash == "" {
		return s.o.Passwords.CompareNone(ctx, key, pw)
	}
	return s.o.Passwords.Compare(ctx, key, hash, pw)
}

// nextClaim is the claim that Register with username name makes at now on
// the unverified account a, whose latest claim's password the new one
// matched (same) or not. A contested account stays contested.
func nextClaim(a Account, name string, same bool, now time.Time) Claim {
	c := Claim{Username: name, PasswordHash: a.claimHash(), At: now, ContestedAt: a.ContestedAt}
	if !same && c.ContestedAt.IsZero() {
		c.ContestedAt = now
	}
	return c
}

// claim makes a sign-up claim on the unverified account a for Register
// (see the claims above) and returns a's id. The new password is compared
// with the latest claim's in the hashing pool, under the account's login
// key, before the unit of work; no hash is ever made (a matching password
// has its hash, a different one is adopted by nobody), and an account that
// is contested already needs no comparison. In the unit of work the
// registration counts for its source, the account is locked and read
// again (a claim that slipped in meanwhile makes the claims contested, as
// it cannot be compared), and the claim's code is issued and mailed
// regardless of the cooldown, within the daily limits. Errors: those of
// Register.
func (s *Service) claim(ctx context.Context, a Account, name, canonical, pw string, source netip.Prefix, perSource counterRef) (uuid.UUID, error) {
	same := false
	if a.ContestedAt.IsZero() {
		switch err := s.comparePassword(ctx, s.hashKey(canonical), a.claimHash(), pw); {
		case err == nil:
			same = true
		case errors.Is(err, password.ErrMismatch):
		default:
			return uuid.Nil, s.busy(ctx, err)
		}
	}
	now := s.now()
	var throttled, contested bool
	err := s.db.InTx(ctx, func(tx Tx) error {
		var err error
		if throttled, err = s.countRegistration(ctx, tx, perSource, now); err != nil {
			return err
		}
		cur, err := tx.LockUser(ctx, a.ID)
		if err != nil {
			return err
		}
		if cur.Verified || cur.EmailCanonical != canonical {
			return ErrEmailTaken
		}
		c := nextClaim(cur, name, same && cur.claimHash() == a.claimHash(), now)
		if err := tx.RecordClaim(ctx, a.ID, c); err != nil {
			return err
		}
		reason := "claim"
		if contested = !c.ContestedAt.IsZero(); contested {
			reason = "claim_contested"
		}
		if err := s.auditTx(ctx, tx, EventRegister, a.ID, reason, now); err != nil {
			return err
		}
		_, err = s.issueCode(ctx, tx, s.verifyKind(), a.ID, canonical, source, now, true)
		return err
	})
	if throttled {
		s.audit(ctx, EventRegisterThrottled, uuid.Nil, "", now)
	}
	if err != nil {
		return uuid.Nil, err
	}
	s.o.MailQueued()
	s.o.Log.InfoContext(ctx, "sign-up claim", "user_id", a.ID, "contested", contested)
	return a.ID, nil
}
