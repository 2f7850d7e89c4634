-- Create "rate_limits" table
CREATE TABLE `rate_limits` (`id` uuid NOT NULL, `key_hmac` blob NOT NULL, `purpose` text NOT NULL, `count` integer NOT NULL DEFAULT (0), `pending` integer NOT NULL DEFAULT (0), `window_started_at` datetime NOT NULL, `locked_until` datetime NULL, `last_at` datetime NULL, `updated_at` datetime NOT NULL, PRIMARY KEY (`id`));
-- Create index "rate_limits_key_hmac_key" to table: "rate_limits"
CREATE UNIQUE INDEX `rate_limits_key_hmac_key` ON `rate_limits` (`key_hmac`);
-- Create index "ratelimit_purpose_updated_at" to table: "rate_limits"
CREATE INDEX `ratelimit_purpose_updated_at` ON `rate_limits` (`purpose`, `updated_at`);
