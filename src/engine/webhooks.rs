//! Webhook subscriptions: a tenant's alerts (or, for a CAMARA subscription, one number's
//! SIM changes) POSTed to an HTTPS sink as CloudEvents 1.0 — at least once, retried with
//! exponential backoff, the queue kept in the database so a restart resumes it. A
//! subscription ends when it expires, reaches `max_events`, is deleted, its sink token
//! expires (each sends a `subscription-ended` event) or its sink answers 410 Gone.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::EngineError;
use super::alerts::AlertService;
use super::availability::Availability;
use super::cloud_events::{self, Queued};
use super::commits::Commits;
use super::delivery_scheduler::{DeliveryScheduler, Outcome, backoff};
use crate::domain::Field;
use crate::domain::FieldError;
use crate::domain::auth::{TenantName, hex};
use crate::domain::event::EventKind;
use crate::domain::number::E164;
use crate::domain::subscription::{CloudEventFormat, DeliveryReport, Subscription};
use crate::domain::text::plain_text;
use crate::egress::Egress;
use crate::server_key::ServerKey;
use crate::store::{
    Advance, Delivery, DeliveryBacklog, EventStore, SubscriptionRecord, SubscriptionStore,
};

/// The dispatcher looks for new alerts and due deliveries at least this often.
const TICK: Duration = Duration::from_millis(200);
/// Queue heads read per look; the scheduler starts what fits.
const DUE_PER_TICK: u32 = 500;
const SINK_TIMEOUT: Duration = Duration::from_secs(10);
const SINK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `ended_reason` of a subscription past its `expire_at`.
pub const ENDED_EXPIRED: &str = "SUBSCRIPTION_EXPIRED";
/// `ended_reason` of a subscription that sent its `max_events`.
pub const ENDED_MAX_EVENTS: &str = "MAX_EVENTS_REACHED";
/// `ended_reason` of a deleted subscription.
pub const ENDED_DELETED: &str = "SUBSCRIPTION_DELETED";
/// `ended_reason` of a subscription whose sink token expired.
pub const ENDED_TOKEN_EXPIRED: &str = "ACCESS_TOKEN_EXPIRED";
/// Events scanned per store query for a subscription.
const SCAN_PAGE: u32 = 1_000;
/// Pages fed per subscription per tick; a longer backlog goes on at the next tick.
const FEED_PAGES: usize = 10;

/// A subscription as asked for.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    /// Where events are POSTed: https, or http on loopback.
    pub sink: String,
    /// The kinds sent; empty means all.
    pub kinds: Vec<EventKind>,
    /// When it ends, if it does.
    pub expire_at: Option<DateTime<Utc>>,
    /// It ends once this many events were sent.
    pub max_events: Option<u64>,
    /// Bearer token sent to the sink.
    pub token: Option<String>,
    /// When the token stops working; the subscription ends then.
    pub token_expire_at: Option<DateTime<Utc>>,
    /// One number's events rather than the watchlist's alerts.
    pub number: Option<E164>,
    /// How its CloudEvents are written.
    pub format: CloudEventFormat,
}

impl Default for NewSubscription {
    fn default() -> Self {
        NewSubscription {
            sink: String::new(),
            kinds: Vec::new(),
            expire_at: None,
            max_events: None,
            token: None,
            token_expire_at: None,
            number: None,
            format: CloudEventFormat::Numguard,
        }
    }
}

/// New events for a subscription, each with the event id it was found at, and the last
/// event id the scan covered.
struct Batch {
    events: Vec<(i64, Queued)>,
    scanned_to: i64,
}

/// Webhook subscriptions: made and ended here, fed from the event log or the tenant's
/// alerts, delivered by [`dispatch`].
pub struct WebhookService {
    pub(super) subscriptions: Arc<dyn SubscriptionStore>,
    pub(super) events: Arc<dyn EventStore>,
    pub(super) alerts: Arc<AlertService>,
    pub(super) availability: Arc<Availability>,
    pub(super) commits: Commits,
    pub(super) egress: Egress,
    pub(super) key: ServerKey,
    /// A sink failing for longer than this is reported as failing.
    pub(super) failing_after: chrono::Duration,
    pub(super) retried: Arc<RetriedSinks>,
}

/// Sinks an operator asked to retry now: the dispatcher closes their breakers before its
/// next round, so the retry is not held back by the backoff of earlier failures.
#[derive(Debug, Default)]
pub(super) struct RetriedSinks {
    sinks: Mutex<Vec<String>>,
    wake: tokio::sync::Notify,
}

impl RetriedSinks {
    fn forgive(&self, sink: String) {
        lock(&self.sinks).push(sink);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.sinks))
    }
}

impl WebhookService {
    /// Seals the sink tokens stored before tokens were sealed.
    pub async fn seal_stored_tokens(&self) -> Result<(), EngineError> {
        let mut sealed = 0;
        for (id, token) in self.subscriptions.sink_tokens().await? {
            if !ServerKey::is_sealed(&token) {
                self.subscriptions
                    .set_sink_token(&id, &self.key.seal(&token))
                    .await?;
                sealed += 1;
            }
        }
        if sealed > 0 {
            tracing::info!(
                sealed,
                "sealed sink tokens stored before tokens were sealed"
            );
        }
        Ok(())
    }

    /// Makes a subscription for `tenant` that sends events from now on.
    pub async fn create_subscription(
        &self,
        tenant: &TenantName,
        new: NewSubscription,
    ) -> Result<Subscription, EngineError> {
        let sink = self
            .egress
            .check_registration(Field::Sink, plain_text(Field::Sink, &new.sink)?)
            .await?;
        if let Some(token) = &new.token {
            plain_text(Field::SinkToken, token)?;
        }
        let now = Utc::now();
        if new.expire_at.is_some_and(|t| t <= now) {
            return Err(FieldError::new(Field::ExpireTime, "is in the past").into());
        }
        if new.token_expire_at.is_some_and(|t| t <= now) {
            return Err(FieldError::new(Field::TokenExpireTime, "is in the past").into());
        }
        // Alerts from now on, like a new stream.
        let cursor = self.events.last_event_id().await?;
        let record = SubscriptionRecord {
            id: hex(&rand::random::<[u8; 8]>()),
            tenant: tenant.clone(),
            sink,
            kinds: new.kinds,
            token: new
                .token
                .filter(|t| !t.trim().is_empty())
                .map(|t| self.key.seal(&t)),
            expire_at: new.expire_at,
            max_events: new.max_events.filter(|m| *m > 0),
            sent: 0,
            cursor,
            ended_reason: None,
            created_at: now,
            number: new.number,
            format: new.format,
            token_expire_at: new.token_expire_at,
        };
        self.subscriptions.create_subscription(&record).await?;
        Ok(record.into())
    }

    /// The tenant's subscriptions.
    pub async fn list_subscriptions(
        &self,
        tenant: &TenantName,
    ) -> Result<Vec<Subscription>, EngineError> {
        let records = self.subscriptions.subscriptions(Some(tenant)).await?;
        Ok(records.into_iter().map(Subscription::from).collect())
    }

    /// How the deliveries of the tenant's subscriptions stand, by subscription id.
    pub async fn delivery_states(
        &self,
        tenant: &TenantName,
    ) -> Result<std::collections::HashMap<String, DeliveryReport>, EngineError> {
        let now = Utc::now();
        Ok(self
            .subscriptions
            .delivery_states(tenant)
            .await?
            .into_iter()
            .map(|(id, state)| {
                let failing = state.is_failing(now, self.failing_after);
                (id, DeliveryReport { state, failing })
            })
            .collect())
    }

    /// The queue over every subscription, for metrics; failing as in
    /// [`WebhookService::delivery_states`].
    pub async fn backlog(&self) -> Result<DeliveryBacklog, EngineError> {
        Ok(self
            .subscriptions
            .delivery_backlog(Utc::now() - self.failing_after)
            .await?)
    }

    /// Sends one of the tenant's active subscriptions' waiting deliveries now, whatever
    /// their backoff (after its sink was fixed); how many were waiting.
    pub async fn retry_subscription(
        &self,
        tenant: &TenantName,
        id: &str,
    ) -> Result<u64, EngineError> {
        let found = self
            .subscriptions
            .subscriptions(Some(tenant))
            .await?
            .into_iter()
            .find(|s| s.id == id && s.ended_reason.is_none())
            .ok_or_else(|| EngineError::NotFound(format!("no active subscription {id:?}")))?;
        let retried = self.subscriptions.retry_deliveries(id).await?;
        self.retried.forgive(found.sink);
        Ok(retried)
    }

    /// Ends one of the tenant's active subscriptions (of `format`, if given); another
    /// tenant's id, or one of another format, is not found.
    pub async fn delete_subscription(
        &self,
        tenant: &TenantName,
        id: &str,
        format: Option<CloudEventFormat>,
    ) -> Result<(), EngineError> {
        let found = self
            .subscriptions
            .subscriptions(Some(tenant))
            .await?
            .into_iter()
            .find(|s| {
                s.id == id && s.ended_reason.is_none() && format.is_none_or(|f| s.format == f)
            })
            .ok_or_else(|| EngineError::NotFound(format!("no active subscription {id:?}")))?;
        self.subscriptions
            .advance_subscriptions(&[ending(&found, ENDED_DELETED)])
            .await
            .map_err(EngineError::from)
    }

    /// The subscription's new events to queue (up to [`FEED_PAGES`] pages of them), or its
    /// end when it is due; `None` when nothing changed.
    async fn feed(&self, sub: &SubscriptionRecord) -> Result<Option<Advance>, EngineError> {
        if let Some(reason) = due_end(sub, Utc::now()) {
            return Ok(Some(ending(sub, reason)));
        }
        let mut advance = Advance {
            id: sub.id.clone(),
            cursor: sub.cursor,
            sent: sub.sent,
            ended: None,
            deliveries: Vec::new(),
        };
        for _ in 0..FEED_PAGES {
            let Some(batch) = self.next_batch(sub, advance.cursor).await? else {
                break;
            };
            let room = sub.max_events.map_or(usize::MAX, |m| {
                usize::try_from(m.saturating_sub(advance.sent)).unwrap_or(usize::MAX)
            });
            let take = batch.events.len().min(room);
            advance.sent += take as u64;
            let full = sub.max_events.is_some_and(|m| advance.sent >= m);
            advance.cursor = if take < batch.events.len() {
                batch.events[take.saturating_sub(1)].0
            } else {
                batch.scanned_to
            };
            advance.deliveries.extend(
                batch
                    .events
                    .into_iter()
                    .take(take)
                    .map(|(_, queued)| queued),
            );
            if full {
                advance.ended = Some(ENDED_MAX_EVENTS);
                advance
                    .deliveries
                    .push(cloud_events::ended(sub, ENDED_MAX_EVENTS));
                break;
            }
        }
        Ok((advance.cursor != sub.cursor || advance.ended.is_some()).then_some(advance))
    }

    /// The subscription's events after `cursor`: its number's SIM changes, or its
    /// tenant's watchlist alerts; `None` when nothing new was scanned.
    async fn next_batch(
        &self,
        sub: &SubscriptionRecord,
        cursor: i64,
    ) -> Result<Option<Batch>, EngineError> {
        if let Some(number) = &sub.number {
            let events = self
                .events
                .number_events_after(number, cursor, &sub.kinds, SCAN_PAGE)
                .await?;
            let Some(scanned_to) = events.last().map(|e| e.id) else {
                return Ok(None);
            };
            let events = events
                .iter()
                .map(|e| (e.id, cloud_events::swapped(sub, e)))
                .collect();
            return Ok(Some(Batch { events, scanned_to }));
        }
        let page = self.alerts.scan(&sub.tenant, cursor, &sub.kinds).await?;
        let Some(scanned_to) = page.scanned_to else {
            return Ok(None);
        };
        let events = page
            .alerts
            .iter()
            .map(|a| {
                let at = i64::try_from(a.cursor).unwrap_or(cursor);
                (at, cloud_events::alert(sub, a))
            })
            .collect();
        Ok(Some(Batch { events, scanned_to }))
    }

    /// POSTs one queued event and records the attempt; the outcome is the sink's.
    async fn deliver(
        &self,
        client: &reqwest::Client,
        d: &Delivery,
    ) -> Result<Outcome, EngineError> {
        let outcome = match self.egress.check_url(Field::Sink, &d.sink) {
            // Only a restart with another policy changes this answer for a stored sink.
            Err(refused) => Err(refused.to_string()),
            Ok(_) => self.post(client, d).await,
        };
        let outcome = match outcome {
            Ok(Posted::Gone) => {
                tracing::info!(subscription = %d.subscription_id, "sink answered 410 Gone; subscription ended");
                crate::metrics::webhook_delivery("gone");
                self.subscriptions.sink_gone(&d.subscription_id).await?;
                return Ok(Outcome::Delivered);
            }
            Ok(Posted::Taken) => Ok(()),
            Err(e) => Err(e),
        };
        let retry_at = Utc::now()
            + chrono::Duration::from_std(backoff(d.attempts.saturating_add(1)))
                .unwrap_or_else(|_| chrono::Duration::seconds(1));
        let error = outcome.as_ref().err().map(String::as_str);
        // A subscription's queue head is retried until it is delivered, so its first
        // failure starts a streak: logged at WARN once, the retries at DEBUG.
        match error {
            Some(error) if d.attempts == 0 => tracing::warn!(
                subscription = %d.subscription_id,
                error,
                "webhook delivery failed; retrying with backoff (further failures of this \
                 delivery are logged at DEBUG)"
            ),
            Some(error) => tracing::debug!(
                subscription = %d.subscription_id,
                attempts = d.attempts + 1,
                error,
                "webhook delivery failed again; will retry"
            ),
            None if d.attempts > 0 => tracing::info!(
                subscription = %d.subscription_id,
                attempts = d.attempts + 1,
                "webhook delivered after failing"
            ),
            None => {}
        }
        self.subscriptions
            .finish_delivery(d.id, outcome.is_ok(), retry_at, error)
            .await?;
        crate::metrics::webhook_delivery(if outcome.is_ok() {
            "delivered"
        } else {
            "failed"
        });
        Ok(if outcome.is_ok() {
            Outcome::Delivered
        } else {
            Outcome::Failed
        })
    }

    async fn post(&self, client: &reqwest::Client, d: &Delivery) -> Result<Posted, String> {
        let mut post = client
            .post(&d.sink)
            .header("content-type", "application/cloudevents+json")
            .body(d.body.clone());
        if let Some(token) = &d.token {
            post = post.bearer_auth(self.key.open_token(token).map_err(|e| e.to_string())?);
        }
        match post.send().await {
            Ok(r) if r.status().is_success() => Ok(Posted::Taken),
            Ok(r) if r.status() == reqwest::StatusCode::GONE => Ok(Posted::Gone),
            Ok(r) if r.status().is_redirection() => Err(format!(
                "sink answered {} (redirects are not followed)",
                r.status()
            )),
            Ok(r) => Err(format!("sink answered {}", r.status())),
            Err(e) => Err(format!("sink unreachable: {}", error_chain(&e))),
        }
    }
}

/// What a sink did with a POST it answered with success or 410.
enum Posted {
    Taken,
    Gone,
}

/// An error with its causes, as reqwest's own `Display` omits them (the egress policy's
/// refusal is a cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The subscription's end for `reason`: its last event queued, its cursor kept.
fn ending(sub: &SubscriptionRecord, reason: &'static str) -> Advance {
    Advance {
        id: sub.id.clone(),
        cursor: sub.cursor,
        sent: sub.sent,
        ended: Some(reason),
        deliveries: vec![cloud_events::ended(sub, reason)],
    }
}

/// Why an active subscription must end now, if it must.
fn due_end(sub: &SubscriptionRecord, now: DateTime<Utc>) -> Option<&'static str> {
    if sub.expire_at.is_some_and(|t| t <= now) {
        Some(ENDED_EXPIRED)
    } else if sub.token_expire_at.is_some_and(|t| t <= now) {
        Some(ENDED_TOKEN_EXPIRED)
    } else {
        None
    }
}

fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only counters and names; a panic elsewhere leaves them usable.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Feeds every active subscription and starts what is due, for as long as the service
/// lives: each delivery runs on its own task, scheduled by [`DeliveryScheduler`] so that a
/// stalled sink costs only its own subscription. Several replicas may each do it: queued
/// events are unique per subscription and alert, and a delivery raced by two replicas
/// arrives twice (at least once).
pub(super) async fn dispatch(service: Weak<WebhookService>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(egress) = service.upgrade().map(|s| s.egress.clone()) else {
        return;
    };
    let builder = reqwest::Client::builder()
        .timeout(SINK_TIMEOUT)
        .connect_timeout(SINK_CONNECT_TIMEOUT);
    let client = match egress.client(builder) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks are off");
            return;
        }
    };
    let Some(mut commits) = service.upgrade().map(|s| s.commits.subscribe()) else {
        return;
    };
    let Some(retried) = service.upgrade().map(|s| s.retried.clone()) else {
        return;
    };
    let scheduler = Arc::new(Mutex::new(DeliveryScheduler::default()));
    let finished = Arc::new(tokio::sync::Notify::new());
    loop {
        tokio::select! {
            _ = commits.changed() => {}
            _ = finished.notified() => {}
            _ = retried.wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
        let Some(service) = service.upgrade() else {
            return;
        };
        for sink in retried.take() {
            lock(&scheduler).forgive(&sink);
        }
        if !service.availability.is_up() {
            continue;
        }
        if let Err(e) = service.dispatch_once(&client, &scheduler, &finished).await {
            tracing::warn!(error = %e, "webhook dispatch failed; will retry");
        }
    }
}

impl WebhookService {
    /// Feeds every active subscription, then starts the due deliveries the scheduler
    /// allows.
    async fn dispatch_once(
        self: &Arc<Self>,
        client: &reqwest::Client,
        scheduler: &Arc<Mutex<DeliveryScheduler>>,
        finished: &Arc<tokio::sync::Notify>,
    ) -> Result<(), EngineError> {
        // Every subscription's progress in one transaction: one commit a tick, however
        // many subscriptions an event reaches.
        let active = self.subscriptions.subscriptions(None).await?;
        let mut advances = Vec::new();
        for sub in &active {
            advances.extend(self.feed(sub).await?);
        }
        self.subscriptions.advance_subscriptions(&advances).await?;
        let due = self.subscriptions.due_deliveries(DUE_PER_TICK).await?;
        let started = lock(scheduler).start(due, Instant::now());
        for d in started {
            let (service, client) = (self.clone(), client.clone());
            let (scheduler, finished) = (scheduler.clone(), finished.clone());
            tokio::spawn(async move {
                let outcome = service.deliver(&client, &d).await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "could not record a webhook delivery; will retry");
                    Outcome::Failed
                });
                lock(&scheduler).finish(&d, outcome, Instant::now());
                finished.notify_one();
            });
        }
        Ok(())
    }
}
