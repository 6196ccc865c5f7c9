//! What every REST handler does with a request: admit its bearer key, read its JSON body
//! strictly (unknown properties are refused), and write times as CAMARA wants them.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;

use super::error::{Code, RestError};
use crate::domain::auth::Scope;
use crate::engine::Engine;
use crate::engine::auth::Admission;

/// Largest request body read; CAMARA bodies are a few hundred bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Admits the request if its `Authorization: Bearer` key has `scope`. The admission is
/// the request's in-flight permit: hold it until the answer is made.
pub async fn admit(
    engine: &Engine,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<Admission, RestError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    Ok(engine.admit(authorization, scope).await?)
}

/// The body as `T`; a body that is not JSON, or does not fit `T` (a wrong type, an
/// unknown property), is INVALID_ARGUMENT with serde's description of where.
pub async fn json<T: DeserializeOwned>(body: Body) -> Result<T, RestError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            RestError::new(
                Code::InvalidArgument,
                format!("the request body must be JSON of at most {MAX_BODY_BYTES} bytes"),
            )
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        RestError::new(
            Code::InvalidArgument,
            format!("the request body is not valid for this operation: {e}"),
        )
    })
}

/// RFC 3339 with milliseconds and `Z`, CAMARA's recommended form.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
