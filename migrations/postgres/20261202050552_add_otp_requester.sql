-- Modify "otp_requests" table
ALTER TABLE "otp_requests" ADD COLUMN "requester_hmac" bytea NULL;
