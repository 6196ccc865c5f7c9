//! Two `numguard serve` processes on one PostgreSQL database: what one replica
//! acknowledges, the other reflects within the stated bound (`--max-replica-lag-ms`),
//! also when its link to the database hangs; and a replica whose notification connection
//! drops reconnects, drops its cache and says so.

use std::time::{Duration, Instant};

use chrono::Utc;
use numguard::api::convert::timestamp;
use numguard::api::pb::admin_client::AdminClient;
use numguard::api::pb::events_client::EventsClient;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard::api::pb::{self, EventKind, SimSwapStatus};
use numguard::store::STANDBY_APPLICATION_NAME;
use numguard_testkit::pg_standby::PgStandbyPair;
use numguard_testkit::process::Served;
use numguard_testkit::proxy::Proxy;
use numguard_testkit::{Backend, TestDb, at, db, event};
use sqlx::{Connection, PgConnection};
use tonic::transport::Channel;

use super::operations::{metrics_url, sample, scrape};
use super::prometheus::Prometheus;

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

/// How long after a commit another replica may still answer from a history it cached
/// before: the server's default `--max-replica-lag-ms`.
const REPLICA_BOUND: Duration = Duration::from_millis(1000);

fn number(i: u32) -> String {
    format!("+81901{i:07}")
}

/// Polls until B sees the source added on A.
async fn wait_for_feed(b: &Served) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while check(b, &number(0)).await.covered_since.is_none() {
        assert!(
            Instant::now() < deadline,
            "B never saw the source added on A"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn swap(a: &Served, i: u32) {
    let summary = ingest(
        a,
        vec![event(
            "feed",
            &format!("swap-{i}"),
            &number(i),
            EventKind::SimSwap,
            Utc::now() - chrono::Duration::minutes(5),
        )],
    )
    .await;
    assert_eq!(summary.accepted, 1);
}

/// Every check B starts a bound or more after A acknowledged a swap sees the swap, even
/// though B had cached the quiet history: one check each, no polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_acknowledged_by_one_replica_is_seen_by_the_other_within_the_bound() {
    let db = TestDb::new(Backend::Postgres).await;
    let a = Served::start(&db.url);
    let b = Served::start(&db.url);
    add_feed(&a).await;
    wait_for_feed(&b).await;

    for i in 0..8 {
        let n = number(i);
        // B caches a quiet history...
        assert_eq!(check(&b, &n).await.sim_swap(), SimSwapStatus::NotSwapped);
        // ...A acknowledges a swap...
        swap(&a, i).await;
        let acknowledged = Instant::now();
        // ...and a check B starts a bound later sees it.
        tokio::time::sleep_until((acknowledged + REPLICA_BOUND).into()).await;
        assert_eq!(
            check(&b, &n).await.sim_swap(),
            SimSwapStatus::Swapped,
            "replica B answered number {i} from a stale cache {REPLICA_BOUND:?} after the ack"
        );
    }
    a.stop();
    b.stop();
}

/// B's link to the database hangs (nothing is refused, nothing comes through), so B hears
/// of no change. It may answer from its cache for at most the bound; after that it never
/// answers from what it cached (its checks fail rather than answer NOT_SWAPPED), and it
/// says why in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_database_link_hangs_stops_answering_from_its_cache() {
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(db::postgres_addr()).await;
    let a = Served::start(&db.url);
    let b = Served::start(&db::with_host(&db.url, &proxy.addr.to_string()));
    add_feed(&a).await;
    wait_for_feed(&b).await;
    let n = number(1);
    assert_eq!(check(&b, &n).await.sim_swap(), SimSwapStatus::NotSwapped);

    proxy.stall();
    swap(&a, 1).await;
    let acknowledged = Instant::now();
    tokio::time::sleep_until((acknowledged + REPLICA_BOUND).into()).await;
    for _ in 0..3 {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            NumberCheckClient::new(channel(&b).await).check_number(pb::CheckNumberRequest {
                phone_number: n.clone(),
                ..Default::default()
            }),
        )
        .await;
        if let Ok(Ok(answer)) = answer {
            assert_ne!(
                answer.into_inner().sim_swap(),
                SimSwapStatus::NotSwapped,
                "B answered from its cache past the bound while hearing nothing"
            );
        }
    }
    let log = b.log();
    assert!(log.contains("the change feed is behind"), "{log}");
    proxy.cut();
    a.stop();
    b.kill_hard();
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

/// Numbers B read from the standby and from the primary, by its metrics.
async fn history_reads(metrics: &str) -> (f64, f64) {
    let text = scrape(metrics).await;
    let read = |database: &str| {
        sample(
            &text,
            &format!("numguard_history_reads_total{{database=\"{database}\"}}"),
        )
        .unwrap_or(0.0)
    };
    (read("standby"), read("primary"))
}

/// Checks `n` on B until one answer came from the standby (B's standby count moved across
/// it); every answer on the way must be `expected`.
async fn answered_from_the_standby(b: &Served, metrics: &str, n: &str, expected: SimSwapStatus) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (before, _) = history_reads(metrics).await;
        assert_eq!(check(b, n).await.sim_swap(), expected, "{n}");
        let (after, _) = history_reads(metrics).await;
        if after > before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "B never read {n} from the standby"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A primary and a streaming hot standby (two local clusters made by `pg_basebackup`): A
/// writes to the primary; B reads checks from the standby (`--database-standby-url`, no
/// cache, so every check reads). A swap A acknowledged is answered by B from the standby
/// once it has replayed it, and from the primary while the standby lags (replay paused)
/// or is stopped; B goes back to the standby when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reading_a_hot_standby_answers_what_the_primary_committed() {
    let pair = PgStandbyPair::start();
    pair.create_database("numguard").await;
    let primary = pair.primary_url("numguard");
    let standby = pair.standby_url("numguard");
    let a = Served::start(&primary);
    let b = Served::start_with(
        &primary,
        &[
            "--dev",
            "--cache-capacity",
            "0",
            "--database-standby-url",
            &standby,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let metrics = metrics_url(&b);
    add_feed(&a).await;
    wait_for_feed(&b).await;

    // Replayed: B answers a swap committed through A from the standby.
    swap(&a, 1).await;
    tokio::time::sleep(REPLICA_BOUND).await;
    answered_from_the_standby(&b, &metrics, &number(1), SimSwapStatus::Swapped).await;
    answered_from_the_standby(&b, &metrics, &number(2), SimSwapStatus::NotSwapped).await;
    // As an operator sees it: a real Prometheus scraping B has the standby reads (the
    // series the Grafana panel plots).
    let (standby_reads, _) = history_reads(&metrics).await;
    let prometheus = Prometheus::scraping(&metrics).await;
    let scraped = prometheus
        .wait_above(
            "numguard_history_reads_total{database=\"standby\"}",
            standby_reads - 1.0,
        )
        .await;
    assert!(scraped >= standby_reads, "{scraped} < {standby_reads}");
    drop(prometheus);

    // Lagging: the standby stops replaying, so the next swap is not on it; B answers it
    // (and every other number) from the primary.
    pair.pause_replay().await;
    swap(&a, 3).await;
    tokio::time::sleep(REPLICA_BOUND).await;
    let (standby_before, primary_before) = history_reads(&metrics).await;
    for _ in 0..5 {
        assert_eq!(
            check(&b, &number(3)).await.sim_swap(),
            SimSwapStatus::Swapped
        );
        assert_eq!(
            check(&b, &number(2)).await.sim_swap(),
            SimSwapStatus::NotSwapped
        );
    }
    let (standby_after, primary_after) = history_reads(&metrics).await;
    assert_eq!(
        standby_after, standby_before,
        "nothing read from a lagging standby"
    );
    assert_eq!(primary_after - primary_before, 10.0);
    pair.resume_replay().await;
    answered_from_the_standby(&b, &metrics, &number(3), SimSwapStatus::Swapped).await;

    // Stopped: B answers from the primary and says why; it reads the standby again once
    // the standby is back.
    pair.stop_standby();
    swap(&a, 4).await;
    tokio::time::sleep(REPLICA_BOUND).await;
    for i in [1, 3, 4] {
        assert_eq!(
            check(&b, &number(i)).await.sim_swap(),
            SimSwapStatus::Swapped
        );
    }
    assert_eq!(
        check(&b, &number(2)).await.sim_swap(),
        SimSwapStatus::NotSwapped
    );
    b.wait_for_log("the standby cannot be read");
    pair.start_standby();
    answered_from_the_standby(&b, &metrics, &number(4), SimSwapStatus::Swapped).await;
    b.wait_for_log("the standby can be read again");
    a.stop();
    b.stop();
}

/// Connections `application` holds to database `numguard` on the cluster at `url`.
async fn connections(url: &str, application: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = 'numguard' AND application_name = $1",
    )
    .bind(application)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

/// 256 cold checks at once over one connection, each reading a history.
async fn burst(b: &Served) {
    let channel = channel(b).await;
    let checks = (0..256).map(|i| {
        let mut client = NumberCheckClient::new(channel.clone());
        async move {
            client
                .check_number(pb::CheckNumberRequest {
                    phone_number: number(i % 8),
                    ..Default::default()
                })
                .await
                .unwrap()
        }
    });
    futures::future::join_all(checks).await;
}

/// `--postgres-pool-size` caps both of a replica's request pools however many checks are
/// in flight: the one to the standby while it serves, the one to the primary while it
/// does not (the pools keep what they opened, so the counts afterwards are their peaks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_pool_size_caps_the_primary_and_standby_pools() {
    let pair = PgStandbyPair::start();
    pair.create_database("numguard").await;
    let standby = pair.standby_url("numguard");
    let b = Served::start_with(
        &pair.primary_url("numguard"),
        &[
            "--dev",
            "--cache-capacity",
            "0",
            "--database-standby-url",
            &standby,
            "--postgres-pool-size",
            "2",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let metrics = metrics_url(&b);
    add_feed(&b).await;
    swap(&b, 1).await;
    tokio::time::sleep(REPLICA_BOUND).await;
    answered_from_the_standby(&b, &metrics, &number(1), SimSwapStatus::Swapped).await;
    burst(&b).await;
    let on_standby = connections(&pair.standby_url("postgres"), STANDBY_APPLICATION_NAME).await;
    assert!(
        (1..=2).contains(&on_standby),
        "{on_standby} standby connections"
    );

    // Replay paused and a number changed: the floor goes stale, so reads go to the primary.
    pair.pause_replay().await;
    swap(&b, 2).await;
    tokio::time::sleep(REPLICA_BOUND * 2).await;
    let (_, primary_before) = history_reads(&metrics).await;
    burst(&b).await;
    let (_, primary_after) = history_reads(&metrics).await;
    assert!(
        primary_after - primary_before >= 256.0,
        "the burst read the primary"
    );
    let on_primary = connections(&pair.primary_url("postgres"), "numguard").await;
    assert!(
        (1..=2).contains(&on_primary),
        "{on_primary} primary connections"
    );
    pair.resume_replay().await;
}
