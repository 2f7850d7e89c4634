package migrate

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"ariga.io/atlas/schemahcl"
	"ariga.io/atlas/sql/schema"
	"ariga.io/atlas/sql/sqlcheck"
	"entgo.io/ent/dialect"
)

// authd's own analyzers. Their names start with "authd_" so that a lint
// block configures them without touching the Atlas CLI's analyzers (the
// CLI ignores blocks it does not know); their codes start with "AD".
const (
	// AnalyzerTxMode (PostgreSQL) reports statements PostgreSQL refuses
	// in a transaction block in a file without `-- atlas:txmode none`
	// (AD101), and CREATE INDEX CONCURRENTLY IF NOT EXISTS (AD102).
	// Errors by default.
	AnalyzerTxMode = "authd_txmode"
	// AnalyzerLock (PostgreSQL) reports statements that block writes to
	// a table that exists before the file for work proportional to its
	// size, per authd's table of statement kinds (AD111). Warnings by
	// default.
	AnalyzerLock = "authd_lock"
	// AnalyzerSQLiteRebuild (SQLite) reports a rebuild (or drop) of a
	// table other tables reference in a file without `-- atlas:txmode
	// none` (AD201). Warnings by default.
	AnalyzerSQLiteRebuild = "authd_sqlite_rebuild"
)

var (
	codeNeedsNoTx     = sqlcheck.Code("AD101")
	codeIfNotExists   = sqlcheck.Code("AD102")
	codeBlocksWrites  = sqlcheck.Code("AD111")
	codeSQLiteRebuild = sqlcheck.Code("AD201")
	reNeedsNoTx       = regexp.MustCompile(`(?i)^(CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY|DROP\s+INDEX\s+CONCURRENTLY|REINDEX\s+(\([^)]*\)\s*)?\w+\s+CONCURRENTLY|VACUUM|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+SYSTEM)\b`)
	reConcurrentlyINE = regexp.MustCompile(`(?i)^CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\b`)
)

// ownAnalyzers returns authd's analyzers for dialect d, configured by the
// lint block rules (`authd_txmode { error = false }` and so on).
func ownAnalyzers(d string, rules *schemahcl.Resource) ([]sqlcheck.Analyzer, error) {
	var out []sqlcheck.Analyzer
	add := func(name string, errDefault bool, fn func(*check, *sqlcheck.Pass) []sqlcheck.Diagnostic, report string) error {
		c := &check{name: name, report: report, run: fn}
		c.Error = &errDefault
		if r, ok := rules.Resource(name); ok {
			if err := r.As(&c.Options); err != nil {
				return fmt.Errorf("migrate: lint block %s: %w", name, err)
			}
		}
		out = append(out, c)
		return nil
	}
	var err error
	switch d {
	case dialect.Postgres:
		err = errors.Join(
			add(AnalyzerTxMode, true, checkTxMode, "statements that cannot run in a transaction"),
			add(AnalyzerLock, false, checkLocks, "statements that block writes on existing tables"),
		)
	case dialect.SQLite:
		err = add(AnalyzerSQLiteRebuild, false, checkSQLiteRebuild, "rebuild of a referenced table inside a transaction")
	}
	return out, err
}

// check is one of authd's analyzers.
type check struct {
	sqlcheck.Options
	name, report string
	run          func(*check, *sqlcheck.Pass) []sqlcheck.Diagnostic
}

// Name implements sqlcheck.NamedAnalyzer.
func (c *check) Name() string { return c.name }

// Analyze implements sqlcheck.Analyzer: like Atlas's analyzers it writes
// one report and, when configured to error, returns an error.
func (c *check) Analyze(_ context.Context, p *sqlcheck.Pass) error {
	diags := c.run(c, p)
	if len(diags) == 0 {
		return nil
	}
	p.Reporter.WriteReport(sqlcheck.Report{Text: c.report, Diagnostics: diags})
	if c.Error != nil && *c.Error {
		return errors.New(c.report)
	}
	return nil
}

func fileTxMode(p *sqlcheck.Pass) string {
	mode, err := TxMode(p.File.File)
	if err != nil {
		return TxModeFile
	}
	return mode
}

func stmtText(c *sqlcheck.Change) string {
	if c.Stmt == nil {
		return ""
	}
	return strings.TrimSpace(reSpaces.ReplaceAllString(c.Stmt.Text, " "))
}

// checkTxMode: AD101 and AD102.
func checkTxMode(_ *check, p *sqlcheck.Pass) []sqlcheck.Diagnostic {
	none := fileTxMode(p) == TxModeNone
	var diags []sqlcheck.Diagnostic
	for _, c := range p.File.Changes {
		s := stmtText(c)
		if s == "" {
			continue
		}
		if !none && reNeedsNoTx.MatchString(s) {
			diags = append(diags, sqlcheck.Diagnostic{Code: codeNeedsNoTx, Pos: c.Stmt.Pos,
				Text:           fmt.Sprintf("%s cannot run inside a transaction block, and this file runs in one: put `-- atlas:txmode none` and an empty line at the top of the file (authd and the Atlas CLI then run its statements one by one)", firstWords(s, 4)),
				SuggestedFixes: []sqlcheck.SuggestedFix{{Message: "Add `-- atlas:txmode none` followed by an empty line at the top of the file"}}})
		}
		if reConcurrentlyINE.MatchString(s) {
			diags = append(diags, sqlcheck.Diagnostic{Code: codeIfNotExists, Pos: c.Stmt.Pos,
				Text:           "CREATE INDEX CONCURRENTLY IF NOT EXISTS skips the INVALID index a failed attempt leaves behind, so a retry by the Atlas CLI records the file applied with an unusable index (authd drops such a leftover first): write it without IF NOT EXISTS",
				SuggestedFixes: []sqlcheck.SuggestedFix{{Message: "Remove IF NOT EXISTS"}}})
		}
	}
	return diags
}

// checkLocks: AD111, from authd's table of statement kinds.
func checkLocks(_ *check, p *sqlcheck.Pass) []sqlcheck.Diagnostic {
	var diags []sqlcheck.Diagnostic
	for _, c := range p.File.Changes {
		s := stmtText(c)
		if s == "" {
			continue
		}
		l := ClassifyStatement(dialect.Postgres, s, nil)
		if !l.Known || !l.BlocksWrites || !l.Long {
			continue
		}
		var existing []string
		for _, t := range l.Tables {
			if tableBefore(p.File, t) {
				existing = append(existing, t)
			}
		}
		if len(existing) == 0 {
			continue
		}
		text := fmt.Sprintf("%s takes %s on %s %s: writes to it wait meanwhile", l.Kind, l.Mode, quoteList(existing), l.Held)
		var fixes []sqlcheck.SuggestedFix
		if strings.HasPrefix(l.Kind, "CREATE") && strings.Contains(l.Kind, "INDEX") {
			fixes = append(fixes, sqlcheck.SuggestedFix{Message: "Build it with CREATE INDEX CONCURRENTLY, in a file of its own with `-- atlas:txmode none`"})
		}
		diags = append(diags, sqlcheck.Diagnostic{Code: codeBlocksWrites, Pos: c.Stmt.Pos, Text: text, SuggestedFixes: fixes})
	}
	return diags
}

// tableBefore reports whether table t exists before the file.
func tableBefore(f *sqlcheck.File, t string) bool {
	if f.From == nil {
		return false
	}
	for _, s := range f.From.Schemas {
		if _, ok := s.Table(t); ok {
			return true
		}
	}
	return false
}

// checkSQLiteRebuild: AD201. Atlas rebuilds an SQLite table (CREATE
// new_x, copy, DROP x, RENAME) between `PRAGMA foreign_keys = off` and
// `on`; inside a transaction those pragmas are no-ops, so whoever runs
// the file in a transaction with foreign keys on deletes (CASCADE),
// clears (SET NULL) or refuses (RESTRICT) the rows that reference x when
// it drops x.
func checkSQLiteRebuild(_ *check, p *sqlcheck.Pass) []sqlcheck.Diagnostic {
	if fileTxMode(p) == TxModeNone || p.File.From == nil {
		return nil
	}
	var diags []sqlcheck.Diagnostic
	for _, c := range p.File.Changes {
		for _, ch := range c.Changes {
			drop, ok := ch.(*schema.DropTable)
			if !ok || c.Stmt == nil {
				continue
			}
			refs := referencing(p.File.From, drop.T.Name)
			if len(refs) == 0 {
				continue
			}
			verb := "dropping"
			if p.File.To != nil {
				for _, s := range p.File.To.Schemas {
					if _, ok := s.Table(drop.T.Name); ok {
						verb = "rebuilding"
					}
				}
			}
			diags = append(diags, sqlcheck.Diagnostic{Code: codeSQLiteRebuild, Pos: c.Stmt.Pos,
				Text: fmt.Sprintf("%s table %q, which %s reference, in a file that runs in a transaction: PRAGMA foreign_keys = off is a no-op there, so a runner that keeps foreign keys on (sqlite3, most tools) changes those rows when it drops %q. authd and the Atlas CLI turn foreign keys off around each file's transaction; `-- atlas:txmode none` makes the file's own pragma work for any runner",
					verb, drop.T.Name, strings.Join(refs, ", "), drop.T.Name),
				SuggestedFixes: []sqlcheck.SuggestedFix{{Message: "Add `-- atlas:txmode none` followed by an empty line at the top of the file"}}})
		}
	}
	return diags
}

// referencing lists the foreign keys of other tables that reference
// table t, as `table (ON DELETE action)`.
func referencing(r *schema.Realm, t string) []string {
	var out []string
	for _, s := range r.Schemas {
		for _, tbl := range s.Tables {
			if tbl.Name == t {
				continue
			}
			for _, fk := range tbl.ForeignKeys {
				if fk.RefTable != nil && fk.RefTable.Name == t {
					action := string(fk.OnDelete)
					if action == "" {
						action = "NO ACTION"
					}
					out = append(out, fmt.Sprintf("%q (ON DELETE %s)", tbl.Name, action))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
