CREATE TABLE sources (
    name           TEXT PRIMARY KEY,
    tracking_since TIMESTAMPTZ NOT NULL,
    -- Prefixes, e.g. {81,8190}.
    covers         TEXT[] NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          TEXT NOT NULL REFERENCES sources (name),
    source_event_id TEXT NOT NULL,
    -- E.164: '+', country code, national number.
    number          TEXT NOT NULL,
    kind            TEXT NOT NULL
        CHECK (kind IN ('SIM_SWAP', 'PORT', 'DISCONNECT', 'REASSIGN', 'DEVICE_SWAP')),
    occurred_at     TIMESTAMPTZ NOT NULL,
    from_carrier    TEXT,
    to_carrier      TEXT,
    ingested_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (source, source_event_id)
);

-- A number's history (checks) and the newest-first listing.
CREATE INDEX events_by_number ON events (number, occurred_at);
CREATE INDEX events_by_time ON events (occurred_at, id);

CREATE TABLE carrier_ranges (
    prefix     TEXT PRIMARY KEY,
    carrier    TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
