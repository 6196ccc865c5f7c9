//! A real server in this process: `numguard::server::run_with` on ephemeral ports over a
//! test database, and gRPC clients to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use numguard::api::pb::admin_client::AdminClient;
use numguard::api::pb::events_client::EventsClient;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard::engine::EngineConfig;
use numguard::server::{Listeners, ServerConfig, TransportConfig, run_with};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::db::{Backend, TestDb};
use crate::fixtures::dev_config;

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

    /// The same, also serving the CAMARA REST facade.
    pub async fn start_rest_in_with(
        db: Arc<TestDb>,
        engine: EngineConfig,
        transport: TransportConfig,
    ) -> TestServer {
        let url = db.url.clone();
        TestServer::launch(db, &url, engine, transport, true).await
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
            key_file: crate::fixtures::test_key_file(),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let listeners = Listeners {
            grpc: listener,
            rest,
            metrics: None,
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
