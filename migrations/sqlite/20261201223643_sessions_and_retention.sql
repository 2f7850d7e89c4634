-- Create index "otprequest_expires_at" to table: "otp_requests"
CREATE INDEX `otprequest_expires_at` ON `otp_requests` (`expires_at`);
-- Create index "outboxmessage_status_created_at" to table: "outbox_messages"
CREATE INDEX `outboxmessage_status_created_at` ON `outbox_messages` (`status`, `created_at`);
-- Add column "child_sealed" to table: "refresh_tokens"
ALTER TABLE `refresh_tokens` ADD COLUMN `child_sealed` blob NULL;
-- Create index "refreshtoken_parent_id" to table: "refresh_tokens"
CREATE INDEX `refreshtoken_parent_id` ON `refresh_tokens` (`parent_id`);
-- Create index "refreshtoken_expires_at" to table: "refresh_tokens"
CREATE INDEX `refreshtoken_expires_at` ON `refresh_tokens` (`expires_at`);
-- Create index "tokenfamily_revoked_at" to table: "token_families"
CREATE INDEX `tokenfamily_revoked_at` ON `token_families` (`revoked_at`);
-- Add column "claimed_at" to table: "users"
ALTER TABLE `users` ADD COLUMN `claimed_at` datetime NULL;
-- Add column "claim_username" to table: "users"
ALTER TABLE `users` ADD COLUMN `claim_username` text NULL;
-- Add column "claim_password_hash" to table: "users"
ALTER TABLE `users` ADD COLUMN `claim_password_hash` text NULL;
-- Add column "claims_contested_at" to table: "users"
ALTER TABLE `users` ADD COLUMN `claims_contested_at` datetime NULL;
