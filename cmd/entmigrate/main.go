// Command entmigrate is the developers' migration tool. It plans Atlas
// versioned migrations from the ent schema with the ariga.io/atlas library,
// against a throw-away dev database on PostgreSQL:
//
//	entmigrate diff NAME   write migrations/postgres/<version>_NAME.sql and atlas.sum
//	entmigrate check       fail when the schema and migrations/ disagree or atlas.sum is stale
//
// DEV_DATABASE_URL names a PostgreSQL server where it may create and drop
// databases (default postgres://postgres@127.0.0.1:5432/postgres).
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/schema"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"

	entmigrate "github.com/placebrain/auth/ent/migrate"
)

const dirPath = "migrations/postgres"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := realMain(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "entmigrate:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string) error {
	switch {
	case len(args) == 2 && args[0] == "diff":
		if !regexp.MustCompile(`^[a-z0-9_]+$`).MatchString(args[1]) {
			return errors.New("NAME must be lower-case letters, digits and underscores")
		}
		return diff(ctx, args[1])
	case len(args) == 1 && args[0] == "check":
		return check(ctx)
	default:
		return errors.New("usage: entmigrate diff NAME | entmigrate check")
	}
}

// diff writes a new migration file for the changes between the directory
// and the schema.
func diff(ctx context.Context, name string) error {
	dir, err := atlasmigrate.NewLocalDir(dirPath)
	if err != nil {
		return err
	}
	err = withDevDB(ctx, func(db *sql.DB) error { return plan(ctx, db, dir, name) })
	if errors.Is(err, atlasmigrate.ErrNoPlan) {
		fmt.Println("no schema changes: nothing written")
		return nil
	}
	return err
}

// check replays the directory on a dev database and fails when the schema
// needs a migration the directory lacks, or atlas.sum is stale.
func check(ctx context.Context) error {
	local, err := atlasmigrate.NewLocalDir(dirPath)
	if err != nil {
		return err
	}
	if err := atlasmigrate.Validate(local); err != nil {
		return fmt.Errorf("%s/atlas.sum does not match the files (%v): never edit a migration file; regenerate with `make migration`", dirPath, err)
	}
	mem := atlasmigrate.OpenMemDir("check-" + uuid.NewString())
	defer mem.Close()
	err = fs.WalkDir(local, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(local, p)
		if err != nil {
			return err
		}
		return mem.WriteFile(p, b)
	})
	if err != nil {
		return err
	}
	before, _ := mem.Files()
	err = withDevDB(ctx, func(db *sql.DB) error { return plan(ctx, db, mem, "drift") })
	if errors.Is(err, atlasmigrate.ErrNoPlan) {
		fmt.Printf("%s matches the ent schema (%d files)\n", dirPath, len(before))
		return nil
	}
	if err != nil {
		return err
	}
	after, _ := mem.Files()
	var b strings.Builder
	for _, f := range after[len(before):] {
		b.Write(f.Bytes())
	}
	return fmt.Errorf("schema/ and %s disagree; run `make migration name=...`. Missing SQL:\n%s", dirPath, b.String())
}

// plan replays dir on the dev database and writes the difference to the ent
// schema as a new file named name; atlasmigrate.ErrNoPlan when none.
func plan(ctx context.Context, db *sql.DB, dir atlasmigrate.Dir, name string) error {
	m, err := schema.NewMigrate(entsql.OpenDB(dialect.Postgres, db),
		schema.WithDir(dir),
		schema.WithMigrationMode(schema.ModeReplay),
		schema.WithDialect(dialect.Postgres),
		schema.WithFormatter(atlasmigrate.DefaultFormatter),
		schema.WithDropColumn(true),
		schema.WithDropIndex(true),
		schema.WithErrNoPlan(true),
	)
	if err != nil {
		return fmt.Errorf("new migrate: %w", err)
	}
	return m.NamedDiff(ctx, name, entmigrate.Tables...)
}

// withDevDB creates an empty database, runs fn on it (bound to the public
// schema) and drops it.
func withDevDB(ctx context.Context, fn func(*sql.DB) error) error {
	adminURL := os.Getenv("DEV_DATABASE_URL")
	if adminURL == "" {
		adminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		return err
	}
	defer admin.Close()
	name := "authd_dev_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return fmt.Errorf("create dev database (DEV_DATABASE_URL): %w", err)
	}
	defer admin.ExecContext(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	u, err := url.Parse(adminURL)
	if err != nil {
		return err
	}
	u.Path = "/" + name
	q := u.Query()
	q.Set("search_path", "public")
	u.RawQuery = q.Encode()
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(db)
}
