//! Storage: one trait and one SQL implementation of it, with what differs per backend
//! behind `sql_store::Backend`. Stores store; they do not decide.

mod copy_binary;
mod merged_reads;
pub mod postgres;
mod sql;
mod sql_store;
pub mod sqlite;
mod standby;

pub use standby::STANDBY_APPLICATION_NAME;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::auth::{Scopes, TenantName, TimePrecision};
use crate::domain::carrier::Carrier;
use crate::domain::event::{EventFact, EventKind, NewEvent, StoredEvent};
use crate::domain::number::E164;
use crate::domain::owner_since::OwnerSince;
use crate::domain::source::{Source, SourceName};
use crate::domain::subscription::{CloudEventFormat, DeliveryState, Subscription};
use crate::domain::watch::WatchEntry;
use crate::error::ErrorKind;
use crate::ranges::RangeEntry;
use sql_store::SqlStore;

/// What a client is told of a failure inside the server; the cause goes to the log.
pub const INTERNAL_ERROR: &str = "internal error";

/// Why a store operation failed; transports see only [`StoreError::kind`] and a message without database text where it matters.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or used right now; retrying later may work.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database URL names no supported backend.
    #[error("unsupported database URL {0:?}; use sqlite://FILE or postgres://...")]
    UnsupportedUrl(String),
    /// The PostgreSQL server has no database of the URL's name; `create` says how to make
    /// it.
    #[error("the PostgreSQL database {name:?} does not exist; create it first: {create}")]
    NoSuchDatabase {
        /// The database the URL names.
        name: String,
        /// A command that creates it.
        create: String,
    },
    /// The embedded migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database refuses writes (read-only); reads still work.
    #[error("database is read-only: {0}")]
    ReadOnly(#[source] sqlx::Error),
    /// The database is out of space (disk or configured size).
    #[error("database full: {0}")]
    Full(#[source] sqlx::Error),
    /// The database file is damaged (SQLite's integrity check failed, or a read met a
    /// malformed page): nothing is answered from it until it is restored.
    #[error("the database file is damaged ({0}); restore it from a backup")]
    Damaged(String),
    /// A stored row does not read back as a valid value (edited by hand, or a bug).
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let class = match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Some(Class::Unavailable),
            sqlx::Error::Database(db) => classify(db.as_ref()),
            _ => None,
        };
        match class {
            Some(Class::Unavailable) => StoreError::Unavailable(e),
            Some(Class::Full) => StoreError::Full(e),
            Some(Class::ReadOnly) => StoreError::ReadOnly(e),
            Some(Class::Damaged) => StoreError::Damaged(e.to_string()),
            None => StoreError::Other(e),
        }
    }
}

enum Class {
    Unavailable,
    ReadOnly,
    Full,
    Damaged,
}

/// Database errors that mean "not now" rather than "wrong": PostgreSQL connection
/// exceptions (08xxx), operator intervention such as a shutdown (57Pxx) and a read-only
/// transaction (25006); SQLite busy, locked and read-only (primary codes 5, 6, 8, under
/// any extended code). And those that mean "out of space": PostgreSQL disk full (53100),
/// SQLite full (13); and a damaged SQLite file (corrupt 11, not a database 26).
fn classify(db: &dyn sqlx::error::DatabaseError) -> Option<Class> {
    let code = db.code()?;
    if db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        match code.as_ref() {
            "53100" => Some(Class::Full),
            "25006" => Some(Class::ReadOnly),
            c if c.starts_with("08") || c.starts_with("57P") => Some(Class::Unavailable),
            _ => None,
        }
    } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        sqlite_class(code.parse().ok()?)
    } else {
        None
    }
}

/// A SQLite result code's class, by its primary code (the low byte), whichever driver
/// read it.
fn sqlite_class(code: i32) -> Option<Class> {
    match code & 0xff {
        5 | 6 => Some(Class::Unavailable),
        8 => Some(Class::ReadOnly),
        13 => Some(Class::Full),
        11 | 26 => Some(Class::Damaged), // SQLITE_CORRUPT, SQLITE_NOTADB
        _ => None,
    }
}

impl From<rusqlite::Error> for StoreError {
    /// The history reads' errors, classed as sqlx's SQLite errors are. The other classes
    /// keep SQLite's words behind an I/O error, since [`StoreError`] carries sqlx's type.
    fn from(e: rusqlite::Error) -> Self {
        let class = match &e {
            rusqlite::Error::SqliteFailure(failure, _) => sqlite_class(failure.extended_code),
            _ => None,
        };
        let wrapped = || sqlx::Error::Io(std::io::Error::other(e.to_string()));
        match class {
            Some(Class::Unavailable) => StoreError::Unavailable(wrapped()),
            Some(Class::Full) => StoreError::Full(wrapped()),
            Some(Class::ReadOnly) => StoreError::ReadOnly(wrapped()),
            Some(Class::Damaged) => StoreError::Damaged(e.to_string()),
            None => StoreError::Other(wrapped()),
        }
    }
}

impl StoreError {
    /// What a client is told: the failure without the database's own words, which only
    /// the log gets.
    pub fn public_message(&self) -> String {
        match self {
            StoreError::Unavailable(_) => "database unavailable; retry later".into(),
            StoreError::ReadOnly(_) => {
                "database is read-only: writes are refused while checks go on".into()
            }
            StoreError::Full(_) => "database full: writes are refused while checks go on".into(),
            StoreError::UnsupportedUrl(_) | StoreError::NoSuchDatabase { .. } => self.to_string(),
            StoreError::Damaged(_) => {
                "the database file is damaged; numguard answers nothing from it until the \
                 operator restores it"
                    .into()
            }
            StoreError::Migration(_) | StoreError::Corrupt(_) | StoreError::Other(_) => {
                INTERNAL_ERROR.into()
            }
        }
    }

    /// The error's kind, which each transport maps to its own codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::Full(_) => ErrorKind::ResourceExhausted,
            StoreError::ReadOnly(_)
            | StoreError::Damaged(_)
            | StoreError::NoSuchDatabase { .. } => ErrorKind::Unavailable,
            StoreError::UnsupportedUrl(_) => ErrorKind::InvalidArgument,
            StoreError::Migration(_) | StoreError::Corrupt(_) | StoreError::Other(_) => {
                ErrorKind::Internal
            }
        }
    }
}

/// A change made through the shared database, possibly by another replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Events were committed for these numbers.
    Numbers(Vec<E164>),
    /// Sources were created or changed.
    Sources,
    /// Carrier ranges were imported.
    Ranges,
    /// Carriers were registered or changed.
    Carriers,
    /// An API key was revoked or a tenant's settings changed.
    Keys,
    /// The feed is (again) listening. Anything before this may have been missed, so
    /// every cache must be dropped.
    Connected,
    /// The change feed is down, and most likely the database with it.
    Down,
    /// Every change committed before this instant has been delivered (a heartbeat this
    /// process sent through the feed came back).
    CaughtUp(std::time::Instant),
}

/// An API key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key's public id.
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: TenantName,
    /// What it may do.
    pub scopes: Scopes,
    /// SHA-256 of the whole key.
    pub hash: Vec<u8>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Checks of one (hashed) number by one tenant within a span of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// Who checked.
    pub tenant: TenantName,
    /// The number, as its keyed hash.
    pub number_hash: String,
    /// The first check in the span.
    pub first_at: DateTime<Utc>,
    /// The last check in the span.
    pub last_at: DateTime<Utc>,
    /// Checks in the span.
    pub checks: u64,
}

/// A stored event on a watched number, with the watching entries it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    /// The event.
    pub event: StoredEvent,
    /// The tenant's entries on its number that it concerns.
    pub customer_refs: Vec<String>,
    /// The earliest owner_since among those entries.
    pub owner_since: OwnerSince,
}

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// Its public id.
    pub id: String,
    /// The tenant that made it.
    pub tenant: TenantName,
    /// Where events are POSTed.
    pub sink: String,
    /// The kinds sent; empty means all.
    pub kinds: Vec<EventKind>,
    /// Bearer token sent to the sink.
    pub token: Option<String>,
    /// When it ends, if it does.
    pub expire_at: Option<DateTime<Utc>>,
    /// It ends once this many events were sent.
    pub max_events: Option<u64>,
    /// Events sent so far.
    pub sent: u64,
    /// The last event id scanned for it.
    pub cursor: i64,
    /// Why it ended; `None` while it runs.
    pub ended_reason: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Follows this one number's events (a CAMARA subscription) rather than the tenant's
    /// watchlist.
    pub number: Option<E164>,
    /// How its CloudEvents are written.
    pub format: CloudEventFormat,
    /// When the sink's bearer token stops working; the subscription ends then.
    pub token_expire_at: Option<DateTime<Utc>>,
}

/// What the tenant sees of a subscription: all but the sink's token and the scan position.
impl From<SubscriptionRecord> for Subscription {
    fn from(r: SubscriptionRecord) -> Subscription {
        Subscription {
            id: r.id,
            sink: r.sink,
            kinds: r.kinds,
            expire_at: r.expire_at,
            max_events: r.max_events,
            sent: r.sent,
            ended_reason: r.ended_reason,
            created_at: r.created_at,
            number: r.number,
            format: r.format,
            token_expire_at: r.token_expire_at,
        }
    }
}

/// One subscription's progress, written by [`SubscriptionStore::advance_subscriptions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    /// The subscription.
    pub id: String,
    /// The last event id scanned for it.
    pub cursor: i64,
    /// Events queued for it so far.
    pub sent: u64,
    /// Why it ends, if it ends now.
    pub ended: Option<&'static str>,
    /// CloudEvents to queue, as `(ce_id, body)`.
    pub deliveries: Vec<(String, String)>,
}

/// A queued CloudEvent and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The queue row's id.
    pub id: i64,
    /// The subscription it belongs to.
    pub subscription_id: String,
    /// The CloudEvent, as JSON.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Where it goes.
    pub sink: String,
    /// Bearer token for the sink.
    pub token: Option<String>,
    /// The subscription's tenant, for fair scheduling.
    pub tenant: String,
}

/// One scan of the events after a position: the alerts found, and how far it read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertPage {
    /// The alerts, in event id order.
    pub alerts: Vec<AlertRow>,
    /// The last event id the scan covered; `None` if there were no events to scan.
    pub scanned_to: Option<i64>,
    /// Events the scan read, watched or not: fewer than its limit means it read up to
    /// the newest event committed when it ran.
    pub scanned: u32,
}

/// What a batch insert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    /// Events stored.
    pub inserted: u64,
    /// Events whose `(source, source_event_id)` was already stored (or repeated in the batch).
    pub duplicates: u64,
}

/// Keyset position for paging events newest-first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    /// The last event's `occurred_at`.
    pub occurred_at: DateTime<Utc>,
    /// The last event's id, which breaks ties.
    pub id: i64,
}

/// Which events to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only this number's events.
    pub number: Option<E164>,
    /// Empty means every kind.
    pub kinds: Vec<EventKind>,
    /// Only events that occurred at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only events that occurred before this.
    pub until: Option<DateTime<Utc>>,
    /// Only events strictly after this position in newest-first order.
    pub after: Option<EventCursor>,
    /// At most this many.
    pub limit: u32,
}

/// Sources, the carrier registry and carrier ranges: what the engine's catalog is built from.
#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// Creates or replaces a source's definition by name; its freshness state
    /// (`complete_until`) is kept.
    async fn upsert_source(&self, source: &Source) -> Result<(), StoreError>;
    /// Every source, with its freshness.
    async fn list_sources(&self) -> Result<Vec<Source>, StoreError>;
    /// Moves a source's `complete_until` forward to `at` (never back); `false` when no
    /// source has that name.
    async fn advance_complete_until(
        &self,
        name: &SourceName,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Creates or replaces carriers by id.
    async fn upsert_carriers(&self, carriers: &[Carrier]) -> Result<(), StoreError>;
    /// Every carrier, by id.
    async fn list_carriers(&self) -> Result<Vec<Carrier>, StoreError>;
    /// Upserts by prefix (a later import wins); returns how many were written.
    async fn upsert_ranges(&self, ranges: &[RangeEntry]) -> Result<u64, StoreError>;
    /// Every range, in no particular order (prefixes are unique).
    async fn load_ranges(&self) -> Result<Vec<RangeEntry>, StoreError>;
}

/// Events: the append-only log every answer is read from.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Inserts a batch in one transaction; returns after the commit.
    async fn insert_events(&self, events: &[NewEvent]) -> Result<InsertOutcome, StoreError>;
    /// Every event of one number, in no particular order.
    async fn history(&self, number: &E164) -> Result<Vec<EventFact>, StoreError>;
    /// Every event of each of these numbers, read in one query; one history per number,
    /// in the order given.
    async fn histories(&self, numbers: &[E164]) -> Result<Vec<Vec<EventFact>>, StoreError>;
    /// Events newest `occurred_at` first (ties by id), filtered and paged.
    async fn list_events(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;
    /// Deletes up to `limit` of the oldest events that occurred before `before`, except
    /// each number's newest `PORT` (the serving carrier), in one transaction; returns
    /// each deleted event's number (fewer than `limit`: nothing older is left).
    async fn purge_events(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<E164>, StoreError>;
    /// The highest event id stored (0 if none).
    async fn last_event_id(&self) -> Result<i64, StoreError>;
    /// Up to `limit` events (of `kinds`) on one number after id `after`, in id order.
    async fn number_events_after(
        &self,
        number: &E164,
        after: i64,
        kinds: &[EventKind],
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;
}

/// API keys and tenants.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key, creating its tenant if needed.
    async fn create_key(&self, key: &KeyRecord) -> Result<(), StoreError>;
    /// The key with this id, revoked or not.
    async fn find_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// Every key, revoked ones included.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Marks a key revoked; `false` if there is no such (unrevoked) key.
    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError>;
    /// `false` if the tenant does not exist.
    async fn set_time_precision(
        &self,
        tenant: &TenantName,
        precision: TimePrecision,
    ) -> Result<bool, StoreError>;
    /// The tenant's time precision (exact when unset).
    async fn time_precision(&self, tenant: &TenantName) -> Result<TimePrecision, StoreError>;
}

/// Who checked which (hashed) number, and the database's own settings such as the hashes' pepper.
#[async_trait]
pub trait AccessLogStore: Send + Sync + 'static {
    /// The value of a setting, storing `initial` first if it has none (first writer wins).
    async fn setting_or_init(&self, name: &str, initial: &str) -> Result<String, StoreError>;
    /// The value of a setting, if it has one.
    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Appends records to the access log.
    async fn record_access(&self, records: &[AccessRecord]) -> Result<(), StoreError>;
    /// Access records of one hashed number, oldest first.
    async fn access_log(&self, number_hash: &str) -> Result<Vec<AccessRecord>, StoreError>;
}

/// Tenants' watched numbers and the alerts on them.
#[async_trait]
pub trait WatchlistStore: Send + Sync + 'static {
    /// Adds or replaces entries by customer_ref.
    async fn upsert_watch(
        &self,
        tenant: &TenantName,
        entries: &[WatchEntry],
    ) -> Result<u64, StoreError>;
    /// Removes the tenant's entries with these refs; returns how many there were.
    async fn remove_watch(&self, tenant: &TenantName, refs: &[String]) -> Result<u64, StoreError>;
    /// Entries ordered by customer_ref, after `after`.
    async fn list_watch(
        &self,
        tenant: &TenantName,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WatchEntry>, StoreError>;
    /// Scans the next `limit` events (of `kinds`) after id `after` for the tenant's
    /// alerts: events on watched numbers after the watching entries' owner_since.
    async fn alerts_after(
        &self,
        tenant: &TenantName,
        after: i64,
        kinds: &[EventKind],
        limit: u32,
    ) -> Result<AlertPage, StoreError>;
}

/// The webhook queue over every subscription, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryBacklog {
    /// Deliveries queued and not yet taken.
    pub pending: u64,
    /// When the oldest of them was queued.
    pub oldest_pending: Option<DateTime<Utc>>,
    /// Subscriptions with a waiting delivery that first failed before the given time.
    pub failing_subscriptions: u64,
}

/// Webhook subscriptions and their queued deliveries.
#[async_trait]
pub trait SubscriptionStore: Send + Sync + 'static {
    /// Stores a new subscription.
    async fn create_subscription(&self, s: &SubscriptionRecord) -> Result<(), StoreError>;
    /// A tenant's subscriptions, or (with `None`) every active one.
    async fn subscriptions(
        &self,
        tenant: Option<&TenantName>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError>;
    /// In one transaction, for each of `advances`: queues its deliveries (a ce_id queued
    /// before is skipped), moves its subscription to its cursor and count, and ends it if
    /// it says so.
    async fn advance_subscriptions(&self, advances: &[Advance]) -> Result<(), StoreError>;
    /// The subscriptions' queue heads (each one's oldest undelivered event) whose next
    /// attempt is due, oldest first.
    async fn due_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError>;
    /// The queue over every subscription: what waits, since when, and how many
    /// subscriptions have a delivery that first failed before `failing_before`.
    async fn delivery_backlog(
        &self,
        failing_before: DateTime<Utc>,
    ) -> Result<DeliveryBacklog, StoreError>;
    /// Makes the subscription's waiting deliveries due now; how many there are.
    async fn retry_deliveries(&self, subscription_id: &str) -> Result<u64, StoreError>;
    /// How the deliveries of the tenant's subscriptions stand, by subscription id (those
    /// with no delivery yet are left out).
    async fn delivery_states(
        &self,
        tenant: &TenantName,
    ) -> Result<Vec<(String, DeliveryState)>, StoreError>;
    /// Records an attempt: delivered, or to be retried at `retry_at` after `error`.
    async fn finish_delivery(
        &self,
        id: i64,
        delivered: bool,
        retry_at: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
    /// The sink answered 410 Gone: the subscription ends and nothing more is sent.
    async fn sink_gone(&self, subscription_id: &str) -> Result<(), StoreError>;
    /// Subscriptions' stored tokens, by subscription id, of every subscription.
    async fn sink_tokens(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Replaces a subscription's stored token.
    async fn set_sink_token(&self, subscription_id: &str, token: &str) -> Result<(), StoreError>;
}

/// The database's liveness, and the changes other replicas make through it.
#[async_trait]
pub trait ChangeFeed: Send + Sync + 'static {
    /// A cheap round trip, for health checks.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The feed of changes made through the database by any process, for backends that
    /// several replicas share; `None` where this process is the only writer (SQLite).
    /// It can be taken once.
    fn take_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Change>>;
    /// How each connection pool is used now, for metrics.
    fn pool_usage(&self) -> Vec<PoolUsage>;
    /// Runs the integrity check that opening left for later
    /// ([`IntegrityCheck::Background`]); at most once. `Ok(false)`: none was left.
    async fn check_integrity(&self) -> Result<bool, StoreError>;
}

/// One connection pool's connections now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// `read` or `write` where reads and writes have their own pools, else `main`.
    pub pool: &'static str,
    /// Connections open.
    pub open: u32,
    /// Of them, those waiting for work.
    pub idle: u32,
}

/// Everything numguard keeps, on SQLite or PostgreSQL: one trait per concern, so each part
/// of the engine can be given only the part of the store it uses.
pub trait Store:
    CatalogStore
    + EventStore
    + KeyStore
    + AccessLogStore
    + WatchlistStore
    + SubscriptionStore
    + ChangeFeed
{
}

impl<
    T: CatalogStore
        + EventStore
        + KeyStore
        + AccessLogStore
        + WatchlistStore
        + SubscriptionStore
        + ChangeFeed,
> Store for T
{
}

/// Settings that are not part of a database URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// SQLite only: the most the database file may grow to; past it writes fail as full.
    pub sqlite_max_bytes: Option<u64>,
    /// SQLite only: when `PRAGMA quick_check` reads the whole file for damage.
    pub sqlite_integrity_check: IntegrityCheck,
    /// SQLite only: the file may be read by the server's group (0640 rather than 0600).
    pub sqlite_group_readable: bool,
    /// PostgreSQL only: a hot standby that check reads go to while it has replayed what
    /// they need.
    pub standby: Option<StandbyOptions>,
    /// PostgreSQL only: the most connections the request pool keeps to the primary, and
    /// the standby's pool to the standby (change notifications and heartbeats have one
    /// each besides).
    pub postgres_pool_size: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sqlite_max_bytes: None,
            sqlite_integrity_check: IntegrityCheck::Background,
            sqlite_group_readable: false,
            standby: None,
            postgres_pool_size: postgres::DEFAULT_POOL_SIZE,
        }
    }
}

/// When SQLite's integrity check (`PRAGMA quick_check`, which reads the whole file) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityCheck {
    /// After opening, while the server serves ([`ChangeFeed::check_integrity`]), so a
    /// large file does not delay the start; damage found makes the store unavailable.
    Background,
    /// While opening: a damaged file is refused before anything is served from it.
    BeforeServing,
    /// Never; damage shows only where a read meets it.
    Off,
}

/// A PostgreSQL hot standby for check reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyOptions {
    /// The standby's URL.
    pub url: String,
    /// Past this long without its change feed catching up, this process reads nothing
    /// from the standby (the replica-staleness bound).
    pub max_lag: std::time::Duration,
}

/// Opens (creating and migrating as needed) the store a URL names.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, StoreOptions::default()).await
}

/// Opens (creating and migrating as needed) the store a URL names, with options.
pub async fn open_with(url: &str, options: StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqlStore::new(
            sqlite::SqliteBackend::open(url, options).await?,
        )))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(SqlStore::new(
            postgres::PgBackend::open(url, &options).await?,
        )))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
