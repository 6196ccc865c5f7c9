//! One story through the `Store` trait, told on both backends: what one stores, the other
//! must give back the same way.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::{Backend, TestDb};
use numguard::domain::carrier::{Carrier, CarrierRegistry};
use numguard::domain::event::{EventKind, NewEvent, RawEvent};
use numguard::domain::number::E164;
use numguard::domain::source::{RawScope, Source};
use numguard::ranges::RangeEntry;
use numguard::store::{EventCursor, EventQuery};

on_both_backends!(store_story);

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
