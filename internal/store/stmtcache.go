package store

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"reflect"
)

// stmtCacheSize is how many prepared statements each SQLite connection
// keeps: the service runs a few dozen distinct statements (ent builds the
// same text for the same query shape), so the hot ones never leave.
const stmtCacheSize = 128

// stmtCache wraps a database/sql connector so that each connection keeps
// its prepared statements, keyed by their text, and runs every statement
// through them: SQLite (modernc) otherwise compiles each statement's text
// anew on every call. The least recently used statement beyond
// stmtCacheSize is closed. A statement whose rows are still open is not
// shared: a second use at that moment prepares a statement of its own.
// PostgreSQL needs none of this: pgx caches prepared statements itself.
type stmtCache struct {
	next driver.Connector
	size int
}

func (c stmtCache) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.next.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &cachingConn{Conn: conn, size: c.size, stmts: map[string]*list.Element{}, lru: list.New()}, nil
}

func (c stmtCache) Driver() driver.Driver { return c.next.Driver() }

// cachingConn is one connection with its statements. database/sql uses a
// connection from one goroutine at a time, so it needs no lock.
type cachingConn struct {
	driver.Conn
	size  int
	stmts map[string]*list.Element // of *cachedStmt, most recently used first in lru
	lru   *list.List
}

type cachedStmt struct {
	query string
	stmt  driver.Stmt
	busy  bool // its rows are open
}

// stmt returns the cached statement for query, preparing it on a miss;
// fresh is true for a statement prepared for this use only (the cached
// one is busy), which the caller closes.
func (c *cachingConn) stmt(ctx context.Context, query string) (s *cachedStmt, fresh bool, err error) {
	if e, ok := c.stmts[query]; ok {
		s = e.Value.(*cachedStmt)
		if !s.busy {
			c.lru.MoveToFront(e)
			return s, false, nil
		}
	}
	st, err := c.prepare(ctx, query)
	if err != nil {
		return nil, false, err
	}
	s = &cachedStmt{query: query, stmt: st}
	if _, ok := c.stmts[query]; ok {
		return s, true, nil
	}
	c.stmts[query] = c.lru.PushFront(s)
	for e := c.lru.Back(); c.lru.Len() > c.size && e != nil; {
		prev := e.Prev()
		if old := e.Value.(*cachedStmt); !old.busy {
			c.lru.Remove(e)
			delete(c.stmts, old.query)
			_ = old.stmt.Close()
		}
		e = prev
	}
	return s, false, nil
}

func (c *cachingConn) prepare(ctx context.Context, query string) (driver.Stmt, error) {
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.Conn.Prepare(query)
}

// errNoContextStmt reports a driver whose statements lack the context
// methods; modernc's have them.
var errNoContextStmt = errors.New("store: the driver's statements do not take a context")

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	s, fresh, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if fresh {
		defer s.stmt.Close()
	}
	e, ok := s.stmt.(driver.StmtExecContext)
	if !ok {
		return nil, errNoContextStmt
	}
	return e.ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	s, fresh, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	q, ok := s.stmt.(driver.StmtQueryContext)
	if !ok {
		if fresh {
			s.stmt.Close()
		}
		return nil, errNoContextStmt
	}
	rows, err := q.QueryContext(ctx, args)
	if err != nil {
		if fresh {
			s.stmt.Close()
		}
		return nil, err
	}
	s.busy = true
	return &cachedRows{Rows: rows, s: s, fresh: fresh}, nil
}

// Close closes the connection's statements, then the connection.
func (c *cachingConn) Close() error {
	for e := c.lru.Front(); e != nil; e = e.Next() {
		_ = e.Value.(*cachedStmt).stmt.Close()
	}
	c.stmts, c.lru = nil, list.New()
	return c.Conn.Close()
}

func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.prepare(ctx, query)
}

func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	return c.Conn.Begin() //nolint:staticcheck // the driver has only Begin
}

func (c *cachingConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *cachingConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *cachingConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// cachedRows frees its statement for the next use when closed (a fresh
// statement is closed with them).
type cachedRows struct {
	driver.Rows
	s      *cachedStmt
	fresh  bool
	closed bool
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	if !r.closed {
		r.closed = true
		if r.fresh {
			_ = r.s.stmt.Close()
		} else {
			r.s.busy = false
		}
	}
	return err
}

// The column type methods database/sql looks for, forwarded.

func (r *cachedRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *cachedRows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *cachedRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *cachedRows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

func (r *cachedRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}
