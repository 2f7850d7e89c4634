// Package pgtest gives tests their own PostgreSQL database, cloned from a
// template database that the real migration files built. The template is
// made once per set of migration files (its name carries atlas.sum's hash)
// and shared by every test package.
//
// These tests run when TEST_BACKEND=postgres (`make test` runs that suite
// after the SQLite one). TEST_DATABASE_URL names the server (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable). When it is
// unreachable the test is skipped, except under CI (CI set), where it fails.
package pgtest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/migrations"
)

// lockID is the advisory lock that serializes template creation and
// cloning across test processes.
const lockID = 7_403_221_906

var (
	once     sync.Once
	onceErr  error
	template string
)

// AdminURL is the URL of the server's maintenance database.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// URLFor returns AdminURL with the database name replaced.
func URLFor(name string) string {
	u, err := url.Parse(AdminURL())
	if err != nil {
		panic(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Enabled reports whether the PostgreSQL suite runs (TEST_BACKEND=postgres).
func Enabled() bool { return os.Getenv("TEST_BACKEND") == "postgres" }

// skipUnlessEnabled skips the test outside the PostgreSQL suite.
func skipUnlessEnabled(t testing.TB) {
	t.Helper()
	if !Enabled() {
		t.Skip("PostgreSQL test: runs with TEST_BACKEND=postgres (make test runs that suite)")
	}
}

// unavailable skips or, under CI, fails the test.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("PostgreSQL at TEST_DATABASE_URL is required in CI: %v", err)
	}
	t.Skipf("PostgreSQL suite skipped: server at TEST_DATABASE_URL unreachable: %v", err)
}

// NewDatabase creates a database for this test, cloned from the migrated
// template, drops it when the test ends, and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	skipUnlessEnabled(t)
	ctx := context.Background()
	once.Do(func() { template, onceErr = ensureTemplate(ctx) })
	if onceErr != nil {
		unavailable(t, onceErr)
	}
	name := "authd_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
	err := withAdmin(ctx, func(conn *sql.Conn) error {
		_, err := conn.ExecContext(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, template))
		return err
	})
	if err != nil {
		t.Fatalf("pgtest: clone template: %v", err)
	}
	t.Cleanup(func() { DropDatabase(t, name) })
	return URLFor(name)
}

// NewEmptyDatabase creates an empty database (no migrations applied) that is
// dropped when the test ends, and returns its URL.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	skipUnlessEnabled(t)
	ctx := context.Background()
	name := "authd_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
	err := withAdmin(ctx, func(conn *sql.Conn) error {
		_, err := conn.ExecContext(ctx, "CREATE DATABASE "+name)
		return err
	})
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(func() { DropDatabase(t, name) })
	return URLFor(name)
}

// DropDatabase drops a test database, closing its connections.
func DropDatabase(t testing.TB, name string) {
	ctx := context.Background()
	err := withAdmin(ctx, func(conn *sql.Conn) error {
		_, err := conn.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		return err
	})
	if err != nil {
		t.Errorf("pgtest: drop %s: %v", name, err)
	}
}

// withAdmin runs fn on a maintenance connection holding the pgtest lock.
func withAdmin(ctx context.Context, fn func(*sql.Conn) error) error {
	db, err := sql.Open("pgx", AdminURL())
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", lockID); err != nil {
		return err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockID)
	return fn(conn)
}

// ensureTemplate creates the template database for the current migration
// files unless it exists, and returns its name.
func ensureTemplate(ctx context.Context) (string, error) {
	sum, err := fs.ReadFile(migrations.Postgres(), "atlas.sum")
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(sum)
	name := "authd_template_" + hex.EncodeToString(h[:6])
	err = withAdmin(ctx, func(conn *sql.Conn) error {
		var exists bool
		if err := conn.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return nil
		}
		building := name + "_build"
		if _, err := conn.ExecContext(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)"); err != nil {
			return err
		}
		if _, err := conn.ExecContext(ctx, "CREATE DATABASE "+building); err != nil {
			return err
		}
		db, err := sql.Open("pgx", URLFor(building))
		if err != nil {
			return err
		}
		_, err = migrate.New(db, dialect.Postgres, migrations.Postgres(), nil).Apply(ctx)
		db.Close()
		if err != nil {
			return fmt.Errorf("migrate template: %w", err)
		}
		_, err = conn.ExecContext(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", building, name))
		return err
	})
	return name, err
}

// Ping checks that the server at TEST_DATABASE_URL answers.
func Ping(ctx context.Context) error {
	db, err := sql.Open("pgx", AdminURL())
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}
