-- Create index "otprequest_expires_at" to table: "otp_requests"
CREATE INDEX "otprequest_expires_at" ON "otp_requests" ("expires_at");
-- Create index "outboxmessage_status_created_at" to table: "outbox_messages"
CREATE INDEX "outboxmessage_status_created_at" ON "outbox_messages" ("status", "created_at");
-- Modify "refresh_tokens" table
ALTER TABLE "refresh_tokens" ADD COLUMN "child_sealed" bytea NULL;
-- Create index "refreshtoken_expires_at" to table: "refresh_tokens"
CREATE INDEX "refreshtoken_expires_at" ON "refresh_tokens" ("expires_at");
-- Create index "refreshtoken_parent_id" to table: "refresh_tokens"
CREATE INDEX "refreshtoken_parent_id" ON "refresh_tokens" ("parent_id");
-- Create index "tokenfamily_revoked_at" to table: "token_families"
CREATE INDEX "tokenfamily_revoked_at" ON "token_families" ("revoked_at");
-- Modify "users" table
ALTER TABLE "users" ADD COLUMN "claimed_at" timestamptz NULL, ADD COLUMN "claim_username" character varying NULL, ADD COLUMN "claim_password_hash" character varying NULL, ADD COLUMN "claims_contested_at" timestamptz NULL;
