// Command authd is PlaceBrain's authentication service.
//
//	authd serve [--dev]          run the gRPC server (the default)
//	authd migrate plan [--format text|json] [--config FILE]
//	                             print the pending files for review: statements, locks,
//	                             row estimates, lint findings; run nothing
//	authd migrate apply          apply pending migrations
//	authd migrate status         show applied, partially applied and pending migrations
//	authd migrate lint [--latest N] [--dialect D] [--dir DIR] [--config FILE] [--format text|json]
//	                             analyze the files after migrations.LintBaseline on a dev database
//	authd migrate drift [--format sql|json]
//	                             compare the database with the files' end state; non-zero exit on drift
//	authd users import [--dry-run] FILE|-
//	                             import users (JSON lines) from the platform's earlier service
//	authd users export FILE      write every user, password hashes included, to FILE (created 0600)
//	authd healthcheck [--timeout D] [--service NAME] [--cert FILE --key FILE]
//	                             exit 0 when the local authd's health says SERVING (container health checks)
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
	"github.com/placebrain/auth/internal/server"
)

const usage = "usage: authd [serve [--dev] | migrate plan|apply|status|lint|drift | users import [--dry-run] FILE|- | users export FILE | healthcheck]"

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
		return runMigrate(ctx, args[1:], os.Stdout, os.Stderr)
	case "users":
		return runUsers(ctx, args[1:], os.Stdin, os.Stdout)
	case "healthcheck":
		return runHealthcheck(ctx, args[1:], os.Stdout)
	case "-h", "--help", "help":
		fmt.Println(usage)
		return nil
	default:
		return errors.New(usage)
	}
}

// newLogger returns the JSON logger on stderr.
func newLogger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
