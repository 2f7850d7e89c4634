-- Add column "requester_hmac" to table: "otp_requests"
ALTER TABLE `otp_requests` ADD COLUMN `requester_hmac` blob NULL;
