package main

import (
	"context"
	"database/sql"
	"net/url"
	"strings"
	"testing"

	"entgo.io/ent/dialect"

	"github.com/placebrain/auth/internal/testutil/testdb"
)

// TestCommitCut runs transactions on PostgreSQL through the embedded
// proxy with the commit_cut toxic armed once per stream, for an explicit
// transaction and a single write: cut upstream, the COMMIT (or the write)
// never arrives and the row is not there; cut downstream, the row is
// committed while the client gets an error. Unarmed, commits pass.
func TestCommitCut(t *testing.T) {
	testdb.SkipUnless(t, dialect.Postgres)
	ctx := context.Background()
	direct, dbURL := testdb.OpenWithURL(t)
	if _, err := direct.SQL.ExecContext(ctx, `CREATE TABLE cut_probe (x int)`); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := startProxy(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Stop)
	u.Host = proxy.Listen
	via, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { via.Close() })
	for _, stream := range []string{"upstream", "downstream"} {
		if _, err := proxy.Toxics.AddToxicJson(strings.NewReader(commitCutToxic(stream))); err != nil {
			t.Fatal(err)
		}
	}
	insert := func(x int) error {
		tx, err := via.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO cut_probe VALUES ($1)`, x); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	count := func(x int) int {
		var n int
		if err := direct.SQL.QueryRowContext(ctx, `SELECT COUNT(*) FROM cut_probe WHERE x = $1`, x).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	single := func(x int) error { // a write in an implicit transaction
		_, err := via.ExecContext(ctx, `INSERT INTO cut_probe VALUES ($1)`, x)
		return err
	}
	for i, tc := range []struct {
		stream    string // "" for none armed
		write     func(int) error
		wantErr   bool
		wantCount int
	}{
		{"", insert, false, 1},
		{"upstream", insert, true, 0},
		{"downstream", insert, true, 1},
		{"", insert, false, 1},
		{"upstream", single, true, 0},
		{"downstream", single, true, 1},
		{"", single, false, 1},
	} {
		before := commitCuts.Load()
		armCommitCut(tc.stream)
		err := tc.write(i)
		armCommitCut("")
		if (err != nil) != tc.wantErr {
			t.Errorf("%d, cut %q: commit error %v, want an error: %v", i, tc.stream, err, tc.wantErr)
		}
		if got := count(i); got != tc.wantCount {
			t.Errorf("%d, cut %q: %d rows committed, want %d", i, tc.stream, got, tc.wantCount)
		}
		if cut := commitCuts.Load() - before; cut != map[bool]int64{true: 1, false: 0}[tc.wantErr] {
			t.Errorf("%d, cut %q: %d COMMITs cut", i, tc.stream, cut)
		}
	}
}
