// Command authbench is the project's load tool (`make bench`). It starts a
// built authd on a fresh PostgreSQL database and on the embedded SQLite
// default, prepares users and tokens, runs every scenario at each
// concurrency for a bounded time, measures the ceilings the targets are
// ratios of in the same run, and writes a Markdown report:
//
//	authbench -authd bin/authd -out BENCHMARKS.md
//
// Latencies go into HdrHistogram histograms (github.com/HdrHistogram/
// hdrhistogram-go). It talks to authd over gRPC on loopback only. It is a
// separate command: none of its dependencies are in the authd binary.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := realMain(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "authbench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	authd    string
	out      string
	duration time.Duration
	conc     []int
	backends []string
	pgURL    string
	only     string // run only scenarios whose name contains this
	previous string // the report to compare with; empty: out
	extraEnv []string
}

func realMain(ctx context.Context) error {
	var o options
	var conc, backends string
	flag.StringVar(&o.authd, "authd", "bin/authd", "the authd binary to measure")
	flag.StringVar(&o.out, "out", "", "also write the report to this file (make bench: BENCHMARKS.md)")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "how long each scenario runs at each concurrency")
	flag.StringVar(&conc, "conc", "1,8,64,256", "concurrency levels")
	flag.StringVar(&backends, "backends", "postgres,sqlite", "database backends")
	flag.StringVar(&o.pgURL, "pg", envOr("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
		"PostgreSQL server where a fresh database is created and dropped")
	flag.StringVar(&o.previous, "previous", "", "the report to compare this run with: a file, or REV:PATH as committed (default: the -out file this run replaces)")
	flag.StringVar(&o.only, "only", "", "run only the scenarios whose name contains this, each with its ceiling (and skip the load test); \""+onlyLoaded+"\" runs only the load test")
	var env string
	flag.StringVar(&env, "env", "", "extra KEY=VALUE settings for authd, comma-separated (e.g. DEBUG__PPROF_ADDR=127.0.0.1:6060)")
	flag.Parse()
	if env != "" {
		o.extraEnv = strings.Split(env, ",")
	}
	for _, c := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fmt.Errorf("-conc: %q is not a positive number", c)
		}
		o.conc = append(o.conc, n)
	}
	o.backends = strings.Split(backends, ",")

	start := time.Now()
	rep := &report{started: start, opts: o, cpus: runtime.NumCPU()}
	if prev := cmp.Or(o.previous, o.out); prev != "" {
		rep.previous, rep.previousDate = readPrevious(prev)
	}
	rep.bcryptCompare = timeBcrypt(12)
	for _, b := range o.backends {
		fmt.Fprintf(os.Stderr, "== %s\n", b)
		br, err := benchBackend(ctx, o, strings.TrimSpace(b), rep.bcryptCompare)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", b, err)
			rep.skipped = append(rep.skipped, fmt.Sprintf("%s: %v", b, err))
			continue
		}
		rep.backends = append(rep.backends, br)
	}
	rep.elapsed = time.Since(start)
	text := rep.markdown()
	fmt.Print(text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return err
		}
	}
	if len(rep.backends) == 0 {
		return fmt.Errorf("no backend could be measured")
	}
	return nil
}

// onlyLoaded is the -only value that runs just the cheap RPCs' p99 idle
// and while Login saturates the CPU.
const onlyLoaded = "loaded"

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
