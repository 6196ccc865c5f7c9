-- The events table's text keys compare byte by byte (collation "C"). The database's
-- default collation (C.UTF-8 on the bench machine) sorts these ASCII keys the same, but
-- through the locale library: 7-10% of the ingesting backend's CPU (BENCHMARKS.md). The
-- watchlist's numbers, joined to events' by the alert scans, follow, so that the join
-- keeps using the watchlist's index. The indexes on these columns are rebuilt (the
-- tables are not rewritten), holding each table's lock meanwhile.
ALTER TABLE events
    ALTER COLUMN source TYPE TEXT COLLATE "C",
    ALTER COLUMN source_event_id TYPE TEXT COLLATE "C",
    ALTER COLUMN number TYPE TEXT COLLATE "C";
ALTER TABLE watchlist ALTER COLUMN number TYPE TEXT COLLATE "C";
