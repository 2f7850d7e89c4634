-- Create "audit_events" table
CREATE TABLE "audit_events" ("id" uuid NOT NULL, "created_at" timestamptz NOT NULL, "event" character varying NOT NULL, "user_id" uuid NULL, "reason" character varying NULL, PRIMARY KEY ("id"));
-- Create index "auditevent_created_at" to table: "audit_events"
CREATE INDEX "auditevent_created_at" ON "audit_events" ("created_at");
-- Create index "auditevent_user_id_created_at" to table: "audit_events"
CREATE INDEX "auditevent_user_id_created_at" ON "audit_events" ("user_id", "created_at");
-- Create "login_throttles" table
CREATE TABLE "login_throttles" ("id" uuid NOT NULL, "key_hmac" bytea NOT NULL, "failures" bigint NOT NULL DEFAULT 0, "window_started_at" timestamptz NOT NULL, "locked_until" timestamptz NULL, "updated_at" timestamptz NOT NULL, PRIMARY KEY ("id"));
-- Create index "login_throttles_key_hmac_key" to table: "login_throttles"
CREATE UNIQUE INDEX "login_throttles_key_hmac_key" ON "login_throttles" ("key_hmac");
