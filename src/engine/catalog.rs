//! What every check reads and imports replace whole: the source set, the carrier table and
//! the carrier registry, swapped in together as one snapshot so a check takes one lock.

use std::sync::{Arc, RwLock};

use crate::domain::carrier::CarrierRegistry;
use crate::domain::source::SourceSet;
use crate::ranges::CarrierTable;

/// The catalog as one check sees it.
#[derive(Default, Clone)]
pub struct Snapshot {
    pub sources: Arc<SourceSet>,
    pub ranges: Arc<CarrierTable>,
    pub carriers: Arc<CarrierRegistry>,
}

#[derive(Default)]
pub struct Catalog {
    current: RwLock<Arc<Snapshot>>,
}

impl Catalog {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        // The lock only guards an Arc swap, which cannot leave the value half-written, so a
        // poisoned lock still holds a consistent value.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn sources(&self) -> Arc<SourceSet> {
        self.snapshot().sources.clone()
    }

    pub fn ranges(&self) -> Arc<CarrierTable> {
        self.snapshot().ranges.clone()
    }

    pub fn carriers(&self) -> Arc<CarrierRegistry> {
        self.snapshot().carriers.clone()
    }

    pub fn set_sources(&self, sources: SourceSet) {
        self.update(|s| s.sources = Arc::new(sources));
    }

    pub fn set_ranges(&self, ranges: CarrierTable) {
        self.update(|s| s.ranges = Arc::new(ranges));
    }

    pub fn set_carriers(&self, carriers: CarrierRegistry) {
        self.update(|s| s.carriers = Arc::new(carriers));
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
