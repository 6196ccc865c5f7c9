//! CAMARA SIM Swap Subscriptions v0.3: one number's SIM changes sent to a sink as
//! CloudEvents, through the same webhook queue as watchlist alerts.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use super::error::{Code, RestError, unknown_number_message};
use super::request::{json, time};
use crate::domain::Field;
use crate::domain::camara;
use crate::domain::event::EventKind;
use crate::domain::subscription::{CloudEventFormat, Subscription};
use crate::engine::auth::Principal;
use crate::engine::webhooks::{ENDED_DELETED, NewSubscription};
use crate::engine::{Engine, EngineError};

pub const SWAPPED_TYPE: &str = "org.camaraproject.sim-swap-subscriptions.v0.swapped";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SubscriptionRequest {
    protocol: String,
    sink: String,
    sink_credential: Option<SinkCredential>,
    types: Vec<String>,
    config: Config,
}

/// Every credential type's fields are accepted here so that a PLAIN or REFRESHTOKEN
/// credential is refused as INVALID_CREDENTIAL, not as an unknown property.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SinkCredential {
    credential_type: String,
    access_token: Option<String>,
    access_token_expires_utc: Option<DateTime<Utc>>,
    access_token_type: Option<String>,
    #[serde(rename = "identifier")]
    _identifier: Option<IgnoredAny>,
    #[serde(rename = "secret")]
    _secret: Option<IgnoredAny>,
    #[serde(rename = "refreshToken")]
    _refresh_token: Option<IgnoredAny>,
    #[serde(rename = "refreshTokenEndpoint")]
    _refresh_token_endpoint: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Config {
    subscription_detail: Detail,
    subscription_expire_time: Option<DateTime<Utc>>,
    subscription_max_events: Option<i64>,
    initial_event: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Detail {
    phone_number: Option<String>,
}

/// The sink's bearer token and when it expires.
fn bearer(
    credential: Option<SinkCredential>,
) -> Result<Option<(String, DateTime<Utc>)>, RestError> {
    let Some(c) = credential else {
        return Ok(None);
    };
    if c.credential_type != "ACCESSTOKEN" {
        return Err(RestError::new(
            Code::InvalidCredential,
            format!(
                "sinkCredential.credentialType {:?} is not supported: only ACCESSTOKEN",
                c.credential_type
            ),
        ));
    }
    if c.access_token_type.as_deref() != Some("bearer") {
        return Err(RestError::new(
            Code::InvalidToken,
            "sinkCredential.accessTokenType must be \"bearer\"",
        ));
    }
    let missing = |field: &str| {
        RestError::new(
            Code::InvalidCredential,
            format!("sinkCredential.{field} is required for an ACCESSTOKEN credential"),
        )
    };
    let token = c
        .access_token
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| missing("accessToken"))?;
    let expires = c
        .access_token_expires_utc
        .ok_or_else(|| missing("accessTokenExpiresUtc"))?;
    Ok(Some((token, expires)))
}

/// `types` has `maxItems: 1` in SIM Swap Subscriptions 0.3.0, so two entries (even the
/// same one twice) are a malformed request, not an unsupported combination.
fn check_types(types: &[String]) -> Result<(), RestError> {
    match types {
        [only] if only == SWAPPED_TYPE => Ok(()),
        _ => Err(RestError::new(
            Code::InvalidArgument,
            format!("types must be [\"{SWAPPED_TYPE}\"] (exactly one entry)"),
        )),
    }
}

/// CAMARA's `status`: a subscription whose sink has failed for longer than the server's
/// `--webhook-failing-after-secs` is INACTIVE until a delivery succeeds (its events wait,
/// none is lost); an ended one is EXPIRED when its time, its token's time or its events
/// ran out, DELETED when its client deleted it. Creation is synchronous, so
/// ACTIVATION_REQUESTED is never shown.
fn status(s: &Subscription, failing: bool) -> &'static str {
    match s.ended_reason.as_deref() {
        None if failing => "INACTIVE",
        None => "ACTIVE",
        Some(ENDED_DELETED) => "DELETED",
        Some(_) => "EXPIRED",
    }
}

fn representation(s: &Subscription, failing: bool) -> Value {
    let mut config = json!({
        "subscriptionDetail": { "phoneNumber": s.number.as_ref().map(|n| n.as_str()) },
    });
    if let Some(t) = s.expire_at {
        config["subscriptionExpireTime"] = json!(time(t));
    }
    if let Some(m) = s.max_events {
        config["subscriptionMaxEvents"] = json!(m);
    }
    let mut body = json!({
        "id": s.id,
        "protocol": "HTTP",
        "sink": s.sink,
        "types": [SWAPPED_TYPE],
        "config": config,
        "startsAt": time(s.created_at),
        "status": status(s, failing),
    });
    if let Some(t) = s.ends_at() {
        body["expiresAt"] = json!(time(t));
    }
    body
}

/// The caller's CAMARA subscriptions, ended ones included (their status says how they
/// ended).
async fn camara_subscriptions(
    engine: &Engine,
    caller: &Principal,
) -> Result<Vec<Subscription>, RestError> {
    Ok(engine
        .webhooks
        .list_subscriptions(&caller.tenant)
        .await?
        .into_iter()
        .filter(|s| s.format == CloudEventFormat::Camara)
        .collect())
}

/// Those subscriptions as CAMARA represents them, with their sinks' delivery state.
async fn visible(engine: &Engine, caller: &Principal) -> Result<Vec<(String, Value)>, RestError> {
    let deliveries = engine.webhooks.delivery_states(&caller.tenant).await?;
    Ok(camara_subscriptions(engine, caller)
        .await?
        .into_iter()
        .map(|s| {
            let failing = deliveries.get(&s.id).is_some_and(|d| d.failing);
            let body = representation(&s, failing);
            (s.id, body)
        })
        .collect())
}

fn not_found(id: &str) -> RestError {
    RestError::new(Code::NotFound, format!("no subscription {id:?}"))
}

/// Whether the client sent RFC 7240's `Prefer: respond-async`, asking for CAMARA's `202`
/// form (`{"id"}`) instead of the finished subscription.
fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

/// CAMARA's `202` answer with `SubscriptionAsync`. numguard finishes the work before
/// answering either way, so a GET right after shows its outcome.
fn accepted(id: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        [("preference-applied", "respond-async")],
        Json(json!({ "id": id })),
    )
        .into_response()
}

pub async fn create(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    let request: SubscriptionRequest = json(body).await?;
    if request.protocol != "HTTP" {
        return Err(RestError::new(
            Code::InvalidProtocol,
            format!(
                "protocol {:?} is not supported: only HTTP",
                request.protocol
            ),
        ));
    }
    check_types(&request.types)?;
    let token = bearer(request.sink_credential)?;
    let config = request.config;
    if config.initial_event == Some(true) {
        return Err(RestError::new(
            Code::InvalidArgument,
            "config.initialEvent is not supported: a swapped event reports a change, not a state",
        ));
    }
    let max_events = match config.subscription_max_events {
        None => None,
        Some(m) if m >= 1 => u64::try_from(m).ok(),
        Some(m) => {
            return Err(RestError::new(
                Code::InvalidArgument,
                format!("config.subscriptionMaxEvents must be at least 1, got {m}"),
            ));
        }
    };
    let phone_number = camara::phone_number(config.subscription_detail.phone_number.as_deref())?;
    let number = engine
        .checks
        .parse_number(Field::PhoneNumber, phone_number, "")
        // Creation declares no 404: a number in no numbering plan is one this service
        // cannot follow.
        .map_err(|e| RestError::new(Code::ServiceNotApplicable, unknown_number_message(&e)))?;
    if !number.mobile {
        return Err(camara::Refusal::NotMobile.into());
    }
    let duplicate = camara_subscriptions(&engine, &caller)
        .await?
        .into_iter()
        .find(|s| {
            s.is_active()
                && same_url(&s.sink, &request.sink)
                && s.number.as_ref() == Some(&number.e164)
        });
    if let Some(existing) = duplicate {
        return Err(RestError::new(
            Code::AlreadyExists,
            format!(
                "subscription {:?} already sends this number's SIM changes to this sink",
                existing.id
            ),
        ));
    }
    let (token, token_expire_at) = token.unzip();
    let sink = request.sink.clone();
    let created = engine
        .webhooks
        .create_subscription(
            &caller.tenant,
            NewSubscription {
                sink: request.sink,
                kinds: EventKind::ALL
                    .into_iter()
                    .filter(|k| k.changes_sim())
                    .collect(),
                expire_at: config.subscription_expire_time,
                max_events,
                token,
                token_expire_at,
                number: Some(number.e164),
                format: CloudEventFormat::Camara,
            },
        )
        .await
        .map_err(|e| camara_field(e, &sink))?;
    if prefers_async(&headers) {
        return Ok(accepted(&created.id));
    }
    Ok((StatusCode::CREATED, Json(representation(&created, false))).into_response())
}

/// Whether two sinks are one URL once normalised (`HTTPS://Host` is `https://host/`).
fn same_url(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The engine's refusal of a field, in CAMARA's names and codes. A sink that is not even
/// `https://` breaks the schema (INVALID_ARGUMENT); one that is, but that numguard may not
/// reach, is INVALID_SINK.
fn camara_field(error: EngineError, sink: &str) -> RestError {
    let EngineError::Invalid(f) = &error else {
        return error.into();
    };
    let (code, name) = match f.field {
        Field::Sink if sink.starts_with("https://") => (Code::InvalidSink, "sink"),
        Field::Sink => (Code::InvalidArgument, "sink"),
        Field::ExpireTime => (Code::InvalidArgument, "config.subscriptionExpireTime"),
        Field::TokenExpireTime => (
            Code::InvalidCredential,
            "sinkCredential.accessTokenExpiresUtc",
        ),
        _ => return error.into(),
    };
    RestError::new(code, format!("{name} {}", f.message))
}

pub async fn list(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Principal>,
) -> Result<Json<Value>, RestError> {
    let subscriptions = visible(&engine, &caller).await?;
    Ok(Json(Value::Array(
        subscriptions.into_iter().map(|(_, body)| body).collect(),
    )))
}

pub async fn get(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Principal>,
) -> Result<Json<Value>, RestError> {
    visible(&engine, &caller)
        .await?
        .into_iter()
        .find(|(found, _)| *found == id)
        .map(|(_, body)| Json(body))
        .ok_or_else(|| not_found(&id))
}

pub async fn delete(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    let camara = Some(CloudEventFormat::Camara);
    engine
        .webhooks
        .delete_subscription(&caller.tenant, &id, camara)
        .await
        .map_err(|e| match e {
            // Unknown, already ended, or not a CAMARA subscription: nothing to delete here.
            EngineError::NotFound(_) => not_found(&id),
            e => e.into(),
        })?;
    if prefers_async(&headers) {
        return Ok(accepted(&id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
