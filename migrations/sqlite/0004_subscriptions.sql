-- Webhook subscriptions and their delivery queue. Times are microseconds since the epoch.
CREATE TABLE subscriptions (
    id           TEXT PRIMARY KEY NOT NULL,
    tenant       TEXT NOT NULL,
    sink         TEXT NOT NULL,
    -- Comma-separated kinds; empty = all.
    kinds        TEXT NOT NULL,
    token        TEXT,
    expire_at    BIGINT,
    max_events   BIGINT,
    sent         BIGINT NOT NULL DEFAULT 0,
    -- The last event id scanned for this subscription.
    cursor       BIGINT NOT NULL,
    ended_reason TEXT,
    created_at   BIGINT NOT NULL
);

-- CloudEvents waiting for (or done with) delivery; retries survive restarts.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    ce_id           TEXT NOT NULL UNIQUE,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    last_error      TEXT
);
CREATE INDEX deliveries_due ON deliveries (delivered_at, next_attempt_at);
