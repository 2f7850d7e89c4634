-- Modify "outbox_messages" table
ALTER TABLE "outbox_messages" ADD COLUMN "expires_at" timestamptz NULL;
