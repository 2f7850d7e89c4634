package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/placebrain/auth/internal/testutil/smtptest"
)

// consistency is what the SQL checks found: rows a crash or a cut link
// must never leave behind.
type consistency struct {
	// Forked is the live token families with more than one unused refresh
	// token (a family is a chain, never a tree).
	Forked int
	// NoCode is the users without any verification code, NoMail those
	// without any e-mail in the outbox: Register writes the user, its code
	// and its e-mail in one transaction.
	NoCode, NoMail int
}

func (c consistency) total() int { return c.Forked + c.NoCode + c.NoMail }

func (c consistency) String() string {
	return fmt.Sprintf("%d (forked families %d, users without a code %d, users without an e-mail %d)", c.total(), c.Forked, c.NoCode, c.NoMail)
}

const (
	forkedFamiliesSQL = `SELECT COUNT(*) FROM (SELECT t.family_id FROM refresh_tokens t
JOIN token_families f ON f.id = t.family_id
WHERE f.revoked_at IS NULL AND t.used_at IS NULL
GROUP BY t.family_id HAVING COUNT(*) > 1) forked`
	usersWithoutCodeSQL = `SELECT COUNT(*) FROM users u WHERE u.deleted_at IS NULL
AND NOT EXISTS (SELECT 1 FROM otp_requests o WHERE o.user_id = u.id)`
	usersWithoutMailSQL = `SELECT COUNT(*) FROM users u WHERE u.deleted_at IS NULL
AND NOT EXISTS (SELECT 1 FROM outbox_messages m WHERE m.user_id = u.id)`
)

// checkConsistency runs the SQL checks on the database, directly (not
// through the proxy).
func checkConsistency(ctx context.Context, db *sql.DB) (consistency, error) {
	var c consistency
	for _, q := range []struct {
		sql string
		n   *int
	}{{forkedFamiliesSQL, &c.Forked}, {usersWithoutCodeSQL, &c.NoCode}, {usersWithoutMailSQL, &c.NoMail}} {
		if err := db.QueryRowContext(ctx, q.sql).Scan(q.n); err != nil {
			return c, fmt.Errorf("consistency check: %w", err)
		}
	}
	return c, nil
}

// outboxRow is one row of outbox_messages as the mail accounting sees it.
type outboxRow struct {
	Recipient, Status string
}

func outboxRows(ctx context.Context, db *sql.DB) ([]outboxRow, error) {
	rows, err := db.QueryContext(ctx, `SELECT recipient, status FROM outbox_messages`)
	if err != nil {
		return nil, fmt.Errorf("outbox rows: %w", err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		if err := rows.Scan(&r.Recipient, &r.Status); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// mailCount compares the outbox with what the SMTP server received.
type mailCount struct {
	Rows, Sent, Pending, Failed int // outbox rows by status
	Received                    int // messages at the SMTP server
	// Distinct is the different messages received: by recipient and code.
	Distinct int
	// Duplicates is Received - Distinct: copies of a message (same
	// recipient and code) received more than once; SameID of them carry
	// the Message-ID of the first copy, so a relay could drop them.
	Duplicates, SameID int
	// Lost is rows marked sent whose message never arrived: per recipient,
	// sent rows beyond the distinct messages received.
	Lost int
	// Unrecorded is pending rows whose message arrived (per recipient,
	// distinct messages beyond the sent rows): a sender died between the
	// relay's answer and recording it, so the row will be sent again.
	// Undelivered is the other pending rows.
	Unrecorded, Undelivered int
}

func (m mailCount) String() string {
	return fmt.Sprintf("rows %d (sent %d, pending %d: %d of them received, failed %d), received %d, lost %d, duplicated %d (%d with the same Message-ID)",
		m.Rows, m.Sent, m.Pending, m.Unrecorded, m.Failed, m.Received, m.Lost, m.Duplicates, m.SameID)
}

// received is one message at the SMTP server, reduced to what the
// accounting needs.
type received struct {
	To, Code, MessageID string
	At                  time.Time
}

func receivedOf(msgs []smtptest.Message) []received {
	out := make([]received, 0, len(msgs))
	for _, m := range msgs {
		r := received{Code: codeRE.FindString(string(m.Email.Text)), MessageID: m.Email.Headers.Get("Message-Id"), At: m.Received}
		if len(m.To) > 0 {
			r.To = m.To[0]
		}
		out = append(out, r)
	}
	return out
}

// countMail does the accounting: a message is identified by recipient and
// code (a code is mailed once per row), its copies compared by Message-ID.
func countMail(rows []outboxRow, msgs []received) mailCount {
	var m mailCount
	sentTo, pendingTo := map[string]int{}, map[string]int{}
	for _, r := range rows {
		m.Rows++
		switch r.Status {
		case "sent":
			m.Sent++
			sentTo[r.Recipient]++
		case "pending":
			m.Pending++
			pendingTo[r.Recipient]++
		case "failed":
			m.Failed++
		}
	}
	firstID := map[string]string{} // recipient|code -> Message-ID of the first copy
	distinctTo := map[string]int{}
	for _, r := range msgs {
		m.Received++
		k := r.To + "|" + r.Code
		id, seen := firstID[k]
		if !seen {
			firstID[k] = r.MessageID
			distinctTo[r.To]++
			m.Distinct++
			continue
		}
		m.Duplicates++
		if id != "" && id == r.MessageID {
			m.SameID++
		}
	}
	for to, n := range sentTo {
		m.Lost += max(0, n-distinctTo[to])
	}
	for to, n := range pendingTo {
		m.Unrecorded += min(n, max(0, distinctTo[to]-sentTo[to]))
	}
	m.Undelivered = m.Pending - m.Unrecorded
	return m
}

// mailAccounting reads the outbox and the relay's messages.
func (h *harness) mailAccounting(ctx context.Context) (mailCount, error) {
	rows, err := outboxRows(ctx, h.db)
	if err != nil {
		return mailCount{}, err
	}
	return countMail(rows, receivedOf(h.messages())), nil
}

// drain waits up to d until no outbox row is pending.
func (h *harness) drain(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		var n int
		if err := h.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox_messages WHERE status = 'pending'`).Scan(&n); err != nil {
			return
		}
		if n == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
