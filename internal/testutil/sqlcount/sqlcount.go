// Package sqlcount wraps a database/sql driver connector to count the
// calls that go to the database server, each one round trip: BEGIN, every
// statement executed or queried, every prepare, COMMIT and ROLLBACK. Only
// calls made with a context from Counter.Mark count (and the COMMIT or
// ROLLBACK of a transaction begun with one), so a test measures one
// operation while background work shares the pool.
package sqlcount

import (
	"context"
	"database/sql/driver"
	"sync"
)

// Counter counts round trips, by kind.
type Counter struct {
	mu    sync.Mutex
	calls []string
}

type markKey struct{}

// Mark returns ctx with the mark that makes calls count.
func (c *Counter) Mark(ctx context.Context) context.Context {
	return context.WithValue(ctx, markKey{}, c)
}

// Reset forgets the calls counted so far.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = nil
}

// Calls returns the counted calls in order: "begin", "exec", "query",
// "prepare", "commit", "rollback".
func (c *Counter) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

func (c *Counter) count(ctx context.Context, kind string) {
	if ctx != nil && ctx.Value(markKey{}) == c {
		c.add(kind)
	}
}

func (c *Counter) add(kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, kind)
}

// Wrap wraps a connector; its connections count marked calls.
func (c *Counter) Wrap(next driver.Connector) driver.Connector {
	return connector{next: next, c: c}
}

type connector struct {
	next driver.Connector
	c    *Counter
}

func (k connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := k.next.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, c: k.c}, nil
}

func (k connector) Driver() driver.Driver { return k.next.Driver() }

// countingConn forwards every optional interface database/sql looks for, so the
// wrapped driver behaves as it does unwrapped.
type countingConn struct {
	driver.Conn
	c *Counter
}

func (w *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	w.c.count(ctx, "begin")
	var tx driver.Tx
	var err error
	if b, ok := w.Conn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		tx, err = w.Conn.Begin() //nolint:staticcheck // the driver has only Begin
	}
	if err != nil {
		return nil, err
	}
	return countingTx{Tx: tx, c: w.c, marked: ctx.Value(markKey{}) == w.c}, nil
}

func (w *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	w.c.count(ctx, "prepare")
	if p, ok := w.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return w.Conn.Prepare(query)
}

func (w *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := w.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	w.c.count(ctx, "exec")
	return e.ExecContext(ctx, query, args)
}

func (w *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := w.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	w.c.count(ctx, "query")
	return q.QueryContext(ctx, query, args)
}

func (w *countingConn) CheckNamedValue(v *driver.NamedValue) error {
	if c, ok := w.Conn.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(v)
	}
	return driver.ErrSkip
}

func (w *countingConn) Ping(ctx context.Context) error {
	if p, ok := w.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (w *countingConn) ResetSession(ctx context.Context) error {
	if r, ok := w.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (w *countingConn) IsValid() bool {
	if v, ok := w.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

type countingTx struct {
	driver.Tx
	c      *Counter
	marked bool
}

func (t countingTx) Commit() error {
	if t.marked {
		t.c.add("commit")
	}
	return t.Tx.Commit()
}

func (t countingTx) Rollback() error {
	if t.marked {
		t.c.add("rollback")
	}
	return t.Tx.Rollback()
}
