//! Crashes and a database that stops taking writes: nothing acknowledged is lost, nothing
//! is stored twice, and no wrong verdict is given.

use std::time::{Duration, Instant};

use chrono::Utc;
use numguard::api::pb::events_client::EventsClient;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard::api::pb::{self, EventKind, SimSwapStatus};
use numguard_testkit::process::Served;
use numguard_testkit::{Backend, TestDb, event, on_both_backends};
use sqlx::{Connection, PgConnection};
use tonic::Code;
use tonic::transport::Channel;

on_both_backends!(sigkill_during_a_large_ingest_loses_no_acknowledged_event);

async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn stream_events(stream: usize, count: usize) -> Vec<pb::Event> {
    let t = Utc::now() - chrono::Duration::hours(1);
    (0..count)
        .map(|i| {
            let number = format!("+8190{:03}{:05}", 100 + stream, i);
            event(
                "feed",
                &format!("s{stream}-{i}"),
                &number,
                EventKind::SimSwap,
                t,
            )
        })
        .collect()
}

async fn count_events(db: &TestDb) -> i64 {
    let store = numguard::store::open(&db.url).await.unwrap();
    let mut total = 0;
    let mut after = None;
    loop {
        let page = store
            .list_events(&numguard::store::EventQuery {
                after,
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        total += page.len() as i64;
        match page.last() {
            Some(e) if page.len() == 1000 => {
                after = Some(numguard::store::EventCursor {
                    occurred_at: e.event.fact.occurred_at,
                    id: e.id,
                })
            }
            _ => return total,
        }
    }
}

async fn sigkill_during_a_large_ingest_loses_no_acknowledged_event(backend: Backend) {
    let db = TestDb::new(backend).await;
    // Small batches, so the killed stream has committed some of its events.
    let env = [("NUMGUARD_INGEST_BATCH_SIZE", "500")];
    let server = Served::start_with_env(&db.url, &["--dev"], &env);
    server.add_feed("81");
    let mut client = EventsClient::new(channel(&server.url).await);

    // Three streams acknowledged...
    let mut acknowledged = 0;
    for stream in 0..3 {
        let summary = client
            .ingest_events(tokio_stream::iter(stream_events(stream, 2_000)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(summary.accepted, 2_000);
        acknowledged += 2_000;
    }
    // ...and a fourth, large one killed half way.
    let (tx, rx) = tokio::sync::mpsc::channel(100);
    let mut killed_client = EventsClient::new(channel(&server.url).await);
    let pending = tokio::spawn(async move {
        killed_client
            .ingest_events(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    for e in stream_events(3, 10_000).into_iter().take(6_000) {
        tx.send(e).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // let some batches commit
    server.kill_hard();
    drop(tx);
    assert!(
        pending.await.unwrap().is_err(),
        "the killed stream was never acknowledged"
    );

    let stored = count_events(&db).await;
    assert!(
        stored >= acknowledged,
        "lost acknowledged events: {stored} < {acknowledged}"
    );
    assert!(stored <= acknowledged + 6_000);

    // Restart; re-send everything: only what never arrived is added.
    let server = Served::start_with_env(&db.url, &["--dev"], &env);
    let mut client = EventsClient::new(channel(&server.url).await);
    let mut all = Vec::new();
    for stream in 0..3 {
        all.extend(stream_events(stream, 2_000));
    }
    all.extend(stream_events(3, 10_000));
    let summary = client
        .ingest_events(tokio_stream::iter(all))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.duplicates as i64, stored);
    assert_eq!(summary.accepted as i64, 16_000 - stored);
    assert_eq!(count_events(&db).await, 16_000, "each event exactly once");
    drop(client);
    server.stop();
}

#[tokio::test]
async fn a_read_only_database_refuses_writes_clearly_and_still_answers_checks() {
    let db = TestDb::new(Backend::Postgres).await;
    let server = Served::start(&db.url);
    server.add_feed("81");
    let n = "+819012345678";
    let mut events = EventsClient::new(channel(&server.url).await);
    events
        .ingest_events(tokio_stream::iter(vec![event(
            "feed",
            "e1",
            n,
            EventKind::SimSwap,
            Utc::now() - chrono::Duration::hours(1),
        )]))
        .await
        .unwrap();

    // The operator makes the database read-only (e.g. a failover to a standby).
    let name = db.url.rsplit('/').next().unwrap().to_string();
    let mut admin = PgConnection::connect(&numguard_testkit::db::postgres_admin_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = on"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .execute(&mut admin)
    .await
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = loop {
        let good = event("feed", "e2", n, EventKind::DeviceSwap, Utc::now());
        match events.ingest_events(tokio_stream::iter(vec![good])).await {
            Err(e) if e.code() == Code::Unavailable && e.message().contains("read-only") => {
                break e;
            }
            _ if Instant::now() > deadline => panic!("writes were not refused as read-only"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert!(
        refused.message().contains("read-only"),
        "{}",
        refused.message()
    );
    // Reads go on: the verdict is the right one.
    let mut checks = NumberCheckClient::new(channel(&server.url).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        match checks
            .check_number(pb::CheckNumberRequest {
                phone_number: n.into(),
                ..Default::default()
            })
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("checks stopped on a read-only database: {e}"),
        }
    };
    assert_eq!(answer.sim_swap(), SimSwapStatus::Swapped);

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = off"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    drop((events, checks));
    server.stop();
}

#[tokio::test]
async fn a_full_database_refuses_writes_with_resource_exhausted_and_still_answers_checks() {
    let db = TestDb::new(Backend::Sqlite).await;
    let env = [("NUMGUARD_INGEST_BATCH_SIZE", "1000")];
    let server = Served::start_with_env(&db.url, &["--dev", "--sqlite-max-size-mb", "2"], &env);
    server.add_feed("81");
    let mut client = EventsClient::new(channel(&server.url).await);
    let first = stream_events(0, 1_000);
    let n = first[0].phone_number.clone();
    client
        .ingest_events(tokio_stream::iter(first))
        .await
        .expect("room for the first thousand");

    let err = client
        .ingest_events(tokio_stream::iter(stream_events(1, 60_000)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(err.message().contains("full"), "{}", err.message());

    let answer = NumberCheckClient::new(channel(&server.url).await)
        .check_number(pb::CheckNumberRequest {
            phone_number: n,
            ..Default::default()
        })
        .await
        .expect("checks go on when the database is full")
        .into_inner();
    assert_eq!(answer.sim_swap(), SimSwapStatus::Swapped);
    drop(client);
    server.stop();
}
