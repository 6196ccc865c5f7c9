//! Two `numguard serve` processes on one PostgreSQL database: what one replica
//! acknowledges, the other reflects at once, with no stale cache entry; and a replica
//! whose notification connection drops reconnects, drops its cache and says so.

use std::time::{Duration, Instant};

use chrono::Utc;
use numguard::api::convert::timestamp;
use numguard::api::pb::admin_client::AdminClient;
use numguard::api::pb::events_client::EventsClient;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard::api::pb::{self, EventKind, SimSwapStatus};
use numguard_testkit::process::Served;
use numguard_testkit::{Backend, TestDb, at, event};
use sqlx::{Connection, PgConnection};
use tonic::transport::Channel;

async fn channel(served: &Served) -> Channel {
    Channel::from_shared(served.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn check(served: &Served, number: &str) -> pb::CheckNumberResponse {
    NumberCheckClient::new(channel(served).await)
        .check_number(pb::CheckNumberRequest {
            phone_number: number.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn ingest(served: &Served, events: Vec<pb::Event>) -> pb::IngestSummary {
    EventsClient::new(channel(served).await)
        .ingest_events(tokio_stream::iter(events))
        .await
        .unwrap()
        .into_inner()
}

/// Registers source `feed` (all of +81) through one replica.
async fn add_feed(replica: &Served) {
    AdminClient::new(channel(replica).await)
        .upsert_source(pb::Source {
            name: "feed".into(),
            tracking_since: Some(timestamp(at("2025-01-01T00:00:00Z"))),
            covers: vec!["81".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    AdminClient::new(channel(replica).await)
        .heartbeat(pb::HeartbeatRequest {
            source: "feed".into(),
            complete_until: None,
        })
        .await
        .unwrap();
}

/// How long after an ingest is acknowledged another replica may still answer from the
/// history it had cached (generous, for a loaded 2-core machine).
const REPLICA_BOUND: Duration = Duration::from_secs(2);

fn number(i: u32) -> String {
    format!("+81901{i:07}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_acknowledged_by_one_replica_is_seen_by_the_other_within_the_bound() {
    let db = TestDb::new(Backend::Postgres).await;
    let a = Served::start(&db.url);
    let b = Served::start(&db.url);

    // A source registered through A covers numbers on B.
    add_feed(&a).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while check(&b, &number(0)).await.covered_since.is_none() {
        assert!(
            Instant::now() < deadline,
            "B never saw the source added on A"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for i in 0..20 {
        let n = number(i);
        // B caches a quiet history...
        assert_eq!(check(&b, &n).await.sim_swap(), SimSwapStatus::NotSwapped);
        // ...A acknowledges a swap...
        let summary = ingest(
            &a,
            vec![event(
                "feed",
                &format!("swap-{i}"),
                &n,
                EventKind::SimSwap,
                Utc::now() - chrono::Duration::minutes(5),
            )],
        )
        .await;
        assert_eq!(summary.accepted, 1);
        // ...and B sees it as soon as its listener has read the notification that A waited
        // for: a check on B can race that read, so B is held to a bound, not to "at once"
        // (issue 17 asks for the bound to be measured and enforced).
        let acknowledged = Instant::now();
        while check(&b, &n).await.sim_swap() != SimSwapStatus::Swapped {
            assert!(
                acknowledged.elapsed() < REPLICA_BOUND,
                "replica B still served a stale answer for number {i} after {REPLICA_BOUND:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_its_notifications_drops_its_cache_and_says_so() {
    let db = TestDb::new(Backend::Postgres).await;
    let a = Served::start(&db.url);
    let b = Served::start(&db.url);
    add_feed(&a).await;
    let n = number(42);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(check(&b, &n).await.sim_swap(), SimSwapStatus::NotSwapped);
    let connects_before = b.log().matches("listening for changes").count();

    // Cut every replica's LISTEN connection, as a network blip or a failover would, and
    // write while they are gone: these notifications are lost.
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(numguard::store::postgres::LISTENER_APPLICATION_NAME)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, 2, "one listener per replica");
    ingest(
        &a,
        vec![event("feed", "lost", &n, EventKind::SimSwap, Utc::now())],
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(10);
    while b.log().matches("listening for changes").count() <= connects_before {
        assert!(
            Instant::now() < deadline,
            "B did not reconnect:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = b.log();
    assert!(log.contains("dropped every cached history"), "{log}");
    assert!(
        log.contains("change-notification connection"),
        "the drop is logged: {log}"
    );
    assert_eq!(
        check(&b, &n).await.sim_swap(),
        SimSwapStatus::Swapped,
        "B must not answer from the history it cached before the lost notification"
    );
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_a_fresh_database_both_come_up() {
    let db = TestDb::new(Backend::Postgres).await;
    let config = numguard_testkit::dev_config;
    // Both migrate and both seed the shipped ranges at the same moment.
    let (a, b) = tokio::join!(
        async {
            let store = numguard::store::open(&db.url).await.expect("open A");
            numguard::engine::Engine::start(store, config())
                .await
                .expect("start A")
        },
        async {
            let store = numguard::store::open(&db.url).await.expect("open B");
            numguard::engine::Engine::start(store, config())
                .await
                .expect("start B")
        },
    );
    assert!(a.catalog.ranges().len() > 7_000);
    assert_eq!(a.catalog.ranges().len(), b.catalog.ranges().len());
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count() as i64;
    assert_eq!(migrations, files, "every migration applied, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_stream_on_one_replica_hears_events_ingested_on_another() {
    use numguard::api::pb::alerts_client::AlertsClient;
    let db = TestDb::new(Backend::Postgres).await;
    let a = Served::start(&db.url);
    let b = Served::start(&db.url);
    add_feed(&a).await;
    let n = number(7);
    AlertsClient::new(channel(&a).await)
        .upsert_watch(pb::UpsertWatchRequest {
            entries: vec![pb::WatchEntry {
                customer_ref: "cust-7".into(),
                phone_number: n.clone(),
                owner_since: Some(timestamp(at("2026-01-01T00:00:00Z"))),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    let mut stream = AlertsClient::new(channel(&b).await)
        .watch_alerts(pb::WatchAlertsRequest::default())
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(200)).await;
    ingest(
        &a,
        vec![event("feed", "on-a", &n, EventKind::SimSwap, Utc::now())],
    )
    .await;
    let alert = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("B's stream hears A's event")
        .unwrap()
        .unwrap();
    assert_eq!(alert.customer_refs, vec!["cust-7"]);
    assert_eq!(alert.event.unwrap().source_event_id, "on-a");
    drop(stream);
    a.stop();
    b.stop();
}
