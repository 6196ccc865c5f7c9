//! The application core, as one service per concern: checks (`check.rs`, with the
//! operator look-ups in `upstream.rs`), ingest, alerts, webhooks, the catalog (sources,
//! carriers, ranges) and the event log's administration (`admin.rs`). Each service holds
//! only the parts of the store it uses; they share the catalog, the history cache, the
//! commit signal and the database's availability. [`Engine`] builds them and runs what
//! spans them: admission, the change feed and the health watch. The API layers translate
//! to and from the services.

pub mod access_log;
pub mod admin;
pub mod alerts;
pub mod audit_memo;
pub mod auth;
mod availability;
mod carriers;
pub mod catalog;
pub mod check;
pub mod cloud_events;
mod commits;
mod delivery_scheduler;
mod feed_lag;
pub mod ingest;
pub mod keys;
pub mod number_cache;
mod sources;
mod upstream;
mod watched_store;
pub mod webhooks;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chrono::{FixedOffset, Offset, Utc};

use crate::domain::FieldError;
use crate::domain::auth::Scopes;
use crate::domain::decision::{DEFAULT_MAX_LOOKBACK_HOURS, Policy};
use crate::domain::egress::EgressPolicy;
use crate::domain::number::Region;
use crate::egress::Egress;
use crate::error::ErrorKind;
use crate::ranges::RangeEntry;
use crate::server_key::ServerKey;
use crate::store::{Change, Store, StoreError};
use crate::upstream::UpstreamConfig;
use access_log::AccessLog;
pub use admin::{AdminService, EventPage};
pub use alerts::{AlertService, AlertStart};
use auth::{Admission, AuthError, AuthMode, Authenticator, Limits};
use availability::Availability;
pub use carriers::RangeImport;
use catalog::Catalog;
pub use check::{CheckAnswer, CheckRequest, CheckService};
use commits::Commits;
use feed_lag::FeedLag;
pub use ingest::{
    DEFAULT_INGEST_BATCH_SIZE, IngestService, IngestSession, IngestSummary, MAX_REPORTED_ERRORS,
};
use number_cache::NumberCache;
pub use sources::SourceDefinition;
pub use webhooks::WebhookService;

/// Why the engine did not do what it was asked; transports map [`EngineError::kind`].
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A field of the request was refused.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// Any store failure but an outage, which is [`EngineError::Unavailable`].
    #[error(transparent)]
    Store(StoreError),
    /// The database is down; nothing is answered from partial data.
    #[error("the database is unavailable; numguard does not answer from partial data, retry later")]
    Unavailable,
    /// What was named does not exist; the text says what.
    #[error("{0}")]
    NotFound(String),
    /// The ingest writer task ended without a result (it panicked).
    #[error("the ingest writer stopped unexpectedly")]
    WriterFailed,
    /// The upstream providers could not be set up; the text says why.
    #[error("upstream look-ups cannot start: {0}")]
    UpstreamSetup(String),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => EngineError::Unavailable,
            other => EngineError::Store(other),
        }
    }
}

impl EngineError {
    /// What a client is told: never the database's own words (see
    /// [`StoreError::public_message`]).
    pub fn public_message(&self) -> String {
        match self {
            EngineError::Store(e) => e.public_message(),
            EngineError::WriterFailed | EngineError::UpstreamSetup(_) => {
                crate::store::INTERNAL_ERROR.into()
            }
            other => other.to_string(),
        }
    }

    /// The error's kind, which each transport maps to its own codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Invalid(_) => ErrorKind::InvalidArgument,
            EngineError::Store(e) => e.kind(),
            EngineError::Unavailable => ErrorKind::Unavailable,
            EngineError::WriterFailed | EngineError::UpstreamSetup(_) => ErrorKind::Internal,
            EngineError::NotFound(_) => ErrorKind::NotFound,
        }
    }
}

/// Whether the server may take traffic, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Checks can be answered.
    Ready,
    /// The database does not answer, or the change feed does not listen.
    DatabaseDown,
    /// These live sources are stale and the server was told to wait for them.
    StaleSources(Vec<String>),
}

/// How the engine runs; `crate::settings` fills it from the server's settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Region for national-format numbers that come without one.
    pub default_region: Option<Region>,
    /// Upper bound for `max_age_hours`.
    pub max_lookback_hours: u32,
    /// The verdict when the data cannot answer.
    pub policy: Policy,
    /// Numbers whose history is cached; 0 disables the cache.
    pub cache_capacity: u64,
    /// Events per ingest transaction.
    pub ingest_batch_size: usize,
    /// The zone in which date-only `owner_since` values are read.
    pub date_zone: FixedOffset,
    /// How often the database is pinged to tell whether it is up.
    pub health_interval: Duration,
    /// Whether callers need API keys.
    pub auth: AuthMode,
    /// Per-key rates and the in-flight limit.
    pub limits: Limits,
    /// Record which tenant checked which (hashed) number.
    pub access_log: bool,
    /// Events older than this (by `occurred_at`) are purged; `None` keeps them forever.
    pub retention: Option<chrono::Duration>,
    /// How often the retention purge runs.
    pub retention_interval: Duration,
    /// Operators asked where no source covers a number; none by default.
    pub upstream: UpstreamConfig,
    /// Register carrier names nobody registered (as unreviewed carriers, listed for
    /// review) instead of refusing them.
    pub register_unknown_carriers: bool,
    /// Where webhooks and operator look-ups may send: public addresses only by default.
    pub egress: EgressPolicy,
    /// Seals sink tokens and keys the access log; the server reads it from its key file
    /// (by default a key of this process alone).
    pub key: ServerKey,
    /// Where replicas share a database: how long after a commit another replica may still
    /// answer from a history it cached before (past it, checks read the database).
    pub max_replica_lag: Duration,
    /// A webhook sink failing for longer than this is reported as failing (in
    /// ListSubscriptions and the metrics).
    pub webhook_failing_after: Duration,
    /// `/readyz` answers 503 while a live source is stale.
    pub ready_requires_fresh_sources: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default_region: None,
            max_lookback_hours: DEFAULT_MAX_LOOKBACK_HOURS,
            policy: Policy::default(),
            cache_capacity: 1_000_000,
            ingest_batch_size: DEFAULT_INGEST_BATCH_SIZE as usize,
            date_zone: Utc.fix(),
            health_interval: Duration::from_secs(1),
            auth: AuthMode::Keys,
            limits: Limits::default(),
            access_log: true,
            retention: None,
            retention_interval: Duration::from_secs(3600),
            // Range imports are the big messages: 10,000 ranges per request are ~0.4 MiB.
            upstream: UpstreamConfig::default(),
            register_unknown_carriers: false,
            egress: EgressPolicy::default(),
            key: ServerKey::ephemeral(),
            max_replica_lag: Duration::from_secs(1),
            webhook_failing_after: Duration::from_secs(15 * 60),
            ready_requires_fresh_sources: false,
        }
    }
}

/// The application core: one service per concern over one store, sharing the catalog,
/// the history cache and the database's availability. Transports call the services.
pub struct Engine {
    /// `CheckNumber`, audits and the CAMARA checks.
    pub checks: Arc<CheckService>,
    /// Event ingest.
    pub ingest: Arc<IngestService>,
    /// Watchlists and alert streams.
    pub alerts: Arc<AlertService>,
    /// Webhook subscriptions.
    pub webhooks: Arc<WebhookService>,
    /// Sources, carriers, ranges and the upstream providers.
    pub catalog: Arc<Catalog>,
    /// The event log's listing and retention.
    pub admin: AdminService,
    store: Arc<dyn Store>,
    config: Arc<EngineConfig>,
    numbers: Arc<NumberCache>,
    /// How far the change feed is behind, where replicas share the database.
    lag: Option<Arc<FeedLag>>,
    availability: Arc<Availability>,
    auth: Authenticator,
    commits: Commits,
}

impl Engine {
    /// Loads the catalog (on first start, with none stored, the shipped registry and range
    /// files), then follows the database's change feed, if it has one, and watches the
    /// database's health, the sources' freshness and the webhook queue in the background.
    pub async fn start(
        store: Arc<dyn Store>,
        config: EngineConfig,
    ) -> Result<Arc<Engine>, EngineError> {
        let changes = store.take_changes();
        let availability = Arc::new(Availability::new(changes.is_some()));
        let store: Arc<dyn Store> = Arc::new(watched_store::WatchedStore::new(
            store,
            availability.clone(),
        ));
        let access = if config.access_log {
            Some(AccessLog::start(store.clone(), &config.key).await?)
        } else {
            None
        };
        let config = Arc::new(config);
        let egress = Egress::new(config.egress.clone());
        let catalog = Arc::new(Catalog::new(
            store.clone(),
            config.register_unknown_carriers,
            egress.clone(),
            config.retention,
        ));
        catalog.load(config.upstream.clone()).await?;
        // Where replicas share the database, cached histories are served only while the
        // change feed keeps within the bound.
        let lag = changes
            .is_some()
            .then(|| Arc::new(FeedLag::new(config.max_replica_lag, Instant::now())));
        let numbers = Arc::new(NumberCache::new(config.cache_capacity, lag.clone()));
        let commits = Commits::default();
        let checks = Arc::new(CheckService {
            events: store.clone(),
            catalog: catalog.clone(),
            numbers: numbers.clone(),
            availability: availability.clone(),
            access,
            config: config.clone(),
        });
        let alerts = Arc::new(AlertService {
            watchlist: store.clone(),
            events: store.clone(),
            checks: checks.clone(),
            commits: commits.clone(),
            pages: alerts::shared_pages(),
        });
        let engine = Arc::new(Engine {
            ingest: Arc::new(IngestService {
                events: store.clone(),
                catalog: catalog.clone(),
                numbers: numbers.clone(),
                commits: commits.clone(),
                config: config.clone(),
            }),
            webhooks: Arc::new(WebhookService {
                subscriptions: store.clone(),
                events: store.clone(),
                alerts: alerts.clone(),
                availability: availability.clone(),
                commits: commits.clone(),
                egress,
                key: config.key.clone(),
                failing_after: chrono::Duration::from_std(config.webhook_failing_after)
                    .unwrap_or(chrono::Duration::MAX),
                retried: Arc::default(),
            }),
            admin: AdminService {
                events: store.clone(),
                numbers: numbers.clone(),
                config: config.clone(),
            },
            auth: Authenticator::new(config.auth, config.limits),
            checks,
            alerts,
            catalog,
            store,
            config,
            numbers,
            lag,
            availability,
            commits,
        });
        tokio::spawn(watch_database(Arc::downgrade(&engine)));
        tokio::spawn(check_integrity(engine.store.clone()));
        tokio::spawn(sources::watch_freshness(Arc::downgrade(&engine.catalog)));
        engine.webhooks.seal_stored_tokens().await?;
        tokio::spawn(webhooks::dispatch(Arc::downgrade(&engine.webhooks)));
        if engine.config.retention.is_some() {
            tokio::spawn(purge_periodically(Arc::downgrade(&engine)));
        }
        if let Some(changes) = changes {
            let mut up = engine.availability.subscribe();
            tokio::spawn(follow_changes(Arc::downgrade(&engine), changes));
            // Answer nothing until the feed listens; a replica starts in milliseconds.
            let _ = tokio::time::timeout(Duration::from_secs(5), up.wait_for(|up| *up)).await;
        }
        Ok(engine)
    }

    /// Admits a request that one of `scopes` allows; `authorization` is the metadata value,
    /// `peer` the address it came from.
    pub async fn admit(
        &self,
        authorization: Option<&str>,
        scopes: Scopes,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Admission, AuthError> {
        self.auth
            .admit(self.store.as_ref(), authorization, scopes, peer)
            .await
    }

    /// Whether callers need API keys.
    pub fn auth_mode(&self) -> AuthMode {
        self.auth.mode()
    }

    /// Finishes background writes (the access log) before the process exits.
    pub async fn shutdown(&self) {
        if let Some(log) = &self.checks.access {
            log.flush().await;
        }
    }

    /// Follows availability: `true` while checks may be answered.
    pub fn availability(&self) -> tokio::sync::watch::Receiver<bool> {
        self.availability.subscribe()
    }

    /// Whether checks may be answered: the database answers (and, with replicas, the
    /// change feed listens) and, where the server requires it, every live source is
    /// fresh.
    pub fn readiness(&self) -> Readiness {
        if !self.availability.is_up() {
            return Readiness::DatabaseDown;
        }
        if self.config.ready_requires_fresh_sources {
            let now = chrono::Utc::now();
            let stale: Vec<String> = self
                .catalog
                .sources()
                .iter()
                .filter(|s| s.max_lag.is_some() && !s.is_fresh(now))
                .map(|s| s.name.as_str().to_string())
                .collect();
            if !stale.is_empty() {
                return Readiness::StaleSources(stale);
            }
        }
        Readiness::Ready
    }

    /// Sets the gauges a metrics scrape reads from the engine's state: each source's
    /// freshness, whether the database answers, the replica feed's lag and the webhook
    /// queue's length.
    pub async fn observe(&self) {
        let now = chrono::Utc::now();
        for source in self.catalog.sources().iter() {
            let complete_age = source
                .complete_to(now)
                .map(|until| (now - until).to_std().unwrap_or_default());
            let fresh = source.max_lag.map(|_| source.is_fresh(now));
            crate::metrics::source_state(source.name.as_str(), fresh, complete_age);
        }
        crate::metrics::database_up(self.availability.is_up());
        crate::metrics::database_pools(&self.store.pool_usage());
        if let Some(lag) = &self.lag {
            crate::metrics::replica_feed_lag(lag.lag_at(Instant::now()));
        }
        match self.webhooks.backlog().await {
            Ok(backlog) => crate::metrics::webhook_backlog(&backlog, now),
            Err(e) => tracing::debug!(error = %e, "cannot measure the webhook queue"),
        }
    }

    /// How the engine runs.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Applies a change announced through the database (possibly by another replica).
    async fn apply(&self, change: Change) {
        let reloaded = match change {
            Change::Numbers(numbers) => {
                self.numbers.invalidate(&numbers);
                self.commits.bump();
                Ok(())
            }
            Change::Sources => self.catalog.reload_sources().await,
            Change::Ranges => self.catalog.reload_ranges().await,
            Change::Carriers => match self.catalog.reload_carriers().await {
                Ok(()) => self.catalog.reload_ranges().await,
                Err(e) => Err(e),
            },
            Change::Keys => {
                self.auth.forget_cached();
                Ok(())
            }
            Change::Connected => {
                tracing::info!("listening for changes; dropped every cached history");
                self.numbers.clear();
                self.commits.bump();
                self.availability.set_feed(true);
                self.catalog.reload_all().await
            }
            Change::CaughtUp(sent) => {
                if let Some(lag) = &self.lag {
                    lag.caught_up_to(sent);
                }
                Ok(())
            }
            Change::Down => {
                self.numbers.clear();
                self.availability.set_feed(false);
                Ok(())
            }
        };
        if let Err(e) = reloaded {
            tracing::warn!(error = %e, "could not reload after a change");
        }
    }

    /// Whether the database answers; for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}

async fn follow_changes(
    engine: Weak<Engine>,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<Change>,
) {
    while let Some(change) = changes.recv().await {
        let Some(engine) = engine.upgrade() else {
            return;
        };
        engine.apply(change).await;
    }
}

/// Pings the database on an interval for as long as the engine lives.
async fn watch_database(engine: Weak<Engine>) {
    loop {
        let Some(interval) = engine.upgrade().map(|e| e.config.health_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let up = match engine.store.ping().await {
            Ok(()) => true,
            Err(e) => {
                if engine.availability.is_up() {
                    tracing::warn!(error = %e, "database ping failed");
                }
                false
            }
        };
        engine.availability.set_database(up);
    }
}

/// Runs the store's integrity check left for after start; damage found makes the engine
/// unavailable for good (the watched store sees to that).
async fn check_integrity(store: Arc<dyn Store>) {
    let started = Instant::now();
    match store.check_integrity().await {
        Ok(false) => {}
        Ok(true) => tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "the database file passed its integrity check"
        ),
        Err(e) => tracing::error!(error = %e, "the database file's integrity check failed"),
    }
}

async fn purge_periodically(engine: Weak<Engine>) {
    loop {
        let Some(interval) = engine.upgrade().map(|e| e.config.retention_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        if let Err(e) = engine.admin.purge_expired().await {
            tracing::warn!(error = %e, "retention purge failed; will retry");
        }
    }
}

/// Keeps the last entry per prefix, in first-seen order, so a batch never touches one
/// prefix twice (PostgreSQL refuses that in one upsert).
fn dedup_keep_last(ranges: Vec<RangeEntry>) -> Vec<RangeEntry> {
    let mut index = std::collections::HashMap::with_capacity(ranges.len());
    let mut out: Vec<RangeEntry> = Vec::with_capacity(ranges.len());
    for entry in ranges {
        match index.get(&entry.prefix) {
            Some(&i) => out[i] = entry,
            None => {
                index.insert(entry.prefix.clone(), out.len());
                out.push(entry);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keeps_the_last_entry_per_prefix() {
        let e = |p: &str, c: &str| RangeEntry {
            prefix: p.parse().unwrap(),
            carrier: c.into(),
        };
        let out = dedup_keep_last(vec![e("8190", "A"), e("8180", "B"), e("8190", "C")]);
        assert_eq!(out, vec![e("8190", "C"), e("8180", "B")]);
    }
}
