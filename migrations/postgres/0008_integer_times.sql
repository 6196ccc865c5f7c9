-- Every instant is stored as BIGINT microseconds since the Unix epoch, as on SQLite and in
-- the tables since 0004: one representation, so one set of statements serves both
-- backends. Covers become the same space-separated text as on SQLite.
--
-- The conversion is exact on every PostgreSQL version: whole seconds from the epoch
-- (exact in a double) plus the microseconds within the second. Rewrites each table once.
CREATE FUNCTION numguard_micros(t TIMESTAMPTZ) RETURNS BIGINT
    LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT extract(epoch FROM date_trunc('second', t))::bigint * 1000000
                 + extract(microseconds FROM t)::bigint % 1000000 $$;

ALTER TABLE sources
    ALTER COLUMN updated_at DROP DEFAULT,
    ALTER COLUMN tracking_since TYPE BIGINT USING numguard_micros(tracking_since),
    ALTER COLUMN updated_at TYPE BIGINT USING numguard_micros(updated_at),
    ALTER COLUMN covers TYPE TEXT USING array_to_string(covers, ' ');

ALTER TABLE events
    ALTER COLUMN ingested_at DROP DEFAULT,
    ALTER COLUMN occurred_at TYPE BIGINT USING numguard_micros(occurred_at),
    ALTER COLUMN ingested_at TYPE BIGINT USING numguard_micros(ingested_at);

ALTER TABLE carrier_ranges
    ALTER COLUMN updated_at DROP DEFAULT,
    ALTER COLUMN updated_at TYPE BIGINT USING numguard_micros(updated_at);

ALTER TABLE tenants
    ALTER COLUMN created_at DROP DEFAULT,
    ALTER COLUMN created_at TYPE BIGINT USING numguard_micros(created_at);

ALTER TABLE api_keys
    ALTER COLUMN created_at DROP DEFAULT,
    ALTER COLUMN created_at TYPE BIGINT USING numguard_micros(created_at),
    ALTER COLUMN revoked_at TYPE BIGINT USING numguard_micros(revoked_at);

ALTER TABLE access_log
    ALTER COLUMN first_at TYPE BIGINT USING numguard_micros(first_at),
    ALTER COLUMN last_at TYPE BIGINT USING numguard_micros(last_at);

ALTER TABLE watchlist
    ALTER COLUMN updated_at DROP DEFAULT,
    ALTER COLUMN owner_since_start TYPE BIGINT USING numguard_micros(owner_since_start),
    ALTER COLUMN owner_since_end TYPE BIGINT USING numguard_micros(owner_since_end),
    ALTER COLUMN updated_at TYPE BIGINT USING numguard_micros(updated_at);

DROP FUNCTION numguard_micros(TIMESTAMPTZ);
