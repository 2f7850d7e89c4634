package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/config"
	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/migrations"
)

const usersUsage = "usage: authd users import [--dry-run] FILE|- | authd users export FILE"

// runUsers is `authd users import|export`. Like `authd migrate` it reads
// only DATABASE__* and DATA__DIR, and it refuses a database with pending
// migrations (run `authd migrate apply` first).
func runUsers(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usersUsage)
	}
	fs := flag.NewFlagSet("users "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dryRun := fs.Bool("dry-run", false, "print what would happen, change nothing")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 1 || (args[0] == "export" && *dryRun) {
		return errors.New(usersUsage)
	}
	path := fs.Arg(0)
	c, err := config.Load(ctx, nil, config.Options{Sections: config.Storage})
	if err != nil {
		return err
	}
	log := newLogger(slog.LevelWarn)
	db, err := server.OpenDB(ctx, c, log, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	st, err := migrate.New(db.SQL, db.Dialect, migrations.For(db.Dialect), log).Status(ctx)
	if err != nil {
		return err
	}
	if len(st.Pending) > 0 {
		return fmt.Errorf("the database has %d pending migrations: run `authd migrate apply` first", len(st.Pending))
	}
	switch args[0] {
	case "import":
		in := stdin
		if path != "-" {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		verb := ""
		if *dryRun {
			verb = "would be "
		}
		sum, err := auth.ImportUsers(ctx, db, in, *dryRun, time.Now().UTC(), func(r auth.ImportResult) {
			switch r.Outcome {
			case auth.Skipped:
				fmt.Fprintf(stdout, "line %d: skipped (id %q): %s\n", r.Line, r.ID, r.Reason)
			case auth.AlreadyImported:
				fmt.Fprintf(stdout, "line %d: already imported (id %s)\n", r.Line, r.ID)
			default:
				fmt.Fprintf(stdout, "line %d: %s%s (id %s)\n", r.Line, verb, r.Outcome, r.ID)
			}
		})
		fmt.Fprintf(stdout, "%s%d imported, %d replaced an unverified account, %d already imported, %d skipped\n",
			map[bool]string{true: "dry run: ", false: ""}[*dryRun],
			sum[auth.Imported], sum[auth.Replaced], sum[auth.AlreadyImported], sum[auth.Skipped])
		return err
	case "export":
		// Created, never overwritten, and readable by its owner only: it
		// holds every password hash.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		n, err := auth.ExportUsers(ctx, db, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d users written to %s\n", n, path)
		return nil
	default:
		return errors.New(usersUsage)
	}
}
