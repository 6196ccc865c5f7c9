//! Sources: their definitions, and their freshness (SPEC §1): ingests and heartbeats keep a
//! live feed fresh, a file import declares its cut-off, and a source that goes stale is
//! logged once.

use std::collections::HashSet;
use std::sync::Weak;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::EngineError;
use super::catalog::Catalog;
use crate::domain::Field;
use crate::domain::FieldError;
use crate::domain::event::{MAX_CLOCK_SKEW, to_storage_precision};
use crate::domain::source::{RawScope, Source, SourceName};

/// A live source's `complete_until` is written at most this often by ingests: freshness is
/// judged against `max_lag`, minutes or hours, so a second is plenty.
const INGEST_FRESHNESS_STEP: chrono::Duration = chrono::Duration::seconds(1);

/// How often freshness is looked at for the stale warning.
const FRESHNESS_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// A source as an operator defines it.
#[derive(Debug, Clone, Default)]
pub struct SourceDefinition {
    /// Its name.
    pub name: String,
    /// From when it reports everything in its scopes; required.
    pub tracking_since: Option<DateTime<Utc>>,
    /// What it sees, as given.
    pub scopes: Vec<RawScope>,
    /// `None`: fed by files, complete only up to declared cut-offs.
    pub max_lag: Option<chrono::Duration>,
}

impl Catalog {
    /// Creates or replaces a source's definition; its freshness is kept.
    pub async fn upsert_source(&self, definition: SourceDefinition) -> Result<Source, EngineError> {
        let source = Source::new(
            &definition.name,
            definition.tracking_since,
            &definition.scopes,
            definition.max_lag,
            &self.carriers(),
        )?;
        self.store.upsert_source(&source).await?;
        self.reload_sources().await?;
        self.sources()
            .get(&source.name)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("source {} vanished", source.name)))
    }

    /// Declares a source's data complete up to `until` (now when `None`): a live feed's
    /// heartbeat, or a file's cut-off. `complete_until` only ever moves forward.
    pub async fn heartbeat(
        &self,
        name: &str,
        until: Option<DateTime<Utc>>,
    ) -> Result<Source, EngineError> {
        let name: SourceName = name
            .parse()
            .map_err(|e| FieldError::new(Field::Source, format!("{e}")))?;
        let now = Utc::now();
        let until = to_storage_precision(until.unwrap_or(now));
        if until > now + MAX_CLOCK_SKEW {
            return Err(FieldError::new(
                Field::CompleteUntil,
                "is in the future; data cannot be complete past now",
            )
            .into());
        }
        let found = self
            .store
            .advance_complete_until(&name, until.min(now))
            .await?;
        if !found {
            return Err(EngineError::NotFound(format!(
                "source {:?} is not registered",
                name.as_str()
            )));
        }
        self.reload_sources().await?;
        self.sources()
            .get(&name)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("source {name} vanished")))
    }

    /// After an ingest commit: the live sources that delivered are heard from now. Written
    /// at most once a [`INGEST_FRESHNESS_STEP`] per source.
    pub(super) async fn heard_from<'a>(
        &self,
        names: impl IntoIterator<Item = &'a SourceName>,
    ) -> Result<(), EngineError> {
        let now = to_storage_precision(Utc::now());
        let sources = self.sources();
        let mut advanced = false;
        for name in names {
            let due = sources.get(name).is_some_and(|s| {
                s.max_lag.is_some()
                    && s.complete_until
                        .is_none_or(|until| now - until >= INGEST_FRESHNESS_STEP)
            });
            if due {
                self.store.advance_complete_until(name, now).await?;
                advanced = true;
            }
        }
        if advanced {
            self.reload_sources().await?;
        }
        Ok(())
    }
}

/// Logs a live source at WARN once when it goes stale (and at INFO when it is heard from
/// again), for as long as the catalog lives.
pub(super) async fn watch_freshness(catalog: Weak<Catalog>) {
    let mut stale: HashSet<SourceName> = HashSet::new();
    loop {
        tokio::time::sleep(FRESHNESS_WATCH_INTERVAL).await;
        let Some(catalog) = catalog.upgrade() else {
            return;
        };
        let now = Utc::now();
        for source in catalog.sources().iter().filter(|s| s.max_lag.is_some()) {
            // A source never heard from has nothing to go stale from.
            if source.complete_until.is_none() {
                continue;
            }
            let fresh = source.is_fresh(now);
            if !fresh && stale.insert(source.name.clone()) {
                tracing::warn!(
                    source = %source.name,
                    complete_until = ?source.complete_until,
                    max_lag_seconds = source.max_lag.map(|l| l.num_seconds()),
                    "source went stale: not heard from within its max_lag; answers that \
                     need it are UNKNOWN (FEED_STALE) past its complete_until"
                );
            } else if fresh && stale.remove(&source.name) {
                tracing::info!(source = %source.name, "source is fresh again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use super::*;
    use crate::domain::carrier::Carrier;
    use crate::egress::Egress;
    use crate::ranges::RangeEntry;
    use crate::store::{CatalogStore, StoreError};

    /// The catalog part of a store, in memory, counting freshness writes.
    #[derive(Default)]
    struct MemoryCatalog {
        sources: Mutex<Vec<Source>>,
        freshness_writes: Mutex<u32>,
    }

    #[async_trait]
    impl CatalogStore for MemoryCatalog {
        async fn upsert_source(&self, source: &Source) -> Result<(), StoreError> {
            let mut sources = self.sources.lock().unwrap();
            sources.retain(|s| s.name != source.name);
            sources.push(source.clone());
            Ok(())
        }

        async fn list_sources(&self) -> Result<Vec<Source>, StoreError> {
            Ok(self.sources.lock().unwrap().clone())
        }

        async fn advance_complete_until(
            &self,
            name: &SourceName,
            at: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            *self.freshness_writes.lock().unwrap() += 1;
            let mut sources = self.sources.lock().unwrap();
            let Some(source) = sources.iter_mut().find(|s| &s.name == name) else {
                return Ok(false);
            };
            source.complete_until = Some(source.complete_until.map_or(at, |u| u.max(at)));
            Ok(true)
        }

        async fn upsert_carriers(&self, _: &[Carrier]) -> Result<(), StoreError> {
            Ok(())
        }

        async fn list_carriers(&self) -> Result<Vec<Carrier>, StoreError> {
            Ok(Vec::new())
        }

        async fn upsert_ranges(&self, ranges: &[RangeEntry]) -> Result<u64, StoreError> {
            Ok(ranges.len() as u64)
        }

        async fn load_ranges(&self) -> Result<Vec<RangeEntry>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn definition(name: &str, max_lag: Option<chrono::Duration>) -> SourceDefinition {
        SourceDefinition {
            name: name.into(),
            tracking_since: Some(Utc::now() - chrono::Duration::days(1)),
            scopes: vec![RawScope::whole("81")],
            max_lag,
        }
    }

    #[tokio::test]
    async fn ingests_keep_live_sources_fresh_with_one_write_a_second_at_most() {
        let store = Arc::new(MemoryCatalog::default());
        let catalog = Catalog::new(store.clone(), false, Egress::default(), None);
        let minutes = Some(chrono::Duration::minutes(5));
        catalog
            .upsert_source(definition("live", minutes))
            .await
            .unwrap();
        catalog
            .upsert_source(definition("file", None))
            .await
            .unwrap();
        let (live, file): (SourceName, SourceName) =
            ("live".parse().unwrap(), "file".parse().unwrap());

        catalog.heard_from([&live, &file]).await.unwrap();
        catalog.heard_from([&live, &file]).await.unwrap();

        assert_eq!(
            *store.freshness_writes.lock().unwrap(),
            1,
            "only the live source is written, and once within the second"
        );
        let sources = catalog.sources();
        assert!(sources.get(&live).unwrap().complete_until.is_some());
        assert_eq!(
            sources.get(&file).unwrap().complete_until,
            None,
            "a file source is complete only up to the cut-offs its files declare"
        );
    }

    #[tokio::test]
    async fn a_heartbeat_for_an_unknown_source_is_not_found_and_writes_nothing_else() {
        let store = Arc::new(MemoryCatalog::default());
        let catalog = Catalog::new(store.clone(), false, Egress::default(), None);
        let e = catalog.heartbeat("nobody", None).await.unwrap_err();
        assert!(matches!(e, EngineError::NotFound(_)), "{e:?}");
        assert!(store.sources.lock().unwrap().is_empty());
    }
}
