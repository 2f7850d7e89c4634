-- Create "rate_limits" table
CREATE TABLE "rate_limits" ("id" uuid NOT NULL, "key_hmac" bytea NOT NULL, "purpose" character varying NOT NULL, "count" bigint NOT NULL DEFAULT 0, "pending" bigint NOT NULL DEFAULT 0, "window_started_at" timestamptz NOT NULL, "locked_until" timestamptz NULL, "last_at" timestamptz NULL, "updated_at" timestamptz NOT NULL, PRIMARY KEY ("id"));
-- Create index "rate_limits_key_hmac_key" to table: "rate_limits"
CREATE UNIQUE INDEX "rate_limits_key_hmac_key" ON "rate_limits" ("key_hmac");
-- Create index "ratelimit_purpose_updated_at" to table: "rate_limits"
CREATE INDEX "ratelimit_purpose_updated_at" ON "rate_limits" ("purpose", "updated_at");
