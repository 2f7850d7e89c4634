-- Modify "rate_limits" table
ALTER TABLE "rate_limits" ADD COLUMN "account_hmac" bytea NULL;
-- Create index "ratelimit_account_hmac" to table: "rate_limits"
CREATE INDEX "ratelimit_account_hmac" ON "rate_limits" ("account_hmac");
-- Modify "users" table
ALTER TABLE "users" ADD COLUMN "imported_at" timestamptz NULL, ADD COLUMN "deleted_at" timestamptz NULL;
