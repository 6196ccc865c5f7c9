//! The caller of an RPC, as the admission layer ([`crate::middleware`]) admitted it.

use tonic::{Request, Status};

use crate::engine::auth::Principal;

/// The request's admitted caller and its message. Every numguard RPC passes the admission
/// layer, so a request without a caller is a wiring fault, answered INTERNAL.
pub fn admitted<T>(request: Request<T>) -> Result<(Principal, T), Status> {
    let (_, mut extensions, message) = request.into_parts();
    let caller = extensions
        .remove::<Principal>()
        .ok_or_else(|| Status::internal("the request was not admitted"))?;
    Ok((caller, message))
}
