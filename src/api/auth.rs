//! Admission of each RPC: the bearer key from the metadata, checked for a scope.

use tonic::{Request, Status};

use crate::domain::auth::Scope;
use crate::engine::Engine;
use crate::engine::auth::Admission;

/// Admits `request` if its key has `scope`; the admission must be held until the answer
/// is sent (it is the request's in-flight permit).
pub async fn admit<T>(
    engine: &Engine,
    request: &Request<T>,
    scope: Scope,
) -> Result<Admission, Status> {
    let authorization = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    Ok(engine.admit(authorization, scope).await?)
}
