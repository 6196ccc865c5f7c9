//! The application core: joins the store, the caches and the in-memory catalog, and runs
//! the pure decision rules. The API layers translate to and from it.

pub mod access_log;
pub mod alerts;
pub mod audit_memo;
pub mod auth;
mod availability;
mod carriers;
mod catalog;
mod check;
pub mod cloud_events;
pub mod ingest;
pub mod keys;
pub mod number_cache;
mod sources;
mod upstream;
mod watched_store;
pub mod webhooks;

use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{FixedOffset, Offset, Utc};

use crate::domain::FieldError;
use crate::domain::auth::Scope;
use crate::domain::carrier::CarrierRegistry;
use crate::domain::decision::{DEFAULT_MAX_LOOKBACK_HOURS, Policy};
use crate::domain::event::StoredEvent;
use crate::domain::number::Region;
use crate::domain::source::SourceSet;
use crate::error::ErrorKind;
use crate::ranges::shipped::{shipped_carriers, shipped_ranges};
use crate::ranges::{CarrierTable, RangeEntry};
use crate::store::{Change, EventCursor, EventQuery, Store, StoreError};
use crate::upstream::{UpstreamConfig, Upstreams};
use access_log::AccessLog;
use auth::{Admission, AuthError, AuthMode, Authenticator, Limits};
use availability::Availability;
pub use carriers::RangeImport;
use catalog::Catalog;
pub use check::{CheckAnswer, CheckRequest};
pub use ingest::{DEFAULT_INGEST_BATCH_SIZE, IngestSession, IngestSummary, MAX_REPORTED_ERRORS};
use number_cache::NumberCache;
pub use sources::SourceDefinition;

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
        }
    }
}

/// A page of events and where the next one starts.
#[derive(Debug)]
pub struct EventPage {
    /// The page's events, newest first.
    pub events: Vec<StoredEvent>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<EventCursor>,
}

/// The application core: checks, ingest, alerts, webhooks and administration over one store, its caches and the in-memory catalog.
pub struct Engine {
    store: Arc<dyn Store>,
    config: EngineConfig,
    numbers: NumberCache,
    catalog: Catalog,
    availability: Arc<Availability>,
    auth: Authenticator,
    access: Option<AccessLog>,
    /// Counts commits of events, here or (through the change feed) on other replicas;
    /// live alert streams wait on it.
    commits: tokio::sync::watch::Sender<u64>,
    alert_pages: alerts::SharedPages,
    /// `None` when no provider is configured; replaced whole when the providers change.
    upstreams: std::sync::RwLock<Option<Arc<Upstreams>>>,
}

impl Engine {
    /// Loads carriers, sources and carrier ranges (on first start, with none stored, the
    /// shipped registry and range files), then follows the database's change feed, if it
    /// has one, and watches the database's health and the sources' freshness in the
    /// background.
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
            Some(AccessLog::start(store.clone()).await?)
        } else {
            None
        };
        let engine = Arc::new(Engine {
            upstreams: std::sync::RwLock::new(None),
            numbers: NumberCache::new(config.cache_capacity),
            catalog: Catalog::default(),
            availability,
            auth: Authenticator::new(config.auth, config.limits),
            access,
            commits: tokio::sync::watch::channel(0).0,
            alert_pages: alerts::shared_pages(),
            store,
            config,
        });
        if engine.store.list_carriers().await?.is_empty() {
            let shipped = shipped_carriers();
            engine.store.upsert_carriers(&shipped).await?;
            tracing::info!(
                carriers = shipped.len(),
                "loaded the shipped carrier registry"
            );
        }
        engine.reload_carriers().await?;
        if engine.store.load_ranges().await?.is_empty() {
            let imported = engine.import_ranges(shipped_ranges()).await?;
            tracing::info!(
                ranges = imported.written,
                "loaded the shipped carrier ranges"
            );
        }
        engine.reload_ranges().await?;
        engine.reload_sources().await?;
        engine.reload_upstreams(engine.config.upstream.clone())?;
        tokio::spawn(watch_database(Arc::downgrade(&engine)));
        tokio::spawn(sources::watch_freshness(Arc::downgrade(&engine)));
        tokio::spawn(webhooks::dispatch(Arc::downgrade(&engine)));
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

    /// Admits a request that needs `scope`; `authorization` is the metadata value.
    pub async fn admit(
        &self,
        authorization: Option<&str>,
        scope: Scope,
    ) -> Result<Admission, AuthError> {
        self.auth
            .admit(self.store.as_ref(), authorization, scope)
            .await
    }

    /// Whether callers need API keys.
    pub fn auth_mode(&self) -> AuthMode {
        self.auth.mode()
    }

    /// Finishes background writes (the access log) before the process exits.
    pub async fn shutdown(&self) {
        if let Some(log) = &self.access {
            log.flush().await;
        }
    }

    /// Deletes events older than the retention period, if one is set; returns how many.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let Some(retention) = self.config.retention else {
            return Ok(0);
        };
        let purged = self.store.purge_events(Utc::now() - retention).await?;
        if purged > 0 {
            // Which numbers lost events is not worth a query: start the cache afresh.
            self.numbers.clear();
            tracing::info!(purged, "purged events past the retention period");
        }
        Ok(purged)
    }

    /// Follows availability: `true` while checks may be answered.
    pub fn availability(&self) -> tokio::sync::watch::Receiver<bool> {
        self.availability.subscribe()
    }

    /// Turns a store failure into the engine's error, noting an unreachable database so
    /// later requests fail fast until the health watch sees it back.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Starts an ingest stream; see [`IngestSession`].
    pub fn ingest(self: &Arc<Self>) -> IngestSession {
        IngestSession::new(self.clone())
    }

    /// A page of stored events matching `query`, with the cursor of the next page.
    pub async fn list_events(&self, mut query: EventQuery) -> Result<EventPage, EngineError> {
        let limit = query.limit as usize;
        // One more row than asked tells whether another page exists.
        query.limit = query.limit.saturating_add(1);
        let mut events = self.store.list_events(&query).await?;
        let next = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| EventCursor {
                occurred_at: e.event.fact.occurred_at,
                id: e.id,
            })
        } else {
            None
        };
        Ok(EventPage { events, next })
    }

    /// The current sources, with their scopes and freshness.
    pub fn sources(&self) -> Arc<SourceSet> {
        self.catalog.sources()
    }

    pub(crate) async fn reload_sources(&self) -> Result<(), StoreError> {
        let sources = self.store.list_sources().await?;
        self.catalog.set_sources(SourceSet::new(sources));
        Ok(())
    }

    /// The current carrier registry.
    pub fn carriers(&self) -> Arc<CarrierRegistry> {
        self.catalog.carriers()
    }

    async fn reload_carriers(&self) -> Result<(), StoreError> {
        let carriers = self.store.list_carriers().await?;
        self.catalog.set_carriers(CarrierRegistry::new(carriers));
        self.reroute_upstreams();
        Ok(())
    }

    /// Rebuilds the lookup table from the stored ranges, whose carriers are ids (or, in
    /// ranges stored before carriers had ids, names that resolve to them).
    async fn reload_ranges(&self) -> Result<(), StoreError> {
        let stored = self.store.load_ranges().await?;
        let carriers = self.carriers();
        let mut unresolved = 0usize;
        let resolved: Vec<_> = stored
            .iter()
            .filter_map(|r| {
                let country = crate::domain::number::calling_code(r.prefix.as_str());
                match carriers.resolve(&r.carrier, country) {
                    Ok(c) => Some((&r.prefix, c.id.clone())),
                    Err(_) => {
                        unresolved += 1;
                        None
                    }
                }
            })
            .collect();
        if unresolved > 0 {
            tracing::warn!(
                unresolved,
                "stored ranges name carriers the registry does not know; they are left out \
                 until the carriers are registered (numguard carriers add)"
            );
        }
        self.catalog
            .set_ranges(CarrierTable::new(resolved.iter().map(|(p, c)| (*p, c))));
        Ok(())
    }

    /// Applies a change announced through the database (possibly by another replica).
    async fn apply(&self, change: Change) {
        let reloaded = match change {
            Change::Numbers(numbers) => {
                self.numbers.invalidate(&numbers);
                self.events_committed();
                Ok(())
            }
            Change::Sources => self.reload_sources().await,
            Change::Ranges => self.reload_ranges().await,
            Change::Carriers => match self.reload_carriers().await {
                Ok(()) => self.reload_ranges().await,
                Err(e) => Err(e),
            },
            Change::Keys => {
                self.auth.forget_cached();
                Ok(())
            }
            Change::Connected => {
                tracing::info!("listening for changes; dropped every cached history");
                self.numbers.clear();
                self.events_committed();
                self.availability.set_feed(true);
                match self.reload_sources().await {
                    Ok(()) => match self.reload_carriers().await {
                        Ok(()) => self.reload_ranges().await,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                }
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

    /// The current carrier ranges (longest-prefix table).
    pub fn ranges(&self) -> Arc<CarrierTable> {
        self.catalog.ranges()
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

async fn purge_periodically(engine: Weak<Engine>) {
    loop {
        let Some(interval) = engine.upgrade().map(|e| e.config.retention_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        if let Err(e) = engine.purge_expired().await {
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
