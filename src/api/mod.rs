//! The gRPC surface: translates wire messages to engine calls and errors to status codes.

mod admin;
mod check;
pub mod convert;
pub mod error;
mod events;
pub mod pb;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::engine::Engine;
use admin::AdminApi;
use check::NumberCheckApi;
use events::EventsApi;
use pb::admin_server::AdminServer;
use pb::events_server::EventsServer;
use pb::number_check_server::NumberCheckServer;

/// Largest message accepted: range imports are the big ones (India's file is ~3,300
/// ranges, far below this).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Mirrors the engine's availability into `grpc.health.v1`: the server ("") and every
/// numguard service are SERVING while the database is, NOT_SERVING otherwise.
async fn report_health(health: HealthReporter, mut available: watch::Receiver<bool>) {
    loop {
        let status = if *available.borrow_and_update() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in [
            "",
            <NumberCheckServer<NumberCheckApi> as NamedService>::NAME,
            <EventsServer<EventsApi> as NamedService>::NAME,
            <AdminServer<AdminApi> as NamedService>::NAME,
        ] {
            health.set_service_status(service, status).await;
        }
        if available.changed().await.is_err() {
            return;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves every numguard service, health and reflection on an already-bound listener
/// until `shutdown` completes; in-flight requests then finish before it returns.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(report_health(health, engine.availability()));

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    // Responses span several small writes (headers, data, trailers); without NODELAY,
    // Nagle's algorithm and delayed ACKs stall them for tens of milliseconds.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            NumberCheckServer::new(NumberCheckApi::new(engine.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            EventsServer::new(EventsApi::new(engine.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            AdminServer::new(AdminApi::new(engine)).max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
