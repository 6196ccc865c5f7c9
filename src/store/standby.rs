//! Check reads from a PostgreSQL hot standby, so that read capacity grows past one
//! database. A standby cannot `LISTEN`, so what changed still arrives through the
//! primary's notifications; a number's history is read from the standby only once the
//! standby has replayed the primary's WAL past every commit this process knows changed
//! it, and past everything its change feed has caught up with. Anything else, and
//! everything while the standby is unreachable, is read from the primary.
//!
//! Positions are WAL positions as integers (`pg_lsn - '0/0'`):
//! - a changed number's: the primary's insert position read after its notification
//!   arrived (the commit precedes the notification, so that position is past it);
//! - the floor: the primary's insert position carried by this process's latest heartbeat
//!   that came back (every commit before it has been delivered to this process, so the
//!   standby past it is as fresh as the change feed).
//!
//! When the newest heartbeat back was sent longer ago than the replica-staleness bound,
//! nothing is read from the standby: the feed may be missing changes the standby has not
//! replayed either.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::StoreError;
use super::merged_reads::HistoryReads;
use crate::domain::number::E164;

/// How often the standby's replay position is read, and positions for changed numbers
/// are fetched from the primary.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Changed numbers remembered at most; past it (a standby down through a bulk load) they
/// are forgotten and the floor is cleared instead, which holds back every standby read
/// until a heartbeat sent after them comes back and the standby has replayed past it.
const MAX_MARKS: usize = 1_000_000;
/// Application name of the standby connections.
pub const STANDBY_APPLICATION_NAME: &str = "numguard-standby";
/// The standby's replay position; a server that is not (or no longer) in recovery reads
/// as its own write position.
const REPLAYED: &str = "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
     ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint";
/// The primary's insert position, as SQL: past every commit that has completed.
macro_rules! primary_position {
    () => {
        "(pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"
    };
}
pub(super) use primary_position;

/// A hot standby of the database and what this process knows about how far it must
/// have replayed.
pub struct Standby {
    pool: PgPool,
    /// History reads through `pool`.
    reads: HistoryReads,
    max_lag: Duration,
    positions: Mutex<Positions>,
    /// The standby's replay position at the last poll; 0 while it cannot be read.
    replayed: AtomicU64,
    /// Whether the last poll failed (logged once per outage).
    unreachable: AtomicBool,
}

#[derive(Default)]
struct Positions {
    /// The latest returned heartbeat's position and when it was sent; `None` until one
    /// has come back, and again after the feed reconnects (notifications may have been
    /// lost).
    floor: Option<(u64, Instant)>,
    /// When the floor was last cleared: a heartbeat sent before then may have read its
    /// position before changes this process has since lost track of, so it does not count.
    cleared_at: Option<Instant>,
    /// Changed numbers: the position the standby must reach, or `None` while it is
    /// being fetched, with the mark's generation.
    numbers: HashMap<String, Mark>,
    /// Numbers whose position is still to be fetched.
    unresolved: Vec<String>,
    generation: u64,
}

#[derive(Clone, Copy)]
struct Mark {
    needs: Option<u64>,
    generation: u64,
}

impl Standby {
    /// A standby at `url`, connected lazily: a standby that is down at start only sends
    /// reads to the primary until it is back.
    pub fn connect(
        url: &str,
        max_lag: Duration,
        pool_size: u32,
    ) -> Result<Arc<Standby>, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy_with(options.application_name(STANDBY_APPLICATION_NAME));
        Ok(Arc::new(Standby {
            reads: HistoryReads::new(pool.clone(), pool_size),
            pool,
            max_lag,
            positions: Mutex::new(Positions::default()),
            replayed: AtomicU64::new(0),
            unreachable: AtomicBool::new(false),
        }))
    }

    /// History reads on the standby.
    pub fn reads(&self) -> &HistoryReads {
        &self.reads
    }

    fn positions(&self) -> MutexGuard<'_, Positions> {
        // Plain data, consistent whatever a panicking holder was doing.
        self.positions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Events were committed for `numbers` (their notification has arrived): they are
    /// read from the primary until the standby has replayed a position fetched from now.
    pub fn changed(&self, numbers: &[E164]) {
        let mut p = self.positions();
        if p.numbers.len() + numbers.len() > MAX_MARKS {
            *p = Positions {
                cleared_at: Some(Instant::now()),
                ..Positions::default()
            };
            return;
        }
        p.generation += 1;
        let generation = p.generation;
        for number in numbers {
            p.numbers.insert(
                number.as_str().to_string(),
                Mark {
                    needs: None,
                    generation,
                },
            );
            p.unresolved.push(number.as_str().to_string());
        }
    }

    /// This process's heartbeat sent at `sent`, when the primary was at `position`,
    /// came back.
    pub fn caught_up(&self, position: u64, sent: Instant) {
        let mut p = self.positions();
        if p.cleared_at.is_some_and(|cleared| sent < cleared) {
            return;
        }
        let floor = p.floor.map_or((position, sent), |(old, at)| {
            (old.max(position), at.max(sent))
        });
        p.floor = Some(floor);
    }

    /// The change feed reconnected: notifications may have been lost, so nothing is read
    /// from the standby until a heartbeat sent after this has come back.
    pub fn reconnected(&self) {
        let mut p = self.positions();
        p.floor = None;
        p.cleared_at = Some(Instant::now());
    }

    /// For each number, whether its history may be read from the standby now.
    pub fn readable(&self, numbers: &[E164]) -> Vec<bool> {
        let replayed = self.replayed.load(Ordering::Acquire);
        let p = self.positions();
        let usable = p.floor.is_some_and(|(floor, sent)| {
            replayed > 0 && replayed >= floor && sent.elapsed() <= self.max_lag
        });
        numbers
            .iter()
            .map(|n| {
                usable
                    && p.numbers
                        .get(n.as_str())
                        .is_none_or(|mark| mark.needs.is_some_and(|needs| needs <= replayed))
            })
            .collect()
    }

    /// A read on the standby failed: until the next poll reads it again, reads go to the
    /// primary.
    pub fn failed(&self, error: &StoreError) {
        self.replayed.store(0, Ordering::Release);
        if !self.unreachable.swap(true, Ordering::AcqRel) {
            tracing::warn!(%error, "the standby cannot be read; reading from the primary");
        }
    }

    /// Polls the standby's replay position and fetches positions for changed numbers from
    /// the primary, for as long as the store exists.
    pub async fn track(self: Arc<Self>, primary: PgPool) {
        let mut ticks = tokio::time::interval(POLL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if Arc::strong_count(&self) == 1 {
                return; // the store is gone
            }
            self.resolve(&primary).await;
            self.poll().await;
        }
    }

    /// Gives every number marked before now the primary's current position.
    async fn resolve(&self, primary: &PgPool) {
        let (waiting, generation) = {
            let mut p = self.positions();
            if p.unresolved.is_empty() {
                return;
            }
            (std::mem::take(&mut p.unresolved), p.generation)
        };
        let position = sqlx::query_scalar::<_, i64>(concat!("SELECT ", primary_position!()))
            .fetch_one(primary)
            .await;
        let mut p = self.positions();
        match position {
            Ok(position) => {
                let position = u64::try_from(position).unwrap_or(0);
                for number in waiting {
                    // A number marked again since keeps waiting for a later position.
                    if let Some(mark) = p.numbers.get_mut(&number)
                        && mark.needs.is_none()
                        && mark.generation <= generation
                    {
                        mark.needs = Some(position);
                    }
                }
            }
            Err(_) => p.unresolved.extend(waiting), // the primary is down: try again
        }
    }

    /// Reads how far the standby has replayed, and forgets the marks it has passed.
    async fn poll(&self) {
        match sqlx::query_scalar::<_, i64>(REPLAYED)
            .fetch_one(&self.pool)
            .await
        {
            Ok(replayed) => {
                let replayed = u64::try_from(replayed).unwrap_or(0);
                self.replayed.store(replayed, Ordering::Release);
                if self.unreachable.swap(false, Ordering::AcqRel) {
                    tracing::info!("the standby can be read again");
                }
                self.positions()
                    .numbers
                    .retain(|_, mark| mark.needs.is_none_or(|needs| needs > replayed));
            }
            Err(e) => self.failed(&e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby() -> Arc<Standby> {
        Standby::connect("postgres://127.0.0.1:1/none", Duration::from_secs(1), 1).unwrap()
    }

    /// Whether `n` alone may be read from the standby now.
    fn one(s: &Standby, n: &E164) -> bool {
        s.readable(std::slice::from_ref(n))[0]
    }

    fn number(n: &str) -> E164 {
        E164::from_trusted(n.to_string())
    }

    #[tokio::test]
    async fn nothing_is_read_from_the_standby_before_the_feed_and_the_replay_allow_it() {
        let s = standby();
        let (a, b) = (number("+819011112222"), number("+819033334444"));
        assert!(!one(&s, &a), "no heartbeat back yet");
        s.caught_up(100, Instant::now());
        assert!(!one(&s, &a), "replay position unknown");
        s.replayed.store(99, Ordering::Release);
        assert!(!one(&s, &a), "behind the floor");
        s.replayed.store(100, Ordering::Release);
        assert_eq!(s.readable(&[a.clone(), b.clone()]), [true, true]);

        s.changed(std::slice::from_ref(&a));
        assert_eq!(s.readable(&[a.clone(), b.clone()]), [false, true]);
        s.positions().numbers.get_mut(a.as_str()).unwrap().needs = Some(150);
        assert!(!one(&s, &a), "not replayed that far");
        s.replayed.store(150, Ordering::Release);
        assert!(one(&s, &a));

        let before = Instant::now();
        s.reconnected();
        assert!(!one(&s, &b), "the feed may have lost changes");
        s.caught_up(130, before);
        assert!(
            !one(&s, &b),
            "a heartbeat sent before the reconnection does not count"
        );
        s.caught_up(120, Instant::now());
        assert!(one(&s, &b), "the floor never goes back");

        s.failed(&StoreError::Corrupt("gone".into()));
        assert_eq!(s.readable(&[b]), [false], "a failed standby is not read");
    }

    #[tokio::test]
    async fn too_many_changed_numbers_hold_the_standby_back_until_the_next_heartbeat() {
        let s = standby();
        s.caught_up(100, Instant::now());
        s.replayed.store(100, Ordering::Release);
        let many: Vec<E164> = (0..=MAX_MARKS as u64)
            .map(|i| number(&format!("+81{i:010}")))
            .collect();
        s.changed(&many);
        assert!(s.positions().numbers.is_empty(), "forgotten, not kept");
        let other = number("+819099998888");
        assert!(!one(&s, &other));
        s.caught_up(150, Instant::now() - Duration::from_millis(10));
        assert!(s.positions().floor.is_none(), "sent before the overflow");
        s.caught_up(200, Instant::now());
        assert!(!one(&s, &other), "not replayed yet");
        s.replayed.store(200, Ordering::Release);
        assert_eq!(s.readable(&[other, many[7].clone()]), [true, true]);
    }

    #[tokio::test]
    async fn the_standby_is_not_read_once_heartbeats_stop_coming_back() {
        let s =
            Standby::connect("postgres://127.0.0.1:1/none", Duration::from_millis(1), 1).unwrap();
        s.caught_up(10, Instant::now());
        s.replayed.store(10, Ordering::Release);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.readable(&[number("+819011112222")]), [false]);
    }
}
