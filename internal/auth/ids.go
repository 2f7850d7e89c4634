package auth

import "github.com/google/uuid"

// NewRowID returns the id of a new row of the write-heavy tables (refresh
// tokens, token families, audit events): a UUIDv7 (RFC 9562 §5.7), whose
// first 48 bits are the Unix time in milliseconds (the machine's clock,
// not the service's injected one) and the rest a counter and random bits,
// increasing within the process. Ids made one after another sort one after
// another, so a table's primary-key index, and the index of parent token
// ids, grows at its end instead of at a random page as with version-4 ids:
// a rotation dirties fewer index pages, SQLite's checkpoints write fewer,
// and PostgreSQL logs fewer full-page images. The time an id carries is
// the row's creation time, which the row keeps anyway; these ids are never
// secrets. The schema's default id for these tables is the same function
// (schema.timeIDMixin), for rows created through ent.
func NewRowID() uuid.UUID { return uuid.Must(uuid.NewV7()) }
