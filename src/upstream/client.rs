//! One provider's CAMARA API over HTTP: SIM Swap v2 `/check` and Number Recycling v0.2
//! `/check`, authenticated with a static bearer token or OAuth2 client credentials
//! (tokens cached until shortly before they expire), bounded in concurrency, behind a
//! timeout and a circuit breaker, and respectful of 429 Retry-After.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::breaker::{Breaker, BreakerConfig, Held};
use super::config::{Auth, Provider};
use crate::domain::number::E164;

/// A pause asked for by 429 without a usable Retry-After.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest pause a Retry-After may impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Why a provider gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("timed out after {0} ms")]
    Timeout(u128),
    #[error("unreachable: {0}")]
    Transport(String),
    #[error("answered HTTP {status}{detail}")]
    Status { status: u16, detail: String },
    #[error("rate limited; retry after {0} s")]
    RateLimited(u64),
    #[error("circuit open after repeated failures")]
    CircuitOpen,
    #[error("answer not understood: {0}")]
    BadAnswer(String),
    #[error("cannot get an access token: {0}")]
    Token(String),
}

impl CallError {
    /// The pause the provider asked for, if it asked for one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::RateLimited(s) => Some(Duration::from_secs(*s)),
            _ => None,
        }
    }

    /// Failures that count against the provider's health (the circuit breaker).
    fn is_fault(&self) -> bool {
        match self {
            CallError::Timeout(_)
            | CallError::Transport(_)
            | CallError::BadAnswer(_)
            | CallError::Token(_) => true,
            CallError::Status { status, .. } => *status >= 500,
            CallError::RateLimited(_) | CallError::CircuitOpen => false,
        }
    }
}

struct Token {
    value: String,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

pub struct ProviderClient {
    pub provider: Provider,
    http: reqwest::Client,
    timeout: Duration,
    slots: Semaphore,
    breaker: Mutex<Breaker>,
    token: tokio::sync::Mutex<Option<Token>>,
}

fn lock(b: &Mutex<Breaker>) -> MutexGuard<'_, Breaker> {
    // The breaker is plain counters; a panic elsewhere leaves it usable.
    b.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ProviderClient {
    pub fn new(
        provider: Provider,
        http: reqwest::Client,
        timeout: Duration,
        breaker: BreakerConfig,
    ) -> ProviderClient {
        ProviderClient {
            slots: Semaphore::new(provider.max_concurrency),
            provider,
            http,
            timeout,
            breaker: Mutex::new(Breaker::new(breaker)),
            token: tokio::sync::Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.provider.name
    }

    /// SIM Swap v2: was the SIM changed within the last `max_age_hours`?
    pub async fn sim_swapped(&self, number: &E164, max_age_hours: u32) -> Result<bool, CallError> {
        let body = json!({ "phoneNumber": number.as_str(), "maxAge": max_age_hours });
        self.ask("/sim-swap/v2/check", body, "swapped").await
    }

    /// Number Recycling v0.2: did the subscriber change after `date`?
    pub async fn recycled(&self, number: &E164, date: NaiveDate) -> Result<bool, CallError> {
        let body = json!({ "phoneNumber": number.as_str(), "specifiedDate": date.to_string() });
        self.ask("/number-recycling/v0.2/check", body, "phoneNumberRecycled")
            .await
    }

    /// One question, through the breaker and a concurrency slot.
    #[tracing::instrument(
        name = "upstream",
        skip_all,
        fields(otel.name = "upstream", otel.kind = "client", provider = %self.name(), path)
    )]
    async fn ask(&self, path: &str, body: Value, field: &str) -> Result<bool, CallError> {
        let permitted = lock(&self.breaker).permit(Instant::now());
        if let Err(held) = permitted {
            crate::metrics::upstream_call(self.name(), "held");
            return Err(match held {
                Held::Open => CallError::CircuitOpen,
                // Cached for what is left of the pause, so waiting checks stay quiet.
                Held::RateLimited(left) => CallError::RateLimited(left.as_secs().max(1)),
            });
        }
        let outcome = match self.slots.acquire().await {
            Ok(_slot) => self.post_with_auth(path, &body, field).await,
            Err(_) => Err(CallError::Transport("the client is shutting down".into())),
        };
        let mut breaker = lock(&self.breaker);
        match &outcome {
            Err(e @ CallError::RateLimited(_)) => {
                let pause = e.retry_after().unwrap_or(DEFAULT_RETRY_AFTER);
                breaker.pause(Instant::now() + pause);
            }
            Err(e) if e.is_fault() => breaker.failed(Instant::now()),
            _ => breaker.succeeded(),
        }
        crate::metrics::upstream_breaker(self.name(), breaker.is_open());
        let label = match &outcome {
            Ok(_) => "answered",
            Err(CallError::RateLimited(_)) => "rate_limited",
            Err(e) if e.is_fault() => "failed",
            Err(_) => "refused",
        };
        crate::metrics::upstream_call(self.name(), label);
        outcome
    }

    /// POSTs, and once more with a fresh token if the provider refuses the cached one.
    async fn post_with_auth(
        &self,
        path: &str,
        body: &Value,
        field: &str,
    ) -> Result<bool, CallError> {
        let token = self.token(false).await?;
        match self.post(path, body, field, &token).await {
            Err(CallError::Status { status: 401, .. }) if self.is_oauth2() => {
                let token = self.token(true).await?;
                self.post(path, body, field, &token).await
            }
            outcome => outcome,
        }
    }

    fn is_oauth2(&self) -> bool {
        matches!(self.provider.auth, Auth::Oauth2 { .. })
    }

    async fn post(
        &self,
        path: &str,
        body: &Value,
        field: &str,
        token: &str,
    ) -> Result<bool, CallError> {
        let url = format!("{}{path}", self.provider.base_url);
        let response = self
            .http
            .post(url)
            .bearer_auth(token)
            .header("x-correlator", correlator())
            .timeout(self.timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let pause = retry_after(response.headers()).unwrap_or(DEFAULT_RETRY_AFTER);
            return Err(CallError::RateLimited(pause.as_secs().max(1)));
        }
        let answer: Value = response.json().await.map_err(|e| {
            if status.is_success() {
                CallError::BadAnswer(e.to_string())
            } else {
                self.transport(e)
            }
        })?;
        if !status.is_success() {
            let detail = answer["code"]
                .as_str()
                .map(|c| format!(" {c}"))
                .unwrap_or_default();
            return Err(CallError::Status {
                status: status.as_u16(),
                detail,
            });
        }
        answer[field]
            .as_bool()
            .ok_or_else(|| CallError::BadAnswer(format!("no boolean {field:?} in the answer")))
    }

    fn transport(&self, e: reqwest::Error) -> CallError {
        if e.is_timeout() {
            CallError::Timeout(self.timeout.as_millis())
        } else {
            CallError::Transport(e.to_string())
        }
    }

    /// The bearer token to send; OAuth2 tokens are fetched once and reused until shortly
    /// before they expire (or `refresh` asks for a new one). Callers wait for one fetch.
    async fn token(&self, refresh: bool) -> Result<String, CallError> {
        let (token_url, client_id, client_secret, scope) = match &self.provider.auth {
            Auth::Bearer { token } => return Ok(token.clone()),
            Auth::Oauth2 {
                token_url,
                client_id,
                client_secret,
                scope,
            } => (token_url, client_id, client_secret, scope),
        };
        let mut cached = self.token.lock().await;
        if !refresh && let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.value.clone());
        }
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let response = self
            .http
            .post(token_url)
            .basic_auth(client_id, Some(client_secret))
            .timeout(self.timeout)
            .form(&form)
            .send()
            .await
            .map_err(|e| CallError::Token(e.to_string()))?;
        if !response.status().is_success() {
            return Err(CallError::Token(format!(
                "the token endpoint answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let granted: TokenResponse = response
            .json()
            .await
            .map_err(|e| CallError::Token(e.to_string()))?;
        let lifetime = Duration::from_secs(granted.expires_in.unwrap_or(300));
        // Renew a little early, so a token never expires in flight.
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        *cached = Some(Token {
            value: granted.access_token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(granted.access_token)
    }
}

/// Retry-After as seconds or an HTTP date, capped.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let pause = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&Utc) - Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(pause.min(MAX_RETRY_AFTER))
}

fn correlator() -> String {
    format!("numguard-{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        let soon = (Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&soon).unwrap());
        let pause = retry_after(&h).unwrap();
        assert!(pause > Duration::from_secs(25) && pause <= Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn only_provider_faults_count_against_the_breaker() {
        assert!(CallError::Timeout(800).is_fault());
        assert!(
            CallError::Status {
                status: 503,
                detail: String::new()
            }
            .is_fault()
        );
        assert!(
            !CallError::Status {
                status: 404,
                detail: " IDENTIFIER_NOT_FOUND".into()
            }
            .is_fault()
        );
        assert!(!CallError::RateLimited(3).is_fault());
    }
}
