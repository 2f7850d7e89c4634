-- Add column "sealed_data" to table: "outbox_messages"
ALTER TABLE `outbox_messages` ADD COLUMN `sealed_data` blob NULL;
