//! Each RPC's needs, for the admission layer ([`crate::middleware`]): the scope its key
//! must have and how it answers. Health and reflection are open to anyone.

use std::time::Duration;

use http::{Request, Response};
use tonic::Status;

use crate::domain::auth::{Scope, Scopes};
use crate::middleware::{Answer, Refusal, Route, Transport};

/// The numguard services' RPCs, by path.
#[derive(Debug, Clone, Copy)]
pub struct GrpcRoutes {
    /// The server's deadline for unary RPCs (clients' own `grpc-timeout` deadlines are
    /// enforced by tonic as well).
    pub deadline: Duration,
}

impl Transport for GrpcRoutes {
    type Body = tonic::body::Body;

    fn route<B>(&self, request: &Request<B>) -> Option<Route> {
        let once = Answer::Once(self.deadline);
        let (scopes, answer): (Scopes, _) =
            match request.uri().path().strip_prefix("/numguard.v1.")? {
                "NumberCheck/CheckNumber" => (Scope::Check.into(), once),
                "NumberCheck/AuditNumbers" => (Scope::Audit.into(), Answer::Stream),
                "Events/IngestEvents" => (Scope::Ingest.into(), Answer::Stream),
                "Events/ListEvents" => (Scope::Admin.into(), once),
                "Admin/UpsertSource"
                | "Admin/ListSources"
                | "Admin/ListCarriers"
                | "Admin/GetCarrier"
                | "Admin/UpsertCarrier"
                | "Admin/AddCarrierAliases"
                | "Admin/ImportRanges" => (Scope::Admin.into(), once),
                "Admin/Heartbeat" => (Scope::Ingest | Scope::Admin, once),
                "Admin/LookupRange" => (Scope::Check | Scope::Admin, once),
                "Alerts/UpsertWatch"
                | "Alerts/RemoveWatch"
                | "Alerts/ListWatch"
                | "Alerts/CreateSubscription"
                | "Alerts/ListSubscriptions"
                | "Alerts/DeleteSubscription"
                | "Alerts/RetrySubscription" => (Scope::Watch.into(), once),
                "Alerts/WatchAlerts" => (Scope::Watch.into(), Answer::Subscription),
                // Unknown methods reach tonic, which answers UNIMPLEMENTED.
                _ => return None,
            };
        Some(Route { scopes, answer })
    }

    fn refuse(&self, refusal: Refusal) -> Response<Self::Body> {
        let status = match refusal {
            Refusal::Auth(e) => Status::from(e),
            deadline @ Refusal::Deadline(_) => Status::deadline_exceeded(deadline.to_string()),
        };
        status.into_http()
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::*;
    use crate::api::pb::FILE_DESCRIPTOR_SET;

    fn route_of(path: &str) -> Option<Route> {
        let routes = GrpcRoutes {
            deadline: Duration::from_secs(3),
        };
        routes.route(&Request::builder().uri(path).body(()).unwrap())
    }

    /// Every RPC of the contract is admitted, with a deadline exactly when it is unary: a
    /// new RPC without a row here would otherwise be refused as not admitted.
    #[test]
    fn every_rpc_has_a_route_and_only_unary_ones_a_deadline() {
        let files = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let mut seen = 0;
        for file in files.file.iter().filter(|f| f.package() == "numguard.v1") {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/numguard.v1.{}/{}", service.name(), method.name());
                    let route = route_of(&path).unwrap_or_else(|| panic!("{path} has no route"));
                    let unary = !method.client_streaming() && !method.server_streaming();
                    assert_eq!(
                        matches!(route.answer, Answer::Once(_)),
                        unary,
                        "{path}: {route:?}"
                    );
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 21);
    }

    #[test]
    fn a_request_past_the_deadline_ends_with_deadline_exceeded() {
        let routes = GrpcRoutes {
            deadline: Duration::from_millis(10),
        };
        let response = routes.refuse(Refusal::Deadline(Duration::from_millis(10)));
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(status.message().contains("10 ms"));
    }

    #[test]
    fn health_reflection_and_unknown_methods_pass_unadmitted() {
        for path in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/numguard.v1.Admin/NoSuchMethod",
        ] {
            assert_eq!(route_of(path), None, "{path}");
        }
        assert_eq!(
            route_of("/numguard.v1.Alerts/WatchAlerts").map(|r| r.answer),
            Some(Answer::Subscription)
        );
    }
}
