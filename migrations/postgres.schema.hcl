table "audit_events" {
  schema = schema.public
  column "id" {
    null = false
    type = uuid
  }
  column "created_at" {
    null = false
    type = timestamptz
  }
  column "event" {
    null = false
    type = character_varying
  }
  column "user_id" {
    null = true
    type = uuid
  }
  column "reason" {
    null = true
    type = character_varying
  }
  primary_key {
    columns = [column.id]
  }
  index "auditevent_created_at" {
    columns = [column.created_at]
  }
  index "auditevent_user_id_created_at" {
    columns = [column.user_id, column.created_at]
  }
}
table "login_throttles" {
  schema = schema.public
  column "id" {
    null = false
    type = uuid
  }
  column "key_hmac" {
    null = false
    type = bytea
  }
  column "failures" {
    null    = false
    type    = bigint
    default = 0
  }
  column "window_started_at" {
    null = false
    type = timestamptz
  }
  column "locked_until" {
    null = true
    type = timestamptz
  }
  column "updated_at" {
    null = false
    type = timestamptz
  }
  primary_key {
    columns = [column.id]
  }
  index "login_throttles_key_hmac_key" {
    unique  = true
    columns = [column.key_hmac]
  }
}
table "otp_requests" {
  schema = schema.public
  column "id" {
    null = false
    type = uuid
  }
  column "created_at" {
    null = false
    type = timestamptz
  }
  column "purpose" {
    null    = false
    type    = character_varying
    default = "email_verification"
  }
  column "code_hmac" {
    null = false
    type = bytea
  }
  column "attempts" {
    null    = false
    type    = bigint
    default = 0
  }
  column "expires_at" {
    null = false
    type = timestamptz
  }
  column "consumed_at" {
    null = true
    type = timestamptz
  }
  column "superseded_at" {
    null = true
    type = timestamptz
  }
  column "user_id" {
    null = false
    type = uuid
  }
  column "requester_hmac" {
    null = true
    type = bytea
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "otp_requests_users_otp_requests" {
    columns     = [column.user_id]
    ref_columns = [table.users.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  index "otprequest_expires_at" {
    columns = [column.expires_at]
  }
  index "otprequest_user_id_created_at" {
    columns = [column.user_id, column.created_at]
  }
}
table "outbox_messages" {
  schema = schema.public
  column "id" {
    null = false
    type = uuid
  }
  column "created_at" {
    null = false
    type = timestamptz
  }
  column "user_id" {
    null = true
    type = uuid
  }
  column "recipient" {
    null = false
    type = character_varying
  }
  column "template" {
    null = false
    type = character_varying
  }
  column "data" {
    null = true
    type = jsonb
  }
  column "status" {
    null    = false
    type    = character_varying
    default = "pending"
  }
  column "attempts" {
    null    = false
    type    = bigint
    default = 0
  }
  column "next_attempt_at" {
    null = false
    type = timestamptz
  }
  column "last_error" {
    null = true
    type = character_varying
  }
  column "sent_at" {
    null = true
    type = timestamptz
  }
  column "sealed_data" {
    null = true
    type = bytea
  }
  column "expires_at" {
    null = true
    type = timestamptz
  }
  primary_key {
    columns = [column.id]
  }
  index "outboxmessage_status_created_at" {
    columns = [column.status, column.created_at]
  }
  index "outboxmessage_status_next_attempt_at" {
    columns = [column.status, column.next_attempt_at]
  }
}
table "rate_limits" {
  schema = schema.public
  column "id" {
    null = false
    type = uuid
  }
  column "key_hmac" {
    null = false
    type = bytea
  }
  column "purpose" {
    null = false
    type = character_varying
  }
  column "count" {
    null    = false
    type    = bigint
    default = 0
  }
  column "pending" {
    null    = false
    type    = bigint
    default = 0
  }
  column "window_started_at" {
    null = false
    type = timestamptz
  }
  column "locked_until" {
    null = true
    type = timestamptz
  }
  column "last_at" {
    null = true
    type = timestamptz
  }
  column "updated_at" {
    null = false
    type = timestamptz
  }
  column "account_hmac" {
    null = true
    type = bytea
  }
  primary_key {
    columns = [column.id]
  }
  index "rate_limits_key_hmac_key" {
    unique  = true
    columns = [column.key_hmac]
  }
  index "ratelimit_account_hmac" {
    columns = [column.account_hmac]
  }
  index "ratelimit_purpose_updated_at" {
    columns = [column.purpose, column.updated_at]
  }
}
table "refresh_tokens" {
  schema = schema.public
  column "id" {
    null = false
    type = uuid
  }
  column "created_at" {
    null = false
    type = timestamptz
  }
  column "parent_id" {
    null = true
    type = uuid
  }
  column "token_hash" {
    null = false
    type = bytea
  }
  column "expires_at" {
    null = false
    type = timestamptz
  }
  column "used_at" {
    null = true
    type = timestamptz
  }
  column "family_id" {
    null = false
    type = uuid
  }
  column "user_id" {
    null = false
    type = uuid
  }
  column "child_sealed" {
    null = true
    type = bytea
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "refresh_tokens_token_families_refresh_tokens" {
    columns     = [column.family_id]
    ref_columns = [table.token_families.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  foreign_key "refresh_tokens_users_refresh_tokens" {
    columns     = [column.user_id]
    ref_columns = [table.users.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  index "refresh_tokens_token_hash_key" {
    unique  = true
    columns = [column.token_hash]
  }
  index "refreshtoken_expires_at" {
    columns = [column.expires_at]
  }
  index "refreshtoken_family_id" {
    columns = [column.family_id]
  }
  index "refreshtoken_parent_id" {
    columns = [column.parent_id]
  }
  index "refreshtoken_user_id" {
    columns = [column.user_id]
  }
}
table "token_families" {
  schema = schema.public
  column "id" {
    null = false
    type = uuid
  }
  column "created_at" {
    null = false
    type = timestamptz
  }
  column "revoked_at" {
    null = true
    type = timestamptz
  }
  column "revoke_reason" {
    null = true
    type = character_varying
  }
  column "user_id" {
    null = false
    type = uuid
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "token_families_users_token_families" {
    columns     = [column.user_id]
    ref_columns = [table.users.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  index "tokenfamily_revoked_at" {
    columns = [column.revoked_at]
  }
  index "tokenfamily_user_id" {
    columns = [column.user_id]
  }
}
table "users" {
  schema = schema.public
  column "id" {
    null = false
    type = uuid
  }
  column "created_at" {
    null = false
    type = timestamptz
  }
  column "username" {
    null = false
    type = character_varying
  }
  column "email" {
    null = false
    type = character_varying
  }
  column "email_normalized" {
    null = false
    type = character_varying
  }
  column "password_hash" {
    null = false
    type = character_varying
  }
  column "is_verified" {
    null    = false
    type    = boolean
    default = false
  }
  column "verified_at" {
    null = true
    type = timestamptz
  }
  column "updated_at" {
    null = false
    type = timestamptz
  }
  column "imported_at" {
    null = true
    type = timestamptz
  }
  column "deleted_at" {
    null = true
    type = timestamptz
  }
  column "claimed_at" {
    null = true
    type = timestamptz
  }
  column "claim_username" {
    null = true
    type = character_varying
  }
  column "claim_password_hash" {
    null = true
    type = character_varying
  }
  column "claims_contested_at" {
    null = true
    type = timestamptz
  }
  primary_key {
    columns = [column.id]
  }
  index "user_is_verified_claimed_at" {
    columns = [column.is_verified, column.claimed_at]
  }
  index "users_email_normalized_key" {
    unique  = true
    columns = [column.email_normalized]
  }
}
schema "public" {
  comment = "standard public schema"
}
