//! PostgreSQL, for several replicas sharing one database. Writes announce themselves with
//! `NOTIFY`; every replica `LISTEN`s and drops the cache entries they touch.

use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use tokio::sync::{mpsc, watch};

use super::sql::queue::{self, Queue};
use super::{
    AccessRecord, AlertPage, Change, Delivery, EventQuery, InsertOutcome, KeyRecord, Store,
    StoreError, SubscriptionRecord, WatchRecord, sql,
};
use crate::domain::auth::{TenantName, TimePrecision};
use crate::domain::carrier::Carrier;
use crate::domain::event::{EventFact, EventKind, NewEvent, StoredEvent};
use crate::domain::number::E164;
use crate::domain::source::{Source, SourceName};
use crate::ranges::RangeEntry;

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

pub struct PgStore {
    pool: PgPool,
    /// This process's tag in notification payloads: `<origin>:<seq>:<last>:<numbers>`.
    origin: String,
    seq: AtomicU64,
    /// The newest of this process's own notification batches the listener has seen.
    echo: watch::Receiver<u64>,
    changes: Mutex<Option<mpsc::UnboundedReceiver<Change>>>,
}

impl PgStore {
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
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
        Ok(PgStore {
            pool,
            origin,
            seq: AtomicU64::new(0),
            echo: echo_rx,
            changes: Mutex::new(Some(changes_rx)),
        })
    }

    async fn notify_catalog(&self, what: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CATALOG_CHANNEL)
            .bind(what.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn time_at(row: &PgRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    Ok(row.try_get(column)?)
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
impl Store for PgStore {
    async fn upsert_source(&self, source: &Source) -> Result<(), StoreError> {
        let columns = sql::SourceColumns::of(source);
        sqlx::query(
            "INSERT INTO sources (name, tracking_since, covers, scopes, max_lag_us)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO UPDATE SET tracking_since = excluded.tracking_since,
                 covers = excluded.covers, scopes = excluded.scopes,
                 max_lag_us = excluded.max_lag_us, updated_at = now()",
        )
        .bind(source.name.as_str().to_string())
        .bind(source.tracking_since)
        .bind(sql::covers_of(source))
        .bind(columns.scopes)
        .bind(columns.max_lag_us)
        .execute(&self.pool)
        .await?;
        self.notify_catalog("sources").await
    }

    async fn list_sources(&self) -> Result<Vec<Source>, StoreError> {
        sqlx::query(sql::SOURCE_SELECT)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let covers: Vec<String> = row.try_get("covers")?;
                sql::source_from(
                    row.try_get("name")?,
                    row.try_get("tracking_since")?,
                    &covers,
                    sql::SourceColumns::read(row)?,
                )
            })
            .collect()
    }

    async fn advance_complete_until(
        &self,
        name: &SourceName,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sql::advance_complete_until::<Postgres>(name, at)
            .build()
            .execute(&self.pool)
            .await?;
        if done.rows_affected() > 0 {
            self.notify_catalog("sources").await?;
        }
        Ok(done.rows_affected() > 0)
    }

    async fn upsert_carriers(&self, carriers: &[Carrier]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for chunk in carriers.chunks(1_000) {
            sql::upsert_carriers::<Postgres>(chunk)
                .build()
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.notify_catalog("carriers").await
    }

    async fn list_carriers(&self) -> Result<Vec<Carrier>, StoreError> {
        sqlx::query(sql::SELECT_CARRIERS)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(sql::carrier_from)
            .collect()
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
            times.push(e.fact.occurred_at);
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
                 from_carrier, to_carrier)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                 $5::timestamptz[], $6::text[], $7::text[])
             ON CONFLICT (source, source_event_id) DO NOTHING",
        )
        .bind(sources)
        .bind(ids)
        .bind(numbers)
        .bind(kinds)
        .bind(times)
        .bind(froms)
        .bind(tos)
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

    async fn history(&self, number: &E164) -> Result<Vec<EventFact>, StoreError> {
        sqlx::query(
            "SELECT source, source_event_id, kind, occurred_at, from_carrier, to_carrier \
             FROM events WHERE number = $1",
        )
        .bind(number.as_str().to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| sql::fact_from(row, time_at))
        .collect()
    }

    async fn histories(&self, numbers: &[E164]) -> Result<Vec<Vec<EventFact>>, StoreError> {
        let list: Vec<&str> = numbers.iter().map(E164::as_str).collect();
        let rows = sqlx::query(
            "SELECT number, source, source_event_id, kind, occurred_at, from_carrier, \
             to_carrier FROM events \
             WHERE number = ANY($1)",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await?;
        sql::group_histories(numbers, &rows, time_at)
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let mut select = QueryBuilder::new(sql::SELECT_EVENTS);
        sql::push_event_filters(&mut select, query, |t| t);
        select
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| sql::stored_event_from(row, time_at))
            .collect()
    }

    async fn upsert_ranges(&self, ranges: &[RangeEntry]) -> Result<u64, StoreError> {
        let prefixes: Vec<String> = ranges.iter().map(|r| r.prefix.to_string()).collect();
        let carriers: Vec<String> = ranges.iter().map(|r| r.carrier.clone()).collect();
        let written = sqlx::query(
            "INSERT INTO carrier_ranges (prefix, carrier)
             SELECT * FROM UNNEST($1::text[], $2::text[])
             ON CONFLICT (prefix) DO UPDATE SET carrier = excluded.carrier, updated_at = now()",
        )
        .bind(prefixes)
        .bind(carriers)
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.notify_catalog("ranges").await?;
        Ok(written)
    }

    async fn load_ranges(&self) -> Result<Vec<RangeEntry>, StoreError> {
        sqlx::query("SELECT prefix, carrier FROM carrier_ranges")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| sql::range_from(row.try_get("prefix")?, row.try_get("carrier")?))
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tenants (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(key.tenant.as_str().to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant, scopes, hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(key.id.clone())
        .bind(key.tenant.as_str().to_string())
        .bind(key.scopes.to_string())
        .bind(key.hash.clone())
        .bind(key.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        sqlx::query(
            "SELECT id, tenant, scopes, hash, created_at, revoked_at FROM api_keys WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(key_from)
        .transpose()
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        sqlx::query(
            "SELECT id, tenant, scopes, hash, created_at, revoked_at FROM api_keys \
             ORDER BY tenant, created_at",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_from)
        .collect()
    }

    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        self.notify_catalog("keys").await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_time_precision(
        &self,
        tenant: &TenantName,
        precision: TimePrecision,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE tenants SET time_precision = $1 WHERE name = $2")
            .bind(precision.as_str())
            .bind(tenant.as_str().to_string())
            .execute(&self.pool)
            .await?;
        self.notify_catalog("keys").await?;
        Ok(done.rows_affected() > 0)
    }

    async fn time_precision(&self, tenant: &TenantName) -> Result<TimePrecision, StoreError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT time_precision FROM tenants WHERE name = $1")
                .bind(tenant.as_str().to_string())
                .fetch_optional(&self.pool)
                .await?;
        text.map_or(Ok(TimePrecision::default()), |t| sql::precision_from(&t))
    }

    async fn setting_or_init(&self, name: &str, initial: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name.to_string())
            .bind(initial.to_string())
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name.to_string())
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn record_access(&self, records: &[AccessRecord]) -> Result<(), StoreError> {
        let tenants: Vec<String> = records.iter().map(|r| r.tenant.to_string()).collect();
        let hashes: Vec<String> = records.iter().map(|r| r.number_hash.clone()).collect();
        let firsts: Vec<DateTime<Utc>> = records.iter().map(|r| r.first_at).collect();
        let lasts: Vec<DateTime<Utc>> = records.iter().map(|r| r.last_at).collect();
        let checks: Vec<i64> = records
            .iter()
            .map(|r| i64::try_from(r.checks).unwrap_or(i64::MAX))
            .collect();
        sqlx::query(
            "INSERT INTO access_log (tenant, number_hash, first_at, last_at, checks)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], \
                 $4::timestamptz[], $5::bigint[])",
        )
        .bind(tenants)
        .bind(hashes)
        .bind(firsts)
        .bind(lasts)
        .bind(checks)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn access_log(&self, number_hash: &str) -> Result<Vec<AccessRecord>, StoreError> {
        sqlx::query(
            "SELECT tenant, number_hash, first_at, last_at, checks FROM access_log \
             WHERE number_hash = $1 ORDER BY first_at",
        )
        .bind(number_hash.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            sql::access_from(
                row.try_get("tenant")?,
                row.try_get("number_hash")?,
                row.try_get("first_at")?,
                row.try_get("last_at")?,
                row.try_get("checks")?,
            )
        })
        .collect()
    }

    async fn purge_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM events WHERE occurred_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn upsert_watch(
        &self,
        tenant: &TenantName,
        entries: &[WatchRecord],
    ) -> Result<u64, StoreError> {
        let refs: Vec<String> = entries.iter().map(|w| w.customer_ref.clone()).collect();
        let numbers: Vec<String> = entries.iter().map(|w| w.number.to_string()).collect();
        let (starts, ends): (Vec<DateTime<Utc>>, Vec<Option<DateTime<Utc>>>) = entries
            .iter()
            .map(|w| sql::owner_since_columns(&w.owner_since))
            .unzip();
        let written = sqlx::query(
            "INSERT INTO watchlist (tenant, customer_ref, number, owner_since_start, owner_since_end)
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[])
             ON CONFLICT (tenant, customer_ref) DO UPDATE SET number = excluded.number,
                 owner_since_start = excluded.owner_since_start,
                 owner_since_end = excluded.owner_since_end, updated_at = now()",
        )
        .bind(tenant.as_str().to_string())
        .bind(refs)
        .bind(numbers)
        .bind(starts)
        .bind(ends)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(written)
    }

    async fn remove_watch(&self, tenant: &TenantName, refs: &[String]) -> Result<u64, StoreError> {
        let removed = sqlx::query(
            "DELETE FROM watchlist WHERE tenant = $1 AND customer_ref = ANY($2::text[])",
        )
        .bind(tenant.as_str().to_string())
        .bind(refs.to_vec())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(removed)
    }

    async fn list_watch(
        &self,
        tenant: &TenantName,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WatchRecord>, StoreError> {
        sqlx::query(
            "SELECT customer_ref, number, owner_since_start, owner_since_end FROM watchlist \
             WHERE tenant = $1 AND customer_ref > $2 ORDER BY customer_ref LIMIT $3",
        )
        .bind(tenant.as_str().to_string())
        .bind(after.unwrap_or("").to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(WatchRecord {
                customer_ref: row.try_get("customer_ref")?,
                number: E164::from_trusted(row.try_get("number")?),
                owner_since: sql::owner_since_from(
                    row.try_get("owner_since_start")?,
                    row.try_get("owner_since_end")?,
                ),
            })
        })
        .collect()
    }

    async fn alerts_after(
        &self,
        tenant: &TenantName,
        after: i64,
        kinds: &[EventKind],
        limit: u32,
    ) -> Result<AlertPage, StoreError> {
        // LATERAL makes each event of the window look its number up in the watchlist,
        // rather than the planner hashing the whole watchlist for a handful of events.
        let mut select = QueryBuilder::new(sql::ALERT_COLUMNS);
        sql::push_event_window(&mut select, after, kinds, limit);
        select
            .push(
                " LEFT JOIN LATERAL (SELECT customer_ref, owner_since_start, owner_since_end \
                 FROM watchlist w WHERE w.tenant = ",
            )
            .push_bind(tenant.as_str().to_string())
            .push(" AND w.number = e.number AND ")
            .push(sql::ALERT_CONDITION)
            .push(") w ON true ORDER BY e.id, w.customer_ref");
        let rows = select
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let customer_ref: Option<String> = row.try_get("customer_ref")?;
                let entry = match customer_ref {
                    Some(customer_ref) => Some((
                        customer_ref,
                        sql::owner_since_from(
                            row.try_get("owner_since_start")?,
                            row.try_get("owner_since_end")?,
                        ),
                    )),
                    None => None,
                };
                Ok((sql::stored_event_from(row, time_at)?, entry))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(sql::group_alerts(rows))
    }

    async fn number_events_after(
        &self,
        number: &E164,
        after: i64,
        kinds: &[EventKind],
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        sql::number_events_after::<sqlx::Postgres>(number, after, kinds, limit)
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| sql::stored_event_from(row, time_at))
            .collect()
    }

    async fn last_event_id(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0)::bigint FROM events")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn create_subscription(&self, s: &SubscriptionRecord) -> Result<(), StoreError> {
        Queue::<sqlx::Postgres>::insert_subscription(s)
            .build()
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn subscriptions(
        &self,
        tenant: Option<&TenantName>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        Queue::<sqlx::Postgres>::select_subscriptions(tenant)
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(sql::subscription_from)
            .collect()
    }

    async fn advance_subscription(
        &self,
        id: &str,
        cursor: i64,
        sent: u64,
        ended: Option<&str>,
        deliveries: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for chunk in deliveries.chunks(queue::DELIVERIES_PER_INSERT) {
            Queue::<sqlx::Postgres>::insert_deliveries(id, chunk)
                .build()
                .execute(&mut *tx)
                .await?;
        }
        Queue::<sqlx::Postgres>::update_subscription(id, cursor, sent, ended)
            .build()
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn due_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        Queue::<sqlx::Postgres>::select_due(limit)
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(sql::delivery_from)
            .collect()
    }

    async fn finish_delivery(
        &self,
        id: i64,
        delivered: bool,
        retry_at: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        Queue::<sqlx::Postgres>::finish_delivery(id, delivered, retry_at, error)
            .build()
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn sink_gone(&self, subscription_id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        Queue::<sqlx::Postgres>::end_gone(subscription_id)
            .build()
            .execute(&mut *tx)
            .await?;
        Queue::<sqlx::Postgres>::drop_pending(subscription_id)
            .build()
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    fn take_changes(&self) -> Option<mpsc::UnboundedReceiver<Change>> {
        self.changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

fn key_from(row: &PgRow) -> Result<KeyRecord, StoreError> {
    sql::key_from(
        row.try_get("id")?,
        row.try_get("tenant")?,
        row.try_get("scopes")?,
        row.try_get("hash")?,
        row.try_get("created_at")?,
        row.try_get("revoked_at")?,
    )
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
