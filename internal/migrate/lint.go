package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"slices"
	"strings"

	"ariga.io/atlas/schemahcl"
	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	_ "ariga.io/atlas/sql/postgres/postgrescheck" // registers PostgreSQL's analyzers
	"ariga.io/atlas/sql/schema"
	"ariga.io/atlas/sql/sqlcheck"
	"ariga.io/atlas/sql/sqlclient"
	"ariga.io/atlas/sql/sqlite"
	_ "ariga.io/atlas/sql/sqlite/sqlitecheck" // registers SQLite's analyzers
	"entgo.io/ent/dialect"
)

// Finding levels: an analyzer configured with `error = true` in the lint
// block (or erring by default, as destructive does) makes its findings
// errors, which fail `authd migrate lint`; the others are warnings.
const (
	LevelError   = "error"
	LevelWarning = "warning"
)

// LintOptions says which files Lint analyzes and how.
type LintOptions struct {
	// Dir is the migration directory: SQL files and atlas.sum.
	Dir fs.FS
	// Baseline: the files whose version is greater are analyzed, the
	// others only replayed. Ignored when Latest is set.
	Baseline string
	// Latest, when positive, analyzes the latest N files instead (the
	// Atlas CLI's --latest N).
	Latest int
	// Rules is the lint block configuring the analyzers
	// (Config.LintRules); nil keeps every analyzer's default.
	Rules *schemahcl.Resource
	// Dev is the empty database the files are replayed on.
	Dev *DevDB
}

// LintReport is the outcome of linting one migration directory.
type LintReport struct {
	// Dialect is dialect.Postgres or dialect.SQLite.
	Dialect string `json:"dialect"`
	// Dev says where the files were replayed.
	Dev string `json:"dev"`
	// From is the last file replayed but not analyzed; "" when none.
	From string `json:"from,omitempty"`
	// Files are the analyzed files, in version order.
	Files []*FileLint `json:"files"`
}

// FileLint is the outcome of one file.
type FileLint struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// TxMode is the file's transaction mode (TxModeFile or TxModeNone).
	TxMode string `json:"txmode"`
	// Ignored is true when a file directive `-- atlas:nolint` turns every
	// analyzer off for it.
	Ignored bool `json:"ignored,omitempty"`
	// Error is set when the file could not be replayed or analyzed; it
	// counts as an error finding.
	Error    string    `json:"error,omitempty"`
	Findings []Finding `json:"findings"`
}

// Finding is one diagnostic of an analyzer.
type Finding struct {
	// Level is LevelError or LevelWarning.
	Level string `json:"level"`
	// Analyzer is the analyzer's name, e.g. "destructive": the name a
	// lint block configures and `-- atlas:nolint NAME` silences.
	Analyzer string `json:"analyzer"`
	// Code is the diagnostic's code, e.g. "DS103", which `-- atlas:nolint
	// DS103` silences.
	Code string `json:"code"`
	// Report is the analyzer's summary, e.g. "destructive changes
	// detected".
	Report string `json:"report"`
	// Text is the diagnostic.
	Text string `json:"text"`
	// Line is the 1-based line of the statement in the file.
	Line int `json:"line"`
	// Fixes are suggested fixes, if any.
	Fixes []string `json:"fixes,omitempty"`
}

// Errors counts error findings and file errors.
func (r *LintReport) Errors() int {
	n := 0
	for _, f := range r.Files {
		if f.Error != "" {
			n++
		}
		for _, x := range f.Findings {
			if x.Level == LevelError {
				n++
			}
		}
	}
	return n
}

// Warnings counts warning findings.
func (r *LintReport) Warnings() int {
	n := 0
	for _, f := range r.Files {
		for _, x := range f.Findings {
			if x.Level == LevelWarning {
				n++
			}
		}
	}
	return n
}

// Lint replays the directory on opts.Dev and runs, on each file after
// opts.Baseline (or the latest opts.Latest files), the analyzers that
// apply to dialect d: the Atlas library's (destructive, data_depend,
// incompatible, condrop, registered per dialect) and authd's own (see
// checks.go), configured by opts.Rules, honouring `atlas:nolint`
// directives as the Atlas CLI does. It fails only when it cannot run
// (atlas.sum does not match, the baseline is not a file, a base file does
// not replay); findings and files that fail to replay are in the report.
func Lint(ctx context.Context, d string, opts LintOptions) (*LintReport, error) {
	dir, err := MemDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	if err := validate(dir); err != nil {
		return nil, err
	}
	files, err := dir.Files()
	if err != nil {
		return nil, err
	}
	var base, feat []migrate.File
	switch {
	case opts.Latest > 0:
		n := min(opts.Latest, len(files))
		base, feat = files[:len(files)-n], files[len(files)-n:]
	default:
		i := slices.IndexFunc(files, func(f migrate.File) bool { return f.Version() == opts.Baseline })
		if i < 0 {
			return nil, fmt.Errorf("migrate: lint baseline %q is not a file of the directory", opts.Baseline)
		}
		base, feat = files[:i+1], files[i+1:]
	}
	return lintFiles(ctx, d, opts.Dev, opts.Rules, base, feat)
}

// lintFiles replays base on dev, then loads each of feat statement by
// statement (executing it, inspecting the schema, diffing) as the Atlas
// CLI's dev loader does, and analyzes it.
func lintFiles(ctx context.Context, d string, dev *DevDB, rules *schemahcl.Resource, base, feat []migrate.File) (*LintReport, error) {
	rep := &LintReport{Dialect: d, Dev: dev.Location, Files: []*FileLint{}}
	if len(base) > 0 {
		rep.From = base[len(base)-1].Version()
	}
	if len(feat) == 0 {
		return rep, nil
	}
	analyzers, err := Analyzers(d, rules)
	if err != nil {
		return nil, err
	}
	drv, err := openDriver(d, dev.DB)
	if err != nil {
		return nil, err
	}
	for _, f := range base {
		if err := replay(ctx, dev, drv, f); err != nil {
			return nil, fmt.Errorf("migrate: replay the files before the ones to lint: %w", err)
		}
	}
	current, err := inspectSchema(ctx, drv)
	if err != nil {
		return nil, err
	}
	client := &sqlclient.Client{Name: driverName(d), DB: dev.DB, Driver: drv,
		URL: &sqlclient.URL{URL: &url.URL{Scheme: driverName(d)}, Schema: current.Name}}
	for i, f := range feat {
		fl := &FileLint{Name: f.Name(), Version: f.Version(), Findings: []Finding{}}
		rep.Files = append(rep.Files, fl)
		if fl.TxMode, err = TxMode(f); err != nil {
			fl.Error = err.Error()
		}
		sf := &sqlcheck.File{File: f, From: current.Realm}
		next, err := loadChanges(ctx, dev, drv, sf, current)
		if err != nil {
			// As the CLI, stop at a file that does not replay: the ones
			// after it would be analyzed on a wrong schema.
			fl.Error = err.Error()
			for _, g := range feat[i+1:] {
				rep.Files = append(rep.Files, &FileLint{Name: g.Name(), Version: g.Version(), Findings: []Finding{},
					Error: "not analyzed: " + f.Name() + " does not replay"})
			}
			return rep, nil
		}
		sf.To, current = next.Realm, next
		analyze(ctx, client, analyzers, sf, fl)
	}
	return rep, nil
}

// loadChanges executes the file's statements one by one on the dev
// database and attaches to each the schema changes it made.
func loadChanges(ctx context.Context, dev *DevDB, drv migrate.Driver, f *sqlcheck.File, start *schema.Schema) (*schema.Schema, error) {
	stmts, err := migrate.FileStmtDecls(drv, f.File)
	if err != nil {
		return nil, fmt.Errorf("scan statements: %w", err)
	}
	current := start
	for _, s := range stmts {
		if _, err := dev.DB.ExecContext(ctx, s.Text); err != nil {
			return nil, fmt.Errorf("line %d: executing statement on the dev database: %w", lineOf(f.Bytes(), s.Pos), err)
		}
		next, err := inspectSchema(ctx, drv)
		if err != nil {
			return nil, err
		}
		changes, err := drv.RealmDiff(current.Realm, next.Realm)
		if err != nil {
			return nil, err
		}
		f.Changes = append(f.Changes, &sqlcheck.Change{Stmt: s, Changes: changes})
		current = next
	}
	if f.Sum, err = drv.RealmDiff(start.Realm, current.Realm); err != nil {
		return nil, err
	}
	return current, nil
}

// Analyzers returns the analyzers that apply to dialect d, configured by
// the lint block rules: authd's own first (they look at the statements as
// written; Atlas's SQLite analyzers fold a table rebuild into one change),
// then the Atlas library's for the dialect.
func Analyzers(d string, rules *schemahcl.Resource) ([]sqlcheck.Analyzer, error) {
	ours, err := ownAnalyzers(d, rules)
	if err != nil {
		return nil, err
	}
	atlas, err := sqlcheck.AnalyzerFor(driverName(d), rules)
	if err != nil {
		return nil, fmt.Errorf("migrate: configure analyzers: %w", err)
	}
	return append(ours, atlas...), nil
}

// DialectName is the dialect as people (and migrations/) name it:
// "postgres" or "sqlite".
func DialectName(d string) string {
	if d == dialect.SQLite {
		return "sqlite"
	}
	return d
}

func driverName(d string) string {
	if d == dialect.SQLite {
		return sqlite.DriverName
	}
	return postgres.DriverName
}

// analyze runs the analyzers on f and records their findings in fl.
func analyze(ctx context.Context, client *sqlclient.Client, analyzers []sqlcheck.Analyzer, f *sqlcheck.File, fl *FileLint) {
	nl := nolintRules(f)
	if nl.ignored {
		fl.Ignored = true
		return
	}
	for _, az := range analyzers {
		name := ""
		if n, ok := az.(sqlcheck.NamedAnalyzer); ok {
			name = n.Name()
		}
		var (
			reports []sqlcheck.Report
			skipped bool
		)
		rw := sqlcheck.ReportWriterFunc(func(r sqlcheck.Report) {
			kept := nl.filter(name, r.Diagnostics)
			if skipped = len(kept) == 0; !skipped {
				r.Diagnostics = kept
				reports = append(reports, r)
			}
		})
		err := runAnalyzer(ctx, az, &sqlcheck.Pass{File: f, Dev: client, Reporter: rw})
		level := LevelWarning
		if err != nil && !skipped {
			level = LevelError
			if len(reports) == 0 {
				fl.Error = joinErr(fl.Error, fmt.Sprintf("analyzer %s: %v", name, err))
			}
		}
		for _, r := range reports {
			for _, dg := range r.Diagnostics {
				x := Finding{Level: level, Analyzer: name, Code: dg.Code, Report: r.Text, Text: dg.Text, Line: lineOf(f.Bytes(), dg.Pos)}
				for _, fix := range dg.SuggestedFixes {
					if fix.Message != "" {
						x.Fixes = append(x.Fixes, fix.Message)
					}
				}
				fl.Findings = append(fl.Findings, x)
			}
		}
	}
}

// runAnalyzer runs one analyzer; a panic becomes its error, as in the CLI.
func runAnalyzer(ctx context.Context, az sqlcheck.Analyzer, p *sqlcheck.Pass) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("analyzer crashed: %v", r)
		}
	}()
	return az.Analyze(ctx, p)
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// nolint holds a file's atlas:nolint directives as the Atlas CLI reads
// them: a file directive without arguments (`-- atlas:nolint` at the top,
// followed by an empty line) ignores the whole file; a file directive with
// arguments (`-- atlas:nolint destructive DS103`) applies them to every
// statement; a statement directive (a comment right above the statement)
// to that statement. An argument names an analyzer or a code; none means
// every analyzer.
type nolint struct {
	ignored bool
	rules   map[int][]string // statement position -> arguments
}

func nolintRules(f *sqlcheck.File) *nolint {
	nl := &nolint{rules: map[int][]string{}}
	if l, ok := f.File.(*migrate.LocalFile); ok {
		ds := l.Directive("nolint")
		if len(ds) == 1 && ds[0] == "" {
			nl.ignored = true
			return nl
		}
		for _, d := range ds {
			for _, c := range f.Changes {
				nl.rules[c.Stmt.Pos] = append(nl.rules[c.Stmt.Pos], strings.Split(d, " ")...)
			}
		}
	}
	for _, c := range f.Changes {
		if c.Stmt != nil {
			for _, d := range c.Stmt.Directive("nolint") {
				nl.rules[c.Stmt.Pos] = append(nl.rules[c.Stmt.Pos], strings.Split(d, " ")...)
			}
		}
	}
	return nl
}

// filter drops the diagnostics a directive silences.
func (nl *nolint) filter(analyzer string, ds []sqlcheck.Diagnostic) []sqlcheck.Diagnostic {
	var kept []sqlcheck.Diagnostic
	for _, d := range ds {
		rules := nl.rules[d.Pos]
		switch {
		case len(rules) == 1 && rules[0] == "",
			slices.Contains(rules, d.Code),
			analyzer != "" && slices.Contains(rules, analyzer):
		default:
			kept = append(kept, d)
		}
	}
	return kept
}

// WriteText writes the report for people: each file, its findings with
// their level, code, line and analyzer, and a summary line.
func (r *LintReport) WriteText(w io.Writer) error {
	var b strings.Builder
	switch {
	case len(r.Files) == 0 && r.From != "":
		fmt.Fprintf(&b, "%s: no migration files after version %s: nothing to analyze\n", DialectName(r.Dialect), r.From)
	case len(r.Files) == 0:
		fmt.Fprintf(&b, "%s: no migration files to analyze\n", DialectName(r.Dialect))
	default:
		from := ""
		if r.From != "" {
			from = " after version " + r.From
		}
		fmt.Fprintf(&b, "%s: analyzing %d migration file(s)%s, replayed on %s\n", DialectName(r.Dialect), len(r.Files), from, r.Dev)
	}
	for _, f := range r.Files {
		mode := ""
		if f.TxMode == TxModeNone {
			mode = " (atlas:txmode none)"
		}
		fmt.Fprintf(&b, "  %s%s\n", f.Name, mode)
		switch {
		case f.Ignored:
			b.WriteString("    ignored: atlas:nolint file directive\n")
			continue
		case f.Error != "":
			fmt.Fprintf(&b, "    error: %s\n", f.Error)
		case len(f.Findings) == 0:
			b.WriteString("    no findings\n")
		}
		for _, x := range f.Findings {
			fmt.Fprintf(&b, "    %-7s %s L%d: %s (%s: %s)\n", x.Level, x.Code, x.Line, x.Text, x.Analyzer, x.Report)
			for _, fix := range x.Fixes {
				fmt.Fprintf(&b, "            fix: %s\n", fix)
			}
		}
	}
	if len(r.Files) > 0 {
		fmt.Fprintf(&b, "  %d error(s), %d warning(s)\n", r.Errors(), r.Warnings())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one JSON document.
func (r *LintReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ErrLintFindings is what `authd migrate lint` fails with when a report
// has errors.
var ErrLintFindings = errors.New("migration lint found errors")
