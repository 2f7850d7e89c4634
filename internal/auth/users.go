package auth

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/identity"
	"github.com/placebrain/auth/internal/password"
)

// UserRecord is one line of `authd users import` and `authd users export`:
// a JSON object per line (JSON Lines).
type UserRecord struct {
	// ID is the user's UUID, kept as it is (other services store it).
	ID       string `json:"id"`
	Username string `json:"username"`
	Email    string `json:"email"`
	// PasswordHash is a bcrypt hash ($2a$, $2b$ or $2y$), kept as it is.
	PasswordHash string `json:"password_hash"`
	IsVerified   bool   `json:"is_verified"`
	// CreatedAt is RFC 3339.
	CreatedAt string `json:"created_at"`
}

// ImportOutcome is what importing one line did.
type ImportOutcome string

// The import outcomes.
const (
	// Imported: the user was added.
	Imported ImportOutcome = "imported"
	// Replaced: the user was added in place of an unverified account made
	// in authd with the same address (which is deleted).
	Replaced ImportOutcome = "replaced"
	// AlreadyImported: the same id with the same address is there; nothing
	// changes (a re-run imports nothing twice).
	AlreadyImported ImportOutcome = "already imported"
	// Skipped: not imported; the reason says why.
	Skipped ImportOutcome = "skipped"
)

// ImportResult is the outcome of one line.
type ImportResult struct {
	Line    int
	ID      string
	Outcome ImportOutcome
	// Reason says why a line was skipped.
	Reason string
}

// ImportSummary counts the outcomes.
type ImportSummary map[ImportOutcome]int

// errDryRun rolls a dry run's unit of work back.
var errDryRun = errors.New("dry run")

// MaxImportLine bounds one line of an import file (bytes).
const MaxImportLine = 64 << 10

// ImportUsers imports the users in r (UserRecord per line) into db with
// their ids and password hashes, reporting every line's outcome to report
// (lines not imported with their reason, never merged silently):
//
//   - a line that does not parse, or whose id, username, address or
//     created_at is invalid, or whose hash is not bcrypt, is skipped;
//   - an address that appears on an earlier line (in any case) is skipped;
//   - the same id with the same canonical address already in the database
//     is already imported;
//   - the id with another address, or the address with another id, is a
//     conflict, skipped: unless the address belongs to an unverified
//     account made in authd (not imported, not deleted), which the imported
//     user replaces, so that registering addresses ahead of a cutover can
//     neither block nor capture them.
//
// Each line is its own unit of work, so an import can be run again after a
// failure. With dryRun nothing is written and the outcomes are what would
// happen. now is the import's time (imported_at).
func ImportUsers(ctx context.Context, db Store, r io.Reader, dryRun bool, now time.Time, report func(ImportResult)) (ImportSummary, error) {
	sum := ImportSummary{}
	seen := map[string]int{} // canonical address -> line
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxImportLine)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		res := importLine(ctx, db, sc.Bytes(), line, seen, dryRun, now)
		if res.err != nil {
			return sum, fmt.Errorf("line %d: %w", line, res.err)
		}
		sum[res.Outcome]++
		report(res.ImportResult)
	}
	if err := sc.Err(); err != nil {
		return sum, fmt.Errorf("read the import: %w", err)
	}
	return sum, nil
}

type lineResult struct {
	ImportResult
	err error
}

// importLine imports one line.
func importLine(ctx context.Context, db Store, raw []byte, line int, seen map[string]int, dryRun bool, now time.Time) lineResult {
	skip := func(id, reason string) lineResult {
		return lineResult{ImportResult: ImportResult{Line: line, ID: id, Outcome: Skipped, Reason: reason}}
	}
	var rec UserRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return skip("", "not a JSON object: "+err.Error())
	}
	a, reason := rec.account()
	if reason != "" {
		return skip(rec.ID, reason)
	}
	if first, ok := seen[a.EmailCanonical]; ok {
		return skip(rec.ID, fmt.Sprintf("the address is already on line %d", first))
	}
	seen[a.EmailCanonical] = line
	outcome := Imported
	err := db.InTx(ctx, func(tx Tx) error {
		byID, err := tx.UserByID(ctx, a.ID)
		switch {
		case err == nil && byID.EmailCanonical == a.EmailCanonical:
			outcome = AlreadyImported
			return nil
		case err == nil:
			return errConflict("the id belongs to an account with another address")
		case !errors.Is(err, ErrUserNotFound):
			return err
		}
		held, err := tx.UserByEmail(ctx, a.EmailCanonical)
		switch {
		case errors.Is(err, ErrUserNotFound):
		case err != nil:
			return err
		case held.Verified || held.Imported:
			return errConflict("the address belongs to another account")
		default:
			// An unverified account made in authd: a claim on the address
			// that the imported owner replaces.
			if _, err := tx.DeleteUnverifiedUser(ctx, held.ID); err != nil {
				return err
			}
			outcome = Replaced
		}
		if err := tx.InsertImportedUser(ctx, a, now); err != nil {
			if errors.Is(err, ErrEmailTaken) || errors.Is(err, ErrUserExists) {
				return errConflict("the id or address was taken meanwhile")
			}
			return err
		}
		if err := recordAuditTx(ctx, tx, EventUserImported, a.ID, string(outcome), now); err != nil {
			return err
		}
		if dryRun {
			return errDryRun
		}
		return nil
	})
	var c conflict
	switch {
	case errors.As(err, &c):
		return skip(rec.ID, string(c))
	case err != nil && !errors.Is(err, errDryRun):
		return lineResult{err: err}
	}
	return lineResult{ImportResult: ImportResult{Line: line, ID: rec.ID, Outcome: outcome}}
}

// conflict is a line that clashes with the database.
type conflict string

func (c conflict) Error() string { return string(c) }

func errConflict(reason string) error { return conflict(reason) }

// account checks a record; reason says what is wrong, "" when nothing is.
func (rec UserRecord) account() (ImportedAccount, string) {
	id, err := uuid.Parse(rec.ID)
	if err != nil {
		return ImportedAccount{}, "id is not a UUID"
	}
	name, err := identity.NormalizeUsername(rec.Username)
	if err != nil {
		return ImportedAccount{}, "username: " + err.Error()
	}
	addr, err := identity.NormalizeEmail(rec.Email)
	if err != nil {
		return ImportedAccount{}, "email: " + err.Error()
	}
	if err := password.CheckBcrypt(rec.PasswordHash); err != nil {
		return ImportedAccount{}, "password_hash: " + err.Error()
	}
	created, err := time.Parse(time.RFC3339Nano, rec.CreatedAt)
	if err != nil {
		return ImportedAccount{}, "created_at is not an RFC 3339 time"
	}
	return ImportedAccount{ID: id, Username: name, Email: addr.Address, EmailCanonical: addr.Canonical,
		PasswordHash: rec.PasswordHash, Verified: rec.IsVerified, CreatedAt: created.UTC()}, ""
}

// ExportUsers writes every account that is not a tombstone to w, one
// UserRecord per line, password hashes included: the format ImportUsers
// reads. It returns how many it wrote.
func ExportUsers(ctx context.Context, db Store, w io.Writer) (int, error) {
	enc := json.NewEncoder(w)
	n := 0
	err := db.EachUser(ctx, func(a Account) error {
		n++
		return enc.Encode(UserRecord{ID: a.ID.String(), Username: a.Username, Email: a.Email,
			PasswordHash: a.PasswordHash, IsVerified: a.Verified, CreatedAt: a.CreatedAt.UTC().Format(time.RFC3339Nano)})
	})
	return n, err
}
