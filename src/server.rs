//! Server assembly: open the store, start the engine, serve on a pre-bound listener until
//! the shutdown future completes.

use std::future::Future;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::engine::{Engine, EngineConfig};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `sqlite://FILE` (created on first start).
    pub database_url: String,
    pub engine: EngineConfig,
}

pub async fn run(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = crate::store::open(&config.database_url)
        .await
        .context("cannot open the database")?;
    let engine = Engine::start(store, config.engine)
        .await
        .context("cannot start the engine")?;
    tracing::info!(
        addr = %listener.local_addr()?,
        ranges = engine.ranges().len(),
        sources = engine.sources().iter().count(),
        "numguard serving"
    );
    crate::api::serve(listener, engine, shutdown).await?;
    tracing::info!("numguard stopped");
    Ok(())
}
