package migrate_test

import (
	"context"
	"slices"
	"testing"

	"entgo.io/ent/dialect"

	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/migrations"
)

// The Atlas CLI keeps a ".atlas_cloud_identifier" row in the revisions
// table; it is no revision and must not make every file look pending.
func TestCloudIdentifierRowIgnored(t *testing.T) {
	ctx := context.Background()
	db, _ := emptyDB(t)
	apply(t, db, migrations.Postgres())
	if _, err := db.ExecContext(ctx, `INSERT INTO atlas_schema_revisions
		(version, description, type, applied, total, executed_at, execution_time, hash, operator_version)
		VALUES ('.atlas_cloud_identifier', '3f2f1ab5-0000-0000-0000-000000000000', 2, 0, 0, now(), 0, '', 'Atlas CLI')`); err != nil {
		t.Fatal(err)
	}
	m := migrate.New(db, dialect.Postgres, migrations.Postgres(), nil)
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Pending) != 0 || st.Current == ".atlas_cloud_identifier" {
		t.Errorf("status = current %q, %d pending", st.Current, len(st.Pending))
	}
	if got, err := m.Apply(ctx); err != nil || len(got) != 0 {
		t.Errorf("Apply = %v, %v; want nothing to do", got, err)
	}
}

// A pool of one connection (DATABASE__MAX_OPEN_CONNS=1) does not deadlock
// between the advisory lock and the migration transactions.
func TestApplyWithOneConnection(t *testing.T) {
	db, _ := emptyDB(t)
	db.SetMaxOpenConns(1)
	got := apply(t, db, migrations.Postgres())
	if want := versionsOf(sqlFiles(t, migrations.Postgres())); !slices.Equal(got, want) {
		t.Errorf("applied %v, want %v", got, want)
	}
}
