//! A fake operator for tests: an HTTP server speaking CAMARA SIM Swap v2 `/check` and
//! Number Recycling v0.2 `/check`, behind OAuth2 client credentials (`/token`). It counts
//! what it is asked and can be told to be slow, to fail, or to answer 429.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "numguard";
pub const CLIENT_SECRET: &str = "s3cret";

#[derive(Default)]
pub struct Counters {
    pub sim_swap: AtomicU64,
    pub recycling: AtomicU64,
    pub tokens: AtomicU64,
    /// Requests refused for a missing, unknown or expired token.
    pub unauthorized: AtomicU64,
    in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
}

/// How the operator behaves; change it at any time.
pub struct Behaviour {
    pub delay: Duration,
    /// Answer every check with this status instead.
    pub fail_with: Option<u16>,
    /// With a 429: the Retry-After seconds.
    pub retry_after: Option<u64>,
    pub token_lifetime: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            delay: Duration::ZERO,
            fail_with: None,
            retry_after: None,
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

#[derive(Default)]
struct Shared {
    counters: Counters,
    behaviour: Mutex<Behaviour>,
    swapped: Mutex<HashSet<String>>,
    recycled: Mutex<HashSet<String>>,
    tokens: Mutex<HashMap<String, Instant>>,
    /// (path, phoneNumber, maxAge or specifiedDate) of each check, in order.
    asked: Mutex<Vec<(String, String, String)>>,
}

pub struct Operator {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Operator {
    pub async fn start() -> Operator {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/token", post(token))
            .route("/sim-swap/v2/check", post(sim_swap))
            .route("/number-recycling/v0.2/check", post(recycling))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Operator { addr, shared }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    pub fn calls(&self) -> u64 {
        let c = self.counters();
        c.sim_swap.load(Ordering::SeqCst) + c.recycling.load(Ordering::SeqCst)
    }

    pub fn tokens_issued(&self) -> u64 {
        self.counters().tokens.load(Ordering::SeqCst)
    }

    pub fn behave(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.shared.behaviour.lock().unwrap());
    }

    pub fn swapped(&self, number: &str) {
        self.shared.swapped.lock().unwrap().insert(number.into());
    }

    pub fn recycled(&self, number: &str) {
        self.shared.recycled.lock().unwrap().insert(number.into());
    }

    /// Forgets every token it issued, as after a key rotation.
    pub fn revoke_tokens(&self) {
        self.shared.tokens.lock().unwrap().clear();
    }

    pub fn asked(&self) -> Vec<(String, String, String)> {
        self.shared.asked.lock().unwrap().clone()
    }
}

async fn token(State(s): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let expected = format!("Basic {}", base64(&format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !authorized || !body.contains("grant_type=client_credentials") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let n = s.counters.tokens.fetch_add(1, Ordering::SeqCst) + 1;
    let lifetime = s.behaviour.lock().unwrap().token_lifetime;
    let value = format!("token-{n}");
    s.tokens
        .lock()
        .unwrap()
        .insert(value.clone(), Instant::now() + lifetime);
    Json(json!({
        "access_token": value,
        "token_type": "bearer",
        "expires_in": lifetime.as_secs(),
    }))
    .into_response()
}

fn camara_error(status: u16, code: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    (
        status,
        Json(json!({"status": status.as_u16(), "code": code, "message": code})),
    )
        .into_response()
}

/// Checks the token, applies the behaviour; `None` means answer normally.
async fn gate(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let valid = s
        .tokens
        .lock()
        .unwrap()
        .get(&token)
        .is_some_and(|expires| Instant::now() < *expires);
    if !valid {
        s.counters.unauthorized.fetch_add(1, Ordering::SeqCst);
        return Some(camara_error(401, "UNAUTHENTICATED"));
    }
    let (delay, fail_with, retry_after) = {
        let b = s.behaviour.lock().unwrap();
        (b.delay, b.fail_with, b.retry_after)
    };
    let now = s.counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.counters.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(delay).await;
    s.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
    match fail_with {
        Some(429) => {
            let mut r = camara_error(429, "TOO_MANY_REQUESTS");
            if let Some(seconds) = retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, seconds.to_string().parse().unwrap());
            }
            Some(r)
        }
        Some(status) => Some(camara_error(status, "INTERNAL")),
        None => None,
    }
}

async fn sim_swap(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    s.counters.sim_swap.fetch_add(1, Ordering::SeqCst);
    let number = body["phoneNumber"].as_str().unwrap_or_default().to_string();
    s.asked.lock().unwrap().push((
        "sim-swap".into(),
        number.clone(),
        body["maxAge"].to_string(),
    ));
    if let Some(refused) = gate(&s, &headers).await {
        return refused;
    }
    let swapped = s.swapped.lock().unwrap().contains(&number);
    Json(json!({ "swapped": swapped })).into_response()
}

async fn recycling(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    s.counters.recycling.fetch_add(1, Ordering::SeqCst);
    let number = body["phoneNumber"].as_str().unwrap_or_default().to_string();
    s.asked.lock().unwrap().push((
        "number-recycling".into(),
        number.clone(),
        body["specifiedDate"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    ));
    if let Some(refused) = gate(&s, &headers).await {
        return refused;
    }
    let recycled = s.recycled.lock().unwrap().contains(&number);
    Json(json!({ "phoneNumberRecycled": recycled })).into_response()
}

/// Standard base64, enough for a Basic credential.
fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
