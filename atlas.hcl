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

lint {
  destructive {
    error = true
  }
  data_depend {
    error = true
  }
  incompatible {
    error = true
  }
  non_linear {
    error = true
  }
}
