//! Webhook subscriptions against a local HTTP receiver, on both backends.

use std::time::Duration;

use chrono::Utc;
use numguard::api::convert::timestamp;
use numguard::api::pb::alerts_client::AlertsClient;
use numguard::api::pb::{self, EventKind};
use numguard::domain::egress::EgressPolicy;
use numguard::egress::Egress;
use numguard::engine::EngineConfig;
use numguard_testkit::receiver::{Received, Receiver, stalled_sink};
use numguard_testkit::*;
use tonic::Code;
use tonic::transport::Channel;

on_both_backends!(
    a_delivery_is_retried_until_acknowledged_and_then_not_repeated,
    max_events_expiry_and_deletion_end_subscriptions_with_an_event,
    a_sink_answering_gone_ends_the_subscription,
    bad_subscriptions_are_refused_naming_the_field,
    pending_retries_survive_a_restart,
    sinks_the_egress_policy_refuses_are_refused_at_registration,
    a_redirect_is_not_followed,
    a_stalled_sink_costs_only_its_own_subscription,
    sink_tokens_are_stored_sealed_under_the_key_file_the_database_keeps_to,
);

async fn alerts(server: &TestServer) -> AlertsClient<Channel> {
    AlertsClient::new(server.channel().await)
}

async fn setup(server: &TestServer, numbers: &[&str]) {
    add_source(server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    alerts(server)
        .await
        .upsert_watch(pb::UpsertWatchRequest {
            entries: numbers
                .iter()
                .enumerate()
                .map(|(i, n)| pb::WatchEntry {
                    customer_ref: format!("cust-{i}"),
                    phone_number: n.to_string(),
                    owner_since: Some(timestamp(at("2026-01-01T00:00:00Z"))),
                    ..Default::default()
                })
                .collect(),
        })
        .await
        .unwrap();
}

fn subscribe(sink: &str) -> pb::CreateSubscriptionRequest {
    pb::CreateSubscriptionRequest {
        sink: sink.into(),
        ..Default::default()
    }
}

/// Subscribes `sink`, then ingests a SIM swap of the watched `N1` now.
async fn subscribe_then_swap(server: &TestServer, sink: &str) {
    alerts(server)
        .await
        .create_subscription(subscribe(sink))
        .await
        .unwrap();
    ingest(
        server,
        vec![event("feed", "e1", N1, EventKind::SimSwap, Utc::now())],
    )
    .await;
}

fn types(seen: &[Received]) -> Vec<String> {
    seen.iter()
        .filter(|r| r.status == 200)
        .map(|r| r.body["type"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The sink tokens as the database holds them.
async fn stored_tokens(server: &TestServer) -> Vec<String> {
    let store = numguard::store::open(&server.db.url).await.unwrap();
    let tokens = store.sink_tokens().await.unwrap();
    tokens.into_iter().map(|(_, token)| token).collect()
}

const N1: &str = "+819012345678";
const N2: &str = "+818012345678";

async fn a_delivery_is_retried_until_acknowledged_and_then_not_repeated(backend: Backend) {
    let server = TestServer::start(backend).await;
    setup(&server, &[N1]).await;
    let receiver = Receiver::start(vec![500, 503]).await;
    let sub = alerts(&server)
        .await
        .create_subscription(pb::CreateSubscriptionRequest {
            sink_token: "s3cret".into(),
            ..subscribe(&receiver.url)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(sub.active);
    ingest(
        &server,
        vec![event("feed", "e1", N1, EventKind::SimSwap, Utc::now())],
    )
    .await;
    let seen = receiver
        .wait_for("an acknowledged delivery", |s| {
            s.iter().any(|r| r.status == 200)
        })
        .await;
    assert_eq!(seen.len(), 3, "two failures, then the acknowledged one");
    let ce = &seen[2].body;
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["source"], "numguard");
    assert_eq!(ce["type"], "numguard.alert.v1.sim-swap");
    assert!(ce["id"].as_str().unwrap().starts_with(&sub.id));
    assert!(ce["time"].is_string());
    assert_eq!(ce["data"]["customer_refs"][0], "cust-0");
    assert_eq!(ce["data"]["phone_number"], N1);
    assert_eq!(ce["data"]["source_event_id"], "e1");
    // The vocabulary of every other output (never a Rust name such as "STEPUP").
    assert_eq!(ce["data"]["kind"], "SIM_SWAP");
    assert_eq!(ce["data"]["verdict"], "STEP_UP", "{ce}");
    assert_eq!(
        seen[0].body["id"], ce["id"],
        "the retries carry the same event"
    );
    assert_eq!(seen[2].authorization.as_deref(), Some("Bearer s3cret"));
    let stored = stored_tokens(&server).await;
    assert!(
        stored.len() == 1 && stored[0].starts_with("sealed:v1:") && !stored[0].contains("s3cret"),
        "{stored:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.seen().len(),
        3,
        "an acknowledged event is not sent again"
    );
    server.stop().await;
}

async fn max_events_expiry_and_deletion_end_subscriptions_with_an_event(backend: Backend) {
    let server = TestServer::start(backend).await;
    setup(&server, &[N1, N2]).await;
    let capped = Receiver::start(vec![]).await;
    let expiring = Receiver::start(vec![]).await;
    let deleted = Receiver::start(vec![]).await;
    let mut client = alerts(&server).await;
    client
        .create_subscription(pb::CreateSubscriptionRequest {
            max_events: 2,
            ..subscribe(&capped.url)
        })
        .await
        .unwrap();
    client
        .create_subscription(pb::CreateSubscriptionRequest {
            expire_time: Some(timestamp(Utc::now() + chrono::Duration::seconds(3))),
            kinds: vec![EventKind::Port.into()],
            ..subscribe(&expiring.url)
        })
        .await
        .unwrap();
    let to_delete = client
        .create_subscription(subscribe(&deleted.url))
        .await
        .unwrap()
        .into_inner();
    let t = Utc::now();
    ingest(
        &server,
        vec![
            event("feed", "e1", N1, EventKind::SimSwap, t),
            port("feed", "e2", N2, t, "KDDI", "Softbank"),
            event("feed", "e3", N2, EventKind::Disconnect, t),
        ],
    )
    .await;
    let seen = capped
        .wait_for("two alerts and the end", |s| types(s).len() >= 3)
        .await;
    assert_eq!(
        types(&seen),
        vec![
            "numguard.alert.v1.sim-swap",
            "numguard.alert.v1.port",
            "numguard.alert.v1.subscription-ended"
        ]
    );
    assert_eq!(
        seen[2].body["data"]["termination_reason"],
        "MAX_EVENTS_REACHED"
    );

    let seen = expiring
        .wait_for("the port, then the end at expiry", |s| types(s).len() >= 2)
        .await;
    assert_eq!(types(&seen)[0], "numguard.alert.v1.port");
    assert_eq!(
        seen[1].body["data"]["termination_reason"],
        "SUBSCRIPTION_EXPIRED"
    );

    client
        .delete_subscription(pb::DeleteSubscriptionRequest {
            id: to_delete.id.clone(),
        })
        .await
        .unwrap();
    let seen = deleted
        .wait_for("the end on deletion", |s| {
            s.iter()
                .any(|r| r.body["data"]["termination_reason"] == "SUBSCRIPTION_DELETED")
        })
        .await;
    assert_eq!(types(&seen).len(), 4, "three alerts, then the end");

    let listed = client
        .list_subscriptions(pb::ListSubscriptionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .subscriptions;
    let mut reasons: Vec<_> = listed
        .iter()
        .map(|s| (s.active, s.ended_reason.clone()))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            (false, "MAX_EVENTS_REACHED".to_string()),
            (false, "SUBSCRIPTION_DELETED".to_string()),
            (false, "SUBSCRIPTION_EXPIRED".to_string()),
        ]
    );
    // Nothing more after the end.
    ingest(
        &server,
        vec![event("feed", "e4", N1, EventKind::SimSwap, Utc::now())],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(types(&capped.seen()).len(), 3);
    server.stop().await;
}

async fn a_sink_answering_gone_ends_the_subscription(backend: Backend) {
    let server = TestServer::start(backend).await;
    setup(&server, &[N1]).await;
    let receiver = Receiver::start(vec![410]).await;
    alerts(&server)
        .await
        .create_subscription(subscribe(&receiver.url))
        .await
        .unwrap();
    ingest(
        &server,
        vec![event("feed", "e1", N1, EventKind::SimSwap, Utc::now())],
    )
    .await;
    receiver.wait_for("the 410", |s| !s.is_empty()).await;
    ingest(
        &server,
        vec![event("feed", "e2", N1, EventKind::SimSwap, Utc::now())],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.seen().len(), 1, "nothing is sent after 410 Gone");
    let listed = alerts(&server)
        .await
        .list_subscriptions(pb::ListSubscriptionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .subscriptions;
    assert_eq!(listed[0].ended_reason, "SINK_GONE");
    server.stop().await;
}

async fn bad_subscriptions_are_refused_naming_the_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = alerts(&server).await;
    let cases = [
        (subscribe("not a url"), "sink"),
        (subscribe("http://hooks.example.com/x"), "sink"),
        (subscribe("ftp://127.0.0.1/x"), "sink"),
        (
            pb::CreateSubscriptionRequest {
                expire_time: Some(timestamp(Utc::now() - chrono::Duration::minutes(1))),
                ..subscribe("https://hooks.example.com/x")
            },
            "expire_time",
        ),
        (
            pb::CreateSubscriptionRequest {
                kinds: vec![42],
                ..subscribe("https://hooks.example.com/x")
            },
            "kinds",
        ),
    ];
    for (request, field) in cases {
        let err = client.create_subscription(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }
    let err = client
        .delete_subscription(pb::DeleteSubscriptionRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        client
            .list_subscriptions(pb::ListSubscriptionsRequest {})
            .await
            .unwrap()
            .into_inner()
            .subscriptions
            .is_empty(),
        "nothing was created"
    );
    server.stop().await;
}

async fn pending_retries_survive_a_restart(backend: Backend) {
    let server = TestServer::start(backend).await;
    setup(&server, &[N1]).await;
    // The sink fails until the server has been restarted.
    let receiver = Receiver::start(vec![500; 3]).await;
    subscribe_then_swap(&server, &receiver.url).await;
    receiver
        .wait_for("a first failed try", |s| !s.is_empty())
        .await;
    let db = server.stop().await;

    let server = TestServer::start_in(db, dev_config()).await;
    let seen = receiver
        .wait_for("delivery after the restart", |s| {
            s.iter().any(|r| r.status == 200)
        })
        .await;
    let delivered: Vec<_> = seen.iter().filter(|r| r.status == 200).collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body["data"]["source_event_id"], "e1");
    server.stop().await;
}

async fn sinks_the_egress_policy_refuses_are_refused_at_registration(backend: Backend) {
    let config = EngineConfig {
        egress: EgressPolicy::default(),
        ..dev_config()
    };
    let server = TestServer::start_in(TestDb::new(backend).await.into(), config).await;
    let receiver = Receiver::start(vec![]).await;
    let mut client = alerts(&server).await;
    for sink in [
        receiver.url.as_str(),
        "http://localhost:9/x",
        "http://0.0.0.0:9/x",
        "http://[::ffff:127.0.0.1]:9/x",
        "https://127.1/x",
        "https://2130706433/x",
        "https://0x7f000001/x",
        "https://0177.0.0.1/x",
        "https://[::1]/x",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/x",
        "https://192.168.0.10/x",
        "https://[fd00::1]/x",
        "https://user:pw@hooks.example.com/x",
    ] {
        let err = client
            .create_subscription(subscribe(sink))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{sink}");
        assert!(
            err.message().starts_with("sink ")
                && (err.message().contains("egress policy")
                    || err.message().contains("user name or password")),
            "{sink}: {}",
            err.message()
        );
    }
    let listed = client
        .list_subscriptions(pb::ListSubscriptionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.subscriptions.is_empty(), "nothing was created");
    server.stop().await;
}

async fn a_redirect_is_not_followed(backend: Backend) {
    let server = TestServer::start(backend).await;
    setup(&server, &[N1]).await;
    let target = Receiver::start(vec![]).await;
    let redirecting =
        Receiver::start_with(vec![307; 100], &format!("location: {}\r\n", target.url)).await;
    subscribe_then_swap(&server, &redirecting.url).await;
    // The first attempt and its retry (a second later) both got the redirect.
    redirecting
        .wait_for("the delivery and its retry", |s| s.len() >= 2)
        .await;
    assert!(
        target.seen().is_empty(),
        "the redirect's target was sent {:?}",
        target.seen()
    );
    server.stop().await;
}

async fn a_stalled_sink_costs_only_its_own_subscription(backend: Backend) {
    let server = TestServer::start(backend).await;
    setup(&server, &[N1, N2]).await;
    let mut client = alerts(&server).await;
    let stalled = stalled_sink().await;
    for i in 0..3 {
        client
            .create_subscription(subscribe(&format!("{stalled}/{i}")))
            .await
            .unwrap();
    }
    let receiver = Receiver::start(vec![]).await;
    client
        .create_subscription(subscribe(&receiver.url))
        .await
        .unwrap();
    // Each alert must arrive well inside the 10 s one stalled delivery waits; before
    // deliveries ran concurrently the second took 50 s.
    for (i, n) in [N1, N2].into_iter().enumerate() {
        let sent = std::time::Instant::now();
        ingest(
            &server,
            vec![event(
                "feed",
                &format!("e{i}"),
                n,
                EventKind::SimSwap,
                Utc::now(),
            )],
        )
        .await;
        receiver
            .wait_for("the healthy sink's alert", |s| s.len() > i)
            .await;
        let took = sent.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "alert {i} reached the healthy sink after {took:?}"
        );
    }
    server.stop().await;
}

/// The egress client checks every address a name resolves to when it connects: a name
/// that leads to loopback is refused unless loopback is allowed (no DNS rebinding past
/// a registration check).
#[tokio::test]
async fn names_are_checked_when_connecting() {
    let receiver = Receiver::start(vec![]).await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let strict = Egress::default()
        .client(reqwest::Client::builder())
        .unwrap();
    let err = strict.post(&by_name).body("{}").send().await.unwrap_err();
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    assert!(
        chain.contains("refused by the egress policy") && chain.contains("loopback"),
        "{chain}"
    );
    assert!(receiver.seen().is_empty());
    let local = Egress::new(EgressPolicy::allowing_loopback())
        .client(reqwest::Client::builder())
        .unwrap();
    let answer = local.post(&by_name).body("{}").send().await.unwrap();
    assert!(answer.status().is_success());
    assert_eq!(receiver.seen().len(), 1);
}

/// A token stored before tokens were sealed is sealed at the next start and still sent;
/// a server given another key file, or none where the database had one, refuses to start,
/// saying which.
async fn sink_tokens_are_stored_sealed_under_the_key_file_the_database_keeps_to(backend: Backend) {
    let server = TestServer::start(backend).await;
    setup(&server, &[N1]).await;
    let receiver = Receiver::start(vec![]).await;
    let sub = alerts(&server)
        .await
        .create_subscription(pb::CreateSubscriptionRequest {
            sink_token: "first".into(),
            ..subscribe(&receiver.url)
        })
        .await
        .unwrap()
        .into_inner();
    let db = server.stop().await;
    let store = numguard::store::open(&db.url).await.unwrap();
    store
        .set_sink_token(&sub.id, "from-before-sealing")
        .await
        .unwrap();
    drop(store);
    let server = TestServer::start_in(db, dev_config()).await;
    let stored = stored_tokens(&server).await;
    assert!(
        stored.len() == 1 && stored[0].starts_with("sealed:v1:"),
        "{stored:?}"
    );
    ingest(
        &server,
        vec![event("feed", "e1", N1, EventKind::SimSwap, Utc::now())],
    )
    .await;
    let seen = receiver
        .wait_for("a delivery", |s| s.iter().any(|r| r.status == 200))
        .await;
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Bearer from-before-sealing")
    );
    let db = server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.key");
    std::fs::write(&other, format!("{}\n", "ab".repeat(32))).unwrap();
    let missing = dir.path().join("missing.key");
    for (key_file, said) in [
        (&other, "is not the one this database was first used with"),
        (
            &missing,
            "is missing, but this database was first used with a key file",
        ),
    ] {
        let ran = std::process::Command::new(numguard_testkit::process::bin())
            .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
            .env("NUMGUARD_DATABASE_URL", &db.url)
            .env("NUMGUARD_KEY_FILE", key_file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&ran.stderr);
        assert!(!ran.status.success() && err.contains(said), "{err}");
    }
    assert!(
        !missing.exists(),
        "no key is made for a database that has one"
    );
}
