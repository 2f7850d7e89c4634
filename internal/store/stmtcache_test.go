package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"modernc.org/sqlite"

	"github.com/placebrain/auth/internal/testutil/sqlcount"
)

// openCounted opens a SQLite file through the statement cache, with the
// driver's own calls (below the cache) counted.
func openCounted(t *testing.T, size int) (*sql.DB, *sqlcount.Counter) {
	t.Helper()
	target, err := sqliteTarget(filepath.Join(t.TempDir(), "cache.db"))
	if err != nil {
		t.Fatal(err)
	}
	var counter sqlcount.Counter
	db := sql.OpenDB(stmtCache{next: counter.Wrap(dsnConnector{dsn: target.DSN, drv: &sqlite.Driver{}}), size: size})
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return db, &counter
}

func count(calls []string, kind string) int {
	n := 0
	for _, c := range calls {
		if c == kind {
			n++
		}
	}
	return n
}

// Each statement is compiled once per connection and then reused, in and
// out of transactions; what it returns is unchanged.
func TestStatementCacheReuses(t *testing.T) {
	db, counter := openCounted(t, stmtCacheSize)
	ctx := counter.Mark(context.Background())
	for i := range 50 {
		if _, err := db.ExecContext(ctx, "INSERT INTO t (id, v) VALUES (?, ?)", i, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var v string
		if err := tx.QueryRowContext(ctx, "SELECT v FROM t WHERE id = ?", i).Scan(&v); err != nil || v != fmt.Sprint("v", i) {
			t.Fatalf("read %d: %q, %v", i, v, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	calls := counter.Calls()
	if p, q, e := count(calls, "prepare"), count(calls, "query"), count(calls, "exec"); p != 2 || q != 0 || e != 0 {
		t.Errorf("driver calls: %d prepares, %d queries, %d execs; want 2 prepares and every statement run through them", p, q, e)
	}
}

// A statement whose rows are still open is not shared: the same text run
// meanwhile gets a statement of its own, and both read their own rows.
func TestStatementCacheBusy(t *testing.T) {
	db, _ := openCounted(t, stmtCacheSize)
	for i := range 3 {
		if _, err := db.Exec("INSERT INTO t (id, v) VALUES (?, ?)", i, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	const q = "SELECT id FROM t WHERE id >= ? ORDER BY id"
	outer, err := tx.Query(q, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]int
	for outer.Next() {
		var id int
		if err := outer.Scan(&id); err != nil {
			t.Fatal(err)
		}
		inner, err := tx.Query(q, id)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int
		for inner.Next() {
			var x int
			inner.Scan(&x)
			ids = append(ids, x)
		}
		inner.Close()
		got = append(got, append([]int{id}, ids...))
	}
	if err := outer.Err(); err != nil {
		t.Fatal(err)
	}
	outer.Close()
	want := [][]int{{0, 0, 1, 2}, {1, 1, 2}, {2, 2}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("nested reads = %v, want %v", got, want)
	}
}

// The cache holds at most its size; the least recently used statements
// leave it, and are prepared again when next used.
func TestStatementCacheBound(t *testing.T) {
	db, counter := openCounted(t, 4)
	ctx := counter.Mark(context.Background())
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	run := func(n int) {
		var x int
		if err := conn.QueryRowContext(ctx, fmt.Sprintf("SELECT %d", n)).Scan(&x); err != nil || x != n {
			t.Fatalf("SELECT %d = %d, %v", n, x, err)
		}
	}
	for n := range 10 {
		run(n)
	}
	var size int
	conn.Raw(func(c any) error {
		size = len(c.(*cachingConn).stmts)
		return nil
	})
	if size != 4 {
		t.Errorf("cache holds %d statements, want 4", size)
	}
	counter.Reset()
	run(9) // still cached
	run(0) // evicted long ago
	if got := counter.Calls(); !slices.Equal(got, []string{"prepare"}) {
		t.Errorf("driver calls %v, want one prepare (for the evicted statement)", got)
	}
}
