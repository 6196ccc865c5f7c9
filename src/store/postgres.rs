//! PostgreSQL, for several replicas sharing one database. Writes announce themselves with
//! `NOTIFY`; every replica `LISTEN`s and drops the cache entries they touch.

use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder};
use tokio::sync::{mpsc, watch};

use super::sql::{self, micros};
use super::sql_store::{Announce, Backend};
use super::{Change, InsertOutcome, StoreError};
use crate::domain::auth::TenantName;
use crate::domain::event::NewEvent;
use crate::domain::number::E164;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const EVENTS_CHANNEL: &str = "numguard_events";
/// Advisory lock key serialising ingest transactions.
const INGEST_LOCK: i64 = 0x6e67_6576; // "ngev"
const CATALOG_CHANNEL: &str = "numguard_catalog";
/// NOTIFY payloads must stay under 8,000 bytes; an E.164 number is at most 16.
const NUMBERS_PER_NOTIFY: usize = 400;
/// How long an ingest waits to see its own notification come back before answering.
const ECHO_TIMEOUT: Duration = Duration::from_secs(2);
/// Application name of the LISTEN connection (lets operators and tests find it).
pub const LISTENER_APPLICATION_NAME: &str = "numguard-listener";

/// The PostgreSQL [`Backend`]: one pool, and a LISTEN connection for the change feed.
pub struct PgBackend {
    pool: PgPool,
    /// This process's tag in notification payloads: `<origin>:<seq>:<last>:<numbers>`.
    origin: String,
    seq: AtomicU64,
    /// The newest of this process's own notification batches the listener has seen.
    echo: watch::Receiver<u64>,
    changes: Mutex<Option<mpsc::UnboundedReceiver<Change>>>,
}

impl PgBackend {
    /// Connects, migrates (replicas starting together migrate once) and starts listening
    /// for changes.
    pub async fn open(url: &str) -> Result<PgBackend, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A request waits this long for a connection before the database counts as
            // unavailable, instead of queueing without bound.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options.clone().application_name("numguard"))
            .await?;
        // sqlx holds a PostgreSQL advisory lock while migrating, so replicas starting
        // together migrate once.
        MIGRATOR.run(&pool).await?;

        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options.application_name(LISTENER_APPLICATION_NAME));
        let origin = format!("{:016x}", rand::random::<u64>());
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        let (echo_tx, echo_rx) = watch::channel(0);
        tokio::spawn(listen(listener_pool, origin.clone(), changes_tx, echo_tx));
        Ok(PgBackend {
            pool,
            origin,
            seq: AtomicU64::new(0),
            echo: echo_rx,
            changes: Mutex::new(Some(changes_rx)),
        })
    }
}

/// Keeps LISTENing for as long as the process runs, reconnecting after failures. Each
/// time it is listening again it reports `Change::Connected`, since notifications sent
/// meanwhile are gone.
async fn listen(
    pool: PgPool,
    origin: String,
    changes: mpsc::UnboundedSender<Change>,
    echo: watch::Sender<u64>,
) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the change-notification connection; retrying");
                if changes.send(Change::Down).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen_all([EVENTS_CHANNEL, CATALOG_CHANNEL]).await {
            tracing::warn!(error = %e, "cannot LISTEN for changes; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        if changes.send(Change::Connected).is_err() {
            return;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    let change = match notification.channel() {
                        EVENTS_CHANNEL => numbers_change(notification.payload(), &origin, &echo),
                        _ => match notification.payload() {
                            "sources" => Some(Change::Sources),
                            "keys" => Some(Change::Keys),
                            "carriers" => Some(Change::Carriers),
                            _ => Some(Change::Ranges),
                        },
                    };
                    if let Some(change) = change
                        && changes.send(change).is_err()
                    {
                        return;
                    }
                }
                Ok(None) => {
                    // sqlx reconnected and re-subscribed already.
                    tracing::warn!("change-notification connection was lost and re-established");
                    if changes.send(Change::Connected).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change-notification connection failed; reconnecting");
                    if changes.send(Change::Down).is_err() {
                        return;
                    }
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Parses `<origin>:<seq>:<last>:<n1>,<n2>,...`, recording our own last batches as echoed.
fn numbers_change(payload: &str, origin: &str, echo: &watch::Sender<u64>) -> Option<Change> {
    let mut parts = payload.splitn(4, ':');
    let (from, seq, last, numbers) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if from == origin
        && last == "1"
        && let Ok(seq) = seq.parse::<u64>()
    {
        echo.send_if_modified(|seen| {
            let newer = seq > *seen;
            if newer {
                *seen = seq;
            }
            newer
        });
    }
    let numbers = numbers
        .split(',')
        .filter(|n| n.starts_with('+'))
        .map(|n| E164::from_trusted(n.to_string()))
        .collect();
    Some(Change::Numbers(numbers))
}

#[async_trait]
impl Backend for PgBackend {
    type Db = Postgres;

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn insert_events(&self, events: &[NewEvent]) -> Result<InsertOutcome, StoreError> {
        if events.is_empty() {
            return Ok(InsertOutcome::default());
        }
        // Column arrays for one set-based INSERT ... SELECT FROM UNNEST.
        let n = events.len();
        let (mut sources, mut ids, mut numbers, mut kinds) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut times, mut froms, mut tos) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for e in events {
            sources.push(e.fact.source.as_str().to_string());
            ids.push(e.fact.source_event_id.clone());
            numbers.push(e.number.as_str().to_string());
            kinds.push(e.fact.kind.as_str().to_string());
            times.push(micros(e.fact.occurred_at));
            froms.push(e.fact.from_carrier.as_ref().map(|c| c.to_string()));
            tos.push(e.fact.to_carrier.as_ref().map(|c| c.to_string()));
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let payloads = notify_payloads(&self.origin, seq, &numbers);

        let mut tx = self.pool.begin().await?;
        // Ingests commit one at a time, so event ids (the alert cursors) grow in commit
        // order: a stream that has seen id N never later finds a smaller id appear.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(INGEST_LOCK)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO events (source, source_event_id, number, kind, occurred_at, \
                 from_carrier, to_carrier, ingested_at)
             SELECT u.*, $8::bigint FROM UNNEST($1::text[], $2::text[], $3::text[], \
                 $4::text[], $5::bigint[], $6::text[], $7::text[]) AS u
             ON CONFLICT (source, source_event_id) DO NOTHING",
        )
        .bind(sources)
        .bind(ids)
        .bind(numbers)
        .bind(kinds)
        .bind(times)
        .bind(froms)
        .bind(tos)
        .bind(micros(Utc::now()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Inside the transaction: the notifications go out exactly when the events commit.
        sqlx::query("SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p")
            .bind(EVENTS_CHANNEL)
            .bind(payloads)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;

        // Once our own notification is back, every replica's listener has been sent it.
        let mut echo = self.echo.clone();
        let echoed = tokio::time::timeout(ECHO_TIMEOUT, echo.wait_for(|seen| *seen >= seq)).await;
        if !matches!(echoed, Ok(Ok(_))) {
            tracing::warn!(
                "committed events, but their change notification did not come back within {} s",
                ECHO_TIMEOUT.as_secs()
            );
        }
        Ok(InsertOutcome {
            inserted,
            duplicates: n as u64 - inserted,
        })
    }

    async fn history_rows(&self, numbers: &[E164]) -> Result<Vec<PgRow>, StoreError> {
        let list: Vec<&str> = numbers.iter().map(E164::as_str).collect();
        Ok(sqlx::query(
            "SELECT number, source, source_event_id, kind, occurred_at, from_carrier, \
             to_carrier FROM events WHERE number = ANY($1)",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await?)
    }

    fn push_watch_join(sql: &mut QueryBuilder<Postgres>, tenant: &TenantName) {
        // LATERAL makes each event of the window look its number up in the watchlist,
        // rather than the planner hashing the whole watchlist for a handful of events.
        sql.push(
            " LEFT JOIN LATERAL (SELECT customer_ref, owner_since_start, owner_since_end \
             FROM watchlist w WHERE w.tenant = ",
        )
        .push_bind(tenant.as_str().to_string())
        .push(" AND w.number = e.number AND ")
        .push(sql::ALERT_CONDITION)
        .push(") w ON true");
    }

    async fn announce(&self, what: Announce) -> Result<(), StoreError> {
        let payload = match what {
            Announce::Sources => "sources",
            Announce::Carriers => "carriers",
            Announce::Ranges => "ranges",
            Announce::Keys => "keys",
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CATALOG_CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn take_changes(&self) -> Option<mpsc::UnboundedReceiver<Change>> {
        self.changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// Splits a batch's numbers into NOTIFY payloads; the last one is flagged so the origin
/// knows the whole batch has been delivered.
fn notify_payloads(origin: &str, seq: u64, numbers: &[String]) -> Vec<String> {
    let chunks: Vec<&[String]> = numbers.chunks(NUMBERS_PER_NOTIFY).collect();
    let count = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let last = u8::from(i + 1 == count);
            format!("{origin}:{seq}:{last}:{}", chunk.join(","))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_fit_notify_and_round_trip() {
        let numbers: Vec<String> = (0..1000).map(|i| format!("+81901{i:07}")).collect();
        let payloads = notify_payloads("abc", 7, &numbers);
        assert_eq!(payloads.len(), 3);
        assert!(payloads.iter().all(|p| p.len() < 8000));
        let (echo_tx, echo_rx) = watch::channel(0);
        let mut seen = Vec::new();
        for p in &payloads {
            match numbers_change(p, "abc", &echo_tx) {
                Some(Change::Numbers(n)) => seen.extend(n),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen.len(), 1000);
        assert_eq!(seen[999].as_str(), "+819010000999");
        assert_eq!(
            *echo_rx.borrow(),
            7,
            "the last chunk marks the batch as echoed"
        );
        numbers_change("other:9:1:+819010000001", "abc", &echo_tx);
        assert_eq!(*echo_rx.borrow(), 7, "other origins do not count");
    }
}
