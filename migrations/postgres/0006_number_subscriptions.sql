-- CAMARA SIM-swap subscriptions: one number's events instead of the tenant's watchlist,
-- CAMARA's CloudEvent types, and the sink token's expiry (the subscription ends then).
ALTER TABLE subscriptions ADD COLUMN number TEXT;
ALTER TABLE subscriptions ADD COLUMN format TEXT NOT NULL DEFAULT 'numguard';
ALTER TABLE subscriptions ADD COLUMN token_expire_at BIGINT;
