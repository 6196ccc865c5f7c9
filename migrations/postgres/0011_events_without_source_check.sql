-- An ingest is refused an unregistered source by numguard before it writes (sources are
-- never deleted), so the per-row foreign-key trigger only repeated that check; it cost
-- about a third of the ingest rate of the one backend that ingests (BENCHMARKS.md).
ALTER TABLE events DROP CONSTRAINT events_source_fkey;
