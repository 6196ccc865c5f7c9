//! How far a replica's change feed may be behind the shared database before its cached
//! histories stop being trusted.
//!
//! Every replica sends itself a heartbeat through the database's notification queue.
//! PostgreSQL delivers notifications in commit order, and the engine applies changes in
//! the order they arrive, so once a heartbeat sent at `t` has been applied, every change
//! committed before `t` has been applied too: the replica is caught up to `t`. A cached
//! history is served only while `now - t` is within the bound; past it, checks read the
//! database, so a check started later than the bound after a commit always sees it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The newest point this replica is known to be caught up to, and the bound it is held to.
#[derive(Debug)]
pub struct FeedLag {
    bound: Duration,
    start: Instant,
    /// Microseconds after `start` of the newest caught-up point.
    caught_up: AtomicU64,
    /// Whether a check has found the feed behind and not yet seen it catch up (so each
    /// episode is logged once).
    behind: AtomicBool,
}

impl FeedLag {
    /// A replica held to `bound`, counted as caught up at `start` (it has cached nothing).
    pub fn new(bound: Duration, start: Instant) -> Self {
        FeedLag {
            bound,
            start,
            caught_up: AtomicU64::new(0),
            behind: AtomicBool::new(false),
        }
    }

    /// The bound this replica is held to.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// Every change committed before `sent` has been applied.
    pub fn caught_up_to(&self, sent: Instant) {
        let micros = u64::try_from(sent.saturating_duration_since(self.start).as_micros())
            .unwrap_or(u64::MAX);
        self.caught_up.fetch_max(micros, Ordering::AcqRel);
        if self.within_bound_at(Instant::now()) && self.behind.swap(false, Ordering::AcqRel) {
            tracing::info!("the change feed caught up; checks answer from the cache again");
        }
    }

    /// How far behind `now` the newest caught-up point is.
    pub fn lag_at(&self, now: Instant) -> Duration {
        let caught_up = self.start + Duration::from_micros(self.caught_up.load(Ordering::Acquire));
        now.saturating_duration_since(caught_up)
    }

    /// Whether cached histories may be served now (a clock read and an atomic load).
    pub fn within_bound(&self) -> bool {
        let now = Instant::now();
        if self.within_bound_at(now) {
            return true;
        }
        if !self.behind.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                lag_ms = self.lag_at(now).as_millis() as u64,
                bound_ms = self.bound.as_millis() as u64,
                "the change feed is behind the database by more than its bound; checks read \
                 the database instead of the cache until it catches up"
            );
        }
        false
    }

    fn within_bound_at(&self, now: Instant) -> bool {
        self.lag_at(now) <= self.bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_millis(1000);

    #[test]
    fn a_replica_is_trusted_until_the_bound_passes_without_a_heartbeat() {
        let start = Instant::now();
        let lag = FeedLag::new(BOUND, start);
        assert!(lag.within_bound_at(start + BOUND));
        assert!(!lag.within_bound_at(start + BOUND + Duration::from_millis(1)));
        lag.caught_up_to(start + Duration::from_millis(600));
        assert!(lag.within_bound_at(start + Duration::from_millis(1600)));
        assert!(!lag.within_bound_at(start + Duration::from_millis(1601)));
        assert_eq!(
            lag.lag_at(start + Duration::from_millis(700)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn an_older_heartbeat_heard_late_never_moves_the_point_back() {
        let start = Instant::now();
        let lag = FeedLag::new(BOUND, start);
        lag.caught_up_to(start + Duration::from_millis(900));
        lag.caught_up_to(start + Duration::from_millis(300));
        assert!(lag.within_bound_at(start + Duration::from_millis(1900)));
        // A heartbeat stamped before the start (a clock read racing `new`) counts as start.
        lag.caught_up_to(start.checked_sub(Duration::from_millis(5)).unwrap_or(start));
        assert!(lag.within_bound_at(start + Duration::from_millis(1900)));
    }

    #[test]
    fn a_check_past_the_bound_is_refused_the_cache_until_a_heartbeat_comes() {
        // Started in the past, so the bound has already passed.
        let start = Instant::now() - Duration::from_secs(5);
        let lag = FeedLag::new(BOUND, start);
        assert!(!lag.within_bound());
        assert!(!lag.within_bound(), "stays behind, logged once");
        lag.caught_up_to(Instant::now());
        assert!(lag.within_bound());
    }
}
