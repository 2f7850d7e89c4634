package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"ariga.io/atlas/sql/migrate"
)

// ErrInvalidIndex reports that an index a migration built concurrently
// is INVALID (pg_index.indisvalid is false) after its statement.
var ErrInvalidIndex = errors.New("index is INVALID after CREATE INDEX CONCURRENTLY")

// concurrentIndex returns the regclass text of the index a CREATE
// [UNIQUE] INDEX CONCURRENTLY statement builds (schema-qualified when its
// table is), and false for any other statement.
func concurrentIndex(stmt string) (string, bool) {
	s := strings.TrimSpace(reSpaces.ReplaceAllString(stmt, " "))
	m := rePGCreateIndex.FindStringSubmatch(s)
	if m == nil || m[2] == "" || m[3] == "" {
		return "", false
	}
	name := quoteIdent(unquote(m[3]))
	if i := lastDot(m[4]); i >= 0 {
		return quoteIdent(unquote(m[4][:i])) + "." + name, true
	}
	return name, true
}

// indexGuard wraps the Atlas driver that runs a file outside a
// transaction on PostgreSQL. A CREATE INDEX CONCURRENTLY that fails (a
// deadlock, a duplicate key, a cancel) leaves an INVALID index behind,
// which a retry with IF NOT EXISTS would then skip, and without IF NOT
// EXISTS would fail on. So before such a statement the guard drops an
// INVALID index of the same name (a valid one is kept), and after it the
// guard checks pg_index.indisvalid and fails the statement, as if it had
// failed, when the index is not valid. Everything else passes through.
type indexGuard struct {
	migrate.Driver
	q   querier
	log *slog.Logger
}

// ScanStmts splits files as the wrapped driver does, so statements and
// their hashes are the Atlas CLI's.
func (g indexGuard) ScanStmts(input string) ([]*migrate.Stmt, error) {
	if s, ok := g.Driver.(migrate.StmtScanner); ok {
		return s.ScanStmts(input)
	}
	return migrate.Stmts(input)
}

// ExecContext runs a statement, guarding CREATE INDEX CONCURRENTLY.
func (g indexGuard) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	name, ok := concurrentIndex(query)
	if !ok {
		return g.Driver.ExecContext(ctx, query, args...)
	}
	switch valid, exists, err := indexValid(ctx, g.q, name); {
	case err != nil:
		return nil, fmt.Errorf("check index %s: %w", name, err)
	case exists && !valid:
		g.log.Warn("dropping the INVALID index a failed CREATE INDEX CONCURRENTLY left, before building it again", "index", name)
		if _, err := g.Driver.ExecContext(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+name); err != nil {
			return nil, fmt.Errorf("drop the INVALID index %s left by an earlier attempt: %w", name, err)
		}
	}
	res, err := g.Driver.ExecContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	switch valid, exists, err := indexValid(ctx, g.q, name); {
	case err != nil:
		return nil, fmt.Errorf("check index %s: %w", name, err)
	case exists && !valid:
		return nil, fmt.Errorf("%w: %s (pg_index.indisvalid is false)", ErrInvalidIndex, name)
	}
	return res, nil
}

// indexValid reports whether the index named by the regclass text name
// exists and is valid.
func indexValid(ctx context.Context, q querier, name string) (valid, exists bool, err error) {
	err = q.QueryRowContext(ctx, `SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)`, name).Scan(&valid)
	if errors.Is(err, sql.ErrNoRows) {
		return false, false, nil
	}
	return valid, err == nil, err
}
