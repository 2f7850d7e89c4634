-- atlas:txmode none

-- Create index "otprequest_expires_at" to table: "otp_requests"
CREATE INDEX CONCURRENTLY "otprequest_expires_at" ON "otp_requests" ("expires_at");
-- Create index "outboxmessage_status_created_at" to table: "outbox_messages"
CREATE INDEX CONCURRENTLY "outboxmessage_status_created_at" ON "outbox_messages" ("status", "created_at");
-- Create index "refreshtoken_expires_at" to table: "refresh_tokens"
CREATE INDEX CONCURRENTLY "refreshtoken_expires_at" ON "refresh_tokens" ("expires_at");
-- Create index "refreshtoken_parent_id" to table: "refresh_tokens"
CREATE INDEX CONCURRENTLY "refreshtoken_parent_id" ON "refresh_tokens" ("parent_id");
-- Create index "tokenfamily_revoked_at" to table: "token_families"
CREATE INDEX CONCURRENTLY "tokenfamily_revoked_at" ON "token_families" ("revoked_at");
-- Create index "user_is_verified_claimed_at" to table: "users"
CREATE INDEX CONCURRENTLY "user_is_verified_claimed_at" ON "users" ("is_verified", "claimed_at");
