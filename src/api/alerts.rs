//! `numguard.v1.Alerts`: watchlists and alert streams, per tenant (scope `watch`).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth::admit;
use super::convert::{
    check_response, kinds_from_pb, optional_datetime, page_size, stored_event, timestamp,
};
use super::pb;
use super::within;
use crate::domain::auth::Scope;
use crate::domain::owner_since::OwnerSince;
use crate::engine::Engine;
use crate::engine::alerts::RawWatch;
use crate::store::WatchRecord;

pub struct AlertsApi {
    engine: Arc<Engine>,
}

impl AlertsApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        AlertsApi { engine }
    }

    fn limit(&self) -> std::time::Duration {
        self.engine.config().request_timeout
    }

    fn entry_to_pb(&self, w: WatchRecord) -> pb::WatchEntry {
        let (start, date) = match w.owner_since {
            OwnerSince::At(at) => (at, String::new()),
            OwnerSince::Day { start, .. } => {
                let local = start.with_timezone(&self.engine.config().date_zone);
                (start, local.date_naive().format("%Y-%m-%d").to_string())
            }
        };
        pb::WatchEntry {
            customer_ref: w.customer_ref,
            phone_number: w.number.to_string(),
            region: String::new(),
            owner_since: Some(timestamp(start)),
            owner_since_date: date,
        }
    }

    async fn upsert(
        &self,
        request: Request<pb::UpsertWatchRequest>,
    ) -> Result<Response<pb::UpsertWatchResponse>, Status> {
        let admission = admit(&self.engine, &request, Scope::Watch).await?;
        let mut entries = Vec::new();
        let mut bad_times = Vec::new();
        for (i, e) in request.into_inner().entries.into_iter().enumerate() {
            match optional_datetime("owner_since", e.owner_since.as_ref()) {
                Ok(owner_since) => entries.push(RawWatch {
                    customer_ref: e.customer_ref,
                    phone_number: e.phone_number,
                    region: e.region,
                    owner_since,
                    owner_since_date: e.owner_since_date,
                }),
                // Keeps its index: an entry that fails here is left out of the rest.
                Err(err) => {
                    bad_times.push((i, err));
                    entries.push(RawWatch::default());
                }
            }
        }
        let (upserted, mut errors) = self
            .engine
            .upsert_watch(&admission.principal.tenant, entries)
            .await?;
        for (i, err) in bad_times {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            match errors.iter_mut().find(|(at, _)| *at == index) {
                Some(slot) => slot.1 = err.to_string(),
                None => errors.push((index, err.to_string())),
            }
        }
        errors.sort_by_key(|(i, _)| *i);
        Ok(Response::new(pb::UpsertWatchResponse {
            upserted,
            errors: errors
                .into_iter()
                .map(|(index, reason)| pb::WatchError { index, reason })
                .collect(),
        }))
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveWatchRequest>,
    ) -> Result<Response<pb::RemoveWatchResponse>, Status> {
        let admission = admit(&self.engine, &request, Scope::Watch).await?;
        let refs = request.into_inner().customer_refs;
        let removed = self
            .engine
            .remove_watch(&admission.principal.tenant, &refs)
            .await?;
        Ok(Response::new(pb::RemoveWatchResponse { removed }))
    }

    async fn list(
        &self,
        request: Request<pb::ListWatchRequest>,
    ) -> Result<Response<pb::ListWatchResponse>, Status> {
        let admission = admit(&self.engine, &request, Scope::Watch).await?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let after = (!req.page_token.is_empty()).then_some(req.page_token.as_str());
        let (page, next) = self
            .engine
            .list_watch(&admission.principal.tenant, after, limit)
            .await?;
        Ok(Response::new(pb::ListWatchResponse {
            entries: page.into_iter().map(|w| self.entry_to_pb(w)).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }
}

type AlertStream = Pin<Box<dyn Stream<Item = Result<pb::Alert, Status>> + Send>>;

#[tonic::async_trait]
impl pb::alerts_server::Alerts for AlertsApi {
    async fn upsert_watch(
        &self,
        request: Request<pb::UpsertWatchRequest>,
    ) -> Result<Response<pb::UpsertWatchResponse>, Status> {
        within(self.limit(), self.upsert(request)).await
    }

    async fn remove_watch(
        &self,
        request: Request<pb::RemoveWatchRequest>,
    ) -> Result<Response<pb::RemoveWatchResponse>, Status> {
        within(self.limit(), self.remove(request)).await
    }

    async fn list_watch(
        &self,
        request: Request<pb::ListWatchRequest>,
    ) -> Result<Response<pb::ListWatchResponse>, Status> {
        within(self.limit(), self.list(request)).await
    }

    type WatchAlertsStream = AlertStream;

    async fn watch_alerts(
        &self,
        request: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        // A stream lives long: it is admitted (key, scope, rate) but does not hold one of
        // the in-flight places meant for requests.
        let principal = admit(&self.engine, &request, Scope::Watch).await?.principal;
        let req = request.into_inner();
        let kinds = kinds_from_pb(&req.kinds)?;
        let alerts = self
            .engine
            .alerts(principal.tenant.clone(), req.resume_after, kinds)
            .await?;
        let precision = principal.precision;
        let stream = ReceiverStream::new(alerts).map(move |alert| {
            let alert = alert?;
            let number = alert.event.event.number.clone();
            Ok(pb::Alert {
                cursor: alert.cursor,
                customer_refs: alert.customer_refs,
                phone_number: number.to_string(),
                event: Some(stored_event(alert.event)),
                check: Some(check_response(&number, alert.decision, precision)),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
