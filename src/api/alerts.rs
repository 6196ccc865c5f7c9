//! `numguard.v1.Alerts`: watchlists and alert streams, per tenant (scope `watch`).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::auth::admitted;
use super::convert::{
    alert_start_from_pb, check_response, kind_to_pb, kinds_from_pb, optional_datetime, page_size,
    stored_event, timestamp,
};
use super::pb;
use crate::domain::Field;
use crate::domain::owner_since::OwnerSince;
use crate::domain::subscription::{DeliveryReport, Subscription};
use crate::domain::watch::WatchEntry;
use crate::engine::Engine;
use crate::engine::alerts::RawWatch;
use crate::engine::webhooks::NewSubscription;

pub struct AlertsApi {
    engine: Arc<Engine>,
}

impl AlertsApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        AlertsApi { engine }
    }

    fn entry_to_pb(&self, w: WatchEntry) -> pb::WatchEntry {
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
        let (caller, req) = admitted(request)?;
        let mut entries = Vec::new();
        let mut bad_times = Vec::new();
        for (i, e) in req.entries.into_iter().enumerate() {
            match optional_datetime(Field::OwnerSince, e.owner_since.as_ref()) {
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
            .alerts
            .upsert_watch(&caller.tenant, entries)
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
        let (caller, req) = admitted(request)?;
        let refs = req.customer_refs;
        let removed = self
            .engine
            .alerts
            .remove_watch(&caller.tenant, &refs)
            .await?;
        Ok(Response::new(pb::RemoveWatchResponse { removed }))
    }

    async fn list(
        &self,
        request: Request<pb::ListWatchRequest>,
    ) -> Result<Response<pb::ListWatchResponse>, Status> {
        let (caller, req) = admitted(request)?;
        let limit = page_size(req.page_size)?;
        let after = (!req.page_token.is_empty()).then_some(req.page_token.as_str());
        let (page, next) = self
            .engine
            .alerts
            .list_watch(&caller.tenant, after, limit)
            .await?;
        Ok(Response::new(pb::ListWatchResponse {
            entries: page.into_iter().map(|w| self.entry_to_pb(w)).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }
}

fn subscription_to_pb(s: Subscription) -> pb::Subscription {
    let active = s.is_active();
    pb::Subscription {
        id: s.id,
        sink: s.sink,
        kinds: s.kinds.into_iter().map(|k| kind_to_pb(k).into()).collect(),
        expire_time: s.expire_at.map(timestamp),
        max_events: s.max_events.unwrap_or(0),
        sent: s.sent,
        active,
        ended_reason: s.ended_reason.unwrap_or_default(),
        phone_number: s.number.map(|n| n.as_str().to_string()).unwrap_or_default(),
        format: s.format.as_str().to_string(),
        delivery: None,
    }
}

fn delivery_to_pb(report: DeliveryReport) -> pb::DeliveryState {
    let d = report.state;
    pb::DeliveryState {
        delivered: d.delivered,
        pending: d.pending,
        failed_attempts: d.failed_attempts,
        last_success: d.last_success.map(timestamp),
        last_error: d.last_error.unwrap_or_default(),
        next_attempt: d.next_attempt.map(timestamp),
        oldest_pending: d.oldest_pending.map(timestamp),
        failing_since: d.failing_since.map(timestamp),
        failing: report.failing,
    }
}

impl AlertsApi {
    async fn create(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        let (caller, req) = admitted(request)?;
        let new = NewSubscription {
            sink: req.sink,
            kinds: kinds_from_pb(&req.kinds)?,
            expire_at: optional_datetime(Field::ExpireTime, req.expire_time.as_ref())?,
            max_events: Some(req.max_events),
            token: Some(req.sink_token),
            ..NewSubscription::default()
        };
        let created = self
            .engine
            .webhooks
            .create_subscription(&caller.tenant, new)
            .await?;
        Ok(Response::new(subscription_to_pb(created)))
    }

    async fn list_subs(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let (caller, _) = admitted(request)?;
        let subscriptions = self
            .engine
            .webhooks
            .list_subscriptions(&caller.tenant)
            .await?;
        let mut states = self.engine.webhooks.delivery_states(&caller.tenant).await?;
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: subscriptions
                .into_iter()
                .map(|s| {
                    let state = states.remove(&s.id).unwrap_or_default();
                    pb::Subscription {
                        delivery: Some(delivery_to_pb(state)),
                        ..subscription_to_pb(s)
                    }
                })
                .collect(),
        }))
    }

    async fn delete_sub(
        &self,
        request: Request<pb::DeleteSubscriptionRequest>,
    ) -> Result<Response<pb::DeleteSubscriptionResponse>, Status> {
        let (caller, req) = admitted(request)?;
        let id = req.id;
        self.engine
            .webhooks
            .delete_subscription(&caller.tenant, &id, None)
            .await?;
        Ok(Response::new(pb::DeleteSubscriptionResponse {}))
    }

    async fn retry_sub(
        &self,
        request: Request<pb::RetrySubscriptionRequest>,
    ) -> Result<Response<pb::RetrySubscriptionResponse>, Status> {
        let (caller, req) = admitted(request)?;
        let retried = self
            .engine
            .webhooks
            .retry_subscription(&caller.tenant, &req.id)
            .await?;
        Ok(Response::new(pb::RetrySubscriptionResponse { retried }))
    }
}

/// Response header of WatchAlerts: the cursor the stream starts after, so that a client
/// that reconnects before its first alert resumes there instead of losing the gap.
pub const START_CURSOR_HEADER: &str = "numguard-start-cursor";

type AlertStream = Pin<Box<dyn Stream<Item = Result<pb::Alert, Status>> + Send>>;

#[tonic::async_trait]
impl pb::alerts_server::Alerts for AlertsApi {
    async fn upsert_watch(
        &self,
        request: Request<pb::UpsertWatchRequest>,
    ) -> Result<Response<pb::UpsertWatchResponse>, Status> {
        self.upsert(request).await
    }

    async fn remove_watch(
        &self,
        request: Request<pb::RemoveWatchRequest>,
    ) -> Result<Response<pb::RemoveWatchResponse>, Status> {
        self.remove(request).await
    }

    async fn list_watch(
        &self,
        request: Request<pb::ListWatchRequest>,
    ) -> Result<Response<pb::ListWatchResponse>, Status> {
        self.list(request).await
    }

    async fn create_subscription(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        self.create(request).await
    }

    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        self.list_subs(request).await
    }

    async fn delete_subscription(
        &self,
        request: Request<pb::DeleteSubscriptionRequest>,
    ) -> Result<Response<pb::DeleteSubscriptionResponse>, Status> {
        self.delete_sub(request).await
    }

    async fn retry_subscription(
        &self,
        request: Request<pb::RetrySubscriptionRequest>,
    ) -> Result<Response<pb::RetrySubscriptionResponse>, Status> {
        self.retry_sub(request).await
    }

    type WatchAlertsStream = AlertStream;

    async fn watch_alerts(
        &self,
        request: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let (principal, req) = admitted(request)?;
        let kinds = kinds_from_pb(&req.kinds)?;
        let start = alert_start_from_pb(&req)?;
        let (after, alerts) = self
            .engine
            .alerts
            .alerts(principal.tenant.clone(), start, kinds)
            .await?;
        let precision = principal.precision;
        let open = crate::metrics::AlertStreamOpen::start();
        let stream = alerts.map(move |alert| {
            let _counted = &open; // the stream counts as open until it is dropped
            let alert = alert?;
            let number = &alert.event.event.number;
            Ok(pb::Alert {
                cursor: alert.cursor,
                customer_refs: alert.customer_refs.clone(),
                phone_number: number.to_string(),
                event: Some(stored_event(alert.event.clone())),
                check: Some(check_response(number, alert.decision.clone(), precision)),
            })
        });
        let mut response = Response::new(Box::pin(stream) as Self::WatchAlertsStream);
        response
            .metadata_mut()
            .insert(START_CURSOR_HEADER, after.into());
        Ok(response)
    }
}
