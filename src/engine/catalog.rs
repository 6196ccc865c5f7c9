//! What every check reads and imports replace whole: the source set, the carrier table and
//! the carrier registry.

use std::sync::{Arc, RwLock};

use crate::domain::carrier::CarrierRegistry;
use crate::domain::source::SourceSet;
use crate::ranges::CarrierTable;

#[derive(Default)]
pub struct Catalog {
    sources: RwLock<Arc<SourceSet>>,
    ranges: RwLock<Arc<CarrierTable>>,
    carriers: RwLock<Arc<CarrierRegistry>>,
}

impl Catalog {
    pub fn carriers(&self) -> Arc<CarrierRegistry> {
        read(&self.carriers)
    }

    pub fn set_carriers(&self, carriers: CarrierRegistry) {
        write(&self.carriers, carriers);
    }

    pub fn sources(&self) -> Arc<SourceSet> {
        read(&self.sources)
    }

    pub fn ranges(&self) -> Arc<CarrierTable> {
        read(&self.ranges)
    }

    pub fn set_sources(&self, sources: SourceSet) {
        write(&self.sources, sources);
    }

    pub fn set_ranges(&self, ranges: CarrierTable) {
        write(&self.ranges, ranges);
    }
}

// The locks only guard an Arc swap, which cannot leave the value half-written, so a
// poisoned lock still holds a consistent value.
fn read<T>(lock: &RwLock<Arc<T>>) -> Arc<T> {
    lock.read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

fn write<T>(lock: &RwLock<Arc<T>>, value: T) {
    *lock
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(value);
}
