CREATE TABLE tenants (
    name           TEXT PRIMARY KEY NOT NULL,
    -- How precisely SIM-change and port times are returned: exact, day or none.
    time_precision TEXT NOT NULL DEFAULT 'exact'
        CHECK (time_precision IN ('exact', 'day', 'none')),
    created_at     INTEGER NOT NULL
);

CREATE TABLE api_keys (
    -- The public part of the key (`ng_<id>_<secret>`), for listing and revoking.
    id         TEXT PRIMARY KEY NOT NULL,
    tenant     TEXT NOT NULL REFERENCES tenants (name),
    scopes     TEXT NOT NULL,
    -- SHA-256 of the whole key; the key itself is never stored.
    hash       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

-- Who looked up which number: numbers only as keyed hashes (see settings.access_pepper).
CREATE TABLE access_log (
    tenant      TEXT NOT NULL,
    number_hash TEXT NOT NULL,
    first_at    INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    checks      INTEGER NOT NULL
);
CREATE INDEX access_log_by_number ON access_log (number_hash, first_at);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
