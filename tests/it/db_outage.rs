//! The database goes away under a running server (a proxy between them is cut) and comes
//! back: checks answer UNAVAILABLE, never a verdict from partial data; health says
//! NOT_SERVING; and the server recovers by itself.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use numguard::api::pb::{self, EventKind, SimSwapStatus};
use numguard::engine::EngineConfig;
use numguard_testkit::proxy::Proxy;
use numguard_testkit::*;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

const N: &str = "+819012345678";

async fn health_status(server: &TestServer) -> ServingStatus {
    server
        .health()
        .await
        .check(HealthCheckRequest {
            service: "numguard.v1.NumberCheck".into(),
        })
        .await
        .expect("health")
        .into_inner()
        .status()
}

#[tokio::test]
async fn postgres_outage_gives_unavailable_and_recovers_without_restart() {
    let db = Arc::new(TestDb::new(Backend::Postgres).await);
    let proxy = Proxy::start(db::postgres_addr()).await;
    let via_proxy = db::with_host(&db.url, &proxy.addr.to_string());
    let config = EngineConfig {
        health_interval: Duration::from_millis(200),
        ..dev_config()
    };
    let server = TestServer::start_rest_with_url(db.clone(), &via_proxy, config).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    ingest(
        &server,
        vec![event(
            "feed",
            "e1",
            N,
            EventKind::SimSwap,
            Utc::now() - chrono::Duration::hours(1),
        )],
    )
    .await;
    // Cached now: an outage must not be papered over with this.
    assert_eq!(
        check_number(&server, N).await.sim_swap(),
        SimSwapStatus::Swapped
    );
    assert_eq!(health_status(&server).await, ServingStatus::Serving);

    proxy.cut();
    eventually(
        Duration::from_secs(10),
        "checks answer UNAVAILABLE",
        || async {
            let r = check_with(
                &server,
                pb::CheckNumberRequest {
                    phone_number: N.into(),
                    ..Default::default()
                },
            )
            .await;
            matches!(r, Err(ref s) if s.code() == Code::Unavailable)
        },
    )
    .await;
    let err = check_with(
        &server,
        pb::CheckNumberRequest {
            phone_number: N.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        err.message().contains("database is unavailable"),
        "{}",
        err.message()
    );
    // The REST facade says so the CAMARA way.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rest = reqwest::Client::new()
        .post(format!(
            "http://{}/sim-swap/v2/check",
            server.rest_addr.expect("rest")
        ))
        .json(&serde_json::json!({ "phoneNumber": N }))
        .send()
        .await
        .expect("REST answers");
    assert_eq!(rest.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = rest.json().await.expect("JSON");
    numguard_testkit::camara::assert_camara_answer("POST", "/sim-swap/v2/check", 503, &body);
    assert_eq!(body["code"], "UNAVAILABLE", "{body}");
    eventually(
        Duration::from_secs(10),
        "health says NOT_SERVING",
        || async { health_status(&server).await == ServingStatus::NotServing },
    )
    .await;
    let err = server
        .events()
        .await
        .ingest_events(tokio_stream::iter(vec![event(
            "feed",
            "e2",
            N,
            EventKind::SimSwap,
            Utc::now(),
        )]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    // An audit gets no made-up rows either: its stream ends with UNAVAILABLE.
    let rows = (0..3).map(|i| pb::AuditRow {
        customer_ref: format!("c{i}"),
        phone_number: N.into(),
        ..Default::default()
    });
    let audit = async {
        let mut results = server
            .check()
            .await
            .audit_numbers(tokio_stream::iter(rows))
            .await?
            .into_inner();
        if let Some(r) = results.message().await? {
            panic!("an answer while the database is down: {r:?}");
        }
        Ok::<(), tonic::Status>(())
    };
    let err = audit.await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());

    proxy.restore();
    eventually(Duration::from_secs(20), "checks answer again", || async {
        check_with(
            &server,
            pb::CheckNumberRequest {
                phone_number: N.into(),
                ..Default::default()
            },
        )
        .await
        .is_ok()
    })
    .await;
    assert_eq!(health_status(&server).await, ServingStatus::Serving);
    assert_eq!(
        check_number(&server, N).await.sim_swap(),
        SimSwapStatus::Swapped
    );
    let resent = ingest(
        &server,
        vec![event("feed", "e3", N, EventKind::SimSwap, Utc::now())],
    )
    .await;
    assert_eq!(resent.accepted, 1);
    server.stop().await;
}
