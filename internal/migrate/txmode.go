package migrate

import (
	"fmt"

	"ariga.io/atlas/sql/migrate"
)

// Transaction modes a migration file may ask for with a file directive,
// `-- atlas:txmode none` at its top followed by an empty line, as the
// Atlas CLI reads it.
const (
	// TxModeFile runs the file in one transaction with its revision row
	// (the default, and the CLI's --tx-mode file).
	TxModeFile = "file"
	// TxModeNone runs the file's statements one by one outside any
	// transaction, recording the revision after each one, so a retry
	// resumes at the statement that failed: for statements PostgreSQL
	// refuses in a transaction block, such as CREATE INDEX CONCURRENTLY.
	TxModeNone = "none"
)

// txModeDirective is the directive's name.
const txModeDirective = "txmode"

// TxMode returns the transaction mode file f asks for: TxModeFile unless
// it has the directive. Like the Atlas CLI it refuses a file with several
// txmode directives, with "all" (a run-wide mode, not a file's) or with an
// unknown value.
func TxMode(f migrate.File) (string, error) {
	l, ok := f.(*migrate.LocalFile)
	if !ok {
		return TxModeFile, nil
	}
	switch ds := l.Directive(txModeDirective); {
	case len(ds) == 0:
		return TxModeFile, nil
	case len(ds) > 1:
		return "", fmt.Errorf("migrate: %s has %d atlas:txmode directives, want at most one", f.Name(), len(ds))
	case ds[0] == TxModeNone, ds[0] == TxModeFile:
		return ds[0], nil
	case ds[0] == "all":
		return "", fmt.Errorf("migrate: %s: atlas:txmode all applies to a whole run, not to a file; use %q or %q", f.Name(), TxModeFile, TxModeNone)
	default:
		return "", fmt.Errorf("migrate: %s: unknown atlas:txmode %q (want %q or %q)", f.Name(), ds[0], TxModeFile, TxModeNone)
	}
}
