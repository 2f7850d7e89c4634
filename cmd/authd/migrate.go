package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"entgo.io/ent/dialect"

	auth "github.com/placebrain/auth"
	"github.com/placebrain/auth/internal/config"
	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/internal/server"
	"github.com/placebrain/auth/migrations"
)

const migrateUsage = `usage: authd migrate plan [--format text|json] [--config FILE]
       authd migrate apply
       authd migrate status
       authd migrate lint [--latest N] [--dialect postgres|sqlite] [--dir DIR] [--config FILE] [--format text|json]
       authd migrate drift [--format sql|json]`

// runMigrate is `authd migrate ...`. Every subcommand but lint reads only
// DATABASE__* and DATA__DIR (config.Storage), so DBAs can run it without
// the service's secrets; lint reads no configuration at all and never
// touches DATABASE__URL: it replays files on DEV_DATABASE_URL or SQLite
// in memory.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(migrateUsage)
	}
	fs := flag.NewFlagSet("migrate "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var format, configPath, dialectName, dirPath string
	var latest int
	switch args[0] {
	case "plan":
		fs.StringVar(&format, "format", "text", "text or json")
		fs.StringVar(&configPath, "config", "", "Atlas project file whose lint block configures the analyzers (default: the atlas.hcl built in)")
	case "lint":
		fs.StringVar(&format, "format", "text", "text or json")
		fs.StringVar(&configPath, "config", "", "Atlas project file whose lint block configures the analyzers (default: the atlas.hcl built in)")
		fs.StringVar(&dialectName, "dialect", "", "postgres or sqlite (default: both; with --dir, the directory's name)")
		fs.StringVar(&dirPath, "dir", "", "migration directory to lint instead of the built-in one")
		fs.IntVar(&latest, "latest", 0, "lint the latest N files instead of those after migrations.LintBaseline")
	case "drift":
		fs.StringVar(&format, "format", "sql", "sql or json")
	case "apply", "status":
	default:
		return errors.New(migrateUsage)
	}
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
		return errors.New(migrateUsage)
	}
	if args[0] == "lint" {
		return runLint(ctx, lintFlags{format: format, config: configPath, dialect: dialectName, dir: dirPath, latest: latest}, stdout, stderr)
	}
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
	fmt.Fprintf(stderr, "database: %s\n", db.Location)
	m := migrate.New(db.SQL, db.Dialect, migrations.For(db.Dialect), log)
	switch args[0] {
	case "plan":
		return runPlan(ctx, m, db.Dialect, db.Location, format, configPath, stdout)
	case "apply":
		applied, err := m.Apply(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "applied %d migrations %v\n", len(applied), applied)
		return nil
	case "status":
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		writeStatus(stdout, st)
		return nil
	default: // drift
		return runDrift(ctx, m, db.Dialect, format, stdout, stderr)
	}
}

// writeStatus prints the migration status; a partially applied file is
// reported with the Atlas CLI's facts (statements applied and left, the
// statement that failed and its error).
func writeStatus(w io.Writer, st *migrate.Status) {
	fmt.Fprintf(w, "current version: %q\napplied: %d\npending: %d\n", st.Current, len(st.Applied), len(st.Pending))
	if p := st.Partial; p != nil {
		fmt.Fprintf(w, "partially applied: %s (%d of %d statements applied, %d left; the next apply resumes at statement %d)\n",
			p.Version, p.Applied, p.Total, p.Total-p.Applied, p.Applied+1)
		if p.Error != "" {
			fmt.Fprintf(w, "last attempt failed at: %s\nerror: %s\n", oneLine(p.ErrorStmt), oneLine(p.Error))
		} else {
			fmt.Fprintln(w, "no error recorded: another process may be applying it now (authd waits for it at start)")
		}
	}
	for _, f := range st.Pending {
		fmt.Fprintf(w, "  pending %s\n", f.Name)
	}
}

func oneLine(s string) string {
	out := []rune{}
	space := false
	for _, r := range s {
		if r == '\n' || r == '\t' || r == '\r' || r == ' ' {
			space = true
			continue
		}
		if space && len(out) > 0 {
			out = append(out, ' ')
		}
		space = false
		out = append(out, r)
	}
	return string(out)
}

// lintConfig reads the Atlas project file: path, or the atlas.hcl built
// into the binary.
func lintConfig(path string) (*migrate.Config, error) {
	if path == "" {
		return migrate.ParseConfig("atlas.hcl (built in)", auth.AtlasHCL)
	}
	return migrate.LoadConfig(path)
}

// runPlan prints the plan of the pending files. Their lint runs on a dev
// database: SQLite in memory, or on PostgreSQL a scratch database on
// DEV_DATABASE_URL, only when it is set (a production host has no dev
// server by default, and plan never lints on DATABASE__URL).
func runPlan(ctx context.Context, m *migrate.Migrator, d, location, format, configPath string, stdout io.Writer) error {
	if format != "text" && format != "json" {
		return errors.New(migrateUsage)
	}
	cfg, err := lintConfig(configPath)
	if err != nil {
		return err
	}
	opts := migrate.PlanOptions{Rules: cfg.LintRules(migrations.Dirs[d])}
	if d == dialect.Postgres && os.Getenv("DEV_DATABASE_URL") == "" {
		opts.NoLint = "not linted: set DEV_DATABASE_URL to a PostgreSQL server where authd may create and drop a scratch database (never the database DATABASE__URL names)"
	} else {
		dev, err := migrate.OpenDev(ctx, d, migrate.DevURL())
		if err != nil {
			opts.NoLint = "not linted: " + err.Error()
		} else {
			defer dev.Close()
			opts.Dev = dev
		}
	}
	p, err := m.Review(ctx, opts)
	if err != nil {
		return err
	}
	p.Database = location
	if format == "json" {
		return p.WriteJSON(stdout)
	}
	return p.WriteText(stdout)
}

type lintFlags struct {
	format, config, dialect, dir string
	latest                       int
}

// runLint lints each dialect's directory (or --dir) and fails when an
// analyzer configured as an error reports, or a file does not replay.
func runLint(ctx context.Context, f lintFlags, stdout, stderr io.Writer) error {
	if f.format != "text" && f.format != "json" || f.latest < 0 {
		return errors.New(migrateUsage)
	}
	cfg, err := lintConfig(f.config)
	if err != nil {
		return err
	}
	dialects := []string{dialect.Postgres, dialect.SQLite}
	switch {
	case f.dialect != "":
		d, ok := dialectNamed(f.dialect)
		if !ok {
			return fmt.Errorf("--dialect %q: want postgres or sqlite", f.dialect)
		}
		dialects = []string{d}
	case f.dir != "":
		d, ok := dialectNamed(filepath.Base(filepath.Clean(f.dir)))
		if !ok {
			return errors.New("--dir: name the dialect with --dialect postgres|sqlite")
		}
		dialects = []string{d}
	}
	var reports []*migrate.LintReport
	errs := 0
	for _, d := range dialects {
		dir := migrations.For(d)
		if f.dir != "" {
			dir = os.DirFS(f.dir)
		}
		dev, err := migrate.OpenDev(ctx, d, migrate.DevURL())
		if err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		rep, err := migrate.Lint(ctx, d, migrate.LintOptions{
			Dir: dir, Baseline: migrations.LintBaseline, Latest: f.latest,
			Rules: cfg.LintRules(migrations.Dirs[d]), Dev: dev,
		})
		dev.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		reports = append(reports, rep)
		errs += rep.Errors()
		if f.format == "text" {
			if err := rep.WriteText(stdout); err != nil {
				return err
			}
		}
	}
	if f.format == "json" {
		for _, rep := range reports {
			if err := rep.WriteJSON(stdout); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(stderr, "lint policy: %s\n", cfg.Name)
	if errs > 0 {
		return fmt.Errorf("%w: %d error(s)", migrate.ErrLintFindings, errs)
	}
	return nil
}

// dialectNamed returns the dialect whose migration directory is named
// name ("postgres" or "sqlite").
func dialectNamed(name string) (string, bool) {
	for d, dir := range migrations.Dirs {
		if dir == name {
			return d, true
		}
	}
	return "", false
}

// errDrift is returned when the database differs from the end state.
var errDrift = errors.New("the database differs from the end state of the migration files")

// runDrift compares the database with the end state embedded in the
// binary and prints the SQL that would undo the differences.
func runDrift(ctx context.Context, m *migrate.Migrator, d, format string, stdout, stderr io.Writer) error {
	if format != "sql" && format != "json" {
		return errors.New(migrateUsage)
	}
	st, err := m.Status(ctx)
	if err != nil {
		return err
	}
	drift, err := m.Drift(ctx, migrations.EndState(d))
	if err != nil {
		return err
	}
	if format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			*migrate.Drift
			Drifted bool `json:"drifted"`
			Pending int  `json:"pending"`
		}{drift, drift.Drifted(), len(st.Pending)}); err != nil {
			return err
		}
	} else {
		if len(st.Pending) > 0 {
			fmt.Fprintf(stdout, "-- %d pending migration file(s): the differences below include what they would change; apply them first\n", len(st.Pending))
		}
		if !drift.Drifted() {
			fmt.Fprintf(stdout, "-- no drift: schema %q is the end state of the migration files (%s)\n", drift.Schema, migrations.EndStateFile(d))
		} else {
			fmt.Fprintf(stdout, "-- drift: schema %q differs from the end state of the migration files (%s):\n", drift.Schema, migrations.EndStateFile(d))
			for _, c := range drift.Changes {
				fmt.Fprintf(stdout, "--   %s\n", c)
			}
			fmt.Fprintln(stdout, "-- SQL that would bring it back to the end state (not run; review before running it, or write a migration if the change should stay):")
			for _, s := range drift.SQL {
				fmt.Fprintln(stdout, s)
			}
		}
	}
	if drift.Drifted() {
		fmt.Fprintf(stderr, "drift: %d difference(s)\n", len(drift.Changes))
		return errDrift
	}
	return nil
}
