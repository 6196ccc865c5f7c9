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
//! audit's lookups are gathered while it goes on (up to half a million) and written in
//! the order of the log's index, in the second after it pauses or ends; they are not
//! remembered. Writes run beside the task that takes entries in. What is
//! queued is bounded by entries, not messages (an audit chunk is one message of a
//! thousand): if the database falls behind, checks wait rather than go unlogged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::FastHash;
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

/// Lookups waiting to be written: per tenant, per number, when first and last and how
/// often. Updated on every check, hence `FastHash` (with SipHash the updates were 2.4% of
/// a warm check's profile).
type Pending = HashMap<TenantName, HashMap<NumberHash, Seen, FastHash>, FastHash>;

struct Seen {
    first_at: DateTime<Utc>,
    last_at: DateTime<Utc>,
    checks: u64,
}

/// An audit's entries gathered before they are written: a write in the order of the log's
/// number index touches each of its pages once, so one write of half a million entries
/// costs a fraction of five writes of a hundred thousand, each of which touches nearly
/// every page. Held as they arrive, 28 bytes an entry: 14 MiB at most.
const BULK_BATCH: usize = 1 << 19;
/// Rows per transaction. A batch in index order is written in parts this big: each part
/// covers one stretch of the index, so the parts cost what the batch would in one, and
/// no part holds the database's write lock (which ingest shares) for long.
const ROWS_PER_WRITE: usize = 65_536;

/// One row to write: a tenant's lookups of a number.
struct Row {
    hash: NumberHash,
    tenant: TenantName,
    seen: Seen,
}

/// Audits' lookups per tenant, as (number, when).
type Bulk = Vec<(TenantName, Vec<(NumberHash, DateTime<Utc>)>)>;

/// Rows to write, in index order.
#[derive(Default)]
struct Batch {
    /// Audits' lookups per tenant, sorted by number: a number's lookups become one row
    /// as they are written.
    bulk: Bulk,
    /// Checks' rows, sorted by number.
    rows: Vec<Row>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.bulk.is_empty() && self.rows.is_empty()
    }
}

/// What the writer holds between writes.
#[derive(Default)]
struct Held {
    /// Audits' lookups, gathered while the audits go on, up to [`BULK_BATCH`], and
    /// written at the first tick with none new. Not remembered after, since an audit
    /// lists each number once and remembering a million of them for a minute would cost
    /// more memory than the rows it saves.
    bulk: HashMap<TenantName, Vec<(NumberHash, DateTime<Utc>)>, FastHash>,
    bulk_entries: usize,
    /// Whether audit chunks arrived since the last tick.
    bulk_growing: bool,
    /// Pairs not logged yet this window: written at the next tick.
    fresh: Pending,
    /// Further checks of pairs logged this window: written when it ends.
    repeats: Pending,
    /// The pairs logged this window.
    logged: HashMap<TenantName, HashSet<NumberHash, FastHash>, FastHash>,
    /// What a failed write left, tried again first.
    unwritten: Batch,
}

impl Held {
    fn add(&mut self, tenant: TenantName, hashes: Vec<NumberHash>, at: DateTime<Utc>) {
        let pending = match hashes.as_slice() {
            [one] if self.logged.get(&tenant).is_some_and(|l| l.contains(one)) => &mut self.repeats,
            [_] => &mut self.fresh,
            _ => {
                self.bulk_entries += hashes.len();
                self.bulk_growing = true;
                // Room for a whole batch at once: untouched room costs no memory, and
                // growing by doubling would copy (and briefly hold twice) what is held.
                let bulk = self
                    .bulk
                    .entry(tenant)
                    .or_insert_with(|| Vec::with_capacity(BULK_BATCH));
                bulk.extend(hashes.into_iter().map(|hash| (hash, at)));
                return;
            }
        };
        fold(pending, tenant, hashes, at);
    }

    /// Whether the audits' lookups must be written before more are taken in.
    fn bulk_full(&self) -> bool {
        self.bulk_entries >= BULK_BATCH
    }

    /// What is due at a tick: what a failed write left, the fresh pairs (remembered as
    /// logged), and the audits' lookups once they pause or fill a batch. With
    /// `window_ended`, also the repeats, and the next window starts with nothing logged.
    fn take(&mut self, window_ended: bool) -> Batch {
        let mut batch = std::mem::take(&mut self.unwritten);
        if window_ended || self.bulk_full() || !self.bulk_growing {
            for (tenant, mut lookups) in self.bulk.drain() {
                lookups.sort_unstable_by_key(|(hash, _)| *hash);
                batch.bulk.push((tenant, lookups));
            }
            self.bulk_entries = 0;
        }
        self.bulk_growing = false;
        for (tenant, numbers) in self.fresh.drain() {
            let logged = self.logged.entry(tenant.clone()).or_default();
            logged.extend(numbers.keys());
            batch.rows.extend(pending_rows(tenant, numbers));
        }
        if window_ended {
            for (tenant, numbers) in self.repeats.drain() {
                batch.rows.extend(pending_rows(tenant, numbers));
            }
            self.logged.clear();
        }
        batch.rows.sort_unstable_by_key(|row| row.hash);
        batch
    }
}

/// Adds one lookup of each of `hashes` by `tenant` at `at` to `pending`.
fn fold(pending: &mut Pending, tenant: TenantName, hashes: Vec<NumberHash>, at: DateTime<Utc>) {
    let numbers = pending.entry(tenant).or_default();
    for hash in hashes {
        numbers
            .entry(hash)
            .and_modify(|seen| seen.add(at))
            .or_insert(Seen::once(at));
    }
}

impl Seen {
    fn once(at: DateTime<Utc>) -> Seen {
        Seen {
            first_at: at,
            last_at: at,
            checks: 1,
        }
    }

    fn add(&mut self, at: DateTime<Utc>) {
        self.first_at = self.first_at.min(at);
        self.last_at = self.last_at.max(at);
        self.checks += 1;
    }
}

fn pending_rows(
    tenant: TenantName,
    numbers: HashMap<NumberHash, Seen, FastHash>,
) -> impl Iterator<Item = Row> {
    numbers.into_iter().map(move |(hash, seen)| Row {
        hash,
        tenant: tenant.clone(),
        seen,
    })
}

fn record(hash: &NumberHash, tenant: &TenantName, seen: &Seen) -> AccessRecord {
    AccessRecord {
        tenant: tenant.clone(),
        number_hash: hex(hash),
        first_at: seen.first_at,
        last_at: seen.last_at,
        checks: seen.checks,
    }
}

/// Up to [`ROWS_PER_WRITE`] records from the start of `lookups` (sorted by number), one
/// per number; and how many lookups they hold.
fn bulk_records(
    tenant: &TenantName,
    lookups: &[(NumberHash, DateTime<Utc>)],
) -> (Vec<AccessRecord>, usize) {
    let mut records = Vec::new();
    let mut taken = 0;
    for group in lookups.chunk_by(|a, b| a.0 == b.0).take(ROWS_PER_WRITE) {
        let (hash, first) = group[0];
        let mut seen = Seen::once(first);
        for (_, at) in &group[1..] {
            seen.add(*at);
        }
        records.push(record(&hash, tenant, &seen));
        taken += group.len();
    }
    (records, taken)
}

async fn write_entries(
    store: Arc<dyn AccessLogStore>,
    mut entries: mpsc::UnboundedReceiver<Message>,
) {
    let mut held = Held::default();
    // One write at a time, beside the writer: entries keep being taken in while it runs.
    let mut writing: Option<JoinHandle<Batch>> = None;
    let mut window_ended = false;
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut window =
        tokio::time::interval_at(tokio::time::Instant::now() + REPEATS_EVERY, REPEATS_EVERY);
    loop {
        tokio::select! {
            unwritten = finished(&mut writing) => {
                writing = None;
                held.unwritten = unwritten;
            }
            entry = entries.recv(), if !held.bulk_full() => match entry {
                Some(Message::Flush(done)) => {
                    write_everything(&store, &mut held, &mut writing).await;
                    let _ = done.send(());
                }
                Some(Message::Entries(tenant, hashes, at, _room)) => held.add(tenant, hashes, at),
                None => {
                    write_everything(&store, &mut held, &mut writing).await;
                    return;
                }
            },
            _ = tick.tick(), if writing.is_none() => {
                let batch = held.take(std::mem::take(&mut window_ended));
                if !batch.is_empty() {
                    writing = Some(tokio::spawn(write(store.clone(), batch)));
                }
            }
            _ = window.tick() => window_ended = true,
        }
    }
}

/// Waits for the write in progress, if any; returns what it could not write.
async fn finished(writing: &mut Option<JoinHandle<Batch>>) -> Batch {
    match writing {
        Some(write) => write.await.unwrap_or_default(),
        None => std::future::pending().await,
    }
}

/// Writes all that is held, after the write in progress.
async fn write_everything(
    store: &Arc<dyn AccessLogStore>,
    held: &mut Held,
    writing: &mut Option<JoinHandle<Batch>>,
) {
    if writing.is_some() {
        held.unwritten = finished(writing).await;
        *writing = None;
    }
    held.unwritten = write(store.clone(), held.take(true)).await;
}

/// Writes `batch` in parts; returns what was not written (kept and tried again at the
/// next tick, while the bounded queue pushes back).
async fn write(store: Arc<dyn AccessLogStore>, mut batch: Batch) -> Batch {
    let failed = |e: StoreError| {
        tracing::warn!(error = %e, "could not write the access log; retrying");
    };
    // What is written is dropped only at the end or on failure: dropping it part by part
    // would move the rest each time.
    while let Some((tenant, lookups)) = batch.bulk.last_mut() {
        let mut written = 0;
        while written < lookups.len() {
            let (records, taken) = bulk_records(tenant, &lookups[written..]);
            if let Err(e) = store.record_access(&records).await {
                failed(e);
                lookups.drain(..written);
                return batch;
            }
            written += taken;
        }
        batch.bulk.pop();
    }
    let mut written = 0;
    for part in batch.rows.chunks(ROWS_PER_WRITE) {
        let records: Vec<AccessRecord> = part
            .iter()
            .map(|row| record(&row.hash, &row.tenant, &row.seen))
            .collect();
        if let Err(e) = store.record_access(&records).await {
            failed(e);
            break;
        }
        written += part.len();
    }
    batch.rows.drain(..written);
    batch
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

    /// A writer over a [`Recorded`] store: the store, the writer's queue, its task, the
    /// queue's room, and a tenant.
    fn started() -> (
        Arc<Recorded>,
        mpsc::UnboundedSender<Message>,
        JoinHandle<()>,
        Arc<Semaphore>,
        TenantName,
    ) {
        let store = Arc::new(Recorded::default());
        let (queue, entries) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_entries(store.clone(), entries));
        let room = Arc::new(Semaphore::new(QUEUE));
        (store, queue, writer, room, "bank".parse().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_pair_is_logged_within_a_second_and_its_repeats_once_a_minute() {
        let (store, queue, writer, room, tenant) = started();
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
        // An audit's chunk goes out at the first tick with no new chunk and is not
        // remembered: a check of one of its numbers right after is a new pair, written
        // at once too.
        let permit = room.clone().try_acquire_many_owned(2).unwrap();
        let chunk = Message::Entries(tenant.clone(), vec![[3; 16], [4; 16]], Utc::now(), permit);
        queue.send(chunk).ok().unwrap();
        pause(2.5).await;
        assert_eq!(store.rows().len(), 6, "written once the audit paused");
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

    #[tokio::test(start_paused = true)]
    async fn audit_lookups_wait_for_a_pause_or_a_full_batch_and_are_folded_per_number() {
        let (store, queue, writer, room, tenant) = started();
        // A chunk of `n` lookups of four numbers, in turn.
        let chunk = |n: usize| {
            let room = room.clone();
            let tenant = tenant.clone();
            let queue = queue.clone();
            async move {
                let permit = room.acquire_many_owned(n as u32).await.unwrap();
                let hashes = (0..n).map(|i| [(i % 4) as u8; 16]).collect();
                let entry = Message::Entries(tenant, hashes, Utc::now(), permit);
                queue.send(entry).ok().unwrap();
            }
        };
        let pause = |secs: f64| tokio::time::sleep(Duration::from_secs_f64(secs));
        let checks = || store.rows().iter().map(|(_, c)| c).sum::<u64>();

        // While the audit goes on, nothing is written; once it pauses, one row a number.
        for _ in 0..8 {
            chunk(1024).await;
            pause(0.4).await;
        }
        assert!(store.rows().is_empty(), "written while the audit went on");
        pause(2.5).await;
        let mut rows = store.rows();
        rows.sort();
        let folded: Vec<(String, u64)> = ["00", "01", "02", "03"]
            .iter()
            .map(|h| (h.to_string(), 2048))
            .collect();
        assert_eq!(rows, folded);

        // A full batch is written while the audit still goes on.
        let mut sent = 0;
        while sent < BULK_BATCH {
            chunk(QUEUE).await;
            sent += QUEUE;
            pause(0.1).await;
        }
        for _ in 0..5 {
            chunk(1024).await;
            pause(0.4).await;
        }
        assert!(
            checks() >= 8192 + BULK_BATCH as u64,
            "a full batch waited for the audit's pause"
        );
        drop(queue);
        writer.await.unwrap();
        assert_eq!(checks(), 8192 + BULK_BATCH as u64 + 5 * 1024);
        assert_eq!(room.available_permits(), QUEUE);
    }
}
