// Command entmigrate is the developers' migration tool. It plans Atlas
// versioned migrations from the ent schema with the ariga.io/atlas library,
// one directory per dialect, by replaying each directory on a throw-away
// dev database and diffing it against the schema:
//
//	entmigrate diff NAME   write migrations/<dialect>/<version>_NAME.sql and atlas.sum,
//	                       and the directory's end state migrations/<dialect>.schema.hcl
//	entmigrate check       fail when the schema and migrations/ disagree, atlas.sum is
//	                       stale or an end state is not what the files build
//	entmigrate state       rewrite each end state from its directory (e.g. after a merge)
//	entmigrate hash        rewrite atlas.sum from the files (as `atlas migrate hash`), e.g.
//	                       after merging branches that each added a migration
//
// The end state is the schema the directory's files build, in Atlas HCL,
// next to the directory (so neither atlas.sum nor the Atlas CLI takes it
// for a migration): `authd migrate drift` and authd's start compare live
// databases with it.
//
// PostgreSQL's dev database is created on DEV_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres) and dropped after; SQLite's
// is in memory.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/schema"

	entmigrate "github.com/placebrain/auth/ent/migrate"
	"github.com/placebrain/auth/internal/migrate"
)

// dialects in the order they are planned.
var dialects = []string{dialect.Postgres, dialect.SQLite}

// dirNames are the dialects' directories under migrations/ (the same as
// migrations.Dirs, which this tool cannot import: that package embeds the
// files this tool writes).
var dirNames = map[string]string{dialect.Postgres: "postgres", dialect.SQLite: "sqlite"}

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
		for _, d := range dialects {
			if err := diff(ctx, d, args[1]); err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
			if err := writeState(ctx, d); err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
		}
		return nil
	case len(args) == 1 && args[0] == "state":
		for _, d := range dialects {
			if err := writeState(ctx, d); err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
		}
		return nil
	case len(args) == 1 && args[0] == "hash":
		for _, d := range dialects {
			dir, err := atlasmigrate.NewLocalDir(dirPath(d))
			if err != nil {
				return err
			}
			sum, err := dir.Checksum()
			if err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
			if err := atlasmigrate.WriteSumFile(dir, sum); err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
			fmt.Printf("%s/atlas.sum rewritten\n", dirPath(d))
		}
		return nil
	case len(args) == 1 && args[0] == "check":
		var errs []error
		for _, d := range dialects {
			if err := check(ctx, d); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", d, err))
			}
			if err := checkState(ctx, d); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", d, err))
			}
		}
		return errors.Join(errs...)
	default:
		return errors.New("usage: entmigrate diff NAME | entmigrate check | entmigrate state | entmigrate hash")
	}
}

func dirPath(d string) string { return filepath.Join("migrations", dirNames[d]) }

// statePath is the end state of the dialect's directory (the same name as
// migrations.EndStateFile).
func statePath(d string) string { return filepath.Join("migrations", dirNames[d]+".schema.hcl") }

// endState replays the dialect's directory on a dev database and returns
// the schema it builds, in Atlas HCL.
func endState(ctx context.Context, d string) ([]byte, error) {
	dev, err := migrate.OpenDev(ctx, d, migrate.DevURL())
	if err != nil {
		return nil, err
	}
	defer dev.Close()
	return migrate.EndState(ctx, dev, os.DirFS(dirPath(d)))
}

// writeState rewrites the dialect's end state file from its directory.
func writeState(ctx context.Context, d string) error {
	b, err := endState(ctx, d)
	if err != nil {
		return err
	}
	if err := os.WriteFile(statePath(d), b, 0o644); err != nil {
		return err
	}
	fmt.Printf("%s written (the end state of %s)\n", statePath(d), dirPath(d))
	return nil
}

// checkState fails when the committed end state is not what the
// directory builds.
func checkState(ctx context.Context, d string) error {
	want, err := endState(ctx, d)
	if err != nil {
		return err
	}
	got, err := os.ReadFile(statePath(d))
	if err != nil {
		return fmt.Errorf("%w: run `make migrate-state` and commit it", err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%s is not the end state of %s: run `make migrate-state` (or `make migration`) and commit it", statePath(d), dirPath(d))
	}
	fmt.Printf("%s is the end state of %s\n", statePath(d), dirPath(d))
	return nil
}

// diff writes a new migration file for the changes between the directory
// and the schema.
func diff(ctx context.Context, d, name string) error {
	if err := os.MkdirAll(dirPath(d), 0o755); err != nil {
		return err
	}
	dir, err := atlasmigrate.NewLocalDir(dirPath(d))
	if err != nil {
		return err
	}
	err = withDevDB(ctx, d, func(db *sql.DB) error { return plan(ctx, d, db, dir, name) })
	if errors.Is(err, atlasmigrate.ErrNoPlan) {
		fmt.Printf("%s: no schema changes, nothing written\n", dirPath(d))
		return nil
	}
	if err == nil {
		fmt.Printf("%s: new migration written\n", dirPath(d))
	}
	return err
}

// check replays the directory on a dev database and fails when the schema
// needs a migration the directory lacks, or atlas.sum is stale.
func check(ctx context.Context, d string) error {
	local, err := atlasmigrate.NewLocalDir(dirPath(d))
	if err != nil {
		return err
	}
	if err := atlasmigrate.Validate(local); err != nil {
		return fmt.Errorf("%s/atlas.sum does not match the files (%v): never edit a migration file; regenerate with `make migration`", dirPath(d), err)
	}
	mem, err := migrate.MemDir(local)
	if err != nil {
		return err
	}
	defer mem.Close()
	before, err := mem.Files()
	if err != nil {
		return err
	}
	err = withDevDB(ctx, d, func(db *sql.DB) error { return plan(ctx, d, db, mem, "drift") })
	if errors.Is(err, atlasmigrate.ErrNoPlan) {
		fmt.Printf("%s matches the ent schema (%d files)\n", dirPath(d), len(before))
		return nil
	}
	if err != nil {
		return err
	}
	after, err := mem.Files()
	if err != nil {
		return err
	}
	// The planned file is the one not there before (its version is now,
	// which may sort before a file dated later).
	had := map[string]bool{}
	for _, f := range before {
		had[f.Name()] = true
	}
	var b strings.Builder
	for _, f := range after {
		if !had[f.Name()] {
			b.Write(f.Bytes())
		}
	}
	return fmt.Errorf("schema/ and %s disagree; run `make migration name=...`. Missing SQL:\n%s", dirPath(d), b.String())
}

// plan replays dir on the dev database and writes the difference to the ent
// schema as a new file named name; atlasmigrate.ErrNoPlan when none.
func plan(ctx context.Context, d string, db *sql.DB, dir atlasmigrate.Dir, name string) error {
	m, err := schema.NewMigrate(entsql.OpenDB(d, db),
		schema.WithDir(dir),
		schema.WithMigrationMode(schema.ModeReplay),
		schema.WithDialect(d),
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

// withDevDB runs fn on an empty dev database of the dialect: on PostgreSQL
// a new database on DEV_DATABASE_URL's server bound to the public schema,
// dropped after; on SQLite a private in-memory database.
func withDevDB(ctx context.Context, d string, fn func(*sql.DB) error) error {
	dev, err := migrate.OpenDev(ctx, d, migrate.DevURL())
	if err != nil {
		return err
	}
	defer dev.Close()
	return fn(dev.DB)
}
