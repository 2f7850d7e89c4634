package migrate

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
)

// RevisionTable is the table the Atlas CLI records applied migrations in.
const RevisionTable = "atlas_schema_revisions"

// revisionDDL creates the table with the columns and types the Atlas CLI's
// own ent schema gives it (ariga/atlas
// cmd/atlas/internal/migrate/ent/schema/revision.go), per dialect, so the
// CLI and authd read and write the same rows.
var revisionDDL = map[string]string{
	dialect.Postgres: `CREATE TABLE IF NOT EXISTS %s (
  "version" character varying NOT NULL,
  "description" character varying NOT NULL,
  "type" bigint NOT NULL DEFAULT 2,
  "applied" bigint NOT NULL DEFAULT 0,
  "total" bigint NOT NULL DEFAULT 0,
  "executed_at" timestamptz NOT NULL,
  "execution_time" bigint NOT NULL,
  "error" text NULL,
  "error_stmt" text NULL,
  "hash" character varying NOT NULL,
  "partial_hashes" jsonb NULL,
  "operator_version" character varying NOT NULL,
  PRIMARY KEY ("version")
)`,
	dialect.SQLite: `CREATE TABLE IF NOT EXISTS %s (
  "version" text NOT NULL,
  "description" text NOT NULL,
  "type" integer NOT NULL DEFAULT (2),
  "applied" integer NOT NULL DEFAULT (0),
  "total" integer NOT NULL DEFAULT (0),
  "executed_at" datetime NOT NULL,
  "execution_time" integer NOT NULL,
  "error" text NULL,
  "error_stmt" text NULL,
  "hash" text NOT NULL,
  "partial_hashes" json NULL,
  "operator_version" text NOT NULL,
  PRIMARY KEY ("version")
)`,
}

// querier is what revisions need: a *sql.DB, *sql.Conn or *sql.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// revisions implements migrate.RevisionReadWriter on the CLI's table in one
// schema: on PostgreSQL the connection's current schema, as the CLI does for
// a URL bound to a schema with search_path; on SQLite "main".
type revisions struct {
	q       querier
	dialect string
	schema  string
}

var _ migrate.RevisionReadWriter = (*revisions)(nil)

func newRevisions(ctx context.Context, q querier, d string) (*revisions, error) {
	if d == dialect.SQLite {
		return &revisions{q: q, dialect: d, schema: "main"}, nil
	}
	var schema string
	if err := q.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return nil, fmt.Errorf("current schema: %w", err)
	}
	return &revisions{q: q, dialect: d, schema: schema}, nil
}

func (r *revisions) table() string {
	return fmt.Sprintf("%s.%s", quoteIdent(r.schema), quoteIdent(RevisionTable))
}

// ensure creates the table if it does not exist.
func (r *revisions) ensure(ctx context.Context) error {
	if _, err := r.q.ExecContext(ctx, fmt.Sprintf(revisionDDL[r.dialect], r.table())); err != nil {
		return fmt.Errorf("create %s: %w", RevisionTable, err)
	}
	return nil
}

// exists reports whether the table exists.
func (r *revisions) exists(ctx context.Context) (bool, error) {
	query := `SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2)`
	if r.dialect == dialect.SQLite {
		query = `SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND $1 = 'main' AND name = $2)`
	}
	var ok bool
	err := r.q.QueryRowContext(ctx, query, r.schema, RevisionTable).Scan(&ok)
	return ok, err
}

func (r *revisions) Ident() *migrate.TableIdent {
	return &migrate.TableIdent{Name: RevisionTable, Schema: r.schema}
}

// cloudIdentifier is a row the Atlas CLI keeps in the table for Atlas Cloud
// reporting; it is no revision (the CLI skips it too).
const cloudIdentifier = ".atlas_cloud_identifier"

const revisionColumns = `"version", "description", "type", "applied", "total", "executed_at", "execution_time", "error", "error_stmt", "hash", "partial_hashes", "operator_version"`

func (r *revisions) ReadRevisions(ctx context.Context) ([]*migrate.Revision, error) {
	ok, err := r.exists(ctx)
	if err != nil || !ok {
		return nil, err
	}
	// Versions are compared byte-wise, as Atlas compares them, whatever the
	// database's collation.
	order := `"version" COLLATE "C"`
	if r.dialect == dialect.SQLite {
		order = `"version" COLLATE BINARY`
	}
	rows, err := r.q.QueryContext(ctx, fmt.Sprintf(`SELECT %s FROM %s WHERE "version" <> $1 ORDER BY %s`, revisionColumns, r.table(), order), cloudIdentifier)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var revs []*migrate.Revision
	for rows.Next() {
		rev, err := scanRevision(rows)
		if err != nil {
			return nil, err
		}
		revs = append(revs, rev)
	}
	return revs, rows.Err()
}

func (r *revisions) ReadRevision(ctx context.Context, version string) (*migrate.Revision, error) {
	if version == cloudIdentifier {
		return nil, migrate.ErrRevisionNotExist
	}
	ok, err := r.exists(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, migrate.ErrRevisionNotExist
	}
	rows, err := r.q.QueryContext(ctx, fmt.Sprintf(`SELECT %s FROM %s WHERE "version" = $1`, revisionColumns, r.table()), version)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, migrate.ErrRevisionNotExist
	}
	return scanRevision(rows)
}

func (r *revisions) WriteRevision(ctx context.Context, rev *migrate.Revision) error {
	if err := r.ensure(ctx); err != nil {
		return err
	}
	var partial any
	if rev.PartialHashes != nil {
		b, err := json.Marshal(rev.PartialHashes)
		if err != nil {
			return err
		}
		partial = string(b)
	}
	_, err := r.q.ExecContext(ctx, fmt.Sprintf(`INSERT INTO %s (%s)
VALUES ($1, $2, $3, $4, $5, $6, $7, NULLIF($8, ''), NULLIF($9, ''), $10, $11, $12)
ON CONFLICT ("version") DO UPDATE SET
  "type" = EXCLUDED."type", "applied" = EXCLUDED."applied", "total" = EXCLUDED."total",
  "execution_time" = EXCLUDED."execution_time", "error" = EXCLUDED."error",
  "error_stmt" = EXCLUDED."error_stmt", "hash" = EXCLUDED."hash",
  "partial_hashes" = EXCLUDED."partial_hashes", "operator_version" = EXCLUDED."operator_version"`,
		r.table(), revisionColumns),
		rev.Version, rev.Description, int64(rev.Type), rev.Applied, rev.Total,
		rev.ExecutedAt, int64(rev.ExecutionTime), rev.Error, rev.ErrorStmt,
		rev.Hash, partial, rev.OperatorVersion)
	return err
}

func (r *revisions) DeleteRevision(ctx context.Context, version string) error {
	_, err := r.q.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %s WHERE "version" = $1`, r.table()), version)
	return err
}

func scanRevision(rows *sql.Rows) (*migrate.Revision, error) {
	var (
		rev              migrate.Revision
		typ, execTime    int64
		errText, errStmt sql.NullString
		partial          []byte
		executedAt       time.Time
	)
	if err := rows.Scan(&rev.Version, &rev.Description, &typ, &rev.Applied, &rev.Total,
		&executedAt, &execTime, &errText, &errStmt, &rev.Hash, &partial, &rev.OperatorVersion); err != nil {
		return nil, err
	}
	rev.Type = migrate.RevisionType(typ)
	rev.ExecutedAt = executedAt
	rev.ExecutionTime = time.Duration(execTime)
	rev.Error, rev.ErrorStmt = errText.String, errStmt.String
	if len(partial) > 0 {
		if err := json.Unmarshal(partial, &rev.PartialHashes); err != nil {
			return nil, errors.New("partial_hashes: " + err.Error())
		}
	}
	return &rev, nil
}

func quoteIdent(s string) string {
	out := []byte{'"'}
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			out = append(out, '"')
		}
		out = append(out, s[i])
	}
	return string(append(out, '"'))
}
