package migrate_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"hash/fnv"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/internal/testutil/pgtest"
	"github.com/placebrain/auth/migrations"
)

// appTables are the tables the real migration directory creates.
var appTables = []string{"users", "token_families", "refresh_tokens", "otp_requests", "outbox_messages"}

// openDB opens url with pgx and closes it when the test ends.
func openDB(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	return db
}

// emptyDB returns a fresh empty database and its URL.
func emptyDB(t *testing.T) (*sql.DB, string) {
	t.Helper()
	url := pgtest.NewEmptyDatabase(t)
	return openDB(t, url), url
}

// sqlFiles returns the sorted names of the .sql files in fsys.
func sqlFiles(t *testing.T, fsys fs.FS) []string {
	t.Helper()
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no .sql files in migration directory")
	}
	slices.Sort(names)
	return names
}

// versionOf and descOf split "<version>_<description>.sql".
func versionOf(name string) string {
	v, _, _ := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
	return v
}

func descOf(name string) string {
	_, d, _ := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
	return d
}

func versionsOf(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = versionOf(n)
	}
	return out
}

// tableExists reports whether public.name exists.
func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var ok bool
	err := db.QueryRowContext(context.Background(),
		`SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = 'public' AND table_name = $1)`,
		name).Scan(&ok)
	if err != nil {
		t.Fatalf("table %s exists: %v", name, err)
	}
	return ok
}

// revisionCount returns the number of rows in the revision table, -1 when
// the table does not exist.
func revisionCount(t *testing.T, db *sql.DB) int {
	t.Helper()
	if !tableExists(t, db, migrate.RevisionTable) {
		return -1
	}
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT count(*) FROM public.atlas_schema_revisions`).Scan(&n); err != nil {
		t.Fatalf("count revisions: %v", err)
	}
	return n
}

// revisionVersions returns the recorded versions in order.
func revisionVersions(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT version FROM public.atlas_schema_revisions ORDER BY version`)
	if err != nil {
		t.Fatalf("read versions: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// copyDir copies the real migration directory into a MapFS.
func copyDir(t *testing.T) fstest.MapFS {
	t.Helper()
	return copyDirOf(t, migrations.Postgres())
}

// copyDirOf copies a migration directory into a MapFS.
func copyDirOf(t *testing.T, src fs.FS) fstest.MapFS {
	t.Helper()
	out := fstest.MapFS{}
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		out[p] = &fstest.MapFile{Data: b, Mode: 0o644}
		return nil
	})
	if err != nil {
		t.Fatalf("copy migration dir: %v", err)
	}
	if _, ok := out[atlasmigrate.HashFileName]; !ok {
		t.Fatal("real migration directory has no atlas.sum")
	}
	return out
}

// rehash rewrites atlas.sum of m the way `atlas migrate hash` does.
func rehash(t *testing.T, m fstest.MapFS) {
	t.Helper()
	dir := atlasmigrate.OpenMemDir("migrate-test-" + uuid.NewString())
	defer dir.Close()
	for name, f := range m {
		if name == atlasmigrate.HashFileName {
			continue
		}
		if err := dir.WriteFile(name, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := dir.Checksum()
	if err != nil {
		t.Fatal(err)
	}
	if err := atlasmigrate.WriteSumFile(dir, sum); err != nil {
		t.Fatal(err)
	}
	b, err := fs.ReadFile(dir, atlasmigrate.HashFileName)
	if err != nil {
		t.Fatal(err)
	}
	m[atlasmigrate.HashFileName] = &fstest.MapFile{Data: b, Mode: 0o644}
}

// extendedDir is the real directory plus one new file, with a correct atlas.sum.
func extendedDir(t *testing.T, name, content string) fstest.MapFS {
	t.Helper()
	m := copyDir(t)
	m[name] = &fstest.MapFile{Data: []byte(content), Mode: 0o644}
	rehash(t, m)
	if err := atlasmigrate.Validate(mustMemDir(t, m)); err != nil {
		t.Fatalf("extended dir does not validate: %v", err)
	}
	return m
}

func mustMemDir(t *testing.T, m fstest.MapFS) *atlasmigrate.MemDir {
	t.Helper()
	dir := atlasmigrate.OpenMemDir("migrate-test-" + uuid.NewString())
	t.Cleanup(func() { dir.Close() })
	for name, f := range m {
		if err := dir.WriteFile(name, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// sumEntries parses atlas.sum into file name -> "h1:..." hash.
func sumEntries(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if !strings.HasPrefix(line, "h1:") {
				t.Fatalf("atlas.sum first line %q is not a directory hash", line)
			}
			continue
		}
		if line == "" {
			continue
		}
		name, hash, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(hash, "h1:") {
			t.Fatalf("atlas.sum line %q malformed", line)
		}
		out[name] = hash
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func apply(t *testing.T, db *sql.DB, fsys fs.FS) []string {
	t.Helper()
	versions, err := migrate.New(db, dialect.Postgres, fsys, nil).Apply(context.Background())
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return versions
}

func TestApplyFresh(t *testing.T) {
	ctx := context.Background()
	db, _ := emptyDB(t)
	dir := migrations.Postgres()
	files := sqlFiles(t, dir)
	want := versionsOf(files)

	for _, tbl := range appTables {
		if tableExists(t, db, tbl) {
			t.Fatalf("table %s exists before Apply", tbl)
		}
	}
	got := apply(t, db, dir)
	if !slices.Equal(got, want) {
		t.Fatalf("Apply returned %v, want %v", got, want)
	}
	for _, tbl := range appTables {
		if !tableExists(t, db, tbl) {
			t.Errorf("table %s missing after Apply", tbl)
		}
	}
	st, err := migrate.New(db, dialect.Postgres, dir, nil).Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if len(st.Pending) != 0 {
		t.Errorf("Status.Pending = %v, want none", st.Pending)
	}
	if st.Current != want[len(want)-1] {
		t.Errorf("Status.Current = %q, want %q", st.Current, want[len(want)-1])
	}
	if len(st.Applied) != len(want) {
		t.Errorf("Status.Applied has %d revisions, want %d", len(st.Applied), len(want))
	}
	for i, rev := range st.Applied {
		if i < len(want) && rev.Version != want[i] {
			t.Errorf("Status.Applied[%d].Version = %q, want %q", i, rev.Version, want[i])
		}
	}
}

func TestStatusBeforeApply(t *testing.T) {
	db, _ := emptyDB(t)
	dir := migrations.Postgres()
	files := sqlFiles(t, dir)
	st, err := migrate.New(db, dialect.Postgres, dir, nil).Status(context.Background())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Current != "" || len(st.Applied) != 0 {
		t.Errorf("Status on empty db: Current=%q Applied=%d, want none", st.Current, len(st.Applied))
	}
	var names []string
	for _, f := range st.Pending {
		names = append(names, f.Name)
		if f.Version != versionOf(f.Name) {
			t.Errorf("pending %s has version %q", f.Name, f.Version)
		}
		b, err := fs.ReadFile(dir, f.Name)
		if err != nil {
			t.Fatal(err)
		}
		if f.SQL != string(b) {
			t.Errorf("pending %s SQL differs from the file", f.Name)
		}
	}
	if !slices.Equal(names, files) {
		t.Errorf("pending = %v, want %v", names, files)
	}
	if revisionCount(t, db) != -1 {
		t.Error("Status created the revision table")
	}
}

func TestRevisionRowsMatchAtlasCLI(t *testing.T) {
	ctx := context.Background()
	db, _ := emptyDB(t)
	dir := migrations.Postgres()
	files := sqlFiles(t, dir)
	before := time.Now()
	apply(t, db, dir)

	// The table's shape is the Atlas CLI's ent schema.
	type column struct {
		name, dataType, nullable string
		def                      sql.NullString
	}
	wantCols := []column{
		{"version", "character varying", "NO", sql.NullString{}},
		{"description", "character varying", "NO", sql.NullString{}},
		{"type", "bigint", "NO", sql.NullString{String: "2", Valid: true}},
		{"applied", "bigint", "NO", sql.NullString{String: "0", Valid: true}},
		{"total", "bigint", "NO", sql.NullString{String: "0", Valid: true}},
		{"executed_at", "timestamp with time zone", "NO", sql.NullString{}},
		{"execution_time", "bigint", "NO", sql.NullString{}},
		{"error", "text", "YES", sql.NullString{}},
		{"error_stmt", "text", "YES", sql.NullString{}},
		{"hash", "character varying", "NO", sql.NullString{}},
		{"partial_hashes", "jsonb", "YES", sql.NullString{}},
		{"operator_version", "character varying", "NO", sql.NullString{}},
	}
	rows, err := db.QueryContext(ctx, `SELECT column_name, data_type, is_nullable, column_default
FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position`, migrate.RevisionTable)
	if err != nil {
		t.Fatal(err)
	}
	var gotCols []column
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.name, &c.dataType, &c.nullable, &c.def); err != nil {
			t.Fatal(err)
		}
		gotCols = append(gotCols, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if !slices.Equal(gotCols, wantCols) {
		t.Errorf("revision table columns:\n got %+v\nwant %+v", gotCols, wantCols)
	}
	var pk []string
	rows, err = db.QueryContext(ctx, `SELECT k.column_name
FROM information_schema.table_constraints c
JOIN information_schema.key_column_usage k
  ON k.constraint_schema = c.constraint_schema AND k.constraint_name = c.constraint_name
WHERE c.table_schema = 'public' AND c.table_name = $1 AND c.constraint_type = 'PRIMARY KEY'
ORDER BY k.ordinal_position`, migrate.RevisionTable)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		pk = append(pk, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if !slices.Equal(pk, []string{"version"}) {
		t.Errorf("revision table primary key = %v, want [version]", pk)
	}

	// One row per file, as the executor writes it.
	sumFile, err := fs.ReadFile(dir, atlasmigrate.HashFileName)
	if err != nil {
		t.Fatal(err)
	}
	sums := sumEntries(t, sumFile)
	if got := revisionCount(t, db); got != len(files) {
		t.Fatalf("revision rows = %d, want %d", got, len(files))
	}
	for _, name := range files {
		b, err := fs.ReadFile(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		stmts, err := atlasmigrate.NewLocalFile(name, b).Stmts()
		if err != nil {
			t.Fatal(err)
		}
		if len(stmts) == 0 {
			t.Fatalf("%s has no statements", name)
		}
		sum, ok := sums[name]
		if !ok {
			t.Fatalf("%s not in atlas.sum", name)
		}
		var (
			version, desc, hash, operator string
			typ, applied, total, execTime int64
			executedAt                    time.Time
			errText, errStmt, partial     sql.NullString
		)
		err = db.QueryRowContext(ctx, `SELECT version, description, type, applied, total, executed_at,
  execution_time, error, error_stmt, hash, partial_hashes::text, operator_version
FROM public.atlas_schema_revisions WHERE version = $1`, versionOf(name)).Scan(
			&version, &desc, &typ, &applied, &total, &executedAt,
			&execTime, &errText, &errStmt, &hash, &partial, &operator)
		if err != nil {
			t.Fatalf("revision for %s: %v", name, err)
		}
		if version != versionOf(name) || desc != descOf(name) {
			t.Errorf("%s: version/description = %q/%q, want %q/%q", name, version, desc, versionOf(name), descOf(name))
		}
		if atlasmigrate.RevisionTypeExecute != 2 {
			t.Fatalf("RevisionTypeExecute = %d, the CLI writes 2", atlasmigrate.RevisionTypeExecute)
		}
		if typ != int64(atlasmigrate.RevisionTypeExecute) {
			t.Errorf("%s: type = %d, want 2 (RevisionTypeExecute)", name, typ)
		}
		if applied != int64(len(stmts)) || total != int64(len(stmts)) {
			t.Errorf("%s: applied/total = %d/%d, want %d/%d", name, applied, total, len(stmts), len(stmts))
		}
		// Executor.Execute stores HashFile.SumByName, the atlas.sum entry
		// without its "h1:" prefix; the CLI writes the same value.
		if want := strings.TrimPrefix(sum, "h1:"); hash != want {
			t.Errorf("%s: hash = %q, want %q (atlas.sum %q)", name, hash, want, sum)
		}
		if errText.Valid || errStmt.Valid {
			t.Errorf("%s: error/error_stmt = %v/%v, want NULL", name, errText, errStmt)
		}
		if partial.Valid {
			t.Errorf("%s: partial_hashes = %q, want NULL", name, partial.String)
		}
		if execTime <= 0 {
			t.Errorf("%s: execution_time = %d, want > 0", name, execTime)
		}
		if executedAt.Before(before.Add(-time.Second)) || executedAt.After(time.Now().Add(time.Second)) ||
			time.Since(executedAt) > time.Minute {
			t.Errorf("%s: executed_at = %v, want within the last minute (apply started %v)", name, executedAt, before)
		}
		if operator != migrate.OperatorVersion {
			t.Errorf("%s: operator_version = %q, want %q", name, operator, migrate.OperatorVersion)
		}
	}
}

func TestReapplyIsNoop(t *testing.T) {
	db, _ := emptyDB(t)
	dir := migrations.Postgres()
	first := apply(t, db, dir)
	if len(first) == 0 {
		t.Fatal("first Apply applied nothing")
	}
	n := revisionCount(t, db)
	var hashBefore string
	if err := db.QueryRow(`SELECT string_agg(version || executed_at::text || execution_time::text, ',' ORDER BY version) FROM public.atlas_schema_revisions`).Scan(&hashBefore); err != nil {
		t.Fatal(err)
	}
	second := apply(t, db, dir)
	if len(second) != 0 {
		t.Errorf("second Apply returned %v, want none", second)
	}
	if got := revisionCount(t, db); got != n {
		t.Errorf("revision rows %d after re-apply, want %d", got, n)
	}
	var hashAfter string
	if err := db.QueryRow(`SELECT string_agg(version || executed_at::text || execution_time::text, ',' ORDER BY version) FROM public.atlas_schema_revisions`).Scan(&hashAfter); err != nil {
		t.Fatal(err)
	}
	if hashAfter != hashBefore {
		t.Errorf("re-apply rewrote revisions:\n before %s\n after  %s", hashBefore, hashAfter)
	}
}

func TestPlan(t *testing.T) {
	ctx := context.Background()
	db, _ := emptyDB(t)
	dir := migrations.Postgres()
	files := sqlFiles(t, dir)
	m := migrate.New(db, dialect.Postgres, dir, nil)

	var buf bytes.Buffer
	if err := m.Plan(ctx, &buf); err != nil {
		t.Fatalf("Plan: %v", err)
	}
	out := buf.String()
	if !strings.Contains(out, `CREATE TABLE "users"`) {
		t.Errorf("Plan output lacks CREATE TABLE \"users\":\n%s", out)
	}
	for _, name := range files {
		b, err := fs.ReadFile(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "-- file: "+name+"\n") || !strings.Contains(out, string(b)) {
			t.Errorf("Plan output lacks file %s or its SQL", name)
		}
	}
	if strings.Contains(out, "no pending migrations") {
		t.Errorf("Plan on empty db says nothing is pending:\n%s", out)
	}
	for _, tbl := range append(appTables, migrate.RevisionTable) {
		if tableExists(t, db, tbl) {
			t.Errorf("Plan created table %s", tbl)
		}
	}

	apply(t, db, dir)
	buf.Reset()
	if err := m.Plan(ctx, &buf); err != nil {
		t.Fatalf("Plan after apply: %v", err)
	}
	last := versionOf(files[len(files)-1])
	want := `-- no pending migrations (current version "` + last + `")` + "\n"
	if buf.String() != want {
		t.Errorf("Plan after apply = %q, want %q", buf.String(), want)
	}
}

func TestTamperedDirectoryRefused(t *testing.T) {
	ctx := context.Background()
	files := sqlFiles(t, migrations.Postgres())

	edited := copyDir(t)
	target := files[len(files)-1]
	edited[target] = &fstest.MapFile{
		Data: append(bytes.Clone(edited[target].Data), []byte("\nCREATE TABLE \"tampered\" (\"id\" bigint NOT NULL);\n")...),
		Mode: 0o644,
	}

	noSum := copyDir(t)
	delete(noSum, atlasmigrate.HashFileName)

	const extraName = "99990101000000_unhashed.sql"
	added := copyDir(t)
	added[extraName] = &fstest.MapFile{Data: []byte(`CREATE TABLE "unhashed" ("id" bigint NOT NULL, PRIMARY KEY ("id"));` + "\n"), Mode: 0o644}

	badSum := copyDir(t)
	badSum[atlasmigrate.HashFileName] = &fstest.MapFile{
		Data: bytes.Replace(bytes.Clone(badSum[atlasmigrate.HashFileName].Data), []byte("h1:"), []byte("h1:X"), 1),
		Mode: 0o644,
	}

	for _, tc := range []struct {
		name     string
		fsys     fstest.MapFS
		mentions string // a string the error must contain
	}{
		{"edited file", edited, target},
		{"removed atlas.sum", noSum, ""},
		{"added file", added, extraName},
		{"corrupt atlas.sum", badSum, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := emptyDB(t)
			m := migrate.New(db, dialect.Postgres, tc.fsys, nil)
			versions, err := m.Apply(ctx)
			if !errors.Is(err, migrate.ErrDirectoryTampered) {
				t.Errorf("Apply error = %v, want ErrDirectoryTampered", err)
			} else if !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("Apply error %q does not name %s", err, tc.mentions)
			}
			if len(versions) != 0 {
				t.Errorf("Apply returned %v on a tampered directory", versions)
			}
			st, err := m.Status(ctx)
			if !errors.Is(err, migrate.ErrDirectoryTampered) {
				t.Errorf("Status error = %v, want ErrDirectoryTampered", err)
			} else if !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("Status error %q does not name %s", err, tc.mentions)
			}
			if st != nil {
				t.Errorf("Status returned %+v with an error", st)
			}
			var buf bytes.Buffer
			if err := m.Plan(ctx, &buf); !errors.Is(err, migrate.ErrDirectoryTampered) {
				t.Errorf("Plan error = %v, want ErrDirectoryTampered", err)
			}
			for _, tbl := range append(appTables, "tampered", "unhashed", migrate.RevisionTable) {
				if tableExists(t, db, tbl) {
					t.Errorf("table %s exists after refused Apply", tbl)
				}
			}
		})
	}
}

func TestConcurrentApplyOnce(t *testing.T) {
	const instances = 4
	ctx := context.Background()
	_, url := emptyDB(t)
	dir := migrations.Postgres()
	want := versionsOf(sqlFiles(t, dir))

	dbs := make([]*sql.DB, instances)
	for i := range dbs {
		dbs[i] = openDB(t, url)
	}
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([][]string, instances)
		errs    = make([]error, instances)
	)
	for i := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = migrate.New(dbs[i], dialect.Postgres, dir, nil).Apply(ctx)
		}()
	}
	close(start)
	wg.Wait()

	count := map[string]int{}
	for i := range instances {
		if errs[i] != nil {
			t.Errorf("instance %d: Apply: %v", i, errs[i])
		}
		for _, v := range results[i] {
			count[v]++
		}
	}
	var union []string
	for v, n := range count {
		union = append(union, v)
		if n != 1 {
			t.Errorf("version %s applied by %d instances, want 1", v, n)
		}
	}
	slices.Sort(union)
	if !slices.Equal(union, want) {
		t.Errorf("applied versions %v, want %v (per instance %v)", union, want, results)
	}
	check := openDB(t, url)
	if got := revisionVersions(t, check); !slices.Equal(got, want) {
		t.Errorf("revision rows %v, want %v", got, want)
	}
	for _, tbl := range appTables {
		if !tableExists(t, check, tbl) {
			t.Errorf("table %s missing", tbl)
		}
	}
}

func TestNewMigrationAppliedOnTop(t *testing.T) {
	ctx := context.Background()
	db, _ := emptyDB(t)
	const name = "99990101000000_extra.sql"
	ext := extendedDir(t, name, `CREATE TABLE "extra" ("id" bigint NOT NULL, PRIMARY KEY ("id"));`+"\n")
	real := versionsOf(sqlFiles(t, migrations.Postgres()))

	if got := apply(t, db, migrations.Postgres()); !slices.Equal(got, real) {
		t.Fatalf("Apply(real) = %v, want %v", got, real)
	}
	if tableExists(t, db, "extra") {
		t.Fatal("extra exists before the extended Apply")
	}
	st, err := migrate.New(db, dialect.Postgres, ext, nil).Status(ctx)
	if err != nil {
		t.Fatalf("Status(extended): %v", err)
	}
	if len(st.Pending) != 1 || st.Pending[0].Name != name || st.Pending[0].Version != "99990101000000" {
		t.Errorf("Status(extended).Pending = %+v, want only %s", st.Pending, name)
	}
	if got := apply(t, db, ext); !slices.Equal(got, []string{"99990101000000"}) {
		t.Errorf("Apply(extended) = %v, want [99990101000000]", got)
	}
	if !tableExists(t, db, "extra") {
		t.Error("table extra missing after the extended Apply")
	}
	if got, want := revisionVersions(t, db), append(slices.Clone(real), "99990101000000"); !slices.Equal(got, want) {
		t.Errorf("revisions %v, want %v", got, want)
	}
	var desc, hash string
	var applied, total int64
	if err := db.QueryRow(`SELECT description, hash, applied, total FROM public.atlas_schema_revisions WHERE version = '99990101000000'`).Scan(&desc, &hash, &applied, &total); err != nil {
		t.Fatal(err)
	}
	wantHash := strings.TrimPrefix(sumEntries(t, ext[atlasmigrate.HashFileName].Data)[name], "h1:")
	if desc != "extra" || hash != wantHash || applied != 1 || total != 1 {
		t.Errorf("extra revision = %q %q %d/%d, want %q %q 1/1", desc, hash, applied, total, "extra", wantHash)
	}
	if got := apply(t, db, ext); len(got) != 0 {
		t.Errorf("re-Apply(extended) = %v, want none", got)
	}
	// The real directory is still accepted on a database that is ahead of it.
	if got, err := migrate.New(db, dialect.Postgres, migrations.Postgres(), nil).Apply(ctx); err != nil || len(got) != 0 {
		t.Errorf("Apply(real) on a newer database = %v, %v; want nothing, nil", got, err)
	}

	// On an empty database, every file of the extended directory is
	// applied in version order by one Apply.
	fresh, _ := emptyDB(t)
	if got, want := apply(t, fresh, ext), append(slices.Clone(real), "99990101000000"); !slices.Equal(got, want) {
		t.Errorf("Apply(extended) on an empty database = %v, want %v", got, want)
	}
	if got, want := revisionVersions(t, fresh), append(slices.Clone(real), "99990101000000"); !slices.Equal(got, want) {
		t.Errorf("revisions %v, want %v", got, want)
	}
	if !tableExists(t, fresh, "extra") || !tableExists(t, fresh, "users") {
		t.Error("tables missing after Apply(extended) on an empty database")
	}
}

func TestFailingMigrationRollsBack(t *testing.T) {
	ctx := context.Background()
	const (
		name    = "99990101000000_broken.sql"
		version = "99990101000000"
	)
	ext := extendedDir(t, name, `CREATE TABLE "half" ("id" bigint NOT NULL, PRIMARY KEY ("id"));`+"\n"+
		`THIS IS NOT VALID SQL;`+"\n")
	if stmts, err := atlasmigrate.NewLocalFile(name, ext[name].Data).Stmts(); err != nil || len(stmts) != 2 {
		t.Fatalf("broken file statements = %v, %v; want 2", stmts, err)
	}
	real := versionsOf(sqlFiles(t, migrations.Postgres()))

	check := func(t *testing.T, db *sql.DB, got []string, err error, wantApplied []string) {
		t.Helper()
		if err == nil {
			t.Fatal("Apply of a broken file succeeded")
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("Apply error %q does not name %s", err, name)
		}
		if !slices.Equal(got, wantApplied) {
			t.Errorf("Apply returned %v, want %v", got, wantApplied)
		}
		if tableExists(t, db, "half") {
			t.Error("first statement of the failed file was not rolled back")
		}
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM public.atlas_schema_revisions WHERE version = $1`, version).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d revision rows for the failed file, want 0", n)
		}
		if got := revisionVersions(t, db); !slices.Equal(got, real) {
			t.Errorf("revisions %v, want %v", got, real)
		}
		st, err := migrate.New(db, dialect.Postgres, ext, nil).Status(ctx)
		if err != nil {
			t.Fatalf("Status after failure: %v", err)
		}
		if len(st.Pending) != 1 || st.Pending[0].Name != name {
			t.Errorf("Status.Pending after failure = %+v, want only %s", st.Pending, name)
		}
		if st.Current != real[len(real)-1] {
			t.Errorf("Status.Current after failure = %q, want %q", st.Current, real[len(real)-1])
		}
	}

	t.Run("on top of applied", func(t *testing.T) {
		db, _ := emptyDB(t)
		apply(t, db, migrations.Postgres())
		got, err := migrate.New(db, dialect.Postgres, ext, nil).Apply(ctx)
		check(t, db, got, err, nil)
		// A retry fails the same way and still leaves nothing behind.
		got, err = migrate.New(db, dialect.Postgres, ext, nil).Apply(ctx)
		check(t, db, got, err, nil)
	})
	t.Run("fresh database", func(t *testing.T) {
		db, _ := emptyDB(t)
		got, err := migrate.New(db, dialect.Postgres, ext, nil).Apply(ctx)
		check(t, db, got, err, real)
		for _, tbl := range appTables {
			if !tableExists(t, db, tbl) {
				t.Errorf("table %s of the committed earlier file missing", tbl)
			}
		}
	})
	t.Run("lock released", func(t *testing.T) {
		// After a failed Apply the advisory lock is free again: another
		// instance can apply (with a short lock timeout).
		_, url := emptyDB(t)
		db1 := openDB(t, url)
		if _, err := migrate.New(db1, dialect.Postgres, ext, nil).Apply(ctx); err == nil {
			t.Fatal("Apply of a broken file succeeded")
		}
		db2 := openDB(t, url)
		m := migrate.New(db2, dialect.Postgres, migrations.Postgres(), nil)
		m.LockTimeout = 2 * time.Second
		if got, err := m.Apply(ctx); err != nil || len(got) != 0 {
			t.Errorf("Apply after failed Apply = %v, %v; want nothing, nil", got, err)
		}
	})
}

// TestLockIsAtlasCLILock checks Apply waits for the advisory lock the Atlas
// CLI holds while applying.
func TestLockIsAtlasCLILock(t *testing.T) {
	ctx := context.Background()
	_, url := emptyDB(t)
	holder := openDB(t, url)
	conn, err := holder.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The CLI's lock id: FNV-32 of the name (ariga.io/atlas/sql/postgres Driver.Lock).
	h := fnv.New32()
	h.Write([]byte(migrate.LockName))
	id := int64(h.Sum32())
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", id).Scan(&ok); err != nil || !ok {
		t.Fatalf("take lock: %v %v", ok, err)
	}
	db := openDB(t, url)
	m := migrate.New(db, dialect.Postgres, migrations.Postgres(), nil)
	m.LockTimeout = 300 * time.Millisecond
	if _, err := m.Apply(ctx); err == nil {
		t.Fatal("Apply succeeded while the Atlas CLI lock was held")
	}
	if tableExists(t, db, "users") {
		t.Error("Apply ran migrations without the lock")
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", id); err != nil {
		t.Fatal(err)
	}
	m.LockTimeout = 5 * time.Second
	if _, err := m.Apply(ctx); err != nil {
		t.Fatalf("Apply after the lock was released: %v", err)
	}
	if !tableExists(t, db, "users") {
		t.Error("users missing after Apply")
	}
}

// TestApplyReleasesLockOnCancel: when ctx ends while a file is running,
// Apply must still release the advisory lock, so other instances and the
// Atlas CLI are not locked out while this *sql.DB stays open.
func TestApplyReleasesLockOnCancel(t *testing.T) {
	ext := extendedDir(t, "99990101000000_slow.sql", "SELECT pg_sleep(5);\n")
	_, url := emptyDB(t)
	db1 := openDB(t, url)
	apply(t, db1, migrations.Postgres())

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := migrate.New(db1, dialect.Postgres, ext, nil).Apply(ctx); err == nil {
		t.Fatal("Apply finished a 5s file within a 300ms deadline")
	}
	// db1 stays open, as in a process that keeps running after a failed
	// migration; another instance must be able to take the lock.
	db2 := openDB(t, url)
	m := migrate.New(db2, dialect.Postgres, migrations.Postgres(), nil)
	m.LockTimeout = time.Second
	if _, err := m.Apply(context.Background()); err != nil {
		var n int
		_ = db2.QueryRow(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted`).Scan(&n)
		t.Errorf("Apply by another instance after a cancelled Apply: %v (advisory locks held: %d)", err, n)
	}
}
