-- Disable the enforcement of foreign-keys constraints
PRAGMA foreign_keys = off;
-- Add column "imported_at" to table: "users"
ALTER TABLE `users` ADD COLUMN `imported_at` datetime NULL;
-- Add column "deleted_at" to table: "users"
ALTER TABLE `users` ADD COLUMN `deleted_at` datetime NULL;
-- Create "new_rate_limits" table
CREATE TABLE `new_rate_limits` (`id` uuid NOT NULL, `key_hmac` blob NOT NULL, `purpose` text NOT NULL, `count` integer NOT NULL DEFAULT (0), `pending` integer NOT NULL DEFAULT (0), `window_started_at` datetime NOT NULL, `locked_until` datetime NULL, `last_at` datetime NULL, `updated_at` datetime NOT NULL, `account_hmac` blob NULL, PRIMARY KEY (`id`));
-- Copy rows from old table "rate_limits" to new temporary table "new_rate_limits"
INSERT INTO `new_rate_limits` (`id`, `key_hmac`, `purpose`, `count`, `pending`, `window_started_at`, `locked_until`, `last_at`, `updated_at`) SELECT `id`, `key_hmac`, `purpose`, `count`, `pending`, `window_started_at`, `locked_until`, `last_at`, `updated_at` FROM `rate_limits`;
-- Drop "rate_limits" table after copying rows
DROP TABLE `rate_limits`;
-- Rename temporary table "new_rate_limits" to "rate_limits"
ALTER TABLE `new_rate_limits` RENAME TO `rate_limits`;
-- Create index "rate_limits_key_hmac_key" to table: "rate_limits"
CREATE UNIQUE INDEX `rate_limits_key_hmac_key` ON `rate_limits` (`key_hmac`);
-- Create index "ratelimit_purpose_updated_at" to table: "rate_limits"
CREATE INDEX `ratelimit_purpose_updated_at` ON `rate_limits` (`purpose`, `updated_at`);
-- Create index "ratelimit_account_hmac" to table: "rate_limits"
CREATE INDEX `ratelimit_account_hmac` ON `rate_limits` (`account_hmac`);
-- Enable back the enforcement of foreign-keys constraints
PRAGMA foreign_keys = on;
