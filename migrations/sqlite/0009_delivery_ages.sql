-- When each delivery was queued (for the age of the oldest one waiting) and when it first
-- failed (a subscription whose queue head has failed for long is reported as failing).
ALTER TABLE deliveries ADD COLUMN queued_at BIGINT;
ALTER TABLE deliveries ADD COLUMN first_failed_at BIGINT;
-- Rows queued before: the first attempt was due when they were queued.
UPDATE deliveries SET queued_at = next_attempt_at WHERE delivered_at IS NULL AND attempts = 0;
