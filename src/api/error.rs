//! The one place where error kinds become gRPC status codes.

use tonic::{Code, Status};

use crate::domain::FieldError;
use crate::engine::EngineError;
use crate::engine::auth::AuthError;
use crate::error::ErrorKind;
use crate::store::StoreError;

fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

pub fn status(kind: ErrorKind, message: impl Into<String>) -> Status {
    let message = message.into();
    if matches!(kind, ErrorKind::Unavailable | ErrorKind::Internal) {
        tracing::error!(error = %message, "request failed");
    }
    Status::new(code(kind), message)
}

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Self {
        status(e.kind(), e.to_string())
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        status(e.kind(), e.to_string())
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        status(e.kind(), e.to_string())
    }
}

impl From<FieldError> for Status {
    fn from(e: FieldError) -> Self {
        status(ErrorKind::InvalidArgument, e.to_string())
    }
}
