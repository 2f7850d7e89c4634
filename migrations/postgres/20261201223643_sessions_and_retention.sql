-- Modify "refresh_tokens" table
ALTER TABLE "refresh_tokens" ADD COLUMN "child_sealed" bytea NULL;
-- Modify "users" table
ALTER TABLE "users" ADD COLUMN "claimed_at" timestamptz NULL, ADD COLUMN "claim_username" character varying NULL, ADD COLUMN "claim_password_hash" character varying NULL, ADD COLUMN "claims_contested_at" timestamptz NULL;
