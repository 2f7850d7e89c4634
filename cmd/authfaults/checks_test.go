package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/ent/outboxmessage"
	"github.com/placebrain/auth/internal/testutil/testdb"
)

func random32() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// seedUser writes a user with its code and e-mail, as Register does.
func seedUser(t *testing.T, c *ent.Client, email string) *ent.User {
	t.Helper()
	ctx := context.Background()
	u := c.User.Create().SetUsername("u").SetEmail(email).SetEmailNormalized(email).SetPasswordHash("x").SaveX(ctx)
	c.OtpRequest.Create().SetUserID(u.ID).SetCodeHmac(random32()).SetExpiresAt(time.Now().Add(time.Hour)).ExecX(ctx)
	c.OutboxMessage.Create().SetUserID(u.ID).SetRecipient(email).SetTemplate("otp").ExecX(ctx)
	return u
}

// seedFamily writes a live token family holding unused unused tokens
// after one used one.
func seedFamily(t *testing.T, c *ent.Client, u *ent.User, unused int) {
	t.Helper()
	ctx := context.Background()
	f := c.TokenFamily.Create().SetUserID(u.ID).SaveX(ctx)
	exp := time.Now().Add(time.Hour)
	c.RefreshToken.Create().SetUserID(u.ID).SetFamilyID(f.ID).SetTokenHash(random32()).SetExpiresAt(exp).SetUsedAt(time.Now()).ExecX(ctx)
	for range unused {
		c.RefreshToken.Create().SetUserID(u.ID).SetFamilyID(f.ID).SetTokenHash(random32()).SetExpiresAt(exp).ExecX(ctx)
	}
}

// TestCheckConsistency seeds a consistent database, then one bad row of
// each kind, and expects each check to find exactly its own.
func TestCheckConsistency(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t)
	c := db.Ent
	good := seedUser(t, c, "good@example.com")
	seedFamily(t, c, good, 1)
	revoked := c.TokenFamily.Create().SetUserID(good.ID).SetRevokedAt(time.Now()).SaveX(ctx)
	for range 2 { // a revoked family may keep unused tokens
		c.RefreshToken.Create().SetUserID(good.ID).SetFamilyID(revoked.ID).SetTokenHash(random32()).SetExpiresAt(time.Now().Add(time.Hour)).ExecX(ctx)
	}
	got, err := checkConsistency(ctx, db.SQL)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(consistency{}, got); diff != "" {
		t.Fatalf("consistent database (-want +got):\n%s", diff)
	}

	seedFamily(t, c, good, 2) // forked: two unused tokens in a live family
	c.User.Create().SetUsername("bare").SetEmail("bare@example.com").SetEmailNormalized("bare@example.com").SetPasswordHash("x").ExecX(ctx)
	got, err = checkConsistency(ctx, db.SQL)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(consistency{Forked: 1, NoCode: 1, NoMail: 1}, got); diff != "" {
		t.Errorf("one bad row of each kind (-want +got):\n%s", diff)
	}
	if got.total() != 3 {
		t.Errorf("total = %d, want 3", got.total())
	}
}

// TestMailAccounting counts the outbox of a real database against
// received messages: copies with the first copy's Message-ID and with
// another, a row marked sent whose message never came, and rows pending
// (one whose message arrived all the same) and failed.
func TestMailAccounting(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t)
	c := db.Ent
	for _, r := range []struct {
		to     string
		status outboxmessage.Status
	}{
		{"a@example.com", outboxmessage.StatusSent},
		{"a@example.com", outboxmessage.StatusSent}, // a second code to a
		{"b@example.com", outboxmessage.StatusSent},
		{"c@example.com", outboxmessage.StatusSent},    // never received: lost
		{"d@example.com", outboxmessage.StatusPending}, // never received: undelivered
		{"b@example.com", outboxmessage.StatusPending}, // received, not recorded
		{"e@example.com", outboxmessage.StatusFailed},
	} {
		c.OutboxMessage.Create().SetRecipient(r.to).SetTemplate("otp").SetStatus(r.status).ExecX(ctx)
	}
	rows, err := outboxRows(ctx, db.SQL)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []received{
		{To: "a@example.com", Code: "111111", MessageID: "<1@x>"},
		{To: "a@example.com", Code: "222222", MessageID: "<2@x>"},
		{To: "a@example.com", Code: "111111", MessageID: "<1@x>"}, // resent, same Message-ID
		{To: "b@example.com", Code: "333333", MessageID: "<3@x>"},
		{To: "b@example.com", Code: "333333", MessageID: "<4@x>"}, // resent under a new Message-ID
		{To: "b@example.com", Code: "444444", MessageID: "<5@x>"}, // its row still pending
	}
	want := mailCount{Rows: 7, Sent: 4, Pending: 2, Failed: 1, Received: 6, Distinct: 4, Duplicates: 2, SameID: 1, Lost: 1,
		Unrecorded: 1, Undelivered: 1}
	if diff := cmp.Diff(want, countMail(rows, msgs)); diff != "" {
		t.Errorf("accounting (-want +got):\n%s", diff)
	}
}

// msg is one PostgreSQL protocol message: type, int32 length, body.
func msg(typ byte, parts ...string) []byte {
	body := strings.Join(parts, "")
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

func chunk(msgs ...[]byte) []byte { return bytes.Join(msgs, nil) }

// TestCommitPoints feeds the COMMIT toxic's protocol follower the
// sequences pgx sends and PostgreSQL answers, and expects it to see a
// commit exactly where a transaction commits.
func TestCommitPoints(t *testing.T) {
	sync := msg('S')
	parse := func(name, q string) []byte { return msg('P', name, "\x00", q, "\x00", "\x00\x00") }
	bind := func(stmt string) []byte { return msg('B', "\x00", stmt, "\x00", "\x00\x00\x00\x00\x00\x00") }
	exec := msg('E', "\x00", "\x00\x00\x00\x00")
	query := func(q string) []byte { return msg('Q', q, "\x00") }
	for _, tc := range []struct {
		name   string
		chunks [][]byte
		want   []bool // per chunk
	}{
		{"explicit transaction", [][]byte{query("begin isolation level read committed"), chunk(parse("s1", "UPDATE x SET y = $1"), bind("s1"), exec, sync), query("commit")},
			[]bool{false, false, true}},
		{"a write on its own", [][]byte{chunk(parse("s2", "WITH t AS (SELECT 1) , u AS (UPDATE x SET y = 1) SELECT 1"), bind("s2"), exec, sync)}, []bool{true}},
		{"the same prepared write again", [][]byte{chunk(parse("s2", "WITH u AS (INSERT INTO x VALUES (1)) SELECT 1"), bind("s2"), exec, sync), chunk(bind("s2"), exec, sync)},
			[]bool{true, true}},
		{"a read on its own", [][]byte{chunk(parse("s3", "SELECT * FROM users WHERE id = $1"), bind("s3"), exec, sync)}, []bool{false}},
		{"a ping", [][]byte{query("-- ping")}, []bool{false}},
		{"rolled back", [][]byte{query("begin"), chunk(parse("", "DELETE FROM x"), bind(""), exec, sync), query("rollback")}, []bool{false, false, false}},
		{"a startup message", [][]byte{{0, 0, 0, 8, 4, 210, 22, 47}}, []bool{false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := new(commitCut).NewState().(*pgConn)
			for i, ch := range tc.chunks {
				if got := c.commitsUpstream(ch); got != tc.want[i] {
					t.Errorf("chunk %d: commit point %v, want %v", i, got, tc.want[i])
				}
			}
		})
	}
	ready := func(status string) []byte { return msg('Z', status) }
	for _, tc := range []struct {
		name  string
		chunk []byte
		want  bool
	}{
		{"COMMIT answered", chunk(msg('C', "COMMIT\x00"), ready("I")), true},
		{"a statement on its own answered", chunk(msg('2'), msg('D', "\x00\x01"), msg('C', "SELECT 1\x00"), ready("I")), true},
		{"a statement in a transaction", chunk(msg('C', "UPDATE 1\x00"), ready("T")), false},
		{"a ping answered", chunk(msg('I'), ready("I")), false},
		{"a truncated chunk", chunk(msg('C', "COMMIT\x00"), ready("I"))[:8], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := commitsDownstream(tc.chunk); got != tc.want {
				t.Errorf("commitsDownstream = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHealthWrong(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ss := []sample{{at(0), true}, {at(500), true}, {at(1200), false}, {at(5000), false}, {at(5600), false}, {at(6100), true}}
	down, up := at(100), at(5100)
	wd, wu := healthWrong(ss, down, up, at(5300))
	if wd != 1100*time.Millisecond || wu != 800*time.Millisecond {
		t.Errorf("healthWrong = %v, %v; want 1.1s, 800ms", wd, wu)
	}
	// Health serving again before the first success is right.
	ss = []sample{{at(0), true}, {at(200), false}, {at(5200), true}, {at(5400), true}}
	if _, wu := healthWrong(ss, down, up, at(5300)); wu != 0 {
		t.Errorf("serving before the first success: %v, want 0", wu)
	}
	// Never NOT_SERVING: wrong for the whole outage.
	ss = []sample{{at(0), true}, {at(3000), true}}
	if wd, _ := healthWrong(ss, down, up, time.Time{}); wd != 5*time.Second {
		t.Errorf("never NOT_SERVING: %v, want 5s", wd)
	}
}
