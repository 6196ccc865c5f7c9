//! Test helpers: a real server on an ephemeral port over a fresh database (a SQLite file,
//! or a PostgreSQL database created for the test and dropped after it), and real gRPC
//! clients.

#![allow(dead_code)] // each test binary uses its own subset

pub mod binary;
pub mod db;
pub mod operator;
pub mod proxy;
pub mod receiver;

pub use db::{Backend, TestDb};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use numguard::api::convert::timestamp;
use numguard::api::pb;
use numguard::api::pb::admin_client::AdminClient;
use numguard::api::pb::events_client::EventsClient;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard::domain::auth::{Scopes, TenantName};
use numguard::engine::EngineConfig;
use numguard::engine::auth::AuthMode;
use numguard::engine::keys::create_key;
use numguard::server::{Listeners, ServerConfig, TransportConfig, run_with};
use numguard::store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

pub struct TestServer {
    pub addr: SocketAddr,
    /// The CAMARA REST facade, when started with it.
    pub rest_addr: Option<SocketAddr>,
    pub db: Arc<TestDb>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// A server on a new, empty database.
    pub async fn start(backend: Backend) -> TestServer {
        let db = Arc::new(TestDb::new(backend).await);
        TestServer::start_in(db, dev_config()).await
    }

    /// A server on an existing test database (kept across restarts).
    pub async fn start_in(db: Arc<TestDb>, engine: EngineConfig) -> TestServer {
        let url = db.url.clone();
        TestServer::start_with_url(db, &url, engine).await
    }

    /// A server reaching the test database through `url` (e.g. through a proxy).
    pub async fn start_with_url(db: Arc<TestDb>, url: &str, engine: EngineConfig) -> TestServer {
        TestServer::launch(db, url, engine, TransportConfig::default(), false).await
    }

    /// The same, also serving the CAMARA REST facade.
    pub async fn start_rest_with_url(
        db: Arc<TestDb>,
        url: &str,
        engine: EngineConfig,
    ) -> TestServer {
        TestServer::launch(db, url, engine, TransportConfig::default(), true).await
    }

    /// A server that also serves the CAMARA REST facade, on a new database.
    pub async fn start_rest(backend: Backend, engine: EngineConfig) -> TestServer {
        TestServer::start_rest_in(Arc::new(TestDb::new(backend).await), engine).await
    }

    /// A server that also serves the CAMARA REST facade, on an existing test database.
    pub async fn start_rest_in(db: Arc<TestDb>, engine: EngineConfig) -> TestServer {
        let url = db.url.clone();
        TestServer::launch(db, &url, engine, TransportConfig::default(), true).await
    }

    /// A server with its own transport limits, on an existing test database.
    pub async fn start_in_with(
        db: Arc<TestDb>,
        engine: EngineConfig,
        transport: TransportConfig,
    ) -> TestServer {
        let url = db.url.clone();
        TestServer::launch(db, &url, engine, transport, false).await
    }

    async fn launch(
        db: Arc<TestDb>,
        url: &str,
        engine: EngineConfig,
        transport: TransportConfig,
        rest: bool,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let rest = match rest {
            true => Some(TcpListener::bind("127.0.0.1:0").await.expect("bind rest")),
            false => None,
        };
        let rest_addr = rest.as_ref().map(|l| l.local_addr().expect("rest addr"));
        let config = ServerConfig {
            database_url: url.to_string(),
            engine,
            transport,
            tls: None,
            store: Default::default(),
            upstreams_file: None,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let listeners = Listeners {
            grpc: listener,
            rest,
        };
        let handle = tokio::spawn(run_with(config, listeners, async {
            let _ = rx.await;
        }));
        let server = TestServer {
            addr,
            rest_addr,
            db,
            shutdown: Some(tx),
            handle: Some(handle),
        };
        server.wait_until_serving().await;
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn check(&self) -> NumberCheckClient<Channel> {
        NumberCheckClient::new(self.channel().await)
    }

    pub async fn events(&self) -> EventsClient<Channel> {
        EventsClient::new(self.channel().await)
    }

    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel().await)
    }

    pub async fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel().await)
    }

    async fn wait_until_serving(&self) {
        for _ in 0..200 {
            if let Ok(channel) = Channel::from_shared(self.url())
                .expect("url")
                .connect()
                .await
                && HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server did not start");
    }

    /// Graceful stop; returns the database so a new server can reopen it.
    pub async fn stop(mut self) -> Arc<TestDb> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("join").expect("server ran cleanly");
        }
        self.db.clone()
    }
}

/// Runs an async test body once per backend: `on_both_backends!(name, ...)` expects an
/// `async fn name(backend: Backend)` and makes tests `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }

                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}

/// The engine as `serve --dev` runs it (no API keys): most tests are about other things.
pub fn dev_config() -> EngineConfig {
    EngineConfig {
        auth: AuthMode::Disabled,
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
