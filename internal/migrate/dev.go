package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"

	"entgo.io/ent/dialect"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver of the dev database
	_ "modernc.org/sqlite"             // SQLite driver of the dev database
)

// DefaultDevURL is the PostgreSQL server the dev databases are created on
// when DEV_DATABASE_URL is unset.
const DefaultDevURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// DevURL returns DEV_DATABASE_URL, or DefaultDevURL when it is unset.
func DevURL() string {
	if u := os.Getenv("DEV_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultDevURL
}

// DevDB is an empty scratch database that migration files are replayed on
// (the Atlas CLI's "dev database"): never the service's own database.
type DevDB struct {
	// DB is bound to one connection on SQLite (an in-memory database lives
	// in its connection) and to the public schema on PostgreSQL.
	DB *sql.DB
	// Dialect is dialect.Postgres or dialect.SQLite.
	Dialect string
	// Location names it without credentials, for messages.
	Location string
	drop     func()
}

// Close closes the dev database and drops it.
func (d *DevDB) Close() error {
	err := d.DB.Close()
	if d.drop != nil {
		d.drop()
	}
	return err
}

// OpenDev creates an empty dev database of the dialect: on PostgreSQL a new
// database on the server serverURL names (DEV_DATABASE_URL; its user needs
// CREATEDB), bound to the public schema and dropped on Close; on SQLite a
// private in-memory database (serverURL unused).
func OpenDev(ctx context.Context, d, serverURL string) (*DevDB, error) {
	switch d {
	case dialect.SQLite:
		db, err := sql.Open("sqlite", "file:dev-"+uuid.NewString()+"?mode=memory&_pragma=foreign_keys(1)")
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(1) // one connection: the in-memory database lives in it
		return &DevDB{DB: db, Dialect: d, Location: "SQLite in memory"}, nil
	case dialect.Postgres:
	default:
		return nil, fmt.Errorf("migrate: unsupported dialect %q", d)
	}
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("DEV_DATABASE_URL is not a postgres:// URL")
	}
	admin, err := sql.Open("pgx", serverURL)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	name := "authd_dev_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("create a dev database on DEV_DATABASE_URL (%s%s): %w", u.Host, u.Path, err)
	}
	dropDB := func() {
		admin, err := sql.Open("pgx", serverURL)
		if err != nil {
			return
		}
		defer admin.Close()
		_, _ = admin.ExecContext(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	u.Path = "/" + name
	q := u.Query()
	q.Set("search_path", "public")
	u.RawQuery = q.Encode()
	db, err := sql.Open("pgx", u.String())
	if err == nil {
		err = db.PingContext(ctx)
	}
	if err != nil {
		dropDB()
		return nil, fmt.Errorf("open the dev database: %w", err)
	}
	return &DevDB{DB: db, Dialect: d, Location: "postgres://" + u.Host + "/" + name, drop: dropDB}, nil
}
