//! Watchlists and the resumable alert stream, on both backends.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use numguard::api::convert::timestamp;
use numguard::api::pb::alerts_client::AlertsClient;
use numguard::api::pb::{self, EventKind};
use numguard_testkit::*;
use sqlx::{Connection, PgConnection};
use tonic::Code;
use tonic::transport::Channel;

on_both_backends!(
    watchlists_upsert_list_and_remove_with_bad_entries_reported,
    a_reconnect_with_the_last_cursor_gets_exactly_the_missed_alerts,
    resuming_works_across_a_server_restart,
    a_thousand_streams_each_get_their_alerts,
    a_reader_that_falls_behind_loses_nothing,
);

fn watch(customer_ref: &str, number: &str, owner_since: &str) -> pb::WatchEntry {
    pb::WatchEntry {
        customer_ref: customer_ref.into(),
        phone_number: number.into(),
        owner_since: Some(timestamp(at(owner_since))),
        ..Default::default()
    }
}

async fn alerts_client(server: &TestServer) -> AlertsClient<Channel> {
    AlertsClient::new(server.channel().await)
}

async fn upsert(server: &TestServer, entries: Vec<pb::WatchEntry>) -> pb::UpsertWatchResponse {
    alerts_client(server)
        .await
        .upsert_watch(pb::UpsertWatchRequest { entries })
        .await
        .unwrap()
        .into_inner()
}

/// Registers source `feed` and watches `count` numbers `<base>00`, `<base>01`, ... as
/// customers `c0`, `c1`, ...; returns the numbers.
async fn watch_many(server: &TestServer, count: usize, base: &str) -> Vec<String> {
    add_source(server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let numbers: Vec<String> = (0..count).map(|i| format!("{base}{i:02}")).collect();
    upsert(
        server,
        numbers
            .iter()
            .enumerate()
            .map(|(i, n)| watch(&format!("c{i}"), n, "2026-01-01T00:00:00Z"))
            .collect(),
    )
    .await;
    numbers
}

/// Opens a stream and returns it once the server has set it up.
async fn open_stream(server: &TestServer, resume_after: u64) -> tonic::Streaming<pb::Alert> {
    alerts_client(server)
        .await
        .watch_alerts(pb::WatchAlertsRequest {
            resume_after,
            kinds: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// The next alert, failing after a while.
async fn next_alert(stream: &mut tonic::Streaming<pb::Alert>) -> pb::Alert {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an alert in time")
        .expect("stream ok")
        .expect("stream open")
}

/// Asserts that nothing more arrives for a moment.
async fn nothing_more(stream: &mut tonic::Streaming<pb::Alert>) {
    let more = tokio::time::timeout(Duration::from_millis(1500), stream.message()).await;
    assert!(more.is_err(), "unexpected: {more:?}");
}

async fn watchlists_upsert_list_and_remove_with_bad_entries_reported(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut no_owner = watch("c-2", "+818012345678", "2026-01-01T00:00:00Z");
    no_owner.owner_since = None;
    let by_date = pb::WatchEntry {
        customer_ref: "c-4".into(),
        phone_number: "090-1111-2222".into(),
        region: "JP".into(),
        owner_since_date: "2026-02-01".into(),
        ..Default::default()
    };
    let r = upsert(
        &server,
        vec![
            watch("c-1", "+819012345678", "2026-01-01T00:00:00Z"),
            no_owner,
            watch("c-3", "garbage", "2026-01-01T00:00:00Z"),
            by_date,
            watch("", "+819012345678", "2026-01-01T00:00:00Z"),
            watch("c-1", "+819087654321", "2026-01-02T00:00:00Z"), // replaces c-1
        ],
    )
    .await;
    assert_eq!(r.upserted, 2);
    let errors: Vec<(u32, &str)> = r
        .errors
        .iter()
        .map(|e| (e.index, e.reason.split(' ').next().unwrap_or("")))
        .collect();
    assert_eq!(
        errors,
        vec![(1, "owner_since"), (2, "phone_number"), (4, "customer_ref")]
    );

    let mut client = alerts_client(&server).await;
    let first = client
        .list_watch(pb::ListWatchRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.entries[0].customer_ref, "c-1");
    assert_eq!(first.entries[0].phone_number, "+819087654321");
    let second = client
        .list_watch(pb::ListWatchRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.entries[0].customer_ref, "c-4");
    assert_eq!(second.entries[0].owner_since_date, "2026-02-01");
    assert_eq!(second.entries[0].phone_number, "+819011112222");
    assert!(second.next_page_token.is_empty());

    let removed = client
        .remove_watch(pb::RemoveWatchRequest {
            customer_refs: vec!["c-1".into(), "nope".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.removed, 1);

    let err = client
        .watch_alerts(pb::WatchAlertsRequest {
            resume_after: 0,
            kinds: vec![99],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("kinds"));
    server.stop().await;
}

async fn a_reconnect_with_the_last_cursor_gets_exactly_the_missed_alerts(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let (a, b, unwatched) = ("+819012345678", "+818012345678", "+817012345678");
    upsert(
        &server,
        vec![
            watch("alice", a, "2026-01-01T00:00:00Z"),
            watch("bob", b, "2026-01-01T00:00:00Z"),
            watch("alice-2", a, "2026-03-01T00:00:00Z"),
        ],
    )
    .await;
    let mut stream = open_stream(&server, 0).await;
    let t = Utc::now() - chrono::Duration::hours(1);
    ingest(&server, vec![event("feed", "e1", a, EventKind::SimSwap, t)]).await;
    let first = next_alert(&mut stream).await;
    assert_eq!(first.phone_number, a);
    assert_eq!(first.customer_refs, vec!["alice", "alice-2"]);
    assert_eq!(first.event.as_ref().unwrap().source_event_id, "e1");
    let check = first.check.as_ref().unwrap();
    assert_eq!(check.sim_swap(), pb::SimSwapStatus::Swapped);
    drop(stream);

    // While disconnected: two alerts, an event on an unwatched number, and one from
    // before every owner_since.
    ingest(
        &server,
        vec![
            event("feed", "e2", b, EventKind::Disconnect, t),
            event("feed", "e3", unwatched, EventKind::SimSwap, t),
            port("feed", "e4", a, t, "NTT Docomo", "KDDI"),
        ],
    )
    .await;
    ingest(
        &server,
        vec![event(
            "feed",
            "e5",
            a,
            EventKind::Reassign,
            at("2025-12-01T00:00:00Z"),
        )],
    )
    .await;

    let mut resumed = open_stream(&server, first.cursor).await;
    let x = next_alert(&mut resumed).await;
    let y = next_alert(&mut resumed).await;
    let ids: Vec<String> = [&x, &y]
        .iter()
        .map(|a| a.event.as_ref().unwrap().source_event_id.clone())
        .collect();
    assert_eq!(ids, vec!["e2", "e4"]);
    assert!(first.cursor < x.cursor && x.cursor < y.cursor);
    assert_eq!(x.customer_refs, vec!["bob"]);
    assert_eq!(
        x.check.as_ref().unwrap().ownership(),
        pb::OwnershipStatus::Changed
    );
    nothing_more(&mut resumed).await;

    // And it continues live.
    ingest(&server, vec![event("feed", "e6", b, EventKind::SimSwap, t)]).await;
    let live = next_alert(&mut resumed).await;
    assert_eq!(live.event.unwrap().source_event_id, "e6");
    assert!(live.cursor > y.cursor);
    server.stop().await;
}

async fn resuming_works_across_a_server_restart(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let n = "+819012345678";
    upsert(&server, vec![watch("c", n, "2026-01-01T00:00:00Z")]).await;
    let mut stream = open_stream(&server, 0).await;
    let t = Utc::now() - chrono::Duration::hours(1);
    ingest(&server, vec![event("feed", "e1", n, EventKind::SimSwap, t)]).await;
    let seen = next_alert(&mut stream).await;
    drop(stream);
    ingest(
        &server,
        vec![event("feed", "e2", n, EventKind::DeviceSwap, t)],
    )
    .await;
    let db = server.stop().await;

    let server = TestServer::start_in(db, dev_config()).await;
    ingest(&server, vec![event("feed", "e3", n, EventKind::SimSwap, t)]).await;
    let mut resumed = open_stream(&server, seen.cursor).await;
    let ids = [
        next_alert(&mut resumed).await,
        next_alert(&mut resumed).await,
    ]
    .map(|a| a.event.unwrap().source_event_id);
    assert_eq!(ids, ["e2".to_string(), "e3".to_string()]);
    nothing_more(&mut resumed).await;
    server.stop().await;
}

async fn a_thousand_streams_each_get_their_alerts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let numbers = watch_many(&server, 10, "+8190100000").await;
    let channels: Vec<Channel> = futures::future::join_all((0..8).map(|_| server.channel())).await;
    let mut streams = Vec::new();
    for i in 0..1000 {
        let mut client = AlertsClient::new(channels[i % channels.len()].clone());
        // Every tenth stream listens only for disconnects.
        let kinds = if i % 10 == 0 {
            vec![EventKind::Disconnect.into()]
        } else {
            vec![]
        };
        streams.push(
            client
                .watch_alerts(pb::WatchAlertsRequest {
                    resume_after: 0,
                    kinds,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let t = Utc::now() - chrono::Duration::hours(1);
    let events: Vec<pb::Event> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let kind = if i < 2 {
                EventKind::Disconnect
            } else {
                EventKind::SimSwap
            };
            event("feed", &format!("e{i}"), n, kind, t)
        })
        .collect();
    ingest(&server, events).await;
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut stream)| {
            let received = received.clone();
            tokio::spawn(async move {
                let expected = if i % 10 == 0 { 2 } else { 10 };
                let mut ids = Vec::new();
                for _ in 0..expected {
                    ids.push(next_alert(&mut stream).await.event.unwrap().source_event_id);
                }
                let mut sorted = ids.clone();
                sorted.sort();
                sorted.dedup();
                assert_eq!(sorted.len(), expected, "stream {i}: {ids:?}");
                received.fetch_add(expected, std::sync::atomic::Ordering::Relaxed);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        received.load(std::sync::atomic::Ordering::Relaxed),
        100 * 2 + 900 * 10
    );
    drop(channels);
    server.stop().await;
}

async fn a_reader_that_falls_behind_loses_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let numbers = watch_many(&server, 50, "+8190200000").await;
    let mut stream = open_stream(&server, 0).await;
    // 2,000 alerts while the reader reads nothing: far more than any buffer between them.
    let t = Utc::now() - chrono::Duration::hours(1);
    for batch in 0..4 {
        let events = (0..500)
            .map(|i| {
                let n = &numbers[i % numbers.len()];
                event(
                    "feed",
                    &format!("b{batch}-{i}"),
                    n,
                    EventKind::DeviceSwap,
                    t,
                )
            })
            .collect();
        ingest(&server, events).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut last = 0;
    for _ in 0..2_000 {
        let alert = next_alert(&mut stream).await;
        assert!(alert.cursor > last, "in cursor order, each once");
        last = alert.cursor;
    }
    nothing_more(&mut stream).await;
    server.stop().await;
}

/// Reads of the watchlist PostgreSQL has counted (index fetches and sequential reads), and
/// rows inserted into it.
async fn watchlist_reads(admin: &mut PgConnection) -> (i64, i64) {
    sqlx::query_as(
        "SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0), n_tup_ins \
         FROM pg_stat_user_tables WHERE relname = 'watchlist'",
    )
    .fetch_one(admin)
    .await
    .unwrap()
}

/// PostgreSQL counts a backend's reads once it goes idle, within about a second.
async fn wait_for_watchlist_reads(
    admin: &mut PgConnection,
    done: impl Fn((i64, i64)) -> bool,
) -> (i64, i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let counted = watchlist_reads(admin).await;
        if done(counted) {
            return counted;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "statistics never got there: {counted:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fresh (or freshly bulk-loaded) watchlist has no planner statistics yet. The planner
/// then flattened the alert scan's per-event look-up into a join that read the tenant's
/// whole watchlist for each scan (17 ms at 100,000 entries); each event must look up only
/// its own number.
#[tokio::test]
async fn a_postgres_alert_scan_reads_only_its_events_entries_of_a_large_watchlist() {
    const WATCHED: usize = 20_000;
    let server = TestServer::start(Backend::Postgres).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let numbers: Vec<String> = (0..WATCHED).map(|i| format!("+81903{i:07}")).collect();
    for (c, chunk) in numbers.chunks(5_000).enumerate() {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, n)| watch(&format!("c{c}-{i}"), n, "2026-01-01T00:00:00Z"))
            .collect();
        assert_eq!(upsert(&server, entries).await.upserted, 5_000);
    }
    let mut admin = PgConnection::connect(&server.db.url).await.unwrap();
    let (before, _) =
        wait_for_watchlist_reads(&mut admin, |(_, inserted)| inserted >= WATCHED as i64).await;

    let mut stream = open_stream(&server, 0).await;
    let t = Utc::now() - chrono::Duration::hours(1);
    ingest(
        &server,
        vec![event("feed", "e1", &numbers[7], EventKind::SimSwap, t)],
    )
    .await;
    assert_eq!(next_alert(&mut stream).await.phone_number, numbers[7]);
    let (after, _) = wait_for_watchlist_reads(&mut admin, |(reads, _)| reads > before).await;
    assert!(
        after - before < 100,
        "the alert scan read {} watchlist rows for one event",
        after - before
    );
    server.stop().await;
}
