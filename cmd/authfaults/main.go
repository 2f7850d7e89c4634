// Command authfaults is the project's fault suite (`make faults`). It runs
// built authd processes against a fresh PostgreSQL database reached
// through an embedded TCP proxy it controls (github.com/Shopify/
// toxiproxy/v2), with an SMTP server in process it can stop, under a load
// shaped like the gateway's, breaks one thing per scenario (the database
// link refused, blackholed, cut at a COMMIT; SMTP down; kill -9; one of
// two instances killed; slow readers), and writes what it measured:
//
//	authfaults -authd bin/authd -out RELIABILITY.md
//
// Nothing restarts the shared PostgreSQL server. -short runs shorter
// phases (CI).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := realMain(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "authfaults:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	authd string
	out   string
	pgURL string
	short bool
	only  string
}

// scenarioFuncs are the scenarios in the order they run.
var scenarioFuncs = []struct {
	name string
	run  func(context.Context, options) *outcome
}{
	{"db-refused", func(ctx context.Context, o options) *outcome { return dbOutage(ctx, o, false) }},
	{"db-blackholed", func(ctx context.Context, o options) *outcome { return dbOutage(ctx, o, true) }},
	{"commit-cut", commitCutScenario},
	{"smtp-outage", smtpOutage},
	{"kill-restart", killRestart},
	{"two-instances", twoInstances},
	{"slow-readers", slowReaders},
}

func realMain(ctx context.Context) error {
	var o options
	flag.StringVar(&o.authd, "authd", "bin/authd", "the authd binary")
	flag.StringVar(&o.out, "out", "", "also write the report to this file (make faults: RELIABILITY.md)")
	flag.StringVar(&o.pgURL, "pg", envOr("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
		"PostgreSQL server where a fresh database per scenario is created and dropped")
	flag.BoolVar(&o.short, "short", false, "shorter phases (make faults-short, CI)")
	flag.StringVar(&o.only, "only", "", "run only the scenarios whose name contains this")
	flag.Parse()

	rep := &report{started: time.Now(), opts: o, cpus: runtime.NumCPU()}
	for _, s := range scenarioFuncs {
		if o.only != "" && !strings.Contains(s.name, o.only) {
			continue
		}
		fmt.Fprintf(os.Stderr, "== %s\n", s.name)
		t0 := time.Now()
		out := s.run(ctx, o)
		out.Name = s.name
		fmt.Fprint(os.Stderr, out.text(time.Since(t0)))
		rep.outcomes = append(rep.outcomes, out)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	rep.elapsed = time.Since(rep.started)
	text := rep.markdown()
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return err
		}
	}
	for _, out := range rep.outcomes {
		if out.Err != nil {
			return fmt.Errorf("scenario %s could not run: %w", out.Name, out.Err)
		}
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
