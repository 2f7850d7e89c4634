package migrate

import (
	"regexp"
	"strings"

	"entgo.io/ent/dialect"
)

// Lock is what authd's table of statement kinds says of the locks one
// migration statement takes: the table is ours (PostgreSQL's documented
// lock modes per command, SQLite's single write lock), matched on the
// statement's text, not read from the database.
type Lock struct {
	// Kind is the statement's kind, e.g. "CREATE INDEX" or "ALTER TABLE
	// ADD COLUMN"; "" when the statement is not in the table.
	Kind string `json:"kind"`
	// Mode is the lock mode: a PostgreSQL table lock mode (e.g. "SHARE",
	// "ACCESS EXCLUSIVE") or, on SQLite, "database write lock"; "" when
	// the statement locks no existing table.
	Mode string `json:"mode,omitempty"`
	// Tables are the existing tables the lock is on, in the statement's
	// order (a new table's own name is not listed).
	Tables []string `json:"tables,omitempty"`
	// NewTables are tables the statement creates.
	NewTables []string `json:"new_tables,omitempty"`
	// Index is the index a CREATE INDEX or DROP INDEX names.
	Index string `json:"index,omitempty"`
	// BlocksWrites reports whether INSERT, UPDATE and DELETE on Tables
	// wait while the lock is held.
	BlocksWrites bool `json:"blocks_writes"`
	// BlocksReads reports whether SELECT on Tables waits too.
	BlocksReads bool `json:"blocks_reads"`
	// Long reports that the lock is held for work proportional to the
	// table's size (an index build, a rewrite, a scan), not a catalog
	// change.
	Long bool `json:"long"`
	// Held says for how long, in words.
	Held string `json:"held,omitempty"`
	// Known is false when the statement is not in the table; authd then
	// assumes it blocks writes.
	Known bool `json:"known"`
}

// Summary is the lock in one line, e.g. `blocks writes: SHARE on
// "refresh_tokens" while it builds the index (reads continue)`.
func (l Lock) Summary() string {
	var b strings.Builder
	switch {
	case !l.Known:
		b.WriteString("blocks writes: assumed (not in authd's table of statement kinds)")
		return b.String()
	case l.BlocksReads:
		b.WriteString("blocks reads and writes")
	case l.BlocksWrites:
		b.WriteString("blocks writes")
	default:
		b.WriteString("blocks no writes")
	}
	if l.Mode != "" {
		b.WriteString(": ")
		b.WriteString(l.Mode)
		if len(l.Tables) > 0 {
			b.WriteString(" on ")
			b.WriteString(quoteList(l.Tables))
		}
	}
	if l.Held != "" {
		b.WriteString(" ")
		b.WriteString(l.Held)
	}
	return b.String()
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = `"` + n + `"`
	}
	return strings.Join(q, ", ")
}

// identifier patterns: "quoted", `quoted`, [quoted] or bare, optionally
// qualified by a schema.
const (
	identPat  = "(?:\"(?:[^\"]|\"\")+\"|`[^`]+`|\\[[^\\]]+\\]|[A-Za-z_][A-Za-z0-9_$]*)"
	qidentPat = identPat + `(?:\s*\.\s*` + identPat + `)?`
)

var (
	reSpaces = regexp.MustCompile(`\s+`)
	reQIdent = regexp.MustCompile(`^` + qidentPat)

	rePGCreateIndex = regexp.MustCompile(`(?i)^CREATE\s+(UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(?:(` + identPat + `)\s+)?ON\s+(?:ONLY\s+)?(` + qidentPat + `)`)
	rePGDropIndex   = regexp.MustCompile(`(?i)^DROP\s+INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+EXISTS\s+)?(` + qidentPat + `)`)
	reCreateTable   = regexp.MustCompile(`(?i)^CREATE\s+(?:(?:UNLOGGED|TEMP|TEMPORARY)\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(` + qidentPat + `)`)
	reReferences    = regexp.MustCompile(`(?i)\bREFERENCES\s+(` + qidentPat + `)`)
	reAlterTable    = regexp.MustCompile(`(?i)^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(` + qidentPat + `)\s*(.*)$`)
	reDropTable     = regexp.MustCompile(`(?i)^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(.*)$`)
	reDML           = regexp.MustCompile(`(?i)^(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(?:ONLY\s+)?(` + qidentPat + `)`)
	reTruncate      = regexp.MustCompile(`(?i)^TRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?(` + qidentPat + `)`)
	reTrigger       = regexp.MustCompile(`(?i)^CREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\s+.*?\sON\s+(` + qidentPat + `)`)
	reReindex       = regexp.MustCompile(`(?i)^REINDEX\s+(?:\([^)]*\)\s*)?(INDEX|TABLE|SCHEMA|DATABASE|SYSTEM)\s+(CONCURRENTLY\s+)?(` + qidentPat + `)?`)
	reNoTableLock   = regexp.MustCompile(`(?i)^(SET|RESET|SELECT|GRANT|REVOKE|CREATE\s+(?:OR\s+REPLACE\s+)?(?:SCHEMA|EXTENSION|TYPE|DOMAIN|SEQUENCE|FUNCTION|PROCEDURE|VIEW|COLLATION))\b`)
	reShareUpdate   = regexp.MustCompile(`(?i)^(COMMENT\s+ON|VACUUM|ANALYZE)\b`)
	reSQLitePragma  = regexp.MustCompile(`(?i)^(PRAGMA|SELECT|EXPLAIN)\b`)
)

// ClassifyStatement looks stmt up in authd's table of statement kinds for
// dialect d. resolveIndex, when not nil, names the table of an existing
// index (for DROP INDEX, whose text does not).
func ClassifyStatement(d, stmt string, resolveIndex func(index string) string) Lock {
	s := strings.TrimSpace(reSpaces.ReplaceAllString(strings.TrimSuffix(strings.TrimSpace(stmt), ";"), " "))
	if d == dialect.SQLite {
		return classifySQLite(s)
	}
	return classifyPostgres(s, resolveIndex)
}

// classifySQLite: SQLite has one write lock for the whole database; every
// statement that writes takes it, and a transaction holds it until it
// commits. In WAL mode readers continue.
func classifySQLite(s string) Lock {
	if reSQLitePragma.MatchString(s) {
		return Lock{Kind: firstWords(s, 1), Known: true}
	}
	l := Lock{Known: true, Mode: "database write lock", BlocksWrites: true,
		Held: "(every table: SQLite has one writer) until the file's transaction commits, or the statement ends outside a transaction"}
	switch {
	case reCreateTable.MatchString(s):
		m := reCreateTable.FindStringSubmatch(s)
		l.Kind, l.NewTables = "CREATE TABLE", []string{unquote(m[1])}
		for _, r := range reReferences.FindAllStringSubmatch(s, -1) {
			l.Tables = appendOnce(l.Tables, unquote(r[1]))
		}
	case rePGCreateIndex.MatchString(s):
		m := rePGCreateIndex.FindStringSubmatch(s)
		l.Kind, l.Index, l.Tables, l.Long = createIndexKind(m[1] != "", false), unquote(m[3]), []string{unquote(m[4])}, true
	case reAlterTable.MatchString(s):
		m := reAlterTable.FindStringSubmatch(s)
		l.Kind, l.Tables = "ALTER TABLE "+alterAction(m[2]), []string{unquote(m[1])}
	case reDropTable.MatchString(s):
		l.Kind, l.Tables = "DROP TABLE", tableList(reDropTable.FindStringSubmatch(s)[1])
	case reDML.MatchString(s):
		m := reDML.FindStringSubmatch(s)
		l.Kind, l.Tables, l.Long = strings.ToUpper(firstWords(m[1], 2)), []string{unquote(m[2])}, true
	case rePGDropIndex.MatchString(s):
		l.Kind, l.Index = "DROP INDEX", unquote(rePGDropIndex.FindStringSubmatch(s)[2])
	default:
		l.Kind = firstWords(s, 2)
	}
	return l
}

func classifyPostgres(s string, resolveIndex func(string) string) Lock {
	switch {
	case rePGCreateIndex.MatchString(s):
		m := rePGCreateIndex.FindStringSubmatch(s)
		l := Lock{Known: true, Kind: createIndexKind(m[1] != "", m[2] != ""), Index: unquote(m[3]), Tables: []string{unquote(m[4])}, Long: true}
		if m[2] != "" {
			l.Mode, l.Held = "SHARE UPDATE EXCLUSIVE", "while it builds the index in two passes (writes continue; other schema changes and VACUUM wait)"
		} else {
			l.Mode, l.BlocksWrites, l.Held = "SHARE", true, "while it builds the index (reads continue)"
		}
		return l
	case rePGDropIndex.MatchString(s):
		m := rePGDropIndex.FindStringSubmatch(s)
		l := Lock{Known: true, Index: unquote(m[2])}
		if resolveIndex != nil {
			if t := resolveIndex(l.Index); t != "" {
				l.Tables = []string{t}
			}
		}
		if m[1] != "" {
			l.Kind, l.Mode, l.Held = "DROP INDEX CONCURRENTLY", "SHARE UPDATE EXCLUSIVE", "while it waits for running transactions"
		} else {
			l.Kind, l.Mode, l.BlocksWrites, l.BlocksReads, l.Held = "DROP INDEX", "ACCESS EXCLUSIVE", true, true, "briefly (catalog change), but queued behind every running transaction on the table"
		}
		return l
	case reCreateTable.MatchString(s):
		m := reCreateTable.FindStringSubmatch(s)
		l := Lock{Known: true, Kind: "CREATE TABLE", NewTables: []string{unquote(m[1])}}
		for _, r := range reReferences.FindAllStringSubmatch(s, -1) {
			l.Tables = appendOnce(l.Tables, unquote(r[1]))
		}
		if len(l.Tables) > 0 {
			l.Mode, l.BlocksWrites, l.Held = "SHARE ROW EXCLUSIVE", true, "briefly, for its foreign keys (the new table is empty)"
		}
		return l
	case reAlterTable.MatchString(s):
		m := reAlterTable.FindStringSubmatch(s)
		return alterTablePostgres(unquote(m[1]), m[2])
	case reDropTable.MatchString(s):
		return Lock{Known: true, Kind: "DROP TABLE", Tables: tableList(reDropTable.FindStringSubmatch(s)[1]), Mode: "ACCESS EXCLUSIVE",
			BlocksWrites: true, BlocksReads: true, Held: "briefly (catalog change), but queued behind every running transaction on the table"}
	case reDML.MatchString(s):
		m := reDML.FindStringSubmatch(s)
		return Lock{Known: true, Kind: strings.ToUpper(firstWords(m[1], 2)), Tables: []string{unquote(m[2])}, Mode: "ROW EXCLUSIVE", Long: true,
			Held: "(row locks on the rows it changes, kept until the file's transaction commits; other rows stay writable)"}
	case reTruncate.MatchString(s):
		return Lock{Known: true, Kind: "TRUNCATE", Tables: []string{unquote(reTruncate.FindStringSubmatch(s)[1])}, Mode: "ACCESS EXCLUSIVE",
			BlocksWrites: true, BlocksReads: true, Held: "until the file's transaction commits"}
	case reTrigger.MatchString(s):
		return Lock{Known: true, Kind: "CREATE TRIGGER", Tables: []string{unquote(reTrigger.FindStringSubmatch(s)[1])}, Mode: "SHARE ROW EXCLUSIVE",
			BlocksWrites: true, Held: "briefly (catalog change)"}
	case reReindex.MatchString(s):
		m := reReindex.FindStringSubmatch(s)
		l := Lock{Known: true, Kind: "REINDEX " + strings.ToUpper(m[1]), Long: true}
		if m[2] != "" {
			l.Kind += " CONCURRENTLY"
			l.Mode, l.Held = "SHARE UPDATE EXCLUSIVE", "while it rebuilds (writes continue)"
		} else {
			l.Mode, l.BlocksWrites, l.Held = "SHARE", true, "while it rebuilds (index scans wait too)"
		}
		return l
	case reShareUpdate.MatchString(s):
		return Lock{Known: true, Kind: strings.ToUpper(firstWords(s, 2)), Mode: "SHARE UPDATE EXCLUSIVE"}
	case reNoTableLock.MatchString(s):
		return Lock{Known: true, Kind: strings.ToUpper(firstWords(s, 2))}
	}
	return Lock{Kind: strings.ToUpper(firstWords(s, 2)), BlocksWrites: true}
}

var (
	reAddFK        = regexp.MustCompile(`(?i)\bFOREIGN\s+KEY\b.*?\bREFERENCES\s+(` + qidentPat + `)`)
	reNotValid     = regexp.MustCompile(`(?i)\bNOT\s+VALID\b`)
	reValidate     = regexp.MustCompile(`(?i)^VALIDATE\s+CONSTRAINT\b`)
	reAlterType    = regexp.MustCompile(`(?i)\bALTER\s+(?:COLUMN\s+)?` + identPat + `\s+(?:SET\s+DATA\s+)?TYPE\b`)
	reSetNotNull   = regexp.MustCompile(`(?i)\bSET\s+NOT\s+NULL\b`)
	reAddCheck     = regexp.MustCompile(`(?i)\bADD\s+(?:CONSTRAINT\s+` + identPat + `\s+)?(CHECK|UNIQUE|PRIMARY\s+KEY|EXCLUDE)\b`)
	reAddColumn    = regexp.MustCompile(`(?i)^ADD\s+(?:COLUMN\s+)?(?:IF\s+NOT\s+EXISTS\s+)?` + identPat)
	reVolatileDflt = regexp.MustCompile(`(?i)\bDEFAULT\s+[^,]*\(`)
	reConstantFunc = regexp.MustCompile(`(?i)\bDEFAULT\s+(?:now|current_timestamp|transaction_timestamp|statement_timestamp|current_date)\s*\(\s*\)`)
	reGenerated    = regexp.MustCompile(`(?i)\bGENERATED\s+ALWAYS\s+AS\s*\(`)
)

// alterTablePostgres classifies ALTER TABLE by its actions; the strongest
// lock of any action is the statement's.
func alterTablePostgres(table, rest string) Lock {
	l := Lock{Known: true, Tables: []string{table}, Kind: "ALTER TABLE " + alterAction(rest)}
	trimmed := strings.TrimSpace(rest)
	switch {
	case reValidate.MatchString(trimmed):
		l.Mode, l.Long, l.Held = "SHARE UPDATE EXCLUSIVE", true, "while it checks every row (writes continue)"
		return l
	case reAddFK.MatchString(rest):
		ref := unquote(reAddFK.FindStringSubmatch(rest)[1])
		l.Tables = appendOnce(l.Tables, ref)
		l.Mode, l.BlocksWrites = "SHARE ROW EXCLUSIVE", true
		if reNotValid.MatchString(rest) {
			l.Held = "on both tables, briefly (NOT VALID: rows are checked later by VALIDATE CONSTRAINT)"
		} else {
			l.Long, l.Held = true, "on both tables while it checks every row (add it NOT VALID, then VALIDATE CONSTRAINT, to check without blocking writes)"
		}
		if !reAlterType.MatchString(rest) && !reSetNotNull.MatchString(rest) {
			return l
		}
	}
	l.Mode, l.BlocksWrites, l.BlocksReads = "ACCESS EXCLUSIVE", true, true
	switch {
	case reAlterType.MatchString(rest):
		l.Long, l.Held = true, "while it rewrites the table and its indexes (unless the new type is binary-coercible)"
	case reSetNotNull.MatchString(rest):
		l.Long, l.Held = true, "while it scans the table for NULLs"
	case reAddCheck.MatchString(rest) && !reNotValid.MatchString(rest):
		l.Long, l.Held = true, "while it checks every row or builds the constraint's index"
	case reAddColumn.MatchString(trimmed) && (reGenerated.MatchString(rest) || reVolatileDflt.MatchString(rest) && !reConstantFunc.MatchString(rest)):
		l.Long, l.Held = true, "while it rewrites the table (a volatile default or a generated column)"
	default:
		l.Held = "briefly (catalog change), but queued behind every running transaction on the table"
	}
	return l
}

// alterAction names the first action of an ALTER TABLE, e.g. "ADD COLUMN".
func alterAction(rest string) string {
	words := strings.Fields(strings.ToUpper(rest))
	switch {
	case len(words) == 0:
		return ""
	case len(words) >= 2 && (words[0] == "ADD" || words[0] == "DROP" || words[0] == "ALTER" || words[0] == "RENAME" || words[0] == "VALIDATE") &&
		(words[1] == "COLUMN" || words[1] == "CONSTRAINT" || words[1] == "TO"):
		return words[0] + " " + words[1]
	case words[0] == "ADD" || words[0] == "DROP" || words[0] == "ALTER":
		return words[0] + " COLUMN"
	default:
		return words[0]
	}
}

func createIndexKind(unique, concurrently bool) string {
	k := "CREATE INDEX"
	if unique {
		k = "CREATE UNIQUE INDEX"
	}
	if concurrently {
		k += " CONCURRENTLY"
	}
	return k
}

// tableList parses "a, b CASCADE" into table names.
func tableList(s string) []string {
	var out []string
	for {
		s = strings.TrimSpace(s)
		m := reQIdent.FindString(s)
		if m == "" {
			return out
		}
		switch strings.ToUpper(m) {
		case "CASCADE", "RESTRICT":
			return out
		}
		out = append(out, unquote(m))
		s = strings.TrimSpace(s[len(m):])
		if !strings.HasPrefix(s, ",") {
			return out
		}
		s = s[1:]
	}
}

// unquote returns the unqualified name of a possibly qualified, possibly
// quoted identifier; bare names are folded to lower case as PostgreSQL
// folds them.
func unquote(q string) string {
	q = strings.TrimSpace(q)
	// The last part of a qualified name.
	if i := lastDot(q); i >= 0 {
		q = strings.TrimSpace(q[i+1:])
	}
	switch {
	case len(q) >= 2 && q[0] == '"' && q[len(q)-1] == '"':
		return strings.ReplaceAll(q[1:len(q)-1], `""`, `"`)
	case len(q) >= 2 && (q[0] == '`' && q[len(q)-1] == '`' || q[0] == '[' && q[len(q)-1] == ']'):
		return q[1 : len(q)-1]
	default:
		return strings.ToLower(q)
	}
}

// lastDot is the index of the last dot outside quotes, -1 when none.
func lastDot(s string) int {
	var quote byte
	last := -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote || quote == '[' && c == ']' {
				quote = 0
			}
		case c == '"' || c == '`' || c == '[':
			quote = c
		case c == '.':
			last = i
		}
	}
	return last
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	if len(f) > n {
		f = f[:n]
	}
	return strings.Join(f, " ")
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
