//! What the REST routes need of the admission layer ([`crate::middleware`]): each group's
//! scope, the server's deadline, and refusals written as CAMARA errors.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use axum::response::IntoResponse;

use super::error::{Code, RestError};
use crate::domain::auth::Scope;
use crate::middleware::{Answer, Refusal, Route, Transport};

/// A group of routes that all need `scope` and answer in one piece.
#[derive(Debug, Clone, Copy)]
pub struct RestRoutes {
    pub scope: Scope,
    pub deadline: Duration,
}

impl Transport for RestRoutes {
    type Body = Body;

    fn route<B>(&self, _: &Request<B>) -> Option<Route> {
        Some(Route {
            scopes: self.scope.into(),
            answer: Answer::Once(self.deadline),
        })
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
            scope: Scope::Check,
            deadline: Duration::from_millis(5),
        };
        let response = routes.refuse(refusal);
        let status = response.status().as_u16();
        let body =
            futures::executor::block_on(axum::body::to_bytes(response.into_body(), 4096)).unwrap();
        (status, serde_json::from_slice(&body).unwrap())
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
