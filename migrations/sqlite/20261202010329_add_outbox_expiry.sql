-- Add column "expires_at" to table: "outbox_messages"
ALTER TABLE `outbox_messages` ADD COLUMN `expires_at` datetime NULL;
