//! What every check reads and imports replace whole: the source set, the carrier table and
//! the carrier registry, swapped in together as one snapshot so a check takes one lock;
//! and the operator look-ups, routed by the registry's carrier ids. The catalog loads
//! itself from the store's catalog part and reloads after every change to it; its edits
//! (sources, carriers, ranges) are in `sources.rs` and `carriers.rs`.

use std::sync::{Arc, RwLock};

use crate::domain::carrier::CarrierRegistry;
use crate::domain::source::SourceSet;
use crate::egress::Egress;
use crate::ranges::CarrierTable;
use crate::ranges::shipped::{shipped_carriers, shipped_ranges};
use crate::store::{CatalogStore, StoreError};
use crate::upstream::{UpstreamConfig, Upstreams};

use super::EngineError;
use super::upstream::{build, route};

/// The catalog as one check sees it.
#[derive(Default, Clone)]
pub struct Snapshot {
    /// Every source, with its scopes and freshness.
    pub sources: Arc<SourceSet>,
    /// The carrier ranges: who holds each number block.
    pub ranges: Arc<CarrierTable>,
    /// The carrier registry.
    pub carriers: Arc<CarrierRegistry>,
}

/// The current catalog, kept in step with the store.
pub struct Catalog {
    pub(super) store: Arc<dyn CatalogStore>,
    /// Register carrier names nobody registered (as unreviewed) instead of refusing them.
    pub(super) register_unknown: bool,
    current: RwLock<Arc<Snapshot>>,
    /// `None` when no provider is configured; replaced whole when the providers change.
    upstreams: RwLock<Option<Arc<Upstreams>>>,
    /// Where the providers may be reached.
    egress: Egress,
    /// How long the store keeps events, when a retention purge runs: coverage stops there.
    retention: Option<chrono::Duration>,
}

impl Catalog {
    /// An empty catalog over `store`, whose events are kept for `retention` (`None`: for
    /// ever); [`Catalog::load`] fills it.
    pub fn new(
        store: Arc<dyn CatalogStore>,
        register_unknown: bool,
        egress: Egress,
        retention: Option<chrono::Duration>,
    ) -> Catalog {
        Catalog {
            store,
            register_unknown,
            current: RwLock::default(),
            upstreams: RwLock::default(),
            egress,
            retention,
        }
    }

    /// Loads carriers, ranges and sources (on first start, with none stored, the shipped
    /// registry and range files first), then the upstream providers.
    pub async fn load(&self, upstream: UpstreamConfig) -> Result<(), EngineError> {
        if self.store.list_carriers().await?.is_empty() {
            let shipped = shipped_carriers();
            self.store.upsert_carriers(&shipped).await?;
            tracing::info!(
                carriers = shipped.len(),
                "loaded the shipped carrier registry"
            );
        }
        self.reload_carriers().await?;
        if self.store.load_ranges().await?.is_empty() {
            let imported = self.import_ranges(shipped_ranges()).await?;
            tracing::info!(
                ranges = imported.written,
                "loaded the shipped carrier ranges"
            );
        }
        self.reload_ranges().await?;
        self.reload_sources().await?;
        self.reload_upstreams(upstream)
    }

    /// The current catalog, whole.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        // The lock only guards an Arc swap, which cannot leave the value half-written, so a
        // poisoned lock still holds a consistent value.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The current sources.
    pub fn sources(&self) -> Arc<SourceSet> {
        self.snapshot().sources.clone()
    }

    /// The current carrier ranges.
    pub fn ranges(&self) -> Arc<CarrierTable> {
        self.snapshot().ranges.clone()
    }

    /// The current carrier registry.
    pub fn carriers(&self) -> Arc<CarrierRegistry> {
        self.snapshot().carriers.clone()
    }

    /// Re-reads the sources.
    pub async fn reload_sources(&self) -> Result<(), StoreError> {
        let sources = self.store.list_sources().await?;
        let sources = Arc::new(SourceSet::new(sources).retaining(self.retention));
        self.update(|s| s.sources = sources);
        Ok(())
    }

    /// Re-reads the carrier registry and points the providers at its ids again.
    pub async fn reload_carriers(&self) -> Result<(), StoreError> {
        let carriers = Arc::new(CarrierRegistry::new(self.store.list_carriers().await?));
        self.update(|s| s.carriers = carriers);
        if let Some(upstreams) = self.upstreams() {
            route(&upstreams, &self.carriers());
        }
        Ok(())
    }

    /// Rebuilds the lookup table from the stored ranges, whose carriers are ids (or, in
    /// ranges stored before carriers had ids, names that resolve to them).
    pub async fn reload_ranges(&self) -> Result<(), StoreError> {
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
        let table = Arc::new(CarrierTable::new(resolved.iter().map(|(p, c)| (*p, c))));
        self.update(|s| s.ranges = table);
        Ok(())
    }

    /// Re-reads everything (after the change feed reconnects).
    pub async fn reload_all(&self) -> Result<(), StoreError> {
        self.reload_sources().await?;
        self.reload_carriers().await?;
        self.reload_ranges().await
    }

    /// Replaces the providers (their cached answers and circuit states start afresh).
    pub fn reload_upstreams(&self, config: UpstreamConfig) -> Result<(), EngineError> {
        let fresh = build(config, &self.carriers(), &self.egress)?;
        if fresh.is_none() {
            tracing::info!("upstream look-ups off");
        }
        *self
            .upstreams
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        Ok(())
    }

    /// The current providers, if any.
    pub fn upstreams(&self) -> Option<Arc<Upstreams>> {
        self.upstreams
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut Snapshot)) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = Snapshot::clone(&current);
        change(&mut next);
        *current = Arc::new(next);
    }
}
