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
    failure(kind, &message, message.clone())
}

/// A failure as the client sees it: `public` only. A failure of the server's own (internal,
/// or its database unavailable) is logged at ERROR with its whole `cause`.
fn failure(kind: ErrorKind, cause: &dyn std::fmt::Display, public: String) -> Status {
    if matches!(kind, ErrorKind::Unavailable | ErrorKind::Internal) {
        tracing::error!(error = %cause, "request failed");
    }
    Status::new(code(kind), public)
}

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Self {
        failure(e.kind(), &e, e.public_message())
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        failure(e.kind(), &e, e.public_message())
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        failure(e.kind(), &e, e.public_message())
    }
}

impl From<FieldError> for Status {
    fn from(e: FieldError) -> Self {
        status(ErrorKind::InvalidArgument, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_never_see_the_database_s_words() {
        let secret = || sqlx::Error::Protocol("relation \"api_keys\" at 10.0.0.7".into());
        let internal = Status::from(StoreError::Other(secret()));
        assert_eq!(internal.code(), Code::Internal);
        assert_eq!(internal.message(), "internal error");
        let down = Status::from(EngineError::Store(StoreError::ReadOnly(secret())));
        assert_eq!(down.code(), Code::Unavailable);
        assert!(!down.message().contains("10.0.0.7"), "{}", down.message());
        assert!(down.message().contains("read-only"), "{}", down.message());
        let auth = Status::from(AuthError::Store(StoreError::Unavailable(secret())));
        assert_eq!(auth.message(), "database unavailable; retry later");
    }
}
