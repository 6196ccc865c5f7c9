//! CAMARA SIM Swap v2, Device Swap v1, Number Recycling v0.2 and KYC Tenure v0.2: each
//! question is one `CheckNumber` decision, read the CAMARA way (see
//! [`crate::domain::camara`]).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{Code, RestError};
use super::request::{json, time};
use crate::domain::Field;
use crate::domain::camara::{self, Swap};
use crate::domain::decision::{Decision, MaxAge};
use crate::domain::owner_since::OwnerSince;
use crate::engine::auth::Principal;
use crate::engine::{CheckRequest, Engine, EngineError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CheckBody {
    phone_number: Option<String>,
    /// Absent (the default window) is not `null`, which the schema's integer refuses.
    #[serde(default, deserialize_with = "present")]
    max_age: Option<Option<i64>>,
}

/// A field that was sent, `null` included.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RetrieveDateBody {
    phone_number: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RecyclingBody {
    phone_number: Option<String>,
    specified_date: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TenureBody {
    phone_number: Option<String>,
    tenure_date: String,
}

/// Reads the number CAMARA's way and decides for the admitted caller. A well-formed
/// number that is valid in no numbering plan is one numguard knows nothing about:
/// IDENTIFIER_NOT_FOUND.
async fn decide(
    engine: &Engine,
    caller: &Principal,
    phone_number: Option<&str>,
    max_age: MaxAge,
    specified_date: &str,
) -> Result<Decision, RestError> {
    let phone_number = camara::phone_number(phone_number)?;
    let request = CheckRequest {
        phone_number,
        max_age_hours: max_age.hours(),
        owner_since_date: specified_date,
        ..CheckRequest::default()
    };
    let (_, decision) = engine
        .checks
        .check(&caller.tenant, &request)
        .await
        .map_err(|e| match e {
            EngineError::Invalid(f) if f.field == Field::PhoneNumber => {
                RestError::unknown_number(&f)
            }
            e => e.into(),
        })?;
    Ok(decision)
}

/// SIM Swap or Device Swap: the same two operations on different events.
pub trait SwapApi {
    const SWAP: Swap;
    /// The retrieve-date answer's field.
    const DATE_FIELD: &'static str;
}

pub struct SimSwapApi;

impl SwapApi for SimSwapApi {
    const SWAP: Swap = Swap::Sim;
    const DATE_FIELD: &'static str = "latestSimChange";
}

pub struct DeviceSwapApi;

impl SwapApi for DeviceSwapApi {
    const SWAP: Swap = Swap::Device;
    const DATE_FIELD: &'static str = "latestDeviceChange";
}

type Reply = Result<Json<Value>, RestError>;

pub async fn swap_check<A: SwapApi>(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Principal>,
    body: Body,
) -> Reply {
    let body: CheckBody = json(body).await?;
    let max_age = match body.max_age {
        Some(None) => {
            return Err(RestError::new(
                Code::InvalidArgument,
                "maxAge must be an integer, not null",
            ));
        }
        given => camara::max_age(given.flatten(), engine.config().max_lookback_hours)?,
    };
    let number = body.phone_number.as_deref();
    let decision = decide(&engine, &caller, number, max_age, "").await?;
    Ok(Json(
        json!({ "swapped": camara::swapped(&decision, A::SWAP)? }),
    ))
}

pub async fn swap_retrieve_date<A: SwapApi>(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Principal>,
    body: Body,
) -> Reply {
    let body: RetrieveDateBody = json(body).await?;
    let max_age = camara::max_age(None, engine.config().max_lookback_hours)?;
    let number = body.phone_number.as_deref();
    let decision = decide(&engine, &caller, number, max_age, "").await?;
    let latest = camara::latest_change(&decision, A::SWAP)?;
    let at = match latest.at {
        // A tenant told times only to the day, or not at all, is told no more here.
        Some(t) => Some(caller.precision.apply(t).ok_or_else(|| {
            RestError::new(
                Code::PermissionDenied,
                "this key's tenant may not be told when a change happened",
            )
        })?),
        None => None,
    };
    let mut answer = json!({ A::DATE_FIELD: at.map(time) });
    if let Some(days) = latest.monitored_days {
        answer["monitoredPeriod"] = json!(days);
    }
    Ok(Json(answer))
}

/// The decision on whether the number changed hands since the date-only `date`, sent in
/// the request's `field`, and that date as an `owner_since`.
async fn since_date(
    engine: &Engine,
    caller: &Principal,
    phone_number: Option<&str>,
    field: &str,
    date: &str,
) -> Result<(Decision, OwnerSince), RestError> {
    let since = engine
        .checks
        .owner_since(None, date)
        .map_err(|e| RestError::new(Code::InvalidArgument, format!("{field}: {}", e.message)))?
        .ok_or_else(|| RestError::new(Code::InvalidArgument, format!("{field} is empty")))?;
    let max_age = camara::max_age(None, engine.config().max_lookback_hours)?;
    let decision = decide(engine, caller, phone_number, max_age, date).await?;
    Ok((decision, since))
}

pub async fn number_recycling_check(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Principal>,
    body: Body,
) -> Reply {
    let body: RecyclingBody = json(body).await?;
    let number = body.phone_number.as_deref();
    let (decision, since) = since_date(
        &engine,
        &caller,
        number,
        "specifiedDate",
        &body.specified_date,
    )
    .await?;
    Ok(Json(json!({
        "phoneNumberRecycled": camara::recycled(&decision, &since)?,
    })))
}

/// `contractType` is never given: no source numguard reads reports it.
pub async fn kyc_tenure_check(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Principal>,
    body: Body,
) -> Reply {
    let body: TenureBody = json(body).await?;
    let number = body.phone_number.as_deref();
    let (decision, since) =
        since_date(&engine, &caller, number, "tenureDate", &body.tenure_date).await?;
    Ok(Json(json!({
        "tenureDateCheck": camara::tenure_held(&decision, &since)?,
    })))
}
