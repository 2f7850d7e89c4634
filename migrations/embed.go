// Package migrations embeds the Atlas versioned migration directories, one
// per dialect, so the authd binary can apply them, and each directory's end
// state (the schema its files build, in Atlas HCL), so authd can tell a
// database that drifted from them without a scratch database. The SQL
// files, atlas.sum and the end states are generated from ../schema by
// `make migration name=...`; a merged SQL file is never edited.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"

	"entgo.io/ent/dialect"
)

// LintBaseline is the version of the newest migration file that existed
// when `authd migrate lint` was introduced: `authd migrate lint` (and so
// `make check` and CI) analyzes the files after it in each directory. The
// files up to it were reviewed before there was a lint step and are only
// replayed, never analyzed.
const LintBaseline = "20261201220009"

//go:embed postgres/*.sql postgres/atlas.sum sqlite/*.sql sqlite/atlas.sum
var files embed.FS

//go:embed postgres.schema.hcl sqlite.schema.hcl
var endStates embed.FS

// Dirs maps each dialect to its directory in this package.
var Dirs = map[string]string{
	dialect.Postgres: "postgres",
	dialect.SQLite:   "sqlite",
}

// For returns the migration directory of a dialect (dialect.Postgres or
// dialect.SQLite).
func For(d string) fs.FS {
	name, ok := Dirs[d]
	if !ok {
		panic(fmt.Sprintf("migrations: no directory for dialect %q", d))
	}
	sub, err := fs.Sub(files, name)
	if err != nil {
		panic(err) // the embedded paths are fixed at compile time
	}
	return sub
}

// EndStateFile is the name, in this package, of the end state of a
// dialect's directory: postgres.schema.hcl or sqlite.schema.hcl, next to
// the directory rather than in it, so that neither atlas.sum nor the Atlas
// CLI takes it for a migration.
func EndStateFile(d string) string {
	name, ok := Dirs[d]
	if !ok {
		panic(fmt.Sprintf("migrations: no directory for dialect %q", d))
	}
	return name + ".schema.hcl"
}

// EndState returns the schema the dialect's migration files build, in
// Atlas HCL, as `make migration` wrote it.
func EndState(d string) []byte {
	b, err := endStates.ReadFile(EndStateFile(d))
	if err != nil {
		panic(err) // the embedded paths are fixed at compile time
	}
	return b
}

// Postgres returns the PostgreSQL migration directory.
func Postgres() fs.FS { return For(dialect.Postgres) }

// SQLite returns the SQLite migration directory.
func SQLite() fs.FS { return For(dialect.SQLite) }
