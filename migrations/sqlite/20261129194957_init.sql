-- Create "otp_requests" table
CREATE TABLE `otp_requests` (`id` uuid NOT NULL, `created_at` datetime NOT NULL, `purpose` text NOT NULL DEFAULT ('email_verification'), `code_hmac` blob NOT NULL, `attempts` integer NOT NULL DEFAULT (0), `expires_at` datetime NOT NULL, `consumed_at` datetime NULL, `superseded_at` datetime NULL, `user_id` uuid NOT NULL, PRIMARY KEY (`id`), CONSTRAINT `otp_requests_users_otp_requests` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`) ON DELETE CASCADE);
-- Create index "otprequest_user_id_created_at" to table: "otp_requests"
CREATE INDEX `otprequest_user_id_created_at` ON `otp_requests` (`user_id`, `created_at`);
-- Create "outbox_messages" table
CREATE TABLE `outbox_messages` (`id` uuid NOT NULL, `created_at` datetime NOT NULL, `user_id` uuid NULL, `recipient` text NOT NULL, `template` text NOT NULL, `data` json NULL, `status` text NOT NULL DEFAULT ('pending'), `attempts` integer NOT NULL DEFAULT (0), `next_attempt_at` datetime NOT NULL, `last_error` text NULL, `sent_at` datetime NULL, PRIMARY KEY (`id`));
-- Create index "outboxmessage_status_next_attempt_at" to table: "outbox_messages"
CREATE INDEX `outboxmessage_status_next_attempt_at` ON `outbox_messages` (`status`, `next_attempt_at`);
-- Create "refresh_tokens" table
CREATE TABLE `refresh_tokens` (`id` uuid NOT NULL, `created_at` datetime NOT NULL, `parent_id` uuid NULL, `token_hash` blob NOT NULL, `expires_at` datetime NOT NULL, `used_at` datetime NULL, `family_id` uuid NOT NULL, `user_id` uuid NOT NULL, PRIMARY KEY (`id`), CONSTRAINT `refresh_tokens_token_families_refresh_tokens` FOREIGN KEY (`family_id`) REFERENCES `token_families` (`id`) ON DELETE CASCADE, CONSTRAINT `refresh_tokens_users_refresh_tokens` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`) ON DELETE CASCADE);
-- Create index "refresh_tokens_token_hash_key" to table: "refresh_tokens"
CREATE UNIQUE INDEX `refresh_tokens_token_hash_key` ON `refresh_tokens` (`token_hash`);
-- Create index "refreshtoken_family_id" to table: "refresh_tokens"
CREATE INDEX `refreshtoken_family_id` ON `refresh_tokens` (`family_id`);
-- Create index "refreshtoken_user_id" to table: "refresh_tokens"
CREATE INDEX `refreshtoken_user_id` ON `refresh_tokens` (`user_id`);
-- Create "token_families" table
CREATE TABLE `token_families` (`id` uuid NOT NULL, `created_at` datetime NOT NULL, `revoked_at` datetime NULL, `revoke_reason` text NULL, `user_id` uuid NOT NULL, PRIMARY KEY (`id`), CONSTRAINT `token_families_users_token_families` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`) ON DELETE CASCADE);
-- Create index "tokenfamily_user_id" to table: "token_families"
CREATE INDEX `tokenfamily_user_id` ON `token_families` (`user_id`);
-- Create "users" table
CREATE TABLE `users` (`id` uuid NOT NULL, `created_at` datetime NOT NULL, `username` text NOT NULL, `email` text NOT NULL, `email_normalized` text NOT NULL, `password_hash` text NOT NULL, `is_verified` bool NOT NULL DEFAULT (false), `verified_at` datetime NULL, `updated_at` datetime NOT NULL, PRIMARY KEY (`id`));
-- Create index "users_email_normalized_key" to table: "users"
CREATE UNIQUE INDEX `users_email_normalized_key` ON `users` (`email_normalized`);
