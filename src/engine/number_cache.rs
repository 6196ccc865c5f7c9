//! Per-number state — the event history (empty for numbers with none) and whether the
//! number is mobile — cached by E.164. A check of a number given in canonical E.164 form
//! that is cached skips parsing too: the entry exists only because that exact string
//! parsed and validated before.
//!
//! Invalidation must beat a concurrent load: a check that read the store just before an
//! ingest committed must not put its stale history into the cache after the ingest has
//! invalidated it. Each stripe of numbers carries an epoch that ingest bumps; a load only
//! inserts if its stripe's epoch has not moved, and the check-and-insert and the
//! bump-and-invalidate each happen under the stripe's lock.

use std::future::Future;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use moka::sync::Cache;

use super::feed_lag::FeedLag;
use crate::FastHash;
use crate::domain::event::EventFact;
use crate::domain::number::{E164, ParsedNumber};
use crate::store::StoreError;

/// A number's events, shared between the cache and the checks reading it.
pub type History = Arc<[EventFact]>;

/// What a check needs to know of one number.
#[derive(Debug, Clone)]
pub struct NumberState {
    /// Mobile, or mobile-capable, per the numbering plan.
    pub mobile: bool,
    /// The number's events.
    pub history: History,
}

const STRIPES: usize = 1024;

/// A cached state, and whether its key, read alone as E.164, is a valid number: a state
/// loaded after reading a national-format input is cached under the E.164 form the
/// reading gave, which the reader might refuse on its own, so it may not stand in for
/// reading that string (validity comes from the input alone, never from the cache).
#[derive(Debug, Clone)]
struct Cached {
    state: NumberState,
    reads_alone: bool,
}

/// Numbers' histories kept in memory, with per-stripe epochs so a load that raced an ingest is not cached.
pub struct NumberCache {
    /// `None` when caching is disabled (capacity 0): every check reads the store.
    cache: Option<Cache<E164, Cached, FastHash>>,
    /// Where replicas share the database: entries are served only while the change feed
    /// is within its bound (see [`FeedLag`]).
    lag: Option<Arc<FeedLag>>,
    epochs: Box<[Mutex<u64>]>,
    hasher: FastHash,
}

impl NumberCache {
    /// A cache of at most `capacity` numbers; 0 disables it. `lag`, where replicas share
    /// the database, decides when entries may be served.
    pub fn new(capacity: u64, lag: Option<Arc<FeedLag>>) -> Self {
        NumberCache {
            cache: (capacity > 0).then(|| {
                Cache::builder()
                    .max_capacity(capacity)
                    .build_with_hasher(FastHash::default())
            }),
            lag,
            epochs: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            hasher: FastHash::default(),
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

    /// Whether cached entries may be served now: always, unless this replica's change
    /// feed is behind by more than its bound.
    pub fn trusted(&self) -> bool {
        self.lag.as_ref().is_none_or(|lag| lag.within_bound())
    }

    fn serving(&self) -> Option<&Cache<E164, Cached, FastHash>> {
        self.cache.as_ref().filter(|_| self.trusted())
    }

    /// The cached state of a number given exactly as its E.164 string, if any.
    pub fn get_canonical(&self, input: &str) -> Option<NumberState> {
        let cache = self.serving()?;
        // Only `+` and up to 15 digits can be a key; anything else would miss anyway.
        if input.len() > 16 || !input.starts_with('+') {
            return None;
        }
        // A miss here is counted by the look-up that follows it.
        let hit = cache
            .get(input)
            .filter(|cached| cached.reads_alone)
            .map(|cached| cached.state);
        if hit.is_some() {
            crate::metrics::cache(true);
        }
        hit
    }

    /// The number's state, from the cache or else from `load`, which is cached unless an ingest touched the number meanwhile.
    pub async fn get_or_load<F, Fut>(
        &self,
        number: &ParsedNumber,
        load: F,
    ) -> Result<NumberState, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<EventFact>, StoreError>>,
    {
        let key = &number.e164;
        let state = |history: Vec<EventFact>| NumberState {
            mobile: number.mobile,
            history: history.into(),
        };
        let Some(cache) = self.serving() else {
            return Ok(state(load().await?));
        };
        let cached = cache.get(key);
        crate::metrics::cache(cached.is_some());
        if let Some(cached) = cached {
            return Ok(cached.state);
        }
        let seen = *self.epoch(key);
        let loaded = state(load().await?);
        // Once per load, which reads the store anyway (and outside the stripe's lock);
        // checks of this text then skip reading it.
        let reads_alone = ParsedNumber::parse(key.as_str(), None).is_ok();
        let epoch = self.epoch(key);
        if *epoch == seen {
            let cached = Cached {
                state: loaded.clone(),
                reads_alone,
            };
            cache.insert(key.clone(), cached);
        }
        Ok(loaded)
    }

    /// The cached state of a number, if any (without loading it).
    pub fn get(&self, number: &E164) -> Option<NumberState> {
        let state = self.serving()?.get(number).map(|cached| cached.state);
        crate::metrics::cache(state.is_some());
        state
    }

    /// The number's stripe epoch now: a state read from the store after this call is
    /// current for as long as the epoch stays the same.
    pub fn epoch_of(&self, number: &E164) -> u64 {
        *self.epoch(number)
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

    fn number() -> ParsedNumber {
        ParsedNumber::parse("+819012345678", None).unwrap()
    }

    fn fact() -> EventFact {
        EventFact {
            source: "feed".parse().unwrap(),
            source_event_id: "e1".into(),
            kind: EventKind::SimSwap,
            occurred_at: Utc::now(),
            from_carrier: None,
            to_carrier: None,
        }
    }

    #[tokio::test]
    async fn hits_skip_the_loader_and_invalidation_forces_a_reload() {
        let cache = NumberCache::new(100, None);
        let n = number();
        let first = cache
            .get_or_load(&n, || async { Ok(vec![]) })
            .await
            .unwrap();
        assert!(first.history.is_empty() && first.mobile);
        let by_text = cache.get_canonical("+819012345678").expect("canonical hit");
        assert!(by_text.history.is_empty());
        assert!(cache.get_canonical("090-1234-5678").is_none());
        let hit = cache
            .get_or_load(&n, || async { panic!("should be cached") })
            .await
            .unwrap();
        assert!(hit.history.is_empty());
        cache.invalidate([&n.e164]);
        assert!(cache.get_canonical("+819012345678").is_none());
        let reloaded = cache
            .get_or_load(&n, || async { Ok(vec![fact()]) })
            .await
            .unwrap();
        assert_eq!(reloaded.history.len(), 1);
    }

    #[tokio::test]
    async fn a_key_that_does_not_read_alone_never_answers_for_its_text() {
        let cache = NumberCache::new(100, None);
        // What a national-format reading could give: a form the reader refuses alone.
        let n = ParsedNumber {
            e164: E164::from_trusted("+1999".into()),
            mobile: true,
        };
        cache
            .get_or_load(&n, || async { Ok(vec![]) })
            .await
            .unwrap();
        assert!(
            cache.get(&n.e164).is_some(),
            "cached for readings that gave it"
        );
        assert!(
            cache.get_canonical("+1999").is_none(),
            "but not in place of reading the text"
        );
    }

    #[tokio::test]
    async fn a_load_racing_an_invalidation_is_not_cached() {
        let cache = NumberCache::new(100, None);
        let n = number();
        // The store is read (stale: empty), then an ingest commits and invalidates before
        // the load finishes.
        let stale = cache
            .get_or_load(&n, || async {
                cache.invalidate([&n.e164]);
                Ok(vec![])
            })
            .await
            .unwrap();
        assert!(stale.history.is_empty());
        let fresh = cache
            .get_or_load(&n, || async { Ok(vec![fact()]) })
            .await
            .unwrap();
        assert_eq!(
            fresh.history.len(),
            1,
            "the stale load must not have been cached"
        );
    }

    #[test]
    fn epochs_move_with_invalidation() {
        let cache = NumberCache::new(100, None);
        let n = number();
        let seen = cache.epoch_of(&n.e164);
        cache.invalidate([&n.e164]);
        assert_ne!(cache.epoch_of(&n.e164), seen);
        assert!(cache.get(&n.e164).is_none());
    }

    #[tokio::test]
    async fn capacity_zero_disables_caching() {
        let cache = NumberCache::new(0, None);
        let n = number();
        cache
            .get_or_load(&n, || async { Ok(vec![]) })
            .await
            .unwrap();
        let again = cache
            .get_or_load(&n, || async { Ok(vec![fact()]) })
            .await
            .unwrap();
        assert_eq!(again.history.len(), 1);
        assert!(cache.get_canonical("+819012345678").is_none());
    }

    #[tokio::test]
    async fn a_replica_behind_its_bound_reads_the_store_for_every_check() {
        let started = std::time::Instant::now() - std::time::Duration::from_secs(5);
        let lag = Arc::new(FeedLag::new(std::time::Duration::from_secs(1), started));
        let cache = NumberCache::new(100, Some(lag.clone()));
        let n = number();
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(vec![fact()])
        };
        cache.get_or_load(&n, load).await.unwrap();
        cache.get_or_load(&n, load).await.unwrap();
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(cache.get(&n.e164).is_none());
        assert!(cache.get_canonical("+819012345678").is_none());
        // Caught up again: loads are cached and served.
        lag.caught_up_to(std::time::Instant::now());
        cache.get_or_load(&n, load).await.unwrap();
        cache.get_or_load(&n, load).await.unwrap();
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert!(cache.get(&n.e164).is_some());
    }
}
