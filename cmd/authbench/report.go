package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
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
	// previous holds the rps of the report this run replaces, per
	// backend, scenario and concurrency (readPrevious); previousDate is
	// when it was written.
	previous     map[string]map[string]map[int]float64
	previousDate string
}

// readPrevious reads the scenario rows (not the ceilings) of an earlier
// report at path: rps per backend, scenario and concurrency. A missing or
// unreadable file gives nothing.
func readPrevious(path string) (map[string]map[string]map[int]float64, string) {
	b, err := os.ReadFile(path)
	if err != nil && strings.Contains(path, ":") {
		// REV:PATH, a report as committed (git show), so that a comparison
		// can be repeated from a clone.
		b, err = exec.Command("git", "show", path).Output()
	}
	if err != nil {
		return nil, ""
	}
	out := map[string]map[string]map[int]float64{}
	var backend, date string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Written by `make bench` (`cmd/authbench`) on "); ok {
			date, _, _ = strings.Cut(rest, ";")
		}
		if rest, ok := strings.CutPrefix(line, "## "); ok {
			backend, _, _ = strings.Cut(rest, " ")
			continue
		}
		cells := strings.Split(line, "|")
		if backend == "" || len(cells) < 5 {
			continue
		}
		name := strings.TrimSpace(cells[1])
		if name == "*"+ceilHealth+"*" {
			name = ceilHealth // the one ceiling kept: it normalizes the machine
		} else if strings.HasPrefix(name, "*") {
			continue
		}
		conc, err1 := strconv.Atoi(strings.TrimSpace(cells[2]))
		rps, err2 := strconv.ParseFloat(strings.TrimSpace(cells[3]), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if out[backend] == nil {
			out[backend] = map[string]map[int]float64{}
		}
		if out[backend][name] == nil {
			out[backend][name] = map[int]float64{}
		}
		out[backend][name][conc] = rps
	}
	return out, date
}

// perHealth is scenario's rps at c over this run's (a) at c, divided by
// the same in the previous report: the change with the machine's own
// speed taken out. ok is false when either run lacks a figure.
func (r *report) perHealth(br *backendResult, scenario string, c int) (float64, bool) {
	prev := r.previous[br.Name]
	now, nowA := find(br.Results, scenario, c).RPS, br.Ceiling[ceilHealth][c].RPS
	was, wasA := prev[scenario][c], prev[ceilHealth][c]
	if now == 0 || nowA == 0 || was == 0 || wasA == 0 {
		return 0, false
	}
	return (now / nowA) / (was / wasA), true
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	host, _ := os.Hostname()
	p("# Benchmarks\n\n")
	p("Written by `make bench` (`cmd/authbench`) on %s; do not edit by hand.\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	p("- Machine: %s, %d CPUs (%s/%s), %s; load generator and server on the same machine, over loopback.\n", host, r.cpus, runtime.GOOS, runtime.GOARCH, runtime.Version())
	flags := ""
	if r.opts.previous != "" {
		flags = " -previous " + r.opts.previous
	}
	p("- Command: `make bench` = `go build -o bin/authd ./cmd/authd && go run ./cmd/authbench -authd bin/authd -out BENCHMARKS.md -duration %v -conc %s%s`\n", r.opts.duration, joinInts(r.opts.conc), flags)
	p("- authd runs with its default configuration (pool of 20 database connections, bcrypt cost 12, hashing workers = CPUs, hashing queue 32); `--dev` only so that e-mails go to the (silenced) log.\n")
	p("- Each cell runs for %v (Login and Register: 8 s) with that many concurrent callers over 4 gRPC connections; rps counts successful calls; latencies include failed calls; callers refused with RESOURCE_EXHAUSTED wait out its RetryInfo, as the gateway's clients would. ValidateToken, GetMe, GetUserByEmail and RefreshTokens take turns with their ceilings ((a); (e); (f); (c) and (d)) in four slices each, so all see the same machine; total run time %v.\n\n", r.opts.duration, r.elapsed.Round(time.Second))
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
				for _, name := range br.CeilingsOf[res.Scenario] {
					if ceil, ok := br.Ceiling[name][c]; ok {
						p("| *%s* | %d | %.0f | %s | %s | %s | %d | %s |\n", ceil.Scenario, c, ceil.RPS, ms(ceil.P50), ms(ceil.P95), ms(ceil.P99), ceil.Errors, cpuCells(ceil, pg))
					}
				}
				p("| %s | %d | %.0f | %s | %s | %s | %d | %s |\n", res.Scenario, c, res.RPS, ms(res.P50), ms(res.P95), ms(res.P99), res.Errors, cpuCells(res, pg))
			}
		}
		p("\nPeak resident memory of authd (VmHWM, all runs, up to %d concurrent clients): **%.1f MB**.\n\n", maxInt(r.opts.conc), float64(br.PeakRSS)/1e6)
		p("### Targets\n\n| target | conc | measured | ceiling | ratio | goal | met |\n|---|---:|---:|---:|---:|---:|---|\n")
		for _, c := range r.opts.conc {
			v, h := find(br.Results, "ValidateToken", c), br.Ceiling[ceilHealth][c]
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
		// A call over gRPC costs at least one unary round trip (a) plus
		// its SQL (x): times add at c=1, CPU costs add once the CPUs are
		// saturated, so either way the attainable rate is about
		// a·x/(a+x), the bound; the goals are ratios to it.
		bound := func(c int, x float64) float64 {
			a := br.Ceiling[ceilHealth][c].RPS
			if a == 0 || x == 0 {
				return 0 // not measured (-only)
			}
			return a * x / (a + x)
		}
		for _, sc := range []struct{ name, ceil string }{{"GetMe", ceilGetMe}, {"GetUserByEmail", ceilByEmail}} {
			for _, c := range r.opts.conc {
				f, x := find(br.Results, sc.name, c), br.Ceiling[sc.ceil][c]
				b := bound(c, x.RPS)
				p("| %s vs the bound of %s: (a)·(x)/((a)+(x)) | %d | %.0f rps | %.0f rps | %.2f | ≥ 0.90 | %s |\n", sc.name, sc.ceil[:3], c, f.RPS, b, f.RPS/b, yes(f.RPS/b >= 0.90))
			}
		}
		for _, c := range r.opts.conc {
			f, full, fresh := find(br.Results, "RefreshTokens", c), br.Ceiling[ceilFullPath][c], br.Ceiling[ceilOneStmt][c]
			pg := br.Name == "postgres"
			goal, met := "≥ 0.70", yes(f.RPS/full.RPS >= 0.70)
			if pg {
				goal, met = "–", "(shown)"
				if c == 8 || c == 64 {
					goal, met = "≥ 1.50", yes(f.RPS/full.RPS >= 1.5)
				}
			}
			p("| RefreshTokens vs (c) the full path via SQL | %d | %.0f rps | %.0f rps | %.2f | %s | %s |\n", c, f.RPS, full.RPS, f.RPS/full.RPS, goal, met)
			b := bound(c, fresh.RPS)
			goal, met = "≥ 0.90", yes(f.RPS/b >= 0.90)
			if !pg {
				goal, met = "–", "(shown)"
			}
			p("| RefreshTokens vs the bound of (d) the fresh-token rotation via SQL: (a)·(d)/((a)+(d)) | %d | %.0f rps | %.0f rps | %.2f | %s | %s |\n", c, f.RPS, b, f.RPS/b, goal, met)
			if prev, ok := r.previous[br.Name]["RefreshTokens"][c]; ok && !pg && c <= 64 {
				p("| RefreshTokens vs the previous BENCHMARKS.md | %d | %.0f rps | %.0f rps | %.2f | ≥ 1.30 | %s |\n", c, f.RPS, prev, f.RPS/prev, yes(f.RPS/prev >= 1.3))
				if n, ok := r.perHealth(br, "RefreshTokens", c); ok {
					p("| RefreshTokens vs the previous BENCHMARKS.md, each over its own run's (a) | %d | %.3f (a) | %.3f (a) | %.2f | – | (shown) |\n", c, f.RPS/br.Ceiling[ceilHealth][c].RPS, f.RPS/br.Ceiling[ceilHealth][c].RPS/n, n)
				}
			}
		}
		for _, name := range []string{"ValidateToken", "GetMe"} {
			idle, loaded := br.Idle[name], br.Loaded[name]
			ratio := float64(loaded.P99) / float64(max(idle.P99, time.Microsecond))
			p("| %s p99 while Login saturates the CPU (64 callers, %.1f rps, %d refused SERVER_BUSY) | 8 | %s | %s idle | %.2f× | ≤ 3× | %s |\n",
				name, br.LoadedBy.RPS, br.LoadedBy.Errors, ms(loaded.P99), ms(idle.P99), ratio, yes(ratio <= 3))
		}
		p("| peak resident memory | %d | %.1f MB | | | ≤ 100 MB | %s |\n\n", maxInt(r.opts.conc), float64(br.PeakRSS)/1e6, yes(br.PeakRSS <= 100e6))
	}
	if len(r.previous) > 0 {
		p("## Against the previous BENCHMARKS.md\n\n")
		p("Successful calls per second of this run over those of the report compared with (%s), per scenario and concurrency; ceilings are left out, since their names and statements change between versions. \"Per (a)\" divides each run's rps by its own (a) health Check at that concurrency first: it cancels what the machine itself gained or lost between the runs (the same gRPC round trip measured on both days), leaving what the code changed.\n\n", r.previousDate)
		for _, br := range r.backends {
			prev := r.previous[br.Name]
			if prev == nil {
				continue
			}
			p("### %s\n\n| scenario |", br.Name)
			for _, c := range r.opts.conc {
				p(" c=%d |", c)
			}
			p("\n|---|")
			for range r.opts.conc {
				p("---:|")
			}
			p("\n")
			for _, res := range br.Results {
				if res.Conc != r.opts.conc[0] {
					continue
				}
				p("| %s |", res.Scenario)
				for _, c := range r.opts.conc {
					now, was := find(br.Results, res.Scenario, c).RPS, prev[res.Scenario][c]
					if was == 0 {
						p(" – |")
						continue
					}
					p(" %.2f (%.0f → %.0f)", now/was, was, now)
					if n, ok := r.perHealth(br, res.Scenario, c); ok {
						p("; %.2f per (a)", n)
					}
					p(" |")
				}
				p("\n")
			}
			p("\n")
		}
	}
	p("## What limits each scenario\n\n")
	p("- **ValidateToken**: one HMAC-SHA256 verification; bounded by the gRPC round trip itself, i.e. by (a).\n")
	p("- **Login**: one bcrypt comparison at cost 12 (~%v on one core here); the hashing pool (one worker per CPU, lowest OS priority) runs them back to back; past its queue (32) further logins are refused at once with SERVER_BUSY, which is the errors column at high concurrency.\n", r.bcryptCompare.Round(time.Millisecond))
	p("- **GetMe, GetUserByEmail**: one indexed SELECT by primary key or unique e-mail; (e) and (f) issue the service's own SELECT (store.ReadStatements) from this process; the bound is the rate a call costing exactly (a) plus that SELECT would reach.\n")
	p("- **RefreshTokens**: on PostgreSQL the common case (a fresh token) is one statement, one round trip: it locks the token and its family, marks the token used with its sealed child, records the audit event and inserts the child (store.Rotation.RotateFresh); on SQLite it is a transaction of three statements (mark the token used returning what the rest needs, the audit event, the child); (d) issues these from this process. (c) is the full path's transaction of six round trips (BEGIN; the locking SELECT of token, family and user; UPDATE used_at; INSERT audit event; INSERT new token; COMMIT), which the service takes for every other case (replays, reuse, revoked, expired): it is the baseline the one-statement path is measured against. Either way the access token is signed after the commit. On SQLite (c) is cheaper than (a) itself, since the database is a file in the caller's process, and every transaction waits for the one before it; each connection keeps its prepared statements. `make bench-go` compares the service's rotation with (c)'s statements in one process, without gRPC (BenchmarkRefresh: service vs sql).\n")
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
	for _, direct := range []string{"(c)", "(d)", "(e)", "(f)"} {
		if strings.HasPrefix(r.Scenario, direct) {
			authd = "–"
		}
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
