//! Server assembly: open the store, start the engine, serve on a pre-bound listener until
//! the shutdown future completes.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::connections::{ConnectionGate, ConnectionLimits};
use crate::engine::auth::AuthMode;
use crate::engine::keys::create_first_key_if_none;
use crate::engine::{Engine, EngineConfig};
use crate::private_files::{Readers, warn_if_readable_by_others};
use crate::server_key::ServerKey;
use crate::upstream::UpstreamConfig;
use crate::upstream::config::ProvidersFile;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `sqlite://FILE` (created on first start) or `postgres://...`.
    pub database_url: String,
    pub engine: EngineConfig,
    pub transport: TransportConfig,
    /// PEM certificate chain and private key; plain HTTP/2 when `None`.
    pub tls: Option<TlsFiles>,
    pub store: crate::store::StoreOptions,
    /// The providers file, re-read on SIGHUP; `None`: the providers never change.
    pub upstreams_file: Option<std::path::PathBuf>,
    /// The server's key file (created on first start), which every server of one database
    /// shares.
    pub key_file: std::path::PathBuf,
}

/// What the transports enforce per request, the same on gRPC and REST.
#[derive(Debug, Clone, Copy)]
pub struct TransportConfig {
    /// Largest gRPC message accepted.
    pub max_message_bytes: usize,
    /// Longest a request answered in one piece may take on the server.
    pub request_timeout: Duration,
    /// Longest a client stream (ingest, audit) may send nothing before it is closed.
    pub stream_idle_timeout: Duration,
    /// The cap on open connections and their deadlines, across gRPC and REST.
    pub connections: ConnectionLimits,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_message_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            stream_idle_timeout: Duration::from_secs(120),
            connections: ConnectionLimits::default(),
        }
    }
}

/// How long in-flight requests may run on after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Where the server listens: gRPC always, the CAMARA REST facade and the metrics and
/// health endpoints when given listeners.
pub struct Listeners {
    pub grpc: TcpListener,
    pub rest: Option<TcpListener>,
    pub metrics: Option<TcpListener>,
}

/// Serves gRPC only.
pub async fn run(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listeners = Listeners {
        grpc: listener,
        rest: None,
        metrics: None,
    };
    run_with(config, listeners, shutdown).await
}

pub async fn run_with(
    config: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = listeners.grpc;
    // Before anything is counted.
    let metrics = match listeners.metrics {
        Some(metrics) => Some((
            metrics,
            crate::metrics::install().context("cannot set up the metrics")?,
        )),
        None => None,
    };
    let store = crate::store::open_with(&config.database_url, config.store)
        .await
        .context("cannot open the database")?;
    if let Some(files) = &config.tls {
        warn_if_readable_by_others(&files.key, "the TLS key", Readers::Owner);
    }
    if let Some(path) = &config.upstreams_file {
        warn_if_readable_by_others(path, "the upstream providers file", Readers::Owner);
    }
    let tls = match &config.tls {
        Some(files) => Some(crate::api::TlsIdentity {
            cert: std::fs::read(&files.cert)
                .with_context(|| format!("cannot read {}", files.cert.display()))?,
            key: std::fs::read(&files.key)
                .with_context(|| format!("cannot read {}", files.key.display()))?,
        }),
        None => None,
    };
    if config.engine.auth == AuthMode::Keys
        && let Some(key) = create_first_key_if_none(store.as_ref()).await?
    {
        // The only copy of the secret: on stdout, never in the log.
        println!(
            "First start: created an API key for tenant \"default\" with every scope. It is \
             shown only this once:\n{}",
            key.secret_text
        );
        tracing::warn!(key_id = %key.id, "created the first API key (printed once on stdout)");
    }
    let mut engine_config = config.engine;
    engine_config.key = ServerKey::open(&config.key_file, store.as_ref())
        .await
        .context("cannot use the key file")?;
    let engine = Engine::start(store, engine_config)
        .await
        .context("cannot start the engine")?;
    if let Some(path) = config.upstreams_file {
        tokio::spawn(reload_upstreams_on_hangup(Arc::downgrade(&engine), path));
    }
    tracing::info!(
        addr = %listener.local_addr()?,
        ranges = engine.catalog.ranges().len(),
        sources = engine.catalog.sources().iter().count(),
        "numguard serving"
    );
    // Once shutdown is asked for, in-flight requests get a grace period; clients that keep
    // connections open past it do not keep the process alive.
    let (asked_tx, asked) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = asked_tx.send(true);
    });
    let asked_for = |mut asked: tokio::sync::watch::Receiver<bool>| async move {
        if asked.wait_for(|yes| *yes).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let gate = ConnectionGate::new(config.transport.connections);
    let rest = match listeners.rest {
        Some(rest) => {
            let addr = rest.local_addr()?;
            let listener = crate::rest::RestListener::new(rest, gate.clone(), tls.as_ref())
                .context("cannot serve the REST facade")?;
            tracing::info!(%addr, tls = tls.is_some(), "CAMARA REST facade serving");
            let serving = crate::rest::serve(
                listener,
                engine.clone(),
                config.transport.request_timeout,
                asked_for(asked.clone()),
            );
            Some(tokio::spawn(serving))
        }
        None => None,
    };
    if let Some((metrics, handle)) = metrics {
        tracing::info!(addr = %metrics.local_addr()?, "metrics and health serving");
        let serving = crate::ops_http::serve_metrics(
            metrics,
            engine.clone(),
            handle,
            asked_for(asked.clone()),
        );
        tokio::spawn(async move {
            if let Err(e) = serving.await {
                tracing::warn!(error = %e, "the metrics endpoint failed");
            }
        });
    }
    let serving = crate::api::serve(
        listener,
        gate,
        engine.clone(),
        config.transport,
        tls,
        asked_for(asked.clone()),
    );
    tokio::pin!(serving);
    tokio::select! {
        served = &mut serving => served?,
        _ = async {
            asked_for(asked).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(
                "connections still open {} s after shutdown was asked for; stopping anyway",
                SHUTDOWN_GRACE.as_secs()
            );
        }
    }
    if let Some(mut rest) = rest {
        // It stops with gRPC; past the grace period its open connections are dropped.
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut rest).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the REST facade failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the REST facade stopped unexpectedly"),
            Ok(Ok(Ok(()))) => {}
            Err(_) => rest.abort(),
        }
    }
    engine.shutdown().await;
    tracing::info!("numguard stopped");
    Ok(())
}

/// Re-reads the providers file on each SIGHUP; a file that does not load leaves the
/// current providers in place.
async fn reload_upstreams_on_hangup(engine: Weak<Engine>, path: std::path::PathBuf) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; the providers file is read at start only");
            return;
        };
        while hangups.recv().await.is_some() {
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let reloaded = ProvidersFile::load(&path)
                .map_err(|e| e.to_string())
                .and_then(|providers| {
                    let settings = engine.config().upstream.settings.clone();
                    engine
                        .catalog
                        .reload_upstreams(UpstreamConfig {
                            providers,
                            settings,
                        })
                        .map_err(|e| e.to_string())
                });
            match reloaded {
                Ok(()) => tracing::info!(file = %path.display(), "providers reloaded"),
                Err(e) => {
                    tracing::warn!(error = %e, "providers not reloaded; keeping the current ones")
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (engine, path);
    }
}
