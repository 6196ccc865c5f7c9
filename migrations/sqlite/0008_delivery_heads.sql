-- Each subscription's oldest undelivered event (its queue's head), which the dispatcher
-- delivers one at a time per sink.
CREATE INDEX deliveries_pending ON deliveries (subscription_id, id) WHERE delivered_at IS NULL;
