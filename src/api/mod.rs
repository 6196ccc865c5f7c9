//! The gRPC surface: translates wire messages to engine calls and errors to status codes.

mod admin;
mod alerts;
pub use alerts::START_CURSOR_HEADER;
mod auth;
mod batched_frames;
mod check;
mod codec;
pub mod convert;
pub mod error;
mod events;
mod idle_streams;
pub mod pb;
mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::connections::ConnectionGate;
use crate::engine::Engine;
use crate::middleware::AdmitLayer;
use crate::server::TransportConfig;
use admin::AdminApi;
use alerts::AlertsApi;
use batched_frames::BatchedFrames;
use check::NumberCheckApi;
use events::EventsApi;
use pb::admin_server::AdminServer;
use pb::alerts_server::AlertsServer;
use pb::events_server::EventsServer;
use pb::number_check_server::NumberCheckServer;
use routes::GrpcRoutes;

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
            <AlertsServer<AlertsApi> as NamedService>::NAME,
        ] {
            health.set_service_status(service, status).await;
        }
        if available.changed().await.is_err() {
            return;
        }
    }
}

/// PEM certificate chain and key for TLS.
pub struct TlsIdentity {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// HTTP/2 flow-control windows, sized so that any client's stream of small messages is
/// paced by flow control instead of cut off. h2 sends GOAWAY ENHANCE_YOUR_CALM
/// ("too_many_data_frames") once the small DATA frames it holds unread count for more than
/// half the connection window, each frame counting 256 bytes less its size. grpcio and
/// grpc-js send one message per frame, and a stream is read only as fast as it is answered,
/// so the *stream* window must stop a sender long before that: 64 KiB of 20-byte rows
/// counts about 0.8 MiB against the 8 MiB a 16 MiB connection window allows, so some ten
/// such streams can wait on one connection at once. (hyper's 1 MiB windows allowed one
/// stream about 12 MiB against a 0.5 MiB budget.)
const STREAM_WINDOW_BYTES: u32 = 64 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// Connections are pinged this often, and closed if a ping is not answered in time, so a
/// peer that vanished does not hold a stream (and its in-flight places) for ever.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves every numguard service, health and reflection on an already-bound listener,
/// its connections admitted by `gate`, until `shutdown` completes; in-flight requests then
/// finish before it returns.
pub async fn serve(
    listener: TcpListener,
    gate: Arc<ConnectionGate>,
    engine: Arc<Engine>,
    transport: TransportConfig,
    tls: Option<TlsIdentity>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let max_message = transport.max_message_bytes;
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(report_health(health, engine.availability()));

    // Both reflection versions: many tools (grpcio-reflection, Postman, evans, older
    // grpcurl) still speak only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let incoming = futures::stream::unfold((listener, gate), |(listener, gate)| async move {
        let connection = gate.accept(&listener).await;
        Some((Ok::<_, std::io::Error>(connection), (listener, gate)))
    });
    let cut_frames = tls.is_none();
    let mut server = Server::builder()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    if let Some(identity) = tls {
        server = server.tls_config(
            ServerTlsConfig::new().identity(Identity::from_pem(identity.cert, identity.key)),
        )?;
    }
    let routes = GrpcRoutes {
        deadline: transport.request_timeout,
    };
    server
        .layer(
            tower::ServiceBuilder::new()
                .map_request(move |request| {
                    idle_streams::limit_idle(&routes, transport.stream_idle_timeout, request)
                })
                .map_response(move |response: http::Response<_>| {
                    response.map(|body| BatchedFrames::new(body, cut_frames))
                })
                .layer(AdmitLayer::new(engine.clone(), routes))
                .map_response(oversized_is_resource_exhausted),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            NumberCheckServer::new(NumberCheckApi::new(engine.clone()))
                .max_decoding_message_size(max_message),
        )
        .add_service(
            EventsServer::new(EventsApi::new(engine.clone()))
                .max_decoding_message_size(max_message),
        )
        .add_service(
            AlertsServer::new(AlertsApi::new(engine.clone()))
                .max_decoding_message_size(max_message),
        )
        .add_service(AdminServer::new(AdminApi::new(engine)).max_decoding_message_size(max_message))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// tonic refuses a request message over the size limit with OUT_OF_RANGE; the limit is a
/// resource limit, so the client is told RESOURCE_EXHAUSTED, as gRPC's status guide has it.
/// (A stream's later message over the limit ends the stream in trailers, left as tonic
/// writes them.)
fn oversized_is_resource_exhausted(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let too_large = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| m.contains("too large") || m.contains("too%20large"));
    if too_large && headers.get("grpc-status").is_some_and(|s| s == "11") {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from(tonic::Code::ResourceExhausted as i32),
        );
    }
    response
}
