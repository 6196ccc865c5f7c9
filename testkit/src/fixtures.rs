//! Small builders and calls most integration tests share: events, sources, checks, keys.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use numguard::api::convert::timestamp;
use numguard::api::pb;
use numguard::domain::auth::{Scopes, TenantName};
use numguard::domain::egress::EgressPolicy;
use numguard::engine::EngineConfig;
use numguard::engine::auth::AuthMode;
use numguard::engine::keys::create_key;
use numguard::store::Store;

use crate::db::TestDb;
use crate::server::TestServer;

/// The key file every test server uses (in the system's temporary directory): each test
/// database records this key on first use, so a server restarted on it finds the same.
pub fn test_key_file() -> std::path::PathBuf {
    std::env::temp_dir().join("numguard-tests.key")
}

/// The engine as `serve --dev` runs it (no API keys): most tests are about other things.
pub fn dev_config() -> EngineConfig {
    EngineConfig {
        auth: AuthMode::Disabled,
        egress: EgressPolicy::allowing_loopback(),
        ..EngineConfig::default()
    }
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test time")
        .with_timezone(&Utc)
}

pub fn event(
    source: &str,
    id: &str,
    number: &str,
    kind: pb::EventKind,
    occurred_at: DateTime<Utc>,
) -> pb::Event {
    pb::Event {
        source: source.into(),
        source_event_id: id.into(),
        phone_number: number.into(),
        kind: kind.into(),
        occurred_at: Some(timestamp(occurred_at)),
        ..Default::default()
    }
}

pub fn port(
    source: &str,
    id: &str,
    number: &str,
    occurred_at: DateTime<Utc>,
    from: &str,
    to: &str,
) -> pb::Event {
    pb::Event {
        from_carrier: from.into(),
        to_carrier: to.into(),
        ..event(source, id, number, pb::EventKind::Port, occurred_at)
    }
}

/// Registers a live source that sees every carrier and kind under `covers`, and hears from
/// it now, so it counts as complete up to now (for its max lag, an hour).
pub async fn add_source(server: &TestServer, name: &str, since: DateTime<Utc>, covers: &[&str]) {
    server
        .admin()
        .await
        .upsert_source(pb::Source {
            name: name.into(),
            tracking_since: Some(timestamp(since)),
            covers: covers.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        })
        .await
        .expect("upsert source");
    heartbeat(server, name).await;
}

/// Hears from a source now.
pub async fn heartbeat(server: &TestServer, name: &str) -> pb::Source {
    server
        .admin()
        .await
        .heartbeat(pb::HeartbeatRequest {
            source: name.into(),
            complete_until: None,
        })
        .await
        .expect("heartbeat")
        .into_inner()
}

pub async fn ingest(server: &TestServer, events: Vec<pb::Event>) -> pb::IngestSummary {
    server
        .events()
        .await
        .ingest_events(tokio_stream::iter(events))
        .await
        .expect("ingest")
        .into_inner()
}

pub async fn check_number(server: &TestServer, number: &str) -> pb::CheckNumberResponse {
    check_with(
        server,
        pb::CheckNumberRequest {
            phone_number: number.into(),
            ..Default::default()
        },
    )
    .await
    .expect("check")
}

pub async fn check_with(
    server: &TestServer,
    request: pb::CheckNumberRequest,
) -> Result<pb::CheckNumberResponse, tonic::Status> {
    server
        .check()
        .await
        .check_number(request)
        .await
        .map(|r| r.into_inner())
}

pub fn reason_codes(r: &pb::CheckNumberResponse) -> Vec<pb::ReasonCode> {
    r.reasons.iter().map(|r| r.code()).collect()
}

/// Opens the test database's store directly, as `numguard keys` does.
pub async fn store(db: &TestDb) -> Arc<dyn Store> {
    numguard::store::open(&db.url).await.expect("open store")
}

/// A new API key for `tenant` with `scopes` (e.g. "check,watch"); returns its secret.
pub async fn new_key(db: &TestDb, tenant: &str, scopes: &str) -> String {
    let tenant: TenantName = tenant.parse().unwrap();
    let scopes: Scopes = scopes.parse().unwrap();
    create_key(store(db).await.as_ref(), &tenant, scopes)
        .await
        .expect("create key")
        .0
        .secret_text
}

/// Polls until `f` returns true, for at most `limit`; panics naming `what` if it never does.
pub async fn eventually<F, Fut>(limit: std::time::Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A tool `scripts/test` installs, by its path in the repository; a missing one fails
/// with that advice.
pub fn installed(relative: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which installs the client tools",
        path.display()
    );
    path
}
