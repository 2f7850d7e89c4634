package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/internal/auth"
)

// Tx is one unit of work on the database: an ent transaction with the
// service's statements as methods (it implements auth.Tx).
type Tx struct {
	queries
	tx *ent.Tx
}

// InTx runs fn in one ent transaction. It commits when fn returns nil,
// rolls back when fn returns an error or panics (re-panicking after), and
// commits then returns the cause when fn returns auth.CommitAnd(cause).
// On SQLite the transaction begins IMMEDIATE and so holds the database's
// write lock from its start. In a traced request the unit of work has a
// span of its own, named after fn (see startUnit).
func (db *DB) InTx(ctx context.Context, fn func(auth.Tx) error) error {
	ctx, span := db.startUnit(ctx, fn)
	if span == nil {
		return db.withTx(ctx, func(tx *Tx) error { return fn(tx) })
	}
	var fnErr, err error
	returned := false
	defer func() { endUnit(span, fnErr, err, returned) }()
	err = db.withTx(ctx, func(tx *Tx) error {
		fnErr = fn(tx)
		returned = true
		return fnErr
	})
	return err
}

// withTx is InTx for the package's own units of work. The unit of work
// runs within the store's deadline (see bound), and a failure of the
// database is classified (see unavailable).
func (db *DB) withTx(ctx context.Context, fn func(*Tx) error) error {
	bctx, cancel := db.bound(ctx)
	defer cancel()
	return db.unavailable(ctx, db.runTx(bctx, fn))
}

// runTx runs fn in one ent transaction (see InTx).
func (db *DB) runTx(ctx context.Context, fn func(*Tx) error) (err error) {
	etx, err := db.Ent.Tx(ctx)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer func() {
		if v := recover(); v != nil {
			_ = etx.Rollback()
			panic(v)
		}
	}()
	ferr := fn(&Tx{queries: queries{c: etx.Client(), sql: db.sql}, tx: etx})
	cause, commit := auth.CommitCause(ferr)
	if ferr != nil && !commit {
		if rerr := etx.Rollback(); rerr != nil {
			return errors.Join(ferr, fmt.Errorf("store: rollback: %w", rerr))
		}
		return ferr
	}
	if err := etx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return cause
}

var (
	_ auth.Store = (*DB)(nil)
	_ auth.Tx    = (*Tx)(nil)
)
