-- Create index "user_is_verified_claimed_at" to table: "users"
CREATE INDEX `user_is_verified_claimed_at` ON `users` (`is_verified`, `claimed_at`);
