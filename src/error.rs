//! The few kinds of failure a client can tell apart. Each error type says which kind it
//! is; the API layers map kinds to wire codes in one place each.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input; the message names the field and the rule.
    InvalidArgument,
    NotFound,
    /// No credentials, or unknown ones.
    Unauthenticated,
    /// Valid credentials without the needed scope.
    PermissionDenied,
    ResourceExhausted,
    /// A dependency (the database) is down; never answered with a made-up result.
    Unavailable,
    Internal,
}
