//! The one place where errors become CAMARA error responses: `{status, code, message}`
//! with the HTTP status CAMARA gives each code.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::FieldError;
use crate::domain::camara::Refusal;
use crate::engine::EngineError;
use crate::engine::auth::AuthError;
use crate::error::ErrorKind;

/// CAMARA's error codes, as this server uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    OutOfRange,
    InvalidProtocol,
    InvalidCredential,
    InvalidToken,
    InvalidSink,
    Unauthenticated,
    PermissionDenied,
    IdentifierNotFound,
    NotFound,
    MethodNotAllowed,
    ServiceNotApplicable,
    MissingIdentifier,
    AlreadyExists,
    TooManyRequests,
    Internal,
    Unavailable,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::InvalidProtocol => "INVALID_PROTOCOL",
            Code::InvalidCredential => "INVALID_CREDENTIAL",
            Code::InvalidToken => "INVALID_TOKEN",
            Code::InvalidSink => "INVALID_SINK",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::IdentifierNotFound => "IDENTIFIER_NOT_FOUND",
            Code::NotFound => "NOT_FOUND",
            Code::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Code::ServiceNotApplicable => "SERVICE_NOT_APPLICABLE",
            Code::MissingIdentifier => "MISSING_IDENTIFIER",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::TooManyRequests => "TOO_MANY_REQUESTS",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidArgument
            | Code::OutOfRange
            | Code::InvalidProtocol
            | Code::InvalidCredential
            | Code::InvalidToken
            | Code::InvalidSink => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::IdentifierNotFound | Code::NotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::ServiceNotApplicable | Code::MissingIdentifier => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Code::AlreadyExists => StatusCode::CONFLICT,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestError {
    pub code: Code,
    pub message: String,
    /// Seconds, for 429 answers.
    pub retry_after: Option<u64>,
}

impl RestError {
    pub fn new(code: Code, message: impl Into<String>) -> RestError {
        RestError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A CAMARA-well-formed number that is valid in no numbering plan: one numguard knows
    /// nothing about.
    pub fn unknown_number(why: &FieldError) -> RestError {
        RestError::new(Code::IdentifierNotFound, unknown_number_message(why))
    }

    fn of_kind(kind: ErrorKind, message: String) -> RestError {
        let code = match kind {
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::ResourceExhausted => Code::TooManyRequests,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Internal => Code::Internal,
        };
        RestError::new(code, message)
    }
}

/// Why a CAMARA-well-formed number is refused: valid in no numbering plan.
pub fn unknown_number_message(why: &FieldError) -> String {
    format!("numguard has no numbering plan or range for this number: {why}")
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        if status.is_server_error() {
            tracing::error!(error = %self.message, "REST request failed");
        }
        let body = json!({
            "status": status.as_u16(),
            "code": self.code.as_str(),
            "message": self.message,
        });
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<Refusal> for RestError {
    fn from(r: Refusal) -> Self {
        let code = match r {
            Refusal::MissingPhoneNumber => Code::MissingIdentifier,
            Refusal::MalformedPhoneNumber(_) => Code::InvalidArgument,
            Refusal::MaxAgeOutsideCamara(_)
            | Refusal::MaxAgeOverLimit { .. }
            | Refusal::WindowBeforeCoverage { .. }
            | Refusal::DateBeforeCoverage { .. }
            | Refusal::DateInFuture { .. } => Code::OutOfRange,
            Refusal::NotMobile => Code::ServiceNotApplicable,
            Refusal::NotCovered(_) => Code::IdentifierNotFound,
            Refusal::UpstreamUnavailable { .. } => Code::Unavailable,
        };
        RestError::new(code, r.to_string())
    }
}

impl From<FieldError> for RestError {
    fn from(e: FieldError) -> Self {
        RestError::new(Code::InvalidArgument, e.to_string())
    }
}

impl From<EngineError> for RestError {
    fn from(e: EngineError) -> Self {
        if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Internal) {
            tracing::error!(error = %e, "REST request failed");
        }
        RestError::of_kind(e.kind(), e.public_message())
    }
}

impl From<AuthError> for RestError {
    fn from(e: AuthError) -> Self {
        let retry_after = match &e {
            AuthError::RateLimited { retry_ms, .. } => Some(retry_ms.div_ceil(1000).max(1)),
            AuthError::Overloaded(_) => Some(1),
            _ => None,
        };
        let message = match &e {
            // The gRPC wording names metadata; over HTTP it is a header.
            AuthError::Missing => {
                "missing API key: send the header `Authorization: Bearer <key>`".to_string()
            }
            _ => e.public_message(),
        };
        RestError {
            retry_after,
            ..RestError::of_kind(e.kind(), message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_camara_codes() {
        let cases = [
            (Refusal::MissingPhoneNumber, 422, "MISSING_IDENTIFIER"),
            (
                Refusal::MalformedPhoneNumber("1".into()),
                400,
                "INVALID_ARGUMENT",
            ),
            (Refusal::MaxAgeOutsideCamara(0), 400, "OUT_OF_RANGE"),
            (
                Refusal::DateInFuture {
                    field: "tenureDate",
                },
                400,
                "OUT_OF_RANGE",
            ),
            (Refusal::NotMobile, 422, "SERVICE_NOT_APPLICABLE"),
            (
                Refusal::NotCovered("sim_swap: no source reports SIM_SWAP".into()),
                404,
                "IDENTIFIER_NOT_FOUND",
            ),
        ];
        for (refusal, status, code) in cases {
            let e = RestError::from(refusal);
            assert_eq!(e.code.status().as_u16(), status);
            assert_eq!(e.code.as_str(), code);
        }
    }

    #[test]
    fn rate_limits_say_when_to_retry() {
        let e = RestError::from(AuthError::RateLimited {
            limit: 10.0,
            retry_ms: 1200,
        });
        assert_eq!(e.code, Code::TooManyRequests);
        assert_eq!(e.retry_after, Some(2));
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
}
