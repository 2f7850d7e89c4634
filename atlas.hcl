// Atlas project file, for DBAs who review and apply migrations with the
// Atlas CLI. The migration files are written by `make migration name=...`
// (ent + the ariga.io/atlas library, see cmd/entmigrate); authd applies the
// same files itself at start unless DATABASE__AUTO_MIGRATE=false. Both
// record revisions in public.atlas_schema_revisions and take the same
// advisory lock, so either tool may be used on a database.
//
//   atlas migrate status --env postgres --var url="postgres://...?search_path=public"
//   atlas migrate apply  --env postgres --var url="postgres://...?search_path=public" --dry-run
//   atlas migrate lint   --env postgres --latest 1
//   atlas migrate lint   --env sqlite --latest 1
//   atlas schema diff --env postgres --from "postgres://...?search_path=public" \
//     --to file://migrations/postgres.schema.hcl     # what `authd migrate drift` reports
//
// The lint block below is the lint policy of both tools: `atlas migrate
// lint` and `authd migrate lint|plan` (which embeds this file; --config
// reads another) configure their analyzers from it. authd lints the files
// after migrations.LintBaseline (migrations/embed.go), or the latest N
// with --latest N as the CLI does.

variable "url" {
  type        = string
  description = "target database; bind it to the public schema with ?search_path=public"
  default     = getenv("DATABASE__URL")
}

variable "dev_url" {
  type        = string
  description = "an empty scratch database Atlas may replay migrations on"
  default     = "docker://postgres/15/dev?search_path=public"
}

env "postgres" {
  // The ent schema the migration files are generated from.
  src = "ent://schema"
  url = var.url
  dev = var.dev_url
  migration {
    dir              = "file://migrations/postgres"
    revisions_schema = "public"
  }
}

// The development database (authd serve --dev): an SQLite file.
env "sqlite" {
  src = "ent://schema"
  url = "sqlite://data/authd.db"
  dev = "sqlite://dev?mode=memory"
  migration {
    dir = "file://migrations/sqlite"
  }
}

lint {
  // Atlas's analyzers (the CLI and authd run the same library code).
  // error = true: a finding fails `atlas migrate lint`, `authd migrate
  // lint` and so `make check` and CI; silence one with `-- atlas:nolint
  // NAME` (a file or a statement directive) after review.
  destructive {
    error = true
  }
  data_depend {
    error = true
  }
  incompatible {
    error = true
  }
  // Atlas Cloud's check (a file added out of order); the CLI without a
  // cloud project and authd skip it. authd's apply refuses a non-linear
  // history anyway, like `atlas migrate apply`.
  non_linear {
    error = true
  }

  // authd's own analyzers (the Atlas CLI ignores these blocks).
  // PostgreSQL: CREATE/DROP INDEX CONCURRENTLY and the like in a file
  // without `-- atlas:txmode none` (AD101: it would fail at apply), and
  // CREATE INDEX CONCURRENTLY IF NOT EXISTS (AD102: a CLI retry would keep
  // the INVALID index a failed attempt leaves).
  authd_txmode {
    error = true
  }
  // PostgreSQL: a statement that blocks writes to an existing table for
  // work proportional to its size, e.g. CREATE INDEX without CONCURRENTLY
  // (AD111). Warning: indexes on large tables (refresh_tokens,
  // audit_events) should be built CONCURRENTLY.
  authd_lock {
    error = false
  }
  // SQLite: a rebuild of a table that others reference, in a file that
  // runs in a transaction (AD201). Warning: authd and the Atlas CLI turn
  // foreign keys off around each file's transaction, other runners do not.
  authd_sqlite_rebuild {
    error = false
  }
}
