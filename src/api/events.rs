//! `numguard.v1.Events`.

use std::sync::Arc;

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{kinds_from_pb, optional_datetime, page_size, raw_event, stored_event};
use super::pb;
use crate::domain::Field;
use crate::domain::FieldError;
use crate::engine::Engine;
use crate::store::{EventCursor, EventQuery};

pub struct EventsApi {
    engine: Arc<Engine>,
}

impl EventsApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        EventsApi { engine }
    }
}

#[tonic::async_trait]
impl pb::events_server::Events for EventsApi {
    async fn ingest_events(
        &self,
        request: Request<Streaming<pb::Event>>,
    ) -> Result<Response<pb::IngestSummary>, Status> {
        let mut stream = request.into_inner();
        let mut session = self.engine.ingest.session();
        let mut index = 0u64;
        // A transport error ends the stream: what was committed stays, nothing is
        // acknowledged, and a re-send is deduplicated.
        while let Some(message) = stream.next().await {
            match raw_event(message?) {
                Ok(raw) => session.push(index, raw).await?,
                Err(e) => session.reject(index, e.to_string()),
            }
            index += 1;
        }
        let summary = session.finish().await?;
        tracing::info!(
            accepted = summary.accepted,
            duplicates = summary.duplicates,
            rejected = summary.rejected,
            "ingest stream done"
        );
        Ok(Response::new(pb::IngestSummary {
            accepted: summary.accepted,
            duplicates: summary.duplicates,
            rejected: summary.rejected,
            errors: summary
                .errors
                .into_iter()
                .map(|(index, reason)| pb::IngestError { index, reason })
                .collect(),
        }))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        self.list(request).await
    }
}

impl EventsApi {
    async fn list(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        // Raw event histories are operator data, not a tenant's.
        let req = request.into_inner();
        let number = if req.phone_number.trim().is_empty() {
            None
        } else {
            Some(
                self.engine
                    .checks
                    .parse_number(Field::PhoneNumber, &req.phone_number, &req.region)?
                    .e164,
            )
        };
        let kinds = kinds_from_pb(&req.kinds)?;
        let limit = page_size(req.page_size)?;
        let query = EventQuery {
            number,
            kinds,
            since: optional_datetime(Field::Since, req.since.as_ref())?,
            until: optional_datetime(Field::Until, req.until.as_ref())?,
            after: decode_page_token(&req.page_token)?,
            limit,
        };
        let page = self.engine.admin.list_events(query).await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: page.events.into_iter().map(stored_event).collect(),
            next_page_token: page.next.map(encode_page_token).unwrap_or_default(),
        }))
    }
}

/// Tokens are opaque to clients; inside they are `<occurred_at µs>.<id>`.
fn encode_page_token(c: EventCursor) -> String {
    format!("{}.{}", c.occurred_at.timestamp_micros(), c.id)
}

fn decode_page_token(token: &str) -> Result<Option<EventCursor>, FieldError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || FieldError::new(Field::PageToken, "is not a token this server issued");
    let (micros, id) = token.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let id: i64 = id.parse().map_err(|_| bad())?;
    let occurred_at = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok(Some(EventCursor { occurred_at, id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let c = EventCursor {
            occurred_at: chrono::DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap(),
            id: 42,
        };
        assert_eq!(decode_page_token(&encode_page_token(c)).unwrap(), Some(c));
        assert_eq!(decode_page_token("").unwrap(), None);
        for bad in ["x", "1.", ".1", "1.2.3", "a.b"] {
            assert_eq!(decode_page_token(bad).unwrap_err().field, Field::PageToken);
        }
    }
}
