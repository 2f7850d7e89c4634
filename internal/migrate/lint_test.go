package migrate_test

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"ariga.io/atlas/schemahcl"
	"entgo.io/ent/dialect"

	auth "github.com/placebrain/auth"
	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/internal/testutil/testdb"
	"github.com/placebrain/auth/migrations"
)

// scratchVersion is a version after every real file.
const scratchVersion = "99990101000000"

// repoRules returns the lint block of the repository's atlas.hcl for the
// dialect's directory.
func repoRules(t *testing.T, d string) *schemahcl.Resource {
	t.Helper()
	cfg, err := migrate.ParseConfig("atlas.hcl", auth.AtlasHCL)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.LintRules(migrations.Dirs[d])
}

// scratchDir is the real directory of dialect d plus one file, with a
// correct atlas.sum.
func scratchDir(t *testing.T, d, content string) fstest.MapFS {
	t.Helper()
	m := copyDirOf(t, migrations.For(d))
	m[scratchVersion+"_scratch.sql"] = &fstest.MapFile{Data: []byte(content), Mode: 0o644}
	rehash(t, m)
	return m
}

func lint(t *testing.T, d string, dir fs.FS, rules *schemahcl.Resource) *migrate.LintReport {
	t.Helper()
	rep, err := migrate.Lint(context.Background(), d, migrate.LintOptions{
		Dir: dir, Baseline: migrations.LintBaseline, Rules: rules, Dev: openDev(t, d),
	})
	if err != nil {
		t.Fatalf("Lint: %v", err)
	}
	return rep
}

// findingsOf returns the findings with code in the report.
func findingsOf(rep *migrate.LintReport, code string) []migrate.Finding {
	var out []migrate.Finding
	for _, f := range rep.Files {
		for _, x := range f.Findings {
			if x.Code == code {
				out = append(out, x)
			}
		}
	}
	return out
}

func reportText(t *testing.T, rep *migrate.LintReport) string {
	t.Helper()
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// lintCase is a scratch migration that an analyzer of atlas.hcl reports at
// error level, per dialect.
type lintCase struct {
	name, analyzer, code string
	stmt                 map[string]string // dialect -> the statement(s)
	line                 int               // the reported statement's line in stmt
}

var lintCases = []lintCase{
	{
		name: "drop column", analyzer: "destructive", code: "DS103",
		stmt: map[string]string{
			dialect.Postgres: `ALTER TABLE "users" DROP COLUMN "imported_at";`,
			dialect.SQLite:   "ALTER TABLE `users` DROP COLUMN `imported_at`;",
		},
		line: 1,
	},
	{
		name: "unique index", analyzer: "data_depend", code: "MF101",
		stmt: map[string]string{
			dialect.Postgres: `CREATE UNIQUE INDEX "users_username_key" ON "users" ("username");`,
			dialect.SQLite:   "CREATE UNIQUE INDEX `users_username_key` ON `users` (`username`);",
		},
		line: 1,
	},
	{
		// SQLite refuses ADD COLUMN ... NOT NULL without a default, so
		// Atlas writes it as a table rebuild, which its SQLite analyzers
		// fold back into one change.
		name: "not null column without default", analyzer: "data_depend", code: "MF103",
		stmt: map[string]string{
			dialect.Postgres: `ALTER TABLE "audit_events" ADD COLUMN "source" character varying NOT NULL;`,
			dialect.SQLite: "PRAGMA foreign_keys = off;\n" +
				"CREATE TABLE `new_audit_events` (`id` uuid NOT NULL, `created_at` datetime NOT NULL, `event` text NOT NULL, `user_id` uuid NULL, `reason` text NULL, `source` text NOT NULL, PRIMARY KEY (`id`));\n" +
				"INSERT INTO `new_audit_events` (`id`, `created_at`, `event`, `user_id`, `reason`) SELECT `id`, `created_at`, `event`, `user_id`, `reason` FROM `audit_events`;\n" +
				"DROP TABLE `audit_events`;\n" +
				"ALTER TABLE `new_audit_events` RENAME TO `audit_events`;\n" +
				"CREATE INDEX `auditevent_created_at` ON `audit_events` (`created_at`);\n" +
				"CREATE INDEX `auditevent_user_id_created_at` ON `audit_events` (`user_id`, `created_at`);\n" +
				"PRAGMA foreign_keys = on;",
		},
	},
}

// TestLintErrorsAndNolint: each scratch migration is an error under
// atlas.hcl's policy; the same file with an atlas:nolint directive for
// that check, as a file directive (analyzer or code) or a statement
// directive, passes, and so does a file ignored as a whole.
func TestLintErrorsAndNolint(t *testing.T) {
	d := testdb.Backend()
	rules := repoRules(t, d)
	for _, tc := range lintCases {
		t.Run(tc.name, func(t *testing.T) {
			stmt := tc.stmt[d]
			rep := lint(t, d, scratchDir(t, d, stmt+"\n"), rules)
			got := findingsOf(rep, tc.code)
			if len(got) != 1 || got[0].Level != migrate.LevelError || got[0].Analyzer != tc.analyzer {
				t.Fatalf("want one %s error by %s, got %+v\n%s", tc.code, tc.analyzer, got, reportText(t, rep))
			}
			if tc.line > 0 && got[0].Line != tc.line {
				t.Errorf("%s reported at line %d, want %d", tc.code, got[0].Line, tc.line)
			}
			if last := rep.Files[len(rep.Files)-1]; rep.Errors() == 0 || last.Version != scratchVersion || rep.From != migrations.LintBaseline {
				t.Errorf("report = %d errors, files %+v, from %q", rep.Errors(), rep.Files, rep.From)
			}
			// The statement directive sits right above the statement the
			// diagnostic is on (the first one of a rebuild).
			first, rest, _ := strings.Cut(stmt, "\n")
			if strings.HasPrefix(first, "PRAGMA") {
				next, after, _ := strings.Cut(rest, "\n")
				first, rest = first+"\n-- atlas:nolint "+tc.code+"\n"+next, after
			} else {
				first = "-- atlas:nolint " + tc.code + "\n" + first
			}
			for name, content := range map[string]string{
				"file directive naming the analyzer": "-- atlas:nolint " + tc.analyzer + "\n\n" + stmt + "\n",
				"file directive naming the code":     "-- atlas:nolint " + tc.code + "\n\n" + stmt + "\n",
				"statement directive":                strings.TrimSuffix(first+"\n"+rest, "\n") + "\n",
				"whole file":                         "-- atlas:nolint\n\n" + stmt + "\n",
			} {
				t.Run(name, func(t *testing.T) {
					rep := lint(t, d, scratchDir(t, d, content), rules)
					if n := len(findingsOf(rep, tc.code)); n != 0 || rep.Errors() != 0 {
						t.Errorf("%d %s findings, %d errors with %s:\n%s\n%s", n, tc.code, rep.Errors(), name, content, reportText(t, rep))
					}
				})
			}
		})
	}
}

// TestLintLevelsFromConfig: the analyzers' levels come from the lint
// block: destructive turned to a warning there makes a dropped column a
// warning; an environment's own lint block wins over the global one, as
// in the Atlas CLI.
func TestLintLevelsFromConfig(t *testing.T) {
	d := testdb.Backend()
	dirName := migrations.Dirs[d]
	cfg, err := migrate.ParseConfig("test.hcl", []byte(`
env "main" {
  migration {
    dir = "file://migrations/`+dirName+`"
  }
  lint {
    destructive {
      error = false
    }
  }
}
lint {
  destructive {
    error = true
  }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	rep := lint(t, d, scratchDir(t, d, lintCases[0].stmt[d]+"\n"), cfg.LintRules(dirName))
	if got := findingsOf(rep, "DS103"); len(got) != 1 || got[0].Level != migrate.LevelWarning || rep.Errors() != 0 {
		t.Errorf("with destructive { error = false }: %+v, %d errors", got, rep.Errors())
	}
	if cfg.LintRules("other") == nil {
		t.Error("a directory without an environment gets no rules, want the global block")
	}
}

// TestLintRealDirectories: the committed files pass under atlas.hcl's
// policy (every file after the baseline is analyzed and clean), and the
// baseline is the newest file of each directory at the time it was set.
func TestLintRealDirectories(t *testing.T) {
	d := testdb.Backend()
	rep := lint(t, d, migrations.For(d), repoRules(t, d))
	if rep.Errors() != 0 {
		t.Errorf("the committed files fail lint:\n%s", reportText(t, rep))
	}
	names := sqlFiles(t, migrations.For(d))
	found := false
	for _, n := range names {
		found = found || versionOf(n) == migrations.LintBaseline
	}
	if !found {
		t.Errorf("LintBaseline %s is not a file of %s", migrations.LintBaseline, migrations.Dirs[d])
	}
	// --latest N lints the newest files instead, as the CLI's flag does.
	rep, err := migrate.Lint(context.Background(), d, migrate.LintOptions{Dir: migrations.For(d), Latest: 1, Rules: repoRules(t, d), Dev: openDev(t, d)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Files) != 1 || rep.Files[0].Name != names[len(names)-1] {
		t.Errorf("--latest 1 analyzed %+v, want %s", rep.Files, names[len(names)-1])
	}
}

// TestLintTxModeChecks (PostgreSQL): CREATE INDEX CONCURRENTLY needs
// `-- atlas:txmode none` (AD101), IF NOT EXISTS on it is reported (AD102),
// a plain CREATE INDEX on an existing table is a warning (AD111), and a
// proper file passes.
func TestLintTxModeChecks(t *testing.T) {
	testdb.SkipUnless(t, dialect.Postgres)
	rules := repoRules(t, dialect.Postgres)
	const cic = `CREATE INDEX CONCURRENTLY "auditevent_event" ON "audit_events" ("event");`
	for _, tc := range []struct {
		name, content string
		errors        []string
		warnings      []string
	}{
		{"concurrently in a transaction", cic + "\n", []string{"AD101"}, nil},
		{"concurrently if not exists", "-- atlas:txmode none\n\n" + strings.Replace(cic, "CONCURRENTLY", "CONCURRENTLY IF NOT EXISTS", 1) + "\n", []string{"AD102"}, nil},
		{"blocking index", `CREATE INDEX "auditevent_event" ON "audit_events" ("event");` + "\n", nil, []string{"AD111"}},
		{"index on a table the file creates", `CREATE TABLE "t" ("id" bigint NOT NULL, PRIMARY KEY ("id"));` + "\n" + `CREATE INDEX "t_id" ON "t" ("id");` + "\n", nil, nil},
		{"txmode none", "-- atlas:txmode none\n\n" + cic + "\n", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := lint(t, dialect.Postgres, scratchDir(t, dialect.Postgres, tc.content), rules)
			var errs, warns []string
			last := rep.Files[len(rep.Files)-1]
			for _, x := range last.Findings {
				if x.Level == migrate.LevelError {
					errs = append(errs, x.Code)
				} else {
					warns = append(warns, x.Code)
				}
			}
			if strings.Join(errs, ",") != strings.Join(tc.errors, ",") || strings.Join(warns, ",") != strings.Join(tc.warnings, ",") || last.Error != "" {
				t.Errorf("errors %v warnings %v, want %v %v\n%s", errs, warns, tc.errors, tc.warnings, reportText(t, rep))
			}
		})
	}
}

// TestLintSQLiteRebuild (SQLite): rebuilding token_families, which
// refresh_tokens references ON DELETE CASCADE, in a file that runs in a
// transaction is reported (AD201, a warning under atlas.hcl); with
// `-- atlas:txmode none` it is not.
func TestLintSQLiteRebuild(t *testing.T) {
	testdb.SkipUnless(t, dialect.SQLite)
	rebuild := "PRAGMA foreign_keys = off;\n" +
		"CREATE TABLE `new_token_families` (`id` uuid NOT NULL, `created_at` datetime NOT NULL, `revoked_at` datetime NULL, `revoke_reason` text NULL, `user_id` uuid NOT NULL, `note` text NULL, PRIMARY KEY (`id`), CONSTRAINT `token_families_users_token_families` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`) ON DELETE CASCADE);\n" +
		"INSERT INTO `new_token_families` (`id`, `created_at`, `revoked_at`, `revoke_reason`, `user_id`) SELECT `id`, `created_at`, `revoked_at`, `revoke_reason`, `user_id` FROM `token_families`;\n" +
		"DROP TABLE `token_families`;\n" +
		"ALTER TABLE `new_token_families` RENAME TO `token_families`;\n" +
		"CREATE INDEX `tokenfamily_user_id` ON `token_families` (`user_id`);\n" +
		"PRAGMA foreign_keys = on;\n"
	rules := repoRules(t, dialect.SQLite)
	rep := lint(t, dialect.SQLite, scratchDir(t, dialect.SQLite, rebuild), rules)
	got := findingsOf(rep, "AD201")
	if len(got) != 1 || got[0].Level != migrate.LevelWarning || got[0].Line != 4 ||
		!strings.Contains(got[0].Text, `"refresh_tokens" (ON DELETE CASCADE)`) || !strings.Contains(got[0].Text, "rebuilding") {
		t.Errorf("AD201 findings %+v\n%s", got, reportText(t, rep))
	}
	if rep.Errors() != 0 {
		t.Errorf("a nullable column added by a rebuild is no error:\n%s", reportText(t, rep))
	}
	rep = lint(t, dialect.SQLite, scratchDir(t, dialect.SQLite, "-- atlas:txmode none\n\n"+rebuild), rules)
	if got := findingsOf(rep, "AD201"); len(got) != 0 {
		t.Errorf("AD201 with txmode none: %+v", got)
	}
}

// TestLintReplayFailure: a file the dev database refuses is an error of
// that file, and the files after it are not analyzed.
func TestLintReplayFailure(t *testing.T) {
	d := testdb.Backend()
	m := scratchDir(t, d, "THIS IS NOT SQL;\n")
	m["99990102000000_after.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE after_t (id integer);\n"), Mode: 0o644}
	rehash(t, m)
	rep := lint(t, d, m, repoRules(t, d))
	n := len(rep.Files)
	if n < 2 || !strings.Contains(rep.Files[n-2].Error, "line 1") || !strings.Contains(rep.Files[n-1].Error, "not analyzed") || rep.Errors() != 2 {
		t.Errorf("report:\n%s", reportText(t, rep))
	}
}
