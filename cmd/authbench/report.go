package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// report is the whole run, written as Markdown.
type report struct {
	started       time.Time
	elapsed       time.Duration
	opts          options
	cpus          int
	bcryptCompare time.Duration
	backends      []*backendResult
	skipped       []string
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	host, _ := os.Hostname()
	p("# Benchmarks\n\n")
	p("Written by `make bench` (`cmd/authbench`) on %s; do not edit by hand.\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	p("- Machine: %s, %d CPUs (%s/%s), %s; load generator and server on the same machine, over loopback.\n", host, r.cpus, runtime.GOOS, runtime.GOARCH, runtime.Version())
	p("- Command: `make bench` = `go build -o bin/authd ./cmd/authd && go run ./cmd/authbench -authd bin/authd -out BENCHMARKS.md -duration %v -conc %s`\n", r.opts.duration, joinInts(r.opts.conc))
	p("- authd runs with its default configuration (pool of 20 database connections, bcrypt cost 12, hashing workers = CPUs, hashing queue 32); `--dev` only so that e-mails go to the (silenced) log.\n")
	p("- Each cell runs for %v (Login and Register: 8 s) with that many concurrent callers over 4 gRPC connections; rps counts successful calls; latencies include failed calls; callers refused with RESOURCE_EXHAUSTED wait out its RetryInfo, as the gateway's clients would. ValidateToken and RefreshTokens take turns with their ceilings ((a), (c)) in four slices each, so both see the same machine; total run time %v.\n\n", r.opts.duration, r.elapsed.Round(time.Second))
	for _, s := range r.skipped {
		p("- Skipped: %s\n\n", s)
	}
	bc := bcryptCeiling(r.cpus, r.bcryptCompare)
	for _, br := range r.backends {
		p("## %s (%s)\n\n", br.Name, br.Location)
		pg := br.DBCPU
		p("| scenario | conc | rps | p50 | p95 | p99 | errors | CPU/call: authd | load tool | PostgreSQL |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, c := range r.opts.conc {
			for _, res := range br.Results {
				if res.Conc != c {
					continue
				}
				if ceil, ok := br.Ceiling[res.Scenario][c]; ok {
					p("| *%s* | %d | %.0f | %s | %s | %s | %d | %s |\n", ceil.Scenario, c, ceil.RPS, ms(ceil.P50), ms(ceil.P95), ms(ceil.P99), ceil.Errors, cpuCells(ceil, pg))
				}
				p("| %s | %d | %.0f | %s | %s | %s | %d | %s |\n", res.Scenario, c, res.RPS, ms(res.P50), ms(res.P95), ms(res.P99), res.Errors, cpuCells(res, pg))
			}
		}
		p("\nPeak resident memory of authd (VmHWM, all runs, up to %d concurrent clients): **%.1f MB**.\n\n", maxInt(r.opts.conc), float64(br.PeakRSS)/1e6)
		p("### Targets\n\n| target | conc | measured | ceiling | ratio | goal | met |\n|---|---:|---:|---:|---:|---:|---|\n")
		for _, c := range r.opts.conc {
			v, h := find(br.Results, "ValidateToken", c), br.Ceiling["ValidateToken"][c]
			p("| ValidateToken vs (a) health Check | %d | %.0f rps | %.0f rps | %.2f | ≥ 0.85 | %s |\n", c, v.RPS, h.RPS, v.RPS/h.RPS, yes(v.RPS/h.RPS >= 0.85))
		}
		for _, c := range r.opts.conc {
			l := find(br.Results, "Login", c)
			met := yes(l.RPS/bc >= 0.95)
			if c < r.cpus {
				met = fmt.Sprintf("n/a: %d call(s) at a time can use %d of %d CPUs (%.2f of its share)", c, c, r.cpus, l.RPS/(float64(c)/r.bcryptCompare.Seconds()))
			}
			p("| Login vs (b) %d CPUs / %v per bcrypt compare | %d | %.2f rps | %.2f rps | %.2f | ≥ 0.95 | %s |\n", r.cpus, r.bcryptCompare.Round(time.Millisecond), c, l.RPS, bc, l.RPS/bc, met)
		}
		for _, c := range r.opts.conc {
			f := find(br.Results, "RefreshTokens", c)
			raw := br.Ceiling["RefreshTokens"][c]
			// A rotation over gRPC costs at least one unary round trip
			// (a) plus its SQL (c): times add at c=1, CPU costs add once
			// the CPUs are saturated, so either way the attainable ratio
			// is about a/(a+c).
			a := br.Ceiling["ValidateToken"][c].RPS
			p("| RefreshTokens vs (c) SQL | %d | %.0f rps | %.0f rps | %.2f | ≥ 0.70 | %s (bound (a)/((a)+(c)) = %.2f) |\n", c, f.RPS, raw.RPS, f.RPS/raw.RPS, yes(f.RPS/raw.RPS >= 0.70), a/(a+raw.RPS))
		}
		for _, name := range []string{"ValidateToken", "GetMe"} {
			idle, loaded := br.Idle[name], br.Loaded[name]
			ratio := float64(loaded.P99) / float64(max(idle.P99, time.Microsecond))
			p("| %s p99 while Login saturates the CPU (64 callers, %.1f rps, %d refused SERVER_BUSY) | 8 | %s | %s idle | %.2f× | ≤ 3× | %s |\n",
				name, br.LoadedBy.RPS, br.LoadedBy.Errors, ms(loaded.P99), ms(idle.P99), ratio, yes(ratio <= 3))
		}
		p("| peak resident memory | %d | %.1f MB | | | ≤ 100 MB | %s |\n\n", maxInt(r.opts.conc), float64(br.PeakRSS)/1e6, yes(br.PeakRSS <= 100e6))
	}
	p("## What limits each scenario\n\n")
	p("- **ValidateToken**: one HMAC-SHA256 verification; bounded by the gRPC round trip itself, i.e. by (a).\n")
	p("- **GetMe, GetUserByEmail**: one indexed SELECT by primary key or unique e-mail; bounded by the round trip plus one database query.\n")
	p("- **Login**: one bcrypt comparison at cost 12 (~%v on one core here); the hashing pool (one worker per CPU, lowest OS priority) runs them back to back; past its queue (32) further logins are refused at once with SERVER_BUSY, which is the errors column at high concurrency.\n", r.bcryptCompare.Round(time.Millisecond))
	p("- **RefreshTokens**: one write transaction of six round trips (BEGIN; one SELECT that reads the token with its family and user and locks token and family; UPDATE used_at; INSERT audit event; INSERT new token; COMMIT), then the access token is signed. (c) runs the same statements from this process. The rotation also costs one gRPC round trip, which is at least (a): the bound column is the ratio a call costing exactly (a) + (c) would reach. `make bench-go` compares the service's rotation with (c)'s statements in one process, without gRPC (BenchmarkRefresh: service vs sql); what a rotation costs beyond that is the round trip between two processes, which costs a rotation more than a health Check because every process sleeps and wakes between the six round trips, and a third busy process on the shared CPUs: PostgreSQL spends more CPU per transaction when authd runs beside it (CPU columns). On SQLite (c) is cheaper than (a) itself, since the database is a file in the caller's process, and every transaction waits for the one before it.\n")
	p("- **Register**: one bcrypt hash at cost 12 plus a write transaction; bounded like Login.\n")
	p("- **Mix**: 45%% ValidateToken, 40%% GetMe, 10%% RefreshTokens, 3%% Login, 2%% Register, the shape of the gateway's traffic; the logins and registrations take most of the CPU.\n")
	return b.String()
}

func find(rs []result, name string, conc int) result {
	for _, r := range rs {
		if r.Scenario == name && r.Conc == conc {
			return r
		}
	}
	return result{}
}

// cpuCells are the CPU times per successful call, in µs, of authd ("–"
// for a ceiling that does not call it), of this load tool, and of the
// PostgreSQL server when pg ("–" on SQLite, which runs inside authd or,
// for (c), inside the load tool, and for a PostgreSQL on another machine).
func cpuCells(r result, pg bool) string {
	us := func(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }
	authd, db := us(r.ServerCPU), "–"
	if strings.HasPrefix(r.Scenario, "(c)") {
		authd = "–"
	}
	if pg {
		db = us(r.DBCPU)
	}
	return authd + " | " + us(r.ClientCPU) + " | " + db
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func maxInt(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}
