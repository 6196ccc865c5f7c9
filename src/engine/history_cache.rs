//! Per-number event histories, cached by E.164 (negative entries too, as empty histories).
//!
//! Invalidation must beat a concurrent load: a check that read the store just before an
//! ingest committed must not put its stale history into the cache after the ingest has
//! invalidated it. Each stripe of numbers carries an epoch that ingest bumps; a load only
//! inserts if its stripe's epoch has not moved, and the check-and-insert and the
//! bump-and-invalidate each happen under the stripe's lock.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use moka::sync::Cache;

use crate::domain::event::EventFact;
use crate::domain::number::E164;
use crate::store::StoreError;

pub type History = Arc<[EventFact]>;

const STRIPES: usize = 1024;

pub struct HistoryCache {
    /// `None` when caching is disabled (capacity 0): every check reads the store.
    cache: Option<Cache<E164, History>>,
    epochs: Box<[Mutex<u64>]>,
    hasher: RandomState,
}

impl HistoryCache {
    pub fn new(capacity: u64) -> Self {
        HistoryCache {
            cache: (capacity > 0).then(|| Cache::new(capacity)),
            epochs: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            hasher: RandomState::new(),
        }
    }

    fn epoch(&self, number: &E164) -> MutexGuard<'_, u64> {
        let stripe = (self.hasher.hash_one(number) as usize) % STRIPES;
        // A poisoned stripe only means another thread panicked mid-update of a counter;
        // the counter itself is still usable.
        self.epochs[stripe]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub async fn get_or_load<F, Fut>(&self, number: &E164, load: F) -> Result<History, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<EventFact>, StoreError>>,
    {
        let Some(cache) = &self.cache else {
            return Ok(load().await?.into());
        };
        if let Some(history) = cache.get(number) {
            return Ok(history);
        }
        let seen = *self.epoch(number);
        let history: History = load().await?.into();
        let epoch = self.epoch(number);
        if *epoch == seen {
            cache.insert(number.clone(), history.clone());
        }
        Ok(history)
    }

    /// Drops every cached history (after missed change notifications). Bumping every
    /// stripe first keeps loads that are in flight from re-inserting what they read.
    pub fn clear(&self) {
        for stripe in self.epochs.iter() {
            let mut epoch = stripe
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *epoch = epoch.wrapping_add(1);
        }
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }

    /// Drops the cached histories of these numbers; call after the commit and before the
    /// write is acknowledged.
    pub fn invalidate<'a>(&self, numbers: impl IntoIterator<Item = &'a E164>) {
        for number in numbers {
            let mut epoch = self.epoch(number);
            *epoch = epoch.wrapping_add(1);
            if let Some(cache) = &self.cache {
                cache.invalidate(number);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::EventKind;
    use chrono::Utc;

    fn number() -> E164 {
        E164::parse("+819012345678", None).unwrap()
    }

    fn fact() -> EventFact {
        EventFact {
            kind: EventKind::SimSwap,
            occurred_at: Utc::now(),
            from_carrier: None,
            to_carrier: None,
        }
    }

    #[tokio::test]
    async fn hits_skip_the_loader_and_invalidation_forces_a_reload() {
        let cache = HistoryCache::new(100);
        let n = number();
        let first = cache
            .get_or_load(&n, || async { Ok(vec![]) })
            .await
            .unwrap();
        assert!(first.is_empty());
        let hit = cache
            .get_or_load(&n, || async { panic!("should be cached") })
            .await
            .unwrap();
        assert!(hit.is_empty());
        cache.invalidate([&n]);
        let reloaded = cache
            .get_or_load(&n, || async { Ok(vec![fact()]) })
            .await
            .unwrap();
        assert_eq!(reloaded.len(), 1);
    }

    #[tokio::test]
    async fn a_load_racing_an_invalidation_is_not_cached() {
        let cache = HistoryCache::new(100);
        let n = number();
        // The store is read (stale: empty), then an ingest commits and invalidates before
        // the load finishes.
        let stale = cache
            .get_or_load(&n, || async {
                cache.invalidate([&n]);
                Ok(vec![])
            })
            .await
            .unwrap();
        assert!(stale.is_empty());
        let fresh = cache
            .get_or_load(&n, || async { Ok(vec![fact()]) })
            .await
            .unwrap();
        assert_eq!(fresh.len(), 1, "the stale load must not have been cached");
    }

    #[tokio::test]
    async fn capacity_zero_disables_caching() {
        let cache = HistoryCache::new(0);
        let n = number();
        cache
            .get_or_load(&n, || async { Ok(vec![]) })
            .await
            .unwrap();
        let again = cache
            .get_or_load(&n, || async { Ok(vec![fact()]) })
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
    }
}
