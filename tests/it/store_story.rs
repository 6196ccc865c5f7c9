//! One story through the `Store` trait, told on both backends: what one stores, the other
//! must give back the same way.

use chrono::{DateTime, Duration, Utc};
use numguard::domain::carrier::{Carrier, CarrierRegistry};
use numguard::domain::event::{EventKind, NewEvent, RawEvent};
use numguard::domain::number::E164;
use numguard::domain::source::{RawScope, Source};
use numguard::ranges::RangeEntry;
use numguard::store::{AccessRecord, EventCursor, EventQuery};
use numguard_testkit::{Backend, TestDb, on_both_backends};

on_both_backends!(
    store_story,
    a_large_batch_keeps_the_first_of_each_repeat,
    the_purge_deletes_in_chunks_and_keeps_each_numbers_newest_port
);

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn new_event(id: &str, number: &str, kind: EventKind, at: DateTime<Utc>) -> NewEvent {
    NewEvent::validate(
        RawEvent {
            source: "feed".into(),
            source_event_id: id.into(),
            phone_number: number.into(),
            kind: Some(kind),
            occurred_at: Some(at),
            from_carrier: String::new(),
            to_carrier: if kind == EventKind::Port {
                "KDDI".into()
            } else {
                String::new()
            },
        },
        None,
        t("2026-12-01T00:00:00Z"),
        &registry(),
    )
    .unwrap()
}

/// The source `feed`: every kind of every +81 number since 2025.
fn whole_81_feed() -> Source {
    Source::new(
        "feed",
        Some(t("2025-01-01T00:00:00Z")),
        &[RawScope::whole("81")],
        None,
        &registry(),
    )
    .unwrap()
}

fn registry() -> CarrierRegistry {
    CarrierRegistry::new(vec![
        Carrier::new(
            "jp-kddi",
            "KDDI (au)",
            81,
            &["44050".into()],
            &["KDDI株式会社".into(), "KDDI".into()],
        )
        .unwrap(),
        Carrier::new("jp-docomo", "NTT docomo", 81, &[], &[]).unwrap(),
    ])
}

async fn store_story(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = numguard::store::open(&db.url).await.expect("open");

    // Carriers: upsert replaces by id; lists come back by id.
    assert!(store.list_carriers().await.unwrap().is_empty());
    let mut carriers: Vec<Carrier> = registry().iter().cloned().collect();
    store.upsert_carriers(&carriers).await.unwrap();
    carriers[0].aliases.push("au".into());
    carriers[0].reviewed = false;
    store.upsert_carriers(&carriers[..1]).await.unwrap();
    assert_eq!(store.list_carriers().await.unwrap(), carriers);

    // Sources: upsert replaces the definition by name, and keeps the freshness.
    let whole = |c: &[&str]| c.iter().map(|p| RawScope::whole(p)).collect::<Vec<_>>();
    let feed = Source::new(
        "feed",
        Some(t("2025-01-01T00:00:00Z")),
        &whole(&["81"]),
        None,
        &registry(),
    )
    .unwrap();
    store.upsert_source(&feed).await.unwrap();
    assert_eq!(store.list_sources().await.unwrap(), vec![feed.clone()]);
    let name = feed.name.clone();
    assert!(
        store
            .advance_complete_until(&name, t("2026-11-01T00:00:00.000001Z"))
            .await
            .unwrap()
    );
    assert!(
        store
            .advance_complete_until(&name, t("2026-10-01T00:00:00Z"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .advance_complete_until(&"nobody".parse().unwrap(), t("2026-10-01T00:00:00Z"))
            .await
            .unwrap()
    );
    let scoped = RawScope {
        prefix: "8190".into(),
        carriers: vec!["KDDI株式会社".into()],
        kinds: vec![EventKind::SimSwap, EventKind::Reassign],
    };
    let mut feed2 = Source::new(
        "feed",
        Some(t("2024-06-01T00:00:00.123456Z")),
        &[scoped, RawScope::whole("8180")],
        Some(Duration::minutes(15)),
        &registry(),
    )
    .unwrap();
    store.upsert_source(&feed2).await.unwrap();
    feed2.complete_until = Some(t("2026-11-01T00:00:00.000001Z"));
    assert_eq!(store.list_sources().await.unwrap(), vec![feed2]);

    // Events: duplicates by (source, source_event_id), within and across batches.
    let n1 = "+819012345678";
    let batch = vec![
        new_event("a", n1, EventKind::Port, t("2026-01-01T00:00:00Z")),
        new_event(
            "b",
            n1,
            EventKind::SimSwap,
            t("2026-02-01T00:00:00.654321Z"),
        ),
        new_event(
            "b",
            n1,
            EventKind::SimSwap,
            t("2026-02-01T00:00:00.654321Z"),
        ),
        new_event(
            "c",
            "+818012345678",
            EventKind::Disconnect,
            t("2026-03-01T00:00:00Z"),
        ),
    ];
    let outcome = store.insert_events(&batch).await.unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (3, 1));
    let again = store.insert_events(&batch[..2]).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 2));
    assert_eq!(store.insert_events(&[]).await.unwrap().inserted, 0);

    // History: exactly what was validated, times to the microsecond.
    let number = E164::parse(n1, None).unwrap();
    let mut history = store.history(&number).await.unwrap();
    history.sort_by_key(|f| f.occurred_at);
    assert_eq!(history, vec![batch[0].fact.clone(), batch[1].fact.clone()]);
    let nobody = E164::parse("+817012345678", None).unwrap();
    assert!(store.history(&nobody).await.unwrap().is_empty());
    // An audit chunk's batch, larger than SQLite reads in place: one history per number
    // asked, in the order asked.
    let mut asked: Vec<E164> = (0..40)
        .map(|i| E164::parse(&format!("+81701{i:07}"), None).unwrap())
        .collect();
    asked.insert(17, number.clone());
    let histories = store.histories(&asked).await.unwrap();
    assert_eq!(histories.len(), asked.len());
    assert_eq!(histories[17].len(), 2);
    assert!(
        histories
            .iter()
            .enumerate()
            .all(|(i, h)| i == 17 || h.is_empty())
    );
    // A number asked for twice in one read gets its history at both places.
    let twice = [number.clone(), nobody.clone(), number.clone()];
    let histories = store.histories(&twice).await.unwrap();
    let lengths: Vec<usize> = histories.iter().map(Vec::len).collect();
    assert_eq!(lengths, [2, 0, 2]);
    // Checks reading at once (on PostgreSQL, merged into shared queries): each gets its
    // own number's history, the same number asked twice included.
    let disconnected = E164::parse("+818012345678", None).unwrap();
    let at_once: Vec<&E164> = asked
        .iter()
        .chain([&number, &disconnected, &number, &disconnected])
        .cycle()
        .take(200)
        .collect();
    let read = futures::future::join_all(at_once.iter().map(|n| store.history(n))).await;
    for (n, history) in at_once.iter().zip(read) {
        let kinds: Vec<EventKind> = history.unwrap().iter().map(|f| f.kind).collect();
        let expected = if *n == &number {
            2
        } else if *n == &disconnected {
            1
        } else {
            0
        };
        assert_eq!(kinds.len(), expected, "{}", n.masked());
        if *n == &disconnected {
            assert_eq!(kinds, [EventKind::Disconnect]);
        }
    }

    // Listing: newest first, filters, keyset paging.
    let all = store
        .list_events(&EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = all
        .iter()
        .map(|e| e.event.fact.source_event_id.as_str())
        .collect();
    assert_eq!(ids, vec!["c", "b", "a"]);
    assert_eq!(all[1].event, batch[1]);
    assert!(all[0].ingested_at > Utc::now() - Duration::minutes(5));
    let after_first = store
        .list_events(&EventQuery {
            after: Some(EventCursor {
                occurred_at: all[0].event.fact.occurred_at,
                id: all[0].id,
            }),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(after_first[0].event.fact.source_event_id, "b");
    let filtered = store
        .list_events(&EventQuery {
            number: Some(number.clone()),
            kinds: vec![EventKind::Port, EventKind::Disconnect],
            since: Some(t("2025-12-31T00:00:00Z")),
            until: Some(t("2026-01-01T00:00:01Z")),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].event.fact.source_event_id, "a");

    // Ranges: upsert by prefix, later wins.
    let range = |p: &str, c: &str| RangeEntry {
        prefix: p.parse().unwrap(),
        carrier: c.into(),
    };
    assert_eq!(
        store
            .upsert_ranges(&[range("8190", "A"), range("8180", "B")])
            .await
            .unwrap(),
        2
    );
    store.upsert_ranges(&[range("8190", "C")]).await.unwrap();
    let mut ranges = store.load_ranges().await.unwrap();
    ranges.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    assert_eq!(ranges, vec![range("8180", "B"), range("8190", "C")]);

    store.ping().await.unwrap();

    // Reopening the same database finds everything (and runs no migration twice).
    drop(store);
    let reopened = numguard::store::open(&db.url).await.expect("reopen");
    assert_eq!(reopened.list_sources().await.unwrap().len(), 1);
    assert_eq!(reopened.history(&number).await.unwrap().len(), 2);
}

/// A PostgreSQL database written under migrations 0001–0007 (instants as TIMESTAMPTZ,
/// covers as an array) reads back the same through today's store after 0008 turns every
/// instant into integer microseconds.
#[tokio::test]
async fn postgres_data_from_the_timestamptz_migrations_reads_back_the_same() {
    use numguard::domain::owner_since::OwnerSince;
    use sqlx::{Connection, PgConnection};

    let db = TestDb::new(Backend::Postgres).await;
    let mut older = sqlx::migrate::Migrator::new(std::path::Path::new("migrations/postgres"))
        .await
        .expect("read migrations");
    older.migrations = older
        .migrations
        .iter()
        .filter(|m| m.version <= 7)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    older.run(&mut conn).await.expect("migrations 0001–0007");
    for statement in [
        "INSERT INTO sources (name, tracking_since, covers, updated_at) \
         VALUES ('feed', '2025-01-01T00:00:00.000001Z', '{81,8190}', '2026-11-01T00:00:00Z')",
        "INSERT INTO events (source, source_event_id, number, kind, occurred_at, to_carrier, \
         ingested_at) VALUES ('feed', 'e1', '+819012345678', 'PORT', \
         '2026-05-02T10:00:00.123456Z', 'jp-kddi', '2026-05-02T10:00:01.5Z'), \
         ('feed', 'e2', '+819012345678', 'SIM_SWAP', '1969-12-31T23:59:59.5Z', NULL, \
         '2026-05-03T00:00:00Z')",
        "INSERT INTO carrier_ranges (prefix, carrier) VALUES ('8190', 'jp-docomo')",
        "INSERT INTO tenants (name, created_at) VALUES ('acme', '2026-01-01T00:00:00Z')",
        "INSERT INTO api_keys (id, tenant, scopes, hash, created_at, revoked_at) \
         VALUES ('k1', 'acme', 'check', '\\x0102', '2026-01-02T03:04:05.678901Z', \
         '2026-02-01T00:00:00Z')",
        "INSERT INTO access_log (tenant, number_hash, first_at, last_at, checks) \
         VALUES ('acme', 'abcd', '2026-03-01T00:00:00.000002Z', '2026-03-01T12:00:00Z', 3)",
        "INSERT INTO watchlist (tenant, customer_ref, number, owner_since_start, owner_since_end) \
         VALUES ('acme', 'c1', '+819012345678', '2026-04-01T00:00:00Z', '2026-04-02T00:00:00Z'), \
         ('acme', 'c2', '+819012345678', '2026-04-01T09:30:00.25Z', NULL)",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let _ = conn.close().await;

    let store = numguard::store::open(&db.url).await.expect("open migrates");
    let sources = store.list_sources().await.unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].tracking_since, t("2025-01-01T00:00:00.000001Z"));
    let prefixes: Vec<String> = sources[0]
        .scopes
        .iter()
        .map(|s| s.prefix.to_string())
        .collect();
    assert_eq!(prefixes, ["81", "8190"]);

    let number = E164::parse("+819012345678", None).unwrap();
    let mut history = store.history(&number).await.unwrap();
    history.sort_by_key(|f| f.occurred_at);
    assert_eq!(history[0].occurred_at, t("1969-12-31T23:59:59.5Z"));
    assert_eq!(history[1].occurred_at, t("2026-05-02T10:00:00.123456Z"));
    assert_eq!(history[1].to_carrier.as_ref().unwrap().as_str(), "jp-kddi");
    let listed = store
        .list_events(&EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed[0].ingested_at, t("2026-05-02T10:00:01.5Z"));

    let keys = store.list_keys().await.unwrap();
    assert_eq!(keys[0].created_at, t("2026-01-02T03:04:05.678901Z"));
    assert_eq!(keys[0].revoked_at, Some(t("2026-02-01T00:00:00Z")));
    assert_eq!(keys[0].hash, vec![1, 2]);
    let access = store.access_log("abcd").await.unwrap();
    assert_eq!(access[0].first_at, t("2026-03-01T00:00:00.000002Z"));
    assert_eq!(access[0].checks, 3);
    let watch = store
        .list_watch(&"acme".parse().unwrap(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        watch[0].owner_since,
        OwnerSince::Day {
            start: t("2026-04-01T00:00:00Z"),
            end: t("2026-04-02T00:00:00Z"),
        }
    );
    assert_eq!(
        watch[1].owner_since,
        OwnerSince::At(t("2026-04-01T09:30:00.25Z"))
    );
    assert_eq!(store.load_ranges().await.unwrap().len(), 1);

    // And the migrated tables take new rows.
    let added = store
        .insert_events(&[new_event(
            "e3",
            "+819012345678",
            EventKind::Disconnect,
            t("2026-06-01T00:00:00Z"),
        )])
        .await
        .unwrap();
    assert_eq!(added.inserted, 1);
    assert_eq!(store.history(&number).await.unwrap().len(), 3);
}

/// After a bulk ingest, PostgreSQL's statistics on the events are brought up to date by
/// numguard itself (the test server runs with autovacuum off, as some do), so that the
/// planner knows a chunk's history read is selective: without them it estimates that the
/// read matches the whole table and scans every event for each audit chunk.
#[tokio::test]
async fn postgres_statistics_follow_a_bulk_ingest() {
    use sqlx::{Connection, PgConnection};

    let db = TestDb::new(Backend::Postgres).await;
    let store = numguard::store::open(&db.url).await.expect("open");
    store
        .upsert_carriers(&registry().iter().cloned().collect::<Vec<_>>())
        .await
        .unwrap();
    store.upsert_source(&whole_81_feed()).await.unwrap();
    let at = t("2026-06-01T00:00:00Z");
    let batch: Vec<NewEvent> = (0..50_000)
        .map(|i| {
            new_event(
                &format!("e{i}"),
                &format!("+81901{i:07}"),
                EventKind::SimSwap,
                at,
            )
        })
        .collect();
    store.insert_events(&batch).await.unwrap();

    numguard_testkit::eventually(
        std::time::Duration::from_secs(60),
        "events analysed",
        || {
            let url = db.url.clone();
            async move {
                let mut conn = PgConnection::connect(&url).await.unwrap();
                // The statistics themselves, not `last_analyze`: PostgreSQL reports the
                // analysis before its transaction commits what it found.
                let analysed: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_stats \
                     WHERE tablename = 'events' AND attname = 'number' \
                     AND schemaname = current_schema())",
                )
                .fetch_one(&mut conn)
                .await
                .unwrap();
                analysed
            }
        },
    )
    .await;
    // A chunk of 1,024 numbers, each with one event.
    let numbers: Vec<String> = (0..1024).map(|i| format!("+81901{:07}", i * 40)).collect();
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let plan: String =
        sqlx::query_scalar("EXPLAIN SELECT number FROM events WHERE number = ANY($1)")
            .bind(&numbers)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let estimate: f64 = plan
        .split("rows=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no row estimate in {plan:?}"));
    assert!(
        estimate <= 4.0 * 1024.0,
        "the planner expects {estimate} rows for a chunk of 1,024 (of 50,000): {plan}"
    );
}

async fn the_purge_deletes_in_chunks_and_keeps_each_numbers_newest_port(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = numguard::store::open(&db.url).await.expect("open");
    store.upsert_source(&whole_81_feed()).await.unwrap();
    let (a, b) = ("+819012345678", "+819087654321");
    let batch = vec![
        new_event("a-port-1", a, EventKind::Port, t("2026-01-01T00:00:00Z")),
        new_event("a-swap", a, EventKind::SimSwap, t("2026-01-02T00:00:00Z")),
        // Two ports at one instant: the later in the fixed order (source, id) is newest.
        new_event("a-port-2", a, EventKind::Port, t("2026-01-03T00:00:00Z")),
        new_event("a-port-3", a, EventKind::Port, t("2026-01-03T00:00:00Z")),
        new_event("b-port", b, EventKind::Port, t("2026-01-04T00:00:00Z")),
        new_event(
            "b-gone",
            b,
            EventKind::Disconnect,
            t("2026-01-05T00:00:00Z"),
        ),
        new_event(
            "b-kept",
            b,
            EventKind::Disconnect,
            t("2026-03-01T00:00:00Z"),
        ),
        // A port after the cut-off makes b's older one purgeable.
        new_event("b-port-new", b, EventKind::Port, t("2026-03-02T00:00:00Z")),
    ];
    assert_eq!(store.insert_events(&batch).await.unwrap().inserted, 8);
    let cut = t("2026-02-01T00:00:00Z");
    // Oldest first, two at a time, each chunk naming its events' numbers.
    let first = store.purge_events(cut, 2).await.unwrap();
    assert_eq!(first, vec![E164::parse(a, None).unwrap(); 2]);
    let second = store.purge_events(cut, 2).await.unwrap();
    let mut numbers: Vec<&str> = second.iter().map(E164::as_str).collect();
    numbers.sort(); // RETURNING promises no order
    assert_eq!(numbers, [a, b]);
    let third = store.purge_events(cut, 2).await.unwrap();
    let numbers: Vec<&str> = third.iter().map(E164::as_str).collect();
    assert_eq!(numbers, [b], "fewer than the limit: nothing older is left");
    assert!(store.purge_events(cut, 2).await.unwrap().is_empty());
    let kept = |number: &str| {
        let number = E164::parse(number, None).unwrap();
        let store = &store;
        async move {
            let mut ids: Vec<String> = store
                .history(&number)
                .await
                .unwrap()
                .into_iter()
                .map(|f| f.source_event_id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(kept(a).await, ["a-port-3"]);
    assert_eq!(kept(b).await, ["b-kept", "b-port-new"]);
}

/// A batch of several statements' worth (SQLite writes 64 rows a statement) with a repeat
/// across a statement boundary and one within the last, shorter statement: each counted
/// once, the first one stored kept; and access records alike.
async fn a_large_batch_keeps_the_first_of_each_repeat(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = numguard::store::open(&db.url).await.expect("open");
    store.upsert_source(&whole_81_feed()).await.unwrap();
    let many = E164::parse("+819011110000", None).unwrap();
    let mut big: Vec<NewEvent> = (0..150)
        .map(|i| {
            let at = t("2026-04-01T00:00:00Z") + Duration::seconds(i);
            new_event(&format!("big-{i}"), many.as_str(), EventKind::SimSwap, at)
        })
        .collect();
    let repeat = |i: usize| {
        let mut e = new_event(
            &format!("big-{i}"),
            many.as_str(),
            EventKind::Disconnect,
            t("2026-05-01T00:00:00Z"),
        );
        e.fact.source_event_id = big[i].fact.source_event_id.clone();
        e
    };
    let (early, late) = (repeat(3), repeat(140));
    big.insert(100, early);
    big.push(late);
    let outcome = store.insert_events(&big).await.unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (150, 2));
    let stored = store.history(&many).await.unwrap();
    assert_eq!(stored.len(), 150);
    assert!(stored.iter().all(|f| f.kind == EventKind::SimSwap));

    let records: Vec<AccessRecord> = (0..130)
        .map(|i| AccessRecord {
            tenant: "acme".parse().unwrap(),
            number_hash: format!("hash-{}", i % 2),
            first_at: t("2026-04-01T00:00:00Z") + Duration::seconds(i),
            last_at: t("2026-04-01T00:00:00Z") + Duration::seconds(i),
            checks: 1,
        })
        .collect();
    store.record_access(&records).await.unwrap();
    assert_eq!(store.access_log("hash-1").await.unwrap().len(), 65);
}
