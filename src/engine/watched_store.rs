//! The one place that tells the engine the database is down: every store call goes through
//! [`WatchedStore`], which marks the database unavailable when a call fails as
//! [`StoreError::Unavailable`]. The health loop marks it up again once a ping answers.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::availability::Availability;
use crate::domain::auth::{TenantName, TimePrecision};
use crate::domain::carrier::Carrier;
use crate::domain::event::{EventFact, EventKind, NewEvent, StoredEvent};
use crate::domain::number::E164;
use crate::domain::source::{Source, SourceName};
use crate::domain::subscription::DeliveryState;
use crate::domain::watch::WatchEntry;
use crate::ranges::RangeEntry;
use crate::store::{
    AccessLogStore, AccessRecord, Advance, AlertPage, CatalogStore, Change, ChangeFeed, Delivery,
    DeliveryBacklog, EventQuery, EventStore, InsertOutcome, KeyRecord, KeyStore, PoolUsage, Store,
    StoreError, SubscriptionRecord, SubscriptionStore, WatchlistStore,
};

/// A [`Store`] that reports its own outages to the engine's [`Availability`].
pub struct WatchedStore {
    inner: Arc<dyn Store>,
    availability: Arc<Availability>,
}

impl WatchedStore {
    /// Watches `inner` on behalf of `availability`.
    pub fn new(inner: Arc<dyn Store>, availability: Arc<Availability>) -> WatchedStore {
        WatchedStore {
            inner,
            availability,
        }
    }

    fn watch<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => {}
            Err(StoreError::Unavailable(_)) => {
                crate::metrics::database_error("unavailable");
                self.availability.set_database(false);
            }
            Err(StoreError::Damaged(_)) => {
                crate::metrics::database_error("damaged");
                self.availability.set_damaged();
            }
            Err(_) => crate::metrics::database_error("other"),
        }
        result
    }
}

/// Writes one store trait's impl: each method passes its arguments on and watches the
/// result.
macro_rules! watched {
    ($($trait:ident { $(fn $name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)* })*) => {
        $(
            #[async_trait]
            impl $trait for WatchedStore {
                $(
                    async fn $name(&self, $($arg: $ty),*) -> Result<$out, StoreError> {
                        let call = self.inner.$name($($arg),*);
                        // A child of the request's span where requests are traced.
                        let result = if crate::telemetry::request_spans() {
                            let name = concat!("store.", stringify!($name));
                            call.instrument(tracing::info_span!("store", otel.name = name)).await
                        } else {
                            call.await
                        };
                        self.watch(result)
                    }
                )*
            }
        )*
    };
}

/// A failed ping or integrity check is watched like any call; the feed itself is handed on as it is.
#[async_trait]
impl ChangeFeed for WatchedStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.watch(self.inner.ping().await)
    }

    fn take_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Change>> {
        self.inner.take_changes()
    }

    fn pool_usage(&self) -> Vec<PoolUsage> {
        self.inner.pool_usage()
    }

    async fn check_integrity(&self) -> Result<bool, StoreError> {
        self.watch(self.inner.check_integrity().await)
    }
}

watched! {
    CatalogStore {
        fn upsert_source(source: &Source) -> ();
        fn list_sources() -> Vec<Source>;
        fn advance_complete_until(name: &SourceName, at: DateTime<Utc>) -> bool;
        fn upsert_carriers(carriers: &[Carrier]) -> ();
        fn list_carriers() -> Vec<Carrier>;
        fn upsert_ranges(ranges: &[RangeEntry]) -> u64;
        fn load_ranges() -> Vec<RangeEntry>;
    }
    EventStore {
        fn insert_events(events: &[NewEvent]) -> InsertOutcome;
        fn history(number: &E164) -> Vec<EventFact>;
        fn histories(numbers: &[E164]) -> Vec<Vec<EventFact>>;
        fn list_events(query: &EventQuery) -> Vec<StoredEvent>;
        fn purge_events(before: DateTime<Utc>, limit: u32) -> Vec<E164>;
        fn last_event_id() -> i64;
        fn number_events_after(number: &E164, after: i64, kinds: &[EventKind], limit: u32)
            -> Vec<StoredEvent>;
    }
    KeyStore {
        fn create_key(key: &KeyRecord) -> ();
        fn find_key(id: &str) -> Option<KeyRecord>;
        fn list_keys() -> Vec<KeyRecord>;
        fn revoke_key(id: &str) -> bool;
        fn set_time_precision(tenant: &TenantName, precision: TimePrecision) -> bool;
        fn time_precision(tenant: &TenantName) -> TimePrecision;
    }
    AccessLogStore {
        fn setting_or_init(name: &str, initial: &str) -> String;
        fn setting(name: &str) -> Option<String>;
        fn record_access(records: &[AccessRecord]) -> ();
        fn access_log(number_hash: &str) -> Vec<AccessRecord>;
    }
    WatchlistStore {
        fn upsert_watch(tenant: &TenantName, entries: &[WatchEntry]) -> u64;
        fn remove_watch(tenant: &TenantName, refs: &[String]) -> u64;
        fn list_watch(tenant: &TenantName, after: Option<&str>, limit: u32) -> Vec<WatchEntry>;
        fn alerts_after(tenant: &TenantName, after: i64, kinds: &[EventKind], limit: u32) -> AlertPage;
    }
    SubscriptionStore {
        fn create_subscription(s: &SubscriptionRecord) -> ();
        fn subscriptions(tenant: Option<&TenantName>) -> Vec<SubscriptionRecord>;
        fn advance_subscriptions(advances: &[Advance]) -> ();
        fn due_deliveries(limit: u32) -> Vec<Delivery>;
        fn delivery_backlog(failing_before: DateTime<Utc>) -> DeliveryBacklog;
        fn retry_deliveries(subscription_id: &str) -> u64;
        fn delivery_states(tenant: &TenantName) -> Vec<(String, DeliveryState)>;
        fn finish_delivery(id: i64, delivered: bool, retry_at: DateTime<Utc>, error: Option<&str>)
            -> ();
        fn sink_gone(subscription_id: &str) -> ();
        fn sink_tokens() -> Vec<(String, String)>;
        fn set_sink_token(subscription_id: &str, token: &str) -> ();
    }
}
