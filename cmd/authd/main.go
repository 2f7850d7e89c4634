// Command authd is PlaceBrain's authentication service.
//
//	authd serve [--dev]          run the gRPC server (the default)
//	authd migrate plan           print the SQL of pending migrations
//	authd migrate apply          apply pending migrations
//	authd migrate status         show applied and pending migrations
//	authd users import [--dry-run] FILE|-
//	                             import users (JSON lines) from the platform's earlier service
//	authd users export FILE      write every user, password hashes included, to FILE (created 0600)
//
// Configuration comes from environment variables; see the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/placebrain/auth/internal/config"
	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/migrations"
)

const usage = "usage: authd [serve [--dev] | migrate plan|apply|status | users import [--dry-run] FILE|- | users export FILE]"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "authd:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string) error {
	if len(args) == 0 {
		args = []string{"serve"}
	}
	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		dev := fs.Bool("dev", false, "development mode: JWT secret generated and kept in DATA__DIR, e-mails to the log without SMTP__HOST")
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
			return errors.New(usage)
		}
		c, err := config.Load(ctx, nil, config.Options{Dev: *dev})
		if err != nil {
			return err
		}
		return server.Run(ctx, c, newLogger(c.Log.Level))
	case "migrate":
		if len(args) != 2 {
			return errors.New(usage)
		}
		return runMigrate(ctx, args[1])
	case "users":
		return runUsers(ctx, args[1:], os.Stdin, os.Stdout)
	case "-h", "--help", "help":
		fmt.Println(usage)
		return nil
	default:
		return errors.New(usage)
	}
}

// runMigrate reads only DATABASE__* and DATA__DIR (config.Storage), so DBAs
// can run it without the service's secrets.
func runMigrate(ctx context.Context, cmd string) error {
	c, err := config.Load(ctx, nil, config.Options{Sections: config.Storage})
	if err != nil {
		return err
	}
	log := newLogger(slog.LevelInfo)
	db, err := server.OpenDB(ctx, c, log, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintf(os.Stderr, "database: %s\n", db.Location)
	m := migrate.New(db.SQL, db.Dialect, migrations.For(db.Dialect), log)
	switch cmd {
	case "plan":
		return m.Plan(ctx, os.Stdout)
	case "apply":
		applied, err := m.Apply(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("applied %d migrations %v\n", len(applied), applied)
		return nil
	case "status":
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("current version: %q\napplied: %d\npending: %d\n", st.Current, len(st.Applied), len(st.Pending))
		for _, f := range st.Pending {
			fmt.Printf("  pending %s\n", f.Name)
		}
		return nil
	default:
		return errors.New(usage)
	}
}

// newLogger returns the JSON logger on stderr.
func newLogger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
