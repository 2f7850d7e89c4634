package migrate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"entgo.io/ent/dialect"
	"github.com/google/go-cmp/cmp"

	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/internal/testutil/pgtest"
	"github.com/placebrain/auth/internal/testutil/testdb"
	"github.com/placebrain/auth/migrations"
)

// openDev opens a dev database of dialect d (PostgreSQL: a scratch
// database on the test server), closed when the test ends.
func openDev(t *testing.T, d string) *migrate.DevDB {
	t.Helper()
	dev, err := migrate.OpenDev(context.Background(), d, pgtest.AdminURL())
	if err != nil {
		t.Fatalf("open dev database: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

// TestEndStateCommitted: the committed end state is what the migration
// files build (`make migrate-check` checks the same before CI's tests).
func TestEndStateCommitted(t *testing.T) {
	d := testdb.Backend()
	got, err := migrate.EndState(context.Background(), openDev(t, d), migrations.For(d))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(migrations.EndState(d)), string(got)); diff != "" {
		t.Errorf("migrations/%s is stale: run `make migrate-state` (-committed +built):\n%s", migrations.EndStateFile(d), diff)
	}
}

// TestDrift: a database the files built has no drift; an index made by
// hand and one dropped by hand are both reported, each with the SQL that
// undoes it; undoing them ends the drift.
func TestDrift(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t)
	m := migrate.New(db.SQL, db.Dialect, migrations.For(db.Dialect), nil)
	end := migrations.EndState(db.Dialect)
	d, err := m.Drift(ctx, end)
	if err != nil {
		t.Fatal(err)
	}
	if d.Drifted() || len(d.SQL) != 0 {
		t.Fatalf("a migrated database drifted: %+v", d)
	}

	q := func(pg, lite string) string {
		if db.Dialect == dialect.SQLite {
			return lite
		}
		return pg
	}
	for _, s := range []string{
		`CREATE INDEX handmade_users_created_at ON users (created_at)`,
		`DROP INDEX refreshtoken_user_id`,
	} {
		if _, err := db.SQL.ExecContext(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	d, err = m.Drift(ctx, end)
	if err != nil {
		t.Fatal(err)
	}
	wantChanges := []string{
		`table "refresh_tokens": index "refreshtoken_user_id" is missing`,
		`table "users": index "handmade_users_created_at" is not in the migration files`,
	}
	wantSQL := []string{
		q(`CREATE INDEX "refreshtoken_user_id" ON "refresh_tokens" ("user_id");`, "CREATE INDEX `refreshtoken_user_id` ON `refresh_tokens` (`user_id`);"),
		q(`DROP INDEX "handmade_users_created_at";`, "DROP INDEX `handmade_users_created_at`;"),
	}
	if diff := cmp.Diff(wantChanges, d.Changes); diff != "" || !d.Drifted() {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantSQL, d.SQL); diff != "" {
		t.Errorf("SQL (-want +got):\n%s", diff)
	}
	var js bytes.Buffer
	if err := json.NewEncoder(&js).Encode(d); err != nil || !strings.Contains(js.String(), `"sql":[`) {
		t.Errorf("JSON %s, %v", js.String(), err)
	}
	// Running the SQL undoes the drift.
	for _, s := range d.SQL {
		if _, err := db.SQL.ExecContext(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := m.Drift(ctx, end); err != nil || d.Drifted() {
		t.Errorf("after the undo SQL: %+v, %v", d, err)
	}
}

// TestDriftIgnoresRevisionTable: atlas_schema_revisions, which the files
// do not create, is no drift; a table the files do not know is.
func TestDriftIgnoresRevisionTable(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t)
	m := migrate.New(db.SQL, db.Dialect, migrations.For(db.Dialect), nil)
	if _, err := db.SQL.ExecContext(ctx, `CREATE TABLE extra_t (id integer PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	d, err := m.Drift(ctx, migrations.EndState(db.Dialect))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{`table "extra_t" is not in the migration files`}, d.Changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}
