-- Modify "outbox_messages" table
ALTER TABLE "outbox_messages" ADD COLUMN "sealed_data" bytea NULL;
