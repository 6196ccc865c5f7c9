//! What the REST routes need of the admission layer ([`crate::middleware`]): each path's
//! scope, the server's deadline, and refusals written as CAMARA errors. Other paths (the
//! OpenAPI documents, unknown paths) are open to anyone.

use std::borrow::Cow;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use axum::response::IntoResponse;

use super::error::{Code, RestError};
use crate::domain::auth::Scope;
use crate::middleware::{Answer, Refusal, Route, Transport};

/// The CAMARA paths numguard serves, by path; every one answers in one piece.
#[derive(Debug, Clone, Copy)]
pub struct RestRoutes {
    pub deadline: Duration,
}

/// The scope a path needs; `None` for paths open to anyone.
const SUBSCRIPTIONS: &str = "/sim-swap-subscriptions/v0.3/subscriptions";

fn scope(path: &str) -> Option<Scope> {
    match path {
        "/sim-swap/v2/check"
        | "/sim-swap/v2/retrieve-date"
        | "/number-recycling/v0.2/check"
        | "/kyc-tenure/v0.2/check-tenure"
        | "/device-swap/v1/check"
        | "/device-swap/v1/retrieve-date" => Some(Scope::Check),
        SUBSCRIPTIONS => Some(Scope::Watch),
        _ => path
            .strip_prefix(SUBSCRIPTIONS)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .map(|_| Scope::Watch),
    }
}

impl Transport for RestRoutes {
    type Body = Body;

    fn route<B>(&self, request: &Request<B>) -> Option<Route> {
        Some(Route {
            scopes: scope(request.uri().path())?.into(),
            answer: Answer::Once(self.deadline),
        })
    }

    fn metric_name<'r, B>(&self, request: &'r Request<B>) -> Cow<'r, str> {
        let path = request.uri().path();
        match path.strip_prefix(SUBSCRIPTIONS) {
            Some(rest) if !rest.is_empty() => Cow::Owned(format!("{SUBSCRIPTIONS}/{{id}}")),
            _ => Cow::Borrowed(path),
        }
    }

    fn refuse(&self, refusal: Refusal) -> Response<Body> {
        let error = match refusal {
            Refusal::Auth(e) => RestError::from(e),
            // CAMARA declares no timeout code; the server could not answer in time.
            deadline @ Refusal::Deadline(_) => {
                RestError::new(Code::Unavailable, deadline.to_string())
            }
        };
        error.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::auth::AuthError;

    fn refused(refusal: Refusal) -> (u16, serde_json::Value) {
        let routes = RestRoutes {
            deadline: Duration::from_millis(5),
        };
        let response = routes.refuse(refusal);
        let status = response.status().as_u16();
        let body =
            futures::executor::block_on(axum::body::to_bytes(response.into_body(), 4096)).unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn paths_name_their_scope() {
        assert_eq!(scope("/sim-swap/v2/check"), Some(Scope::Check));
        assert_eq!(scope("/device-swap/v1/retrieve-date"), Some(Scope::Check));
        let subscriptions = "/sim-swap-subscriptions/v0.3/subscriptions";
        assert_eq!(scope(subscriptions), Some(Scope::Watch));
        assert_eq!(scope(&format!("{subscriptions}/42")), Some(Scope::Watch));
        assert_eq!(scope(&format!("{subscriptions}/")), None);
        assert_eq!(scope(&format!("{subscriptions}/42/x")), None);
        assert_eq!(scope("/sim-swap/v2/openapi.yaml"), None);
        assert_eq!(scope("/sim-swap/v2/other"), None);
    }

    #[test]
    fn refusals_are_camara_errors() {
        let (status, body) = refused(Refusal::Deadline(Duration::from_millis(5)));
        assert_eq!(status, 503);
        assert_eq!(body["code"], "UNAVAILABLE");
        assert!(body["message"].as_str().unwrap().contains("5 ms"));
        let (status, body) = refused(Refusal::Auth(AuthError::Missing));
        assert_eq!(status, 401);
        assert_eq!(body["code"], "UNAUTHENTICATED");
    }
}
