//! Client streams (IngestEvents, AuditNumbers) hold an in-flight place until they end, so a
//! stream whose client sends nothing for the idle limit is ended with DEADLINE_EXCEEDED:
//! its request body fails, tonic hands the handler that status, and the handler ends the
//! call with it (an ingest keeps what it committed and acknowledges nothing).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;
use tonic::Status;

use super::routes::GrpcRoutes;
use crate::middleware::{Answer, Transport};

/// `request` with its body limited to `limit` of silence when its route is a client
/// stream.
pub fn limit_idle(
    routes: &GrpcRoutes,
    limit: Duration,
    request: Request<tonic::body::Body>,
) -> Request<tonic::body::Body> {
    match routes.route(&request) {
        Some(route) if route.answer == Answer::Stream => {
            request.map(|body| tonic::body::Body::new(IdleLimited::new(body, limit)))
        }
        _ => request,
    }
}

/// A request body that fails when the server waits longer than `limit` for its next frame.
/// The clock runs only while the server waits: time the server spends on earlier
/// messages does not count against the client.
struct IdleLimited {
    body: tonic::body::Body,
    limit: Duration,
    waiting: Option<Pin<Box<Sleep>>>,
}

impl IdleLimited {
    fn new(body: tonic::body::Body, limit: Duration) -> Self {
        IdleLimited {
            body,
            limit,
            waiting: None,
        }
    }
}

impl Body for IdleLimited {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            self.waiting = None;
            return Poll::Ready(frame);
        }
        let limit = self.limit;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(waiting.as_mut().poll(cx));
        self.waiting = None;
        Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
            "the stream sent nothing for {} s and was closed (the server's \
             stream_idle_timeout_secs); open a new one to go on",
            limit.as_secs()
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
