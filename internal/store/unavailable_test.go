package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"

	"github.com/placebrain/auth/internal/auth"
)

func TestIsUnavailable(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("store: x: %w", &pgconn.PgError{Code: code}) }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"admin shutdown 57P01", pg("57P01"), true},
		{"crash shutdown 57P02", pg("57P02"), true},
		{"cannot connect now 57P03", pg("57P03"), true},
		{"statement timeout 57014", pg("57014"), true},
		{"connection failure 08006", pg("08006"), true},
		{"too many connections 53300", pg("53300"), true},
		{"unique violation 23505", pg("23505"), false},
		{"syntax error 42601", pg("42601"), false},
		{"connect error", &pgconn.ConnectError{}, true},
		{"EOF", fmt.Errorf("read: %w", io.EOF), true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"bad conn", driver.ErrBadConn, true},
		{"conn done", sql.ErrConnDone, true},
		{"pgx conn closed", pgconn.ErrConnClosed, true},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{"reset", syscall.ECONNRESET, true},
		{"no rows", sql.ErrNoRows, false},
		{"domain error", auth.ErrUserNotFound, false},
		{"plain error", errors.New("boom"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsUnavailable(tc.err); got != tc.want {
				t.Errorf("IsUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// A SQLite write that cannot get the write lock within the busy timeout
// fails with SQLITE_BUSY: unavailable.
func TestIsUnavailableSQLiteBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.db")
	open := func() *sql.DB {
		db := sql.OpenDB(dsnConnector{dsn: "file:" + path + "?_pragma=busy_timeout(0)&_txlock=immediate", drv: &sqlite.Driver{}})
		t.Cleanup(func() { db.Close() })
		return db
	}
	a, b := open(), open()
	if _, err := a.Exec("CREATE TABLE t (x int)"); err != nil {
		t.Fatal(err)
	}
	tx, err := a.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	_, err = b.Exec("INSERT INTO t VALUES (1)")
	if err == nil || !IsUnavailable(err) {
		t.Fatalf("write while another holds the lock: %v; want an unavailable error", err)
	}
}

// unavailable wraps a database failure with auth.ErrUnavailable, but not
// the failure of a request its caller cancelled, nor other errors.
func TestUnavailableWrap(t *testing.T) {
	db := &DB{}
	var seen []bool
	db.ObserveAvailability(func(err error) { seen = append(seen, err == nil) })
	ctx := context.Background()
	if err := db.unavailable(ctx, io.EOF); !auth.IsUnavailable(err) || !errors.Is(err, io.EOF) {
		t.Errorf("EOF: %v; want ErrUnavailable wrapping it", err)
	}
	if err := db.unavailable(ctx, context.DeadlineExceeded); !auth.IsUnavailable(err) {
		t.Errorf("store's own deadline: %v; want ErrUnavailable", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.unavailable(cancelled, io.EOF); auth.IsUnavailable(err) {
		t.Errorf("cancelled by the caller: %v; want it unwrapped", err)
	}
	if err := db.unavailable(ctx, auth.ErrUserNotFound); err != auth.ErrUserNotFound {
		t.Errorf("domain error: %v", err)
	}
	if err := db.unavailable(ctx, nil); err != nil {
		t.Errorf("nil: %v", err)
	}
	want := []bool{false, false, true, true}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("observed %v, want %v", seen, want)
	}
}
