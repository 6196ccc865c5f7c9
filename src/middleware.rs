//! What every request goes through before a handler sees it, on both transports: admission
//! (the bearer key checked for the route's scope, the per-key rate and the in-flight
//! permit), the server's deadline, a tracing span, and its count and duration in the
//! metrics. One tower layer, given a
//! [`Transport`] that names each route's needs and writes refusals in its own wire form;
//! handlers only translate, reading the caller from the request's extensions.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::{Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::connections::{Connection, RequestOnConnection};
use crate::domain::auth::Scopes;
use crate::engine::Engine;
use crate::engine::auth::{Admission, AuthError};

/// What a route needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The scopes that admit a caller: its key must have one of them.
    pub scopes: Scopes,
    pub answer: Answer,
}

/// How a route answers, which says how long its request holds an in-flight place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// In one piece, within the server's deadline.
    Once(Duration),
    /// As a stream (or from one), holding its place until the stream ends.
    Stream,
    /// As a subscription that may stay open for days: admitted (key, scope, rate) but not
    /// holding one of the places meant for requests.
    Subscription,
}

/// Why the layer answered in the handler's stead.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the request took longer than the server's limit of {} ms", .0.as_millis())]
    Deadline(Duration),
}

/// A transport's side of the layer: which routes are admitted, and how a refusal looks
/// on its wire.
pub trait Transport: Clone + Send + Sync + 'static {
    /// The response body of the services the layer wraps.
    type Body: Default + Send + 'static;

    /// What the route of `request` needs; `None` for routes open to anyone (health,
    /// reflection, documents).
    fn route<B>(&self, request: &Request<B>) -> Option<Route>;

    /// The answer for a refused request.
    fn refuse(&self, refusal: Refusal) -> Response<Self::Body>;

    /// The route's name in metrics: its path, or its template where the path holds ids.
    /// Called only for routes [`Transport::route`] knows, so the names are bounded.
    fn metric_name<'r, B>(&self, request: &'r Request<B>) -> Cow<'r, str> {
        Cow::Borrowed(request.uri().path())
    }
}

/// Admits, times and traces each request of the services it wraps.
#[derive(Clone)]
pub struct AdmitLayer<T> {
    engine: Arc<Engine>,
    transport: T,
}

impl<T> AdmitLayer<T> {
    pub fn new(engine: Arc<Engine>, transport: T) -> Self {
        AdmitLayer { engine, transport }
    }
}

impl<S, T: Clone> Layer<S> for AdmitLayer<T> {
    type Service = Admit<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        Admit {
            inner,
            engine: self.engine.clone(),
            transport: self.transport.clone(),
        }
    }
}

/// The service [`AdmitLayer`] makes.
#[derive(Clone)]
pub struct Admit<S, T> {
    inner: S,
    engine: Arc<Engine>,
    transport: T,
}

impl<S, T, B> Service<Request<B>> for Admit<S, T>
where
    S: Service<Request<B>, Response = Response<T::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    T: Transport,
    B: Send + 'static,
{
    type Response = Response<Held<T::Body>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was made ready is the one that serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let connection = Connection::of(&request);
        let peer = connection.map(|c| c.peer().ip());
        let on_connection = connection.map(Connection::request);
        let Some(route) = self.transport.route(&request) else {
            return Box::pin(async move {
                let response = inner.call(request).await?;
                Ok(response.map(|body| Held::new(body, on_connection, None)))
            });
        };
        let engine = self.engine.clone();
        let transport = self.transport.clone();
        let measured =
            crate::metrics::route(&self.transport.metric_name(&request)).map(|route| Measured {
                route,
                started: Instant::now(),
                status: None,
            });
        // At DEBUG unless JSON logs or trace export want it: at the default INFO level a
        // disabled span costs nothing, while an enabled one is formatted on every request
        // (5.8k instructions of a 121k warm check).
        let path = request.uri().path();
        let (span, request_id) = if crate::telemetry::request_spans() {
            let id = request_id(request.headers());
            let span = tracing::info_span!(
                "request",
                otel.name = %path,
                otel.kind = "server",
                request_id = %id,
                route = %path,
                tenant = tracing::field::Empty
            );
            (span, http::HeaderValue::from_str(&id).ok())
        } else {
            let span = tracing::debug_span!(
                "request",
                route = %path,
                tenant = tracing::field::Empty
            );
            (span, None)
        };
        Box::pin(
            async move {
                let work = async {
                    let authorization = request
                        .headers()
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    let admission = match engine.admit(authorization, route.scopes, peer).await {
                        Ok(admission) => admission,
                        Err(e) => {
                            crate::metrics::refused(e.metric_reason());
                            return Ok(refused(&transport, on_connection, e.into()));
                        }
                    };
                    tracing::Span::current().record("tenant", admission.principal.tenant.as_str());
                    request.extensions_mut().insert(admission.principal.clone());
                    let held = (route.answer != Answer::Subscription).then_some(admission);
                    let response = inner.call(request).await?;
                    // The admission is the in-flight permit: held until the last byte of
                    // the answer (a stream's last message) is sent.
                    Ok(response.map(|body| Held::new(body, on_connection, held)))
                };
                let response = match route.answer {
                    Answer::Once(limit) => {
                        tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
                            crate::metrics::refused("deadline");
                            Ok(refused(&transport, None, Refusal::Deadline(limit)))
                        })
                    }
                    Answer::Stream | Answer::Subscription => work.await,
                }?;
                let mut response = match measured {
                    Some(measured) => measured.follow(response),
                    None => response,
                };
                if let Some(id) = request_id {
                    response.headers_mut().insert(REQUEST_ID, id);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// The header that carries a request's id, both ways.
const REQUEST_ID: &str = "x-request-id";

/// The caller's request id when it sent a usable one (so its logs and ours join), else a
/// new random one.
fn request_id(headers: &http::HeaderMap) -> String {
    let given = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    match given {
        Some(id) => id.to_string(),
        None => format!("{:016x}", rand::random::<u64>()),
    }
}

fn refused<T: Transport>(
    transport: &T,
    on_connection: Option<RequestOnConnection>,
    refusal: Refusal,
) -> Response<Held<T::Body>> {
    transport
        .refuse(refusal)
        .map(|body| Held::new(body, on_connection, None))
}

/// A request being timed: counted with its status when its answer's body is dropped (its
/// last byte sent, or the client gone).
struct Measured {
    route: Arc<crate::metrics::RouteMetrics>,
    started: Instant,
    /// The gRPC status or HTTP status once known; a gRPC answer's comes in its trailers.
    status: Option<&'static str>,
}

impl Measured {
    /// Takes the status from the response head where it is there, and rides along with
    /// the body to its end.
    fn follow<B>(mut self, response: Response<Held<B>>) -> Response<Held<B>> {
        let headers = response.headers();
        self.status = match headers.get("grpc-status") {
            Some(code) => Some(crate::metrics::grpc_status_name(code.as_bytes())),
            None if is_grpc(headers) => None,
            None => Some(http_status_name(response.status())),
        };
        response.map(|mut body| {
            body.measured = Some(self);
            body
        })
    }
}

impl Drop for Measured {
    fn drop(&mut self) {
        // A gRPC answer dropped before its trailers: the client went away.
        let status = self.status.unwrap_or("CANCELLED");
        self.route.answered(status, self.started.elapsed());
    }
}

fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"))
}

fn http_status_name(status: http::StatusCode) -> &'static str {
    // The statuses the REST facade answers with; anything else by its class.
    match status.as_u16() {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        504 => "504",
        code if code < 300 => "2xx",
        code if code < 400 => "3xx",
        code if code < 500 => "4xx",
        _ => "5xx",
    }
}

/// A response body that holds the request's admission, and its place on its connection
/// (which keeps an idle connection open), until it is dropped.
pub struct Held<B> {
    body: B,
    _on_connection: Option<RequestOnConnection>,
    _admission: Option<Admission>,
    measured: Option<Measured>,
}

impl<B> Held<B> {
    fn new(
        body: B,
        on_connection: Option<RequestOnConnection>,
        admission: Option<Admission>,
    ) -> Self {
        Held {
            body,
            _on_connection: on_connection,
            _admission: admission,
            measured: None,
        }
    }
}

impl<B: Body + Unpin> Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status"))
            && let Some(measured) = &mut self.measured
        {
            measured.status = Some(crate::metrics::grpc_status_name(code.as_bytes()));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::{BodyExt, Full};
    use tower::ServiceExt;

    use super::*;
    use crate::engine::EngineConfig;
    use crate::engine::auth::{AuthMode, Limits, Principal};

    type TestBody = Full<bytes::Bytes>;

    /// Routes named by their path: `/once`, `/stream`, `/subscription`; others are open.
    #[derive(Clone)]
    struct Paths;

    impl Transport for Paths {
        type Body = TestBody;

        fn route<B>(&self, request: &Request<B>) -> Option<Route> {
            let answer = match request.uri().path() {
                "/once" => Answer::Once(Duration::from_millis(200)),
                "/stream" => Answer::Stream,
                "/subscription" => Answer::Subscription,
                _ => return None,
            };
            Some(Route {
                scopes: crate::domain::auth::Scope::Check.into(),
                answer,
            })
        }

        fn refuse(&self, refusal: Refusal) -> Response<TestBody> {
            Response::new(Full::from(format!("refused: {refusal}")))
        }
    }

    async fn engine(auth: AuthMode, max_in_flight: usize) -> (Arc<Engine>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = crate::store::open(&url).await.unwrap();
        let config = EngineConfig {
            auth,
            limits: Limits {
                max_in_flight,
                ..Limits::default()
            },
            access_log: false,
            ..EngineConfig::default()
        };
        (Engine::start(store, config).await.unwrap(), dir)
    }

    /// Answers with the admitted tenant (or "none"); slowly when the query is `slow`.
    fn service(
        engine: Arc<Engine>,
    ) -> impl Service<Request<()>, Response = Response<Held<TestBody>>, Error = Infallible> {
        let inner = tower::service_fn(|request: Request<()>| async move {
            if request.uri().query() == Some("slow") {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            let tenant = request
                .extensions()
                .get::<Principal>()
                .map_or("none".to_string(), |p| p.tenant.as_str().to_string());
            Ok::<_, Infallible>(Response::new(Full::from(tenant)))
        });
        AdmitLayer::new(engine, Paths).layer(inner)
    }

    async fn text(response: Response<Held<TestBody>>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn get(path: &str) -> Request<()> {
        Request::builder().uri(path).body(()).unwrap()
    }

    #[tokio::test]
    async fn admitted_requests_carry_their_caller_and_open_routes_none() {
        let (engine, _dir) = engine(AuthMode::Disabled, 8).await;
        let answer = service(engine.clone()).oneshot(get("/once")).await.unwrap();
        assert_eq!(text(answer).await, "dev");
        let answer = service(engine).oneshot(get("/open")).await.unwrap();
        assert_eq!(text(answer).await, "none");
    }

    #[tokio::test]
    async fn requests_without_a_key_are_refused_before_the_handler() {
        let (engine, _dir) = engine(AuthMode::Keys, 8).await;
        let answer = service(engine).oneshot(get("/once")).await.unwrap();
        assert!(text(answer).await.starts_with("refused: missing API key"));
    }

    #[tokio::test]
    async fn unary_requests_past_the_deadline_are_refused() {
        let (engine, _dir) = engine(AuthMode::Disabled, 8).await;
        let answer = service(engine).oneshot(get("/once?slow")).await.unwrap();
        assert_eq!(
            text(answer).await,
            "refused: the request took longer than the server's limit of 200 ms"
        );
    }

    /// The in-flight place is the answer's until its body is dropped (a stream's end),
    /// except for subscriptions, which give it back once admitted.
    #[tokio::test]
    async fn answers_hold_their_in_flight_place_until_sent() {
        let (engine, _dir) = engine(AuthMode::Disabled, 1).await;
        let held = service(engine.clone())
            .oneshot(get("/stream"))
            .await
            .unwrap();
        let refused = service(engine.clone()).oneshot(get("/once")).await.unwrap();
        assert!(
            text(refused)
                .await
                .contains("limit of 1 requests in flight")
        );
        drop(held);
        let admitted = service(engine.clone()).oneshot(get("/once")).await.unwrap();
        assert_eq!(text(admitted).await, "dev");

        let subscription = service(engine.clone())
            .oneshot(get("/subscription"))
            .await
            .unwrap();
        let admitted = service(engine).oneshot(get("/once")).await.unwrap();
        assert_eq!(text(admitted).await, "dev");
        drop(subscription);
    }
}
