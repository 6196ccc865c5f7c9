//! The access log: which tenant checked which number, and when, so an operator can answer
//! "who looked up this customer?". Numbers are stored only as SHA-256 keyed with a secret
//! pepper derived from the server's key file (shared by replicas), so the database alone
//! reveals no number. (A database made before key files keeps the pepper it stored then.)
//!
//! Checks only hand entries to a background task (a channel send); the task folds
//! repeats of one (tenant, number) together. A pair not yet logged in the current minute
//! is written within a second, so "who looked up this customer?" is answered at once;
//! its further checks that minute are folded into one more row at the minute's end, so a
//! number checked all day long costs two rows a minute rather than one a second. An
//! audit's chunks are written at the next tick and not remembered. What is
//! queued is bounded by entries, not messages (an audit chunk is one message of a
//! thousand): if the database falls behind, checks wait rather than go unlogged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::domain::auth::{TenantName, hex};
use crate::domain::number::E164;
use crate::server_key::ServerKey;
use crate::store::{AccessLogStore, AccessRecord, StoreError};

/// Where databases made before key files keep their pepper.
const LEGACY_PEPPER_SETTING: &str = "access_pepper";
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How long the repeats of a pair already logged wait to be written.
const REPEATS_EVERY: Duration = Duration::from_secs(60);
const QUEUE: usize = 65_536;

enum Message {
    /// One tenant looked up these numbers (one, or an audit's chunk) at this time; the
    /// permit holds their room in the queue until they are folded in.
    Entries(
        TenantName,
        Vec<NumberHash>,
        DateTime<Utc>,
        OwnedSemaphorePermit,
    ),
    /// Write everything pending now, then answer.
    Flush(oneshot::Sender<()>),
}

/// The first 128 bits of the keyed SHA-256: ample to tell numbers apart, and half the
/// index that 256 bits would need.
type NumberHash = [u8; 16];

/// Records which tenant checked which number, as keyed hashes, written in batches by a background task.
pub struct AccessLog {
    /// A hasher that has already taken in the pepper: each entry only adds its number.
    peppered: Sha256,
    queue: mpsc::UnboundedSender<Message>,
    /// Entries that may wait in the queue.
    room: Arc<Semaphore>,
}

/// The pepper of this database's access log: the one it stored before key files, if it
/// has one (so that earlier entries can still be found), else the key's.
pub async fn pepper(store: &dyn AccessLogStore, key: &ServerKey) -> Result<String, StoreError> {
    Ok(match store.setting(LEGACY_PEPPER_SETTING).await? {
        Some(stored) => {
            tracing::warn!(
                "this database's access log is keyed with a pepper stored in the database                  (it was made before key files), so a copy of the database can be searched                  for numbers; see the README's security section to retire it"
            );
            stored
        }
        None => key.access_log_pepper(),
    })
}

fn peppered(pepper: &str) -> Sha256 {
    let mut h = Sha256::new();
    h.update(pepper.as_bytes());
    h.update(b":");
    h
}

fn hash_with(peppered: &Sha256, number: &E164) -> NumberHash {
    let mut h = peppered.clone();
    h.update(number.as_str().as_bytes());
    let digest = h.finalize();
    let mut key = NumberHash::default();
    let n = key.len();
    key.copy_from_slice(&digest[..n]);
    key
}

/// The keyed hash under which a number appears in the access log.
pub fn number_hash(pepper: &str, number: &E164) -> String {
    hex(&hash_with(&peppered(pepper), number))
}

impl AccessLog {
    /// Finds the log's pepper and starts the writer task.
    pub async fn start(
        store: Arc<dyn AccessLogStore>,
        key: &ServerKey,
    ) -> Result<AccessLog, StoreError> {
        let pepper = pepper(store.as_ref(), key).await?;
        let (queue, entries) = mpsc::unbounded_channel();
        tokio::spawn(write_entries(store, entries));
        Ok(AccessLog {
            peppered: peppered(&pepper),
            queue,
            room: Arc::new(Semaphore::new(QUEUE)),
        })
    }

    /// Queues one entry per number for `tenant`, waiting while the queue is full.
    pub async fn record<'a>(
        &self,
        tenant: &TenantName,
        numbers: impl IntoIterator<Item = &'a E164>,
    ) {
        let hashes: Vec<NumberHash> = numbers
            .into_iter()
            .map(|n| hash_with(&self.peppered, n))
            .collect();
        let room = u32::try_from(hashes.len().clamp(1, QUEUE)).unwrap_or(u32::MAX);
        // Fails only once the log is shut down.
        let Ok(permit) = self.room.clone().acquire_many_owned(room).await else {
            return;
        };
        let entry = Message::Entries(tenant.clone(), hashes, Utc::now(), permit);
        // Fails only once the writer is gone, i.e. at shutdown.
        let _ = self.queue.send(entry);
    }

    /// Writes every entry recorded so far (at shutdown, so none is lost).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// The writer's maps are updated on every check. Their keys are not chosen by callers
/// (tenants are the operator's, numbers arrive keyed-hashed), so a fast hash will do
/// where SipHash made these updates 2.4% of a warm check's profile.
type FastHash = foldhash::fast::RandomState;

/// Lookups waiting to be written: per tenant, per number, when first and last and how
/// often.
type Pending = HashMap<TenantName, HashMap<NumberHash, Seen, FastHash>, FastHash>;

struct Seen {
    first_at: DateTime<Utc>,
    last_at: DateTime<Utc>,
    checks: u64,
}

/// What the writer holds between writes.
#[derive(Default)]
struct Held {
    /// An audit's chunks: written at the next tick and not remembered, since an audit
    /// lists each number once and remembering a million of them for a minute would cost
    /// more memory than the rows it saves.
    bulk: Pending,
    /// Pairs not logged yet this window: written at the next tick.
    fresh: Pending,
    /// Further checks of pairs logged this window: written when it ends.
    repeats: Pending,
    /// The pairs logged this window.
    logged: HashMap<TenantName, HashSet<NumberHash, FastHash>, FastHash>,
}

impl Held {
    fn add(&mut self, tenant: TenantName, hashes: Vec<NumberHash>, at: DateTime<Utc>) {
        let pending = match hashes.as_slice() {
            [one] if self.logged.get(&tenant).is_some_and(|l| l.contains(one)) => &mut self.repeats,
            [_] => &mut self.fresh,
            _ => &mut self.bulk,
        };
        fold(pending, tenant, hashes, at);
    }

    /// Writes the audits' chunks, and the fresh pairs, which it remembers as logged.
    async fn write_fresh(&mut self, store: &dyn AccessLogStore) {
        if write(store, &self.bulk).await {
            self.bulk.clear();
        }
        if write(store, &self.fresh).await {
            for (tenant, numbers) in self.fresh.drain() {
                self.logged
                    .entry(tenant)
                    .or_default()
                    .extend(numbers.into_keys());
            }
        }
    }

    /// Writes everything held; the next window starts with nothing logged.
    async fn write_all(&mut self, store: &dyn AccessLogStore) {
        self.write_fresh(store).await;
        if write(store, &self.repeats).await {
            self.repeats.clear();
            self.logged.clear();
        }
    }
}

/// Adds one lookup of each of `hashes` by `tenant` at `at` to `pending`.
fn fold(pending: &mut Pending, tenant: TenantName, hashes: Vec<NumberHash>, at: DateTime<Utc>) {
    let numbers = pending.entry(tenant).or_default();
    for hash in hashes {
        numbers
            .entry(hash)
            .and_modify(|seen| {
                seen.last_at = at;
                seen.checks += 1;
            })
            .or_insert(Seen {
                first_at: at,
                last_at: at,
                checks: 1,
            });
    }
}

async fn write_entries(
    store: Arc<dyn AccessLogStore>,
    mut entries: mpsc::UnboundedReceiver<Message>,
) {
    let store = store.as_ref();
    let mut held = Held::default();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    let mut window =
        tokio::time::interval_at(tokio::time::Instant::now() + REPEATS_EVERY, REPEATS_EVERY);
    loop {
        tokio::select! {
            entry = entries.recv() => match entry {
                Some(Message::Flush(done)) => {
                    held.write_all(store).await;
                    let _ = done.send(());
                }
                Some(Message::Entries(tenant, hashes, at, _room)) => held.add(tenant, hashes, at),
                None => {
                    held.write_all(store).await;
                    return;
                }
            },
            _ = tick.tick() => held.write_fresh(store).await,
            _ = window.tick() => held.write_all(store).await,
        }
    }
}

/// Writes `pending`; whether it was written (if not, it is kept and tried again at the
/// next tick, while the bounded queue pushes back).
async fn write(store: &dyn AccessLogStore, pending: &Pending) -> bool {
    let mut records: Vec<(&NumberHash, &TenantName, &Seen)> = pending
        .iter()
        .flat_map(|(tenant, numbers)| numbers.iter().map(move |(hash, seen)| (hash, tenant, seen)))
        .collect();
    if records.is_empty() {
        return true;
    }
    // In index order, a flush of an audit's hundred thousand entries visits each index
    // page once instead of jumping about the whole index.
    records.sort_unstable_by_key(|(hash, _, _)| *hash);
    let records: Vec<AccessRecord> = records
        .into_iter()
        .map(|(hash, tenant, seen)| AccessRecord {
            tenant: tenant.clone(),
            number_hash: hex(hash),
            first_at: seen.first_at,
            last_at: seen.last_at,
            checks: seen.checks,
        })
        .collect();
    match store.record_access(&records).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, entries = records.len(), "could not write the access log; retrying");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;

    #[derive(Default)]
    struct Recorded(Mutex<Vec<AccessRecord>>);

    #[async_trait]
    impl AccessLogStore for Recorded {
        async fn setting_or_init(&self, _: &str, initial: &str) -> Result<String, StoreError> {
            Ok(initial.to_string())
        }
        async fn setting(&self, _: &str) -> Result<Option<String>, StoreError> {
            Ok(None)
        }
        async fn record_access(&self, records: &[AccessRecord]) -> Result<(), StoreError> {
            self.0.lock().unwrap().extend_from_slice(records);
            Ok(())
        }
        async fn access_log(&self, _: &str) -> Result<Vec<AccessRecord>, StoreError> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    impl Recorded {
        /// (number hash's first byte, checks) per row, in the order written.
        fn rows(&self) -> Vec<(String, u64)> {
            let rows = self.0.lock().unwrap();
            rows.iter()
                .map(|r| (r.number_hash[..2].to_string(), r.checks))
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pair_is_logged_within_a_second_and_its_repeats_once_a_minute() {
        let store = Arc::new(Recorded::default());
        let (queue, entries) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_entries(store.clone(), entries));
        let room = Arc::new(Semaphore::new(QUEUE));
        let tenant: TenantName = "bank".parse().unwrap();
        let check = |hash: u8| {
            let permit = room.clone().try_acquire_owned().unwrap();
            let entry = Message::Entries(tenant.clone(), vec![[hash; 16]], Utc::now(), permit);
            queue.send(entry).ok().unwrap();
        };
        let pause = |secs: f64| tokio::time::sleep(Duration::from_secs_f64(secs));

        check(1);
        pause(1.5).await;
        assert_eq!(
            store.rows(),
            [("01".to_string(), 1)],
            "logged within a second"
        );
        for _ in 0..3 {
            check(1);
        }
        check(2);
        pause(1.5).await;
        // A new pair at once; the repeats wait.
        assert_eq!(store.rows(), [("01".to_string(), 1), ("02".to_string(), 1)]);
        pause(60.0).await;
        assert_eq!(store.rows()[2..], [("01".to_string(), 3)]);
        // A new window: the pair is new again.
        check(1);
        pause(1.5).await;
        assert_eq!(store.rows()[3..], [("01".to_string(), 1)]);
        // An audit's chunk goes out at the next tick and is not remembered: a check of
        // one of its numbers right after is a new pair, written at once too.
        let permit = room.clone().try_acquire_many_owned(2).unwrap();
        let chunk = Message::Entries(tenant.clone(), vec![[3; 16], [4; 16]], Utc::now(), permit);
        queue.send(chunk).ok().unwrap();
        pause(1.5).await;
        check(3);
        pause(1.5).await;
        assert_eq!(
            store.rows()[4..],
            [
                ("03".to_string(), 1),
                ("04".to_string(), 1),
                ("03".to_string(), 1)
            ]
        );
        // Every check is counted once, and a flush leaves nothing behind.
        check(2);
        let (done, flushed) = oneshot::channel();
        queue.send(Message::Flush(done)).ok().unwrap();
        flushed.await.unwrap();
        let checks: u64 = store.rows().iter().map(|(_, c)| c).sum();
        assert_eq!(checks, 10);
        drop(queue);
        writer.await.unwrap();
        assert_eq!(room.available_permits(), QUEUE);
    }
}
