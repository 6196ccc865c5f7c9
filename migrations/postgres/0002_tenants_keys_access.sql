CREATE TABLE tenants (
    name           TEXT PRIMARY KEY,
    -- How precisely SIM-change and port times are returned: exact, day or none.
    time_precision TEXT NOT NULL DEFAULT 'exact'
        CHECK (time_precision IN ('exact', 'day', 'none')),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    -- The public part of the key (`ng_<id>_<secret>`), for listing and revoking.
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL REFERENCES tenants (name),
    scopes     TEXT NOT NULL,
    -- SHA-256 of the whole key; the key itself is never stored.
    hash       BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ
);

-- Who looked up which number: numbers only as keyed hashes (see settings.access_pepper).
CREATE TABLE access_log (
    tenant      TEXT NOT NULL,
    number_hash TEXT NOT NULL,
    first_at    TIMESTAMPTZ NOT NULL,
    last_at     TIMESTAMPTZ NOT NULL,
    checks      BIGINT NOT NULL
);
CREATE INDEX access_log_by_number ON access_log (number_hash, first_at);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
