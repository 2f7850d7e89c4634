package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
	"unicode"
)

// report is the whole run, written as Markdown.
type report struct {
	started  time.Time
	elapsed  time.Duration
	opts     options
	cpus     int
	outcomes []*outcome
}

func met(f figure) string {
	switch {
	case f.Met == nil:
		return ""
	case *f.Met:
		return "yes"
	default:
		return "**no**"
	}
}

// anchor is the GitHub heading anchor of a title.
func anchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// text is a scenario's figures for the terminal.
func (o *outcome) text(took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%v)\n", o.Title, took.Round(time.Second))
	for _, f := range o.Figures {
		fmt.Fprintf(&b, "  %-60s %s", f.Name, f.Value)
		if f.Met != nil {
			fmt.Fprintf(&b, "   [goal %s: %s]", f.Goal, strings.Trim(met(f), "*"))
		}
		b.WriteByte('\n')
	}
	if o.Err != nil {
		fmt.Fprintf(&b, "  ERROR: %v\n", o.Err)
	}
	return b.String()
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	host, _ := os.Hostname()
	cmd, variant := "make faults", ""
	if r.opts.short {
		cmd, variant = "make faults-short", " -short"
	}
	p("# Reliability\n\n")
	p("Written by `%s` (`cmd/authfaults`) on %s; do not edit by hand.\n\n", cmd, r.started.UTC().Format("2006-01-02 15:04 MST"))
	p("- Machine: %s, %d CPUs (%s/%s), %s; suite, authd and PostgreSQL on the same machine, over loopback.\n", host, r.cpus, runtime.GOOS, runtime.GOARCH, runtime.Version())
	p("- Command: `%s` = `go build -o bin/authd ./cmd/authd && go run ./cmd/authfaults -authd bin/authd -out RELIABILITY.md%s`; total run time %v.\n", cmd, variant, r.elapsed.Round(time.Second))
	p("- Each scenario: a fresh PostgreSQL database, reached by authd only through a TCP proxy embedded in the suite (github.com/Shopify/toxiproxy/v2); an SMTP server in the suite (github.com/emersion/go-smtp); built authd processes in production mode (`SMTP__TLS=none`, `GRPC__REFLECTION=true`, `METRICS__ADDR` set, `PASSWORD__BCRYPT_COST=4`, `DATABASE__CONNECT_TIMEOUT_SECONDS=1`, `DATABASE__STATEMENT_TIMEOUT_SECONDS=2` (below the outages, so an RPC held until the restore shows), the rest at defaults unless a scenario says).\n")
	p("- The load: half the callers run sign-up journeys (Register, SendOtp as the gateway sends it, the code from the received e-mail, VerifyOtp, Login, then 3 × GetMe, ValidateToken, RefreshTokens), the other half the steady traffic of the signed-in users they leave (45%% ValidateToken, 40%% GetMe, 15%% RefreshTokens); a failed call is retried with the same request after 50 ms (a lost rotation retried with the same token); deadline 15 s per call. Calls are counted by the code the caller got, retries included.\n")
	p("- E-mails: outbox rows against the messages the SMTP servers received, a message identified by recipient and code; lost = marked sent but never received; a pending row whose message arrived all the same (its sender died, or the database failed, before recording it) is counted apart, as a resend to come; undelivered = the other pending rows; a duplicate is a second copy of a message, compared by `Message-ID`. Inconsistent rows: live token families with two unused tokens, users without a code, users without an e-mail (SQL on the database, directly). Health: grpc.health.v1 Check every 50 ms. Memory: authd's `/metrics` (`go_memstats_heap_inuse_bytes`) and `/proc` (VmRSS), every 250 ms.\n\n")
	p("| scenario | goals met |\n|---|---|\n")
	for _, o := range r.outcomes {
		n, ok := 0, 0
		for _, f := range o.Figures {
			if f.Met != nil {
				n++
				if *f.Met {
					ok++
				}
			}
		}
		v := fmt.Sprintf("%d of %d", ok, n)
		if o.Err != nil {
			v = "could not finish"
		} else if ok < n {
			v = "**" + v + "**"
		}
		p("| [%s](#%s) | %s |\n", o.Title, anchor(o.Title), v)
	}
	p("\n")
	for _, o := range r.outcomes {
		p("## %s\n\n%s\n\n", o.Title, o.What)
		if o.Err != nil {
			p("**The scenario could not finish:** %v\n\n", o.Err)
		}
		if len(o.Figures) == 0 {
			continue
		}
		p("| figure | measured | goal | met |\n|---|---|---|---|\n")
		for _, f := range o.Figures {
			p("| %s | %s | %s | %s |\n", f.Name, strings.ReplaceAll(f.Value, "|", "\\|"), f.Goal, met(f))
		}
		p("\n")
	}
	return b.String()
}
