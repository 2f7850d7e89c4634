table "otp_requests" {
  schema = schema.main
  column "id" {
    null = false
    type = uuid
  }
  column "created_at" {
    null = false
    type = datetime
  }
  column "purpose" {
    null    = false
    type    = text
    default = "email_verification"
  }
  column "code_hmac" {
    null = false
    type = blob
  }
  column "attempts" {
    null    = false
    type    = integer
    default = 0
  }
  column "expires_at" {
    null = false
    type = datetime
  }
  column "consumed_at" {
    null = true
    type = datetime
  }
  column "superseded_at" {
    null = true
    type = datetime
  }
  column "user_id" {
    null = false
    type = uuid
  }
  column "requester_hmac" {
    null = true
    type = blob
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
  index "otprequest_user_id_created_at" {
    columns = [column.user_id, column.created_at]
  }
  index "otprequest_expires_at" {
    columns = [column.expires_at]
  }
}
table "outbox_messages" {
  schema = schema.main
  column "id" {
    null = false
    type = uuid
  }
  column "created_at" {
    null = false
    type = datetime
  }
  column "user_id" {
    null = true
    type = uuid
  }
  column "recipient" {
    null = false
    type = text
  }
  column "template" {
    null = false
    type = text
  }
  column "data" {
    null = true
    type = json
  }
  column "status" {
    null    = false
    type    = text
    default = "pending"
  }
  column "attempts" {
    null    = false
    type    = integer
    default = 0
  }
  column "next_attempt_at" {
    null = false
    type = datetime
  }
  column "last_error" {
    null = true
    type = text
  }
  column "sent_at" {
    null = true
    type = datetime
  }
  column "sealed_data" {
    null = true
    type = blob
  }
  column "expires_at" {
    null = true
    type = datetime
  }
  primary_key {
    columns = [column.id]
  }
  index "outboxmessage_status_next_attempt_at" {
    columns = [column.status, column.next_attempt_at]
  }
  index "outboxmessage_status_created_at" {
    columns = [column.status, column.created_at]
  }
}
table "refresh_tokens" {
  schema = schema.main
  column "id" {
    null = false
    type = uuid
  }
  column "created_at" {
    null = false
    type = datetime
  }
  column "parent_id" {
    null = true
    type = uuid
  }
  column "token_hash" {
    null = false
    type = blob
  }
  column "expires_at" {
    null = false
    type = datetime
  }
  column "used_at" {
    null = true
    type = datetime
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
    type = blob
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "refresh_tokens_users_refresh_tokens" {
    columns     = [column.user_id]
    ref_columns = [table.users.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  foreign_key "refresh_tokens_token_families_refresh_tokens" {
    columns     = [column.family_id]
    ref_columns = [table.token_families.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  index "refresh_tokens_token_hash_key" {
    unique  = true
    columns = [column.token_hash]
  }
  index "refreshtoken_family_id" {
    columns = [column.family_id]
  }
  index "refreshtoken_user_id" {
    columns = [column.user_id]
  }
  index "refreshtoken_parent_id" {
    columns = [column.parent_id]
  }
  index "refreshtoken_expires_at" {
    columns = [column.expires_at]
  }
}
table "token_families" {
  schema = schema.main
  column "id" {
    null = false
    type = uuid
  }
  column "created_at" {
    null = false
    type = datetime
  }
  column "revoked_at" {
    null = true
    type = datetime
  }
  column "revoke_reason" {
    null = true
    type = text
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
  index "tokenfamily_user_id" {
    columns = [column.user_id]
  }
  index "tokenfamily_revoked_at" {
    columns = [column.revoked_at]
  }
}
table "users" {
  schema = schema.main
  column "id" {
    null = false
    type = uuid
  }
  column "created_at" {
    null = false
    type = datetime
  }
  column "username" {
    null = false
    type = text
  }
  column "email" {
    null = false
    type = text
  }
  column "email_normalized" {
    null = false
    type = text
  }
  column "password_hash" {
    null = false
    type = text
  }
  column "is_verified" {
    null    = false
    type    = bool
    default = false
  }
  column "verified_at" {
    null = true
    type = datetime
  }
  column "updated_at" {
    null = false
    type = datetime
  }
  column "imported_at" {
    null = true
    type = datetime
  }
  column "deleted_at" {
    null = true
    type = datetime
  }
  column "claimed_at" {
    null = true
    type = datetime
  }
  column "claim_username" {
    null = true
    type = text
  }
  column "claim_password_hash" {
    null = true
    type = text
  }
  column "claims_contested_at" {
    null = true
    type = datetime
  }
  primary_key {
    columns = [column.id]
  }
  index "users_email_normalized_key" {
    unique  = true
    columns = [column.email_normalized]
  }
  index "user_is_verified_claimed_at" {
    columns = [column.is_verified, column.claimed_at]
  }
}
table "audit_events" {
  schema = schema.main
  column "id" {
    null = false
    type = uuid
  }
  column "created_at" {
    null = false
    type = datetime
  }
  column "event" {
    null = false
    type = text
  }
  column "user_id" {
    null = true
    type = uuid
  }
  column "reason" {
    null = true
    type = text
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
  schema = schema.main
  column "id" {
    null = false
    type = uuid
  }
  column "key_hmac" {
    null = false
    type = blob
  }
  column "failures" {
    null    = false
    type    = integer
    default = 0
  }
  column "window_started_at" {
    null = false
    type = datetime
  }
  column "locked_until" {
    null = true
    type = datetime
  }
  column "updated_at" {
    null = false
    type = datetime
  }
  primary_key {
    columns = [column.id]
  }
  index "login_throttles_key_hmac_key" {
    unique  = true
    columns = [column.key_hmac]
  }
}
table "rate_limits" {
  schema = schema.main
  column "id" {
    null = false
    type = uuid
  }
  column "key_hmac" {
    null = false
    type = blob
  }
  column "purpose" {
    null = false
    type = text
  }
  column "count" {
    null    = false
    type    = integer
    default = 0
  }
  column "pending" {
    null    = false
    type    = integer
    default = 0
  }
  column "window_started_at" {
    null = false
    type = datetime
  }
  column "locked_until" {
    null = true
    type = datetime
  }
  column "last_at" {
    null = true
    type = datetime
  }
  column "updated_at" {
    null = false
    type = datetime
  }
  column "account_hmac" {
    null = true
    type = blob
  }
  primary_key {
    columns = [column.id]
  }
  index "rate_limits_key_hmac_key" {
    unique  = true
    columns = [column.key_hmac]
  }
  index "ratelimit_purpose_updated_at" {
    columns = [column.purpose, column.updated_at]
  }
  index "ratelimit_account_hmac" {
    columns = [column.account_hmac]
  }
}
schema "main" {
}
