-- Times are INTEGER microseconds since the Unix epoch, UTC: compact, and they sort.

CREATE TABLE sources (
    name           TEXT PRIMARY KEY NOT NULL,
    tracking_since INTEGER NOT NULL,
    -- Space-separated prefixes, e.g. '81 8190'.
    covers         TEXT NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    source          TEXT NOT NULL REFERENCES sources (name),
    source_event_id TEXT NOT NULL,
    -- E.164: '+', country code, national number.
    number          TEXT NOT NULL,
    kind            TEXT NOT NULL
        CHECK (kind IN ('SIM_SWAP', 'PORT', 'DISCONNECT', 'REASSIGN', 'DEVICE_SWAP')),
    occurred_at     INTEGER NOT NULL,
    from_carrier    TEXT,
    to_carrier      TEXT,
    ingested_at     INTEGER NOT NULL,
    UNIQUE (source, source_event_id)
);

-- A number's history (checks) and the newest-first listing.
CREATE INDEX events_by_number ON events (number, occurred_at);
CREATE INDEX events_by_time ON events (occurred_at, id);

CREATE TABLE carrier_ranges (
    prefix     TEXT PRIMARY KEY NOT NULL,
    carrier    TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
