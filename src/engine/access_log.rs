//! The access log: which tenant checked which number, and when, so an operator can answer
//! "who looked up this customer?". Numbers are stored only as SHA-256 keyed with a secret
//! pepper kept in the database (shared by replicas), so the log alone reveals no number.
//!
//! Checks only hand entries to a background task (a channel send); the task folds
//! repeats of one (tenant, number) together and writes once a second. The channel is
//! bounded: if the database falls behind, checks wait rather than go unlogged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::domain::auth::{TenantName, hex};
use crate::domain::number::E164;
use crate::store::{AccessRecord, Store, StoreError};

const PEPPER_SETTING: &str = "access_pepper";
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const QUEUE: usize = 65_536;

enum Message {
    /// One tenant looked up these numbers (one, or an audit's chunk) at this time.
    Entries(TenantName, Vec<NumberHash>, DateTime<Utc>),
    /// Write everything pending now, then answer.
    Flush(oneshot::Sender<()>),
}

type NumberHash = [u8; 32];

pub struct AccessLog {
    /// A hasher that has already taken in the pepper: each entry only adds its number.
    peppered: Sha256,
    queue: mpsc::Sender<Message>,
}

/// The pepper of this database, created on first use.
pub async fn pepper(store: &dyn Store) -> Result<String, StoreError> {
    let fresh = hex(&rand::random::<[u8; 32]>());
    store.setting_or_init(PEPPER_SETTING, &fresh).await
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
    h.finalize().into()
}

/// The keyed hash under which a number appears in the access log.
pub fn number_hash(pepper: &str, number: &E164) -> String {
    hex(&hash_with(&peppered(pepper), number))
}

impl AccessLog {
    pub async fn start(store: Arc<dyn Store>) -> Result<AccessLog, StoreError> {
        let pepper = pepper(store.as_ref()).await?;
        let (queue, entries) = mpsc::channel(QUEUE);
        tokio::spawn(write_entries(store, entries));
        Ok(AccessLog {
            peppered: peppered(&pepper),
            queue,
        })
    }

    pub async fn record<'a>(
        &self,
        tenant: &TenantName,
        numbers: impl IntoIterator<Item = &'a E164>,
    ) {
        let hashes = numbers
            .into_iter()
            .map(|n| hash_with(&self.peppered, n))
            .collect();
        let entry = Message::Entries(tenant.clone(), hashes, Utc::now());
        // Fails only once the writer is gone, i.e. at shutdown.
        let _ = self.queue.send(entry).await;
    }

    /// Writes every entry recorded so far (at shutdown, so none is lost).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_entries(store: Arc<dyn Store>, mut entries: mpsc::Receiver<Message>) {
    let mut pending: HashMap<(TenantName, NumberHash), AccessRecord> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            entry = entries.recv() => match entry {
                Some(Message::Flush(done)) => {
                    flush(store.as_ref(), &mut pending).await;
                    let _ = done.send(());
                }
                Some(Message::Entries(tenant, hashes, at)) => {
                    for hash in hashes {
                        pending
                            .entry((tenant.clone(), hash))
                            .and_modify(|r| {
                                r.last_at = at;
                                r.checks += 1;
                            })
                            .or_insert_with_key(|(tenant, hash)| AccessRecord {
                                tenant: tenant.clone(),
                                number_hash: hex(hash),
                                first_at: at,
                                last_at: at,
                                checks: 1,
                            });
                    }
                }
                None => {
                    flush(store.as_ref(), &mut pending).await;
                    return;
                }
            },
            _ = tick.tick() => flush(store.as_ref(), &mut pending).await,
        }
    }
}

async fn flush(store: &dyn Store, pending: &mut HashMap<(TenantName, NumberHash), AccessRecord>) {
    if pending.is_empty() {
        return;
    }
    let records: Vec<AccessRecord> = pending.values().cloned().collect();
    match store.record_access(&records).await {
        Ok(()) => pending.clear(),
        // Kept and retried on the next tick; the bounded queue pushes back meanwhile.
        Err(e) => {
            tracing::warn!(error = %e, entries = records.len(), "could not write the access log; retrying")
        }
    }
}
