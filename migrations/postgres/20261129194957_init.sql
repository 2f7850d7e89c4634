-- Create "outbox_messages" table
CREATE TABLE "outbox_messages" ("id" uuid NOT NULL, "created_at" timestamptz NOT NULL, "user_id" uuid NULL, "recipient" character varying NOT NULL, "template" character varying NOT NULL, "data" jsonb NULL, "status" character varying NOT NULL DEFAULT 'pending', "attempts" bigint NOT NULL DEFAULT 0, "next_attempt_at" timestamptz NOT NULL, "last_error" character varying NULL, "sent_at" timestamptz NULL, PRIMARY KEY ("id"));
-- Create index "outboxmessage_status_next_attempt_at" to table: "outbox_messages"
CREATE INDEX "outboxmessage_status_next_attempt_at" ON "outbox_messages" ("status", "next_attempt_at");
-- Create "users" table
CREATE TABLE "users" ("id" uuid NOT NULL, "created_at" timestamptz NOT NULL, "username" character varying NOT NULL, "email" character varying NOT NULL, "email_normalized" character varying NOT NULL, "password_hash" character varying NOT NULL, "is_verified" boolean NOT NULL DEFAULT false, "verified_at" timestamptz NULL, "updated_at" timestamptz NOT NULL, PRIMARY KEY ("id"));
-- Create index "users_email_normalized_key" to table: "users"
CREATE UNIQUE INDEX "users_email_normalized_key" ON "users" ("email_normalized");
-- Create "otp_requests" table
CREATE TABLE "otp_requests" ("id" uuid NOT NULL, "created_at" timestamptz NOT NULL, "purpose" character varying NOT NULL DEFAULT 'email_verification', "code_hmac" bytea NOT NULL, "attempts" bigint NOT NULL DEFAULT 0, "expires_at" timestamptz NOT NULL, "consumed_at" timestamptz NULL, "superseded_at" timestamptz NULL, "user_id" uuid NOT NULL, PRIMARY KEY ("id"), CONSTRAINT "otp_requests_users_otp_requests" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON UPDATE NO ACTION ON DELETE CASCADE);
-- Create index "otprequest_user_id_created_at" to table: "otp_requests"
CREATE INDEX "otprequest_user_id_created_at" ON "otp_requests" ("user_id", "created_at");
-- Create "token_families" table
CREATE TABLE "token_families" ("id" uuid NOT NULL, "created_at" timestamptz NOT NULL, "revoked_at" timestamptz NULL, "revoke_reason" character varying NULL, "user_id" uuid NOT NULL, PRIMARY KEY ("id"), CONSTRAINT "token_families_users_token_families" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON UPDATE NO ACTION ON DELETE CASCADE);
-- Create index "tokenfamily_user_id" to table: "token_families"
CREATE INDEX "tokenfamily_user_id" ON "token_families" ("user_id");
-- Create "refresh_tokens" table
CREATE TABLE "refresh_tokens" ("id" uuid NOT NULL, "created_at" timestamptz NOT NULL, "parent_id" uuid NULL, "token_hash" bytea NOT NULL, "expires_at" timestamptz NOT NULL, "used_at" timestamptz NULL, "family_id" uuid NOT NULL, "user_id" uuid NOT NULL, PRIMARY KEY ("id"), CONSTRAINT "refresh_tokens_token_families_refresh_tokens" FOREIGN KEY ("family_id") REFERENCES "token_families" ("id") ON UPDATE NO ACTION ON DELETE CASCADE, CONSTRAINT "refresh_tokens_users_refresh_tokens" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON UPDATE NO ACTION ON DELETE CASCADE);
-- Create index "refresh_tokens_token_hash_key" to table: "refresh_tokens"
CREATE UNIQUE INDEX "refresh_tokens_token_hash_key" ON "refresh_tokens" ("token_hash");
-- Create index "refreshtoken_family_id" to table: "refresh_tokens"
CREATE INDEX "refreshtoken_family_id" ON "refresh_tokens" ("family_id");
-- Create index "refreshtoken_user_id" to table: "refresh_tokens"
CREATE INDEX "refreshtoken_user_id" ON "refresh_tokens" ("user_id");
