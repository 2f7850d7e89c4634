// Package testdb gives a test its own migrated database on the backend the
// suite runs on: TEST_BACKEND=sqlite (the default; a file in the test's
// temporary directory) or TEST_BACKEND=postgres (a database cloned from a
// migrated template, see pgtest). Tables always come from the real
// migration files.
package testdb

import (
	"context"
	"path/filepath"
	"testing"

	"entgo.io/ent/dialect"

	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/testutil/pgtest"
	"github.com/placebrain/auth/migrations"
)

// Backend returns the dialect the suite runs on.
func Backend() string {
	if pgtest.Enabled() {
		return dialect.Postgres
	}
	return dialect.SQLite
}

// NewURL returns a DATABASE__URL for a new, empty (unmigrated) database,
// removed when the test ends.
func NewURL(t testing.TB) string {
	t.Helper()
	if Backend() == dialect.Postgres {
		return pgtest.NewEmptyDatabase(t)
	}
	return "sqlite:" + filepath.Join(t.TempDir(), "authd.db")
}

// URL returns a DATABASE__URL for a new database of the suite's backend,
// removed when the test ends: on PostgreSQL cloned from the migrated
// template, on SQLite a new file that whoever opens it first migrates (as
// authd does at start).
func URL(t testing.TB) string {
	t.Helper()
	if Backend() == dialect.Postgres {
		return pgtest.NewDatabase(t)
	}
	return NewURL(t)
}

// Open returns a new migrated database, closed when the test ends.
func Open(t testing.TB) *store.DB {
	t.Helper()
	db, _ := OpenWithURL(t)
	return db
}

// OpenWithURL is Open that also returns the database's DATABASE__URL, for
// a test that connects to it another way too.
func OpenWithURL(t testing.TB) (*store.DB, string) {
	t.Helper()
	ctx := context.Background()
	url := URL(t)
	db, err := store.Open(ctx, store.Config{URL: url, Pool: store.PoolConfig{MaxOpenConns: 20, MaxIdleConns: 20}})
	if err != nil {
		t.Fatalf("testdb: open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if db.Dialect == dialect.SQLite {
		if _, err := migrate.New(db.SQL, db.Dialect, migrations.SQLite(), nil).Apply(ctx); err != nil {
			t.Fatalf("testdb: migrate: %v", err)
		}
	}
	return db, url
}

// SkipUnless skips the test unless the suite runs on backend d.
func SkipUnless(t testing.TB, d string) {
	t.Helper()
	if Backend() != d {
		t.Skipf("runs in the %s suite", d)
	}
}
