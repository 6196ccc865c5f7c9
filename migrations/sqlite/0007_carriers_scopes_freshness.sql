-- Carriers (SPEC §1): every carrier name that enters numguard resolves to one of these ids.
CREATE TABLE carriers (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    country_code INTEGER NOT NULL,
    -- JSON arrays of strings.
    mcc_mnc      TEXT NOT NULL,
    aliases      TEXT NOT NULL,
    -- FALSE for a carrier the server registered from an unknown name, until reviewed.
    reviewed     BOOLEAN NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- What a source sees: a JSON array of {prefix, carriers, kinds}. NULL for sources written
-- before scopes existed, whose covers mean every carrier and every kind.
ALTER TABLE sources ADD COLUMN scopes TEXT;
-- Freshness, in microseconds: a live feed's allowed silence (NULL: fed by files) and the
-- instant up to which its data is complete.
ALTER TABLE sources ADD COLUMN max_lag_us INTEGER;
ALTER TABLE sources ADD COLUMN complete_until_us INTEGER;
-- Sources from before freshness existed were live feeds: they must now be heard from.
UPDATE sources SET max_lag_us = 3600000000;
