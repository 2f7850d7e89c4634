// Package migrations embeds the Atlas versioned migration directories, one
// per dialect, so the authd binary can apply them. The SQL files and
// atlas.sum are generated from ../schema by `make migration name=...`; a
// merged file is never edited.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"

	"entgo.io/ent/dialect"
)

//go:embed postgres/*.sql postgres/atlas.sum sqlite/*.sql sqlite/atlas.sum
var files embed.FS

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

// Postgres returns the PostgreSQL migration directory.
func Postgres() fs.FS { return For(dialect.Postgres) }

// SQLite returns the SQLite migration directory.
func SQLite() fs.FS { return For(dialect.SQLite) }
