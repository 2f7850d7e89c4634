// Package migrations embeds the Atlas versioned migration directories so the
// authd binary can apply them. The SQL files and atlas.sum are generated
// from ../schema by `make migration name=...`; a merged file is never edited.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql postgres/atlas.sum
var files embed.FS

// Postgres returns the PostgreSQL migration directory.
func Postgres() fs.FS {
	sub, err := fs.Sub(files, "postgres")
	if err != nil {
		panic(err) // the embedded path is fixed at compile time
	}
	return sub
}
