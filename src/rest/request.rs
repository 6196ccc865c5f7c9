//! What every REST handler does with a request: read its JSON body strictly (unknown
//! properties are refused), and write times as CAMARA wants them.

use axum::body::Body;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;

use super::error::{Code, RestError};

/// Largest request body read; CAMARA bodies are a few hundred bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

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
