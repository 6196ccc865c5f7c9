//! The operators' HTTP endpoints: `/healthz` (the process answers), `/readyz` (checks may
//! be answered: the database is reachable and, with replicas, the change feed listens; with
//! `--ready-requires-fresh-sources`, no live source is stale),
//! served on the REST port and, with `/metrics` (Prometheus text format), on
//! `--metrics-listen`. None of them needs a key: bind the metrics port where only the
//! monitoring network reaches it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::engine::{Engine, Readiness};

/// How often histograms are compacted between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// `/healthz` and `/readyz`.
pub fn health_routes<S: Clone + Send + Sync + 'static>(engine: Arc<Engine>) -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready).with_state(engine))
}

async fn ready(State(engine): State<Arc<Engine>>) -> (StatusCode, String) {
    match engine.readiness() {
        Readiness::Ready => (StatusCode::OK, "ready\n".into()),
        Readiness::DatabaseDown => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the database is unreachable or the change feed is not listening\n".into(),
        ),
        Readiness::StaleSources(names) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: stale sources: {}\n", names.join(", ")),
        ),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    engine: Arc<Engine>,
    handle: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_INTERVAL).await;
            upkeep.run_upkeep();
        }
    });
    let scrape = {
        let engine = engine.clone();
        move || async move {
            // Gauges read from the engine's state are set as of the scrape.
            engine.observe().await;
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                handle.render(),
            )
        }
    };
    let app = Router::new()
        .route("/metrics", get(scrape))
        .merge(health_routes(engine));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
