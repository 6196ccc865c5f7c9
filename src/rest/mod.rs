//! The CAMARA-compatible REST facade (axum), served on its own port beside gRPC. It
//! translates CAMARA's requests into the engine's checks and subscriptions and its
//! answers back; the decisions are the engine's.

mod checks;
pub mod error;
pub mod openapi;
mod request;
mod routes;
mod subscriptions;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::extract::connect_info::Connected;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};

use crate::api::TlsIdentity;
use crate::connections::{Connection, ConnectionGate, Limited};
use crate::engine::Engine;
use crate::middleware::AdmitLayer;
use checks::{DeviceSwapApi, SimSwapApi, swap_check, swap_retrieve_date};
use error::{Code, RestError};
use routes::RestRoutes;
pub use tls::{TlsError, TlsListener};

const X_CORRELATOR: HeaderName = HeaderName::from_static("x-correlator");
const MAX_CORRELATOR_LEN: usize = 256;

/// The routes, with CAMARA's paths. Every request passes the admission layer, which
/// admits each path for its scope ([`RestRoutes`]); unknown paths, wrong methods and the
/// OpenAPI documents are answered without a key.
pub fn router(engine: Arc<Engine>, deadline: Duration) -> Router {
    let mut router = Router::new();
    match openapi::documents() {
        Ok(documents) => {
            for doc in documents {
                let yaml = doc.yaml.as_str();
                router = router.route(
                    &doc.path(),
                    get(
                        move || async move { ([(header::CONTENT_TYPE, "application/yaml")], yaml) },
                    ),
                );
            }
        }
        Err(why) => tracing::error!(error = why, "the OpenAPI documents could not be generated"),
    }
    router
        .route("/sim-swap/v2/check", post(swap_check::<SimSwapApi>))
        .route(
            "/sim-swap/v2/retrieve-date",
            post(swap_retrieve_date::<SimSwapApi>),
        )
        .route(
            "/number-recycling/v0.2/check",
            post(checks::number_recycling_check),
        )
        .route(
            "/kyc-tenure/v0.2/check-tenure",
            post(checks::kyc_tenure_check),
        )
        .route("/device-swap/v1/check", post(swap_check::<DeviceSwapApi>))
        .route(
            "/device-swap/v1/retrieve-date",
            post(swap_retrieve_date::<DeviceSwapApi>),
        )
        .route(
            "/sim-swap-subscriptions/v0.3/subscriptions",
            post(subscriptions::create).get(subscriptions::list),
        )
        .route(
            "/sim-swap-subscriptions/v0.3/subscriptions/{id}",
            get(subscriptions::get).delete(subscriptions::delete),
        )
        .merge(crate::ops_http::health_routes(engine.clone()))
        .fallback(|| async { RestError::new(Code::NotFound, "no such resource") })
        .method_not_allowed_fallback(|| async {
            RestError::new(
                Code::MethodNotAllowed,
                "this resource does not take that method",
            )
        })
        .layer(AdmitLayer::new(engine.clone(), RestRoutes { deadline }))
        .layer(middleware::from_fn(correlate))
        .with_state(engine)
}

/// CAMARA's `x-correlator` pattern, `^[a-zA-Z0-9-_:;.\/<>{}]{0,256}$`.
fn valid_correlator(value: &[u8]) -> bool {
    value.len() <= MAX_CORRELATOR_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:;./<>{}".contains(b))
}

/// Echoes the request's `x-correlator` on the answer, errors included; a malformed one is
/// refused before anything else happens.
async fn correlate(request: Request, next: Next) -> Response {
    let correlator: Option<HeaderValue> = request.headers().get(&X_CORRELATOR).cloned();
    let mut response = match &correlator {
        Some(v) if !valid_correlator(v.as_bytes()) => RestError::new(
            Code::InvalidArgument,
            "x-correlator must match ^[a-zA-Z0-9-_:;./<>{}]{0,256}$",
        )
        .into_response(),
        _ => next.run(request).await,
    };
    if let Some(v) = correlator.filter(|v| valid_correlator(v.as_bytes())) {
        response.headers_mut().insert(X_CORRELATOR, v);
    }
    response
}

/// Where the REST API listens: plain HTTP, or TLS with the gRPC port's certificate; its
/// connections are admitted by the server's [`ConnectionGate`].
pub enum RestListener {
    Plain(PlainListener),
    Tls(TlsListener),
}

impl RestListener {
    /// TLS when `identity` is given.
    pub fn new(
        tcp: TcpListener,
        gate: Arc<ConnectionGate>,
        identity: Option<&TlsIdentity>,
    ) -> Result<RestListener, TlsError> {
        Ok(match identity {
            Some(identity) => RestListener::Tls(TlsListener::new(tcp, gate, identity)?),
            None => RestListener::Plain(PlainListener { tcp, gate }),
        })
    }
}

/// Plain HTTP connections, admitted by the gate.
pub struct PlainListener {
    tcp: TcpListener,
    gate: Arc<ConnectionGate>,
}

impl axum::serve::Listener for PlainListener {
    type Io = Limited<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let stream = self.gate.accept(&self.tcp).await;
        let peer = stream.connection().peer();
        (stream, peer)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl Connected<IncomingStream<'_, PlainListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Self {
        stream.io().connection().clone()
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.io().get_ref().0.connection().clone()
    }
}

/// Serves the REST API on `listener` until `shutdown` completes; each request carries its
/// [`Connection`].
pub async fn serve(
    listener: RestListener,
    engine: Arc<Engine>,
    deadline: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(engine, deadline).into_make_service_with_connect_info::<Connection>();
    match listener {
        RestListener::Plain(tcp) => axum::serve(tcp, app).with_graceful_shutdown(shutdown).await,
        RestListener::Tls(tls) => axum::serve(tls, app).with_graceful_shutdown(shutdown).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlators_follow_the_camara_pattern() {
        assert!(valid_correlator(b"b4333c46-49c0-4f62-80d7-f0ef930f1c46"));
        assert!(valid_correlator(b"a_b:c;d.e/f<g>{h}"));
        assert!(valid_correlator(b""));
        assert!(valid_correlator(&[b'a'; 256]));
        assert!(!valid_correlator(&[b'a'; 257]));
        assert!(!valid_correlator(b"has space"));
        assert!(!valid_correlator(b"quote\""));
        assert!(!valid_correlator("caf\u{e9}".as_bytes()));
    }
}
