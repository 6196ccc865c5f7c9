//! The embedded default: one SQLite file, WAL mode, created and migrated on first open.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Rows per multi-row INSERT: 8 columns × 500 stays far below SQLite's bind limit.
const ROWS_PER_INSERT: usize = 500;

pub struct SqliteStore {
    /// SQLite has one writer at a time; a one-connection pool queues writers in-process
    /// instead of having them spin on the file lock.
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteStore {
    /// `max_bytes` caps the file (SQLite's `max_page_count`); writes past it fail as full.
    pub async fn open(url: &str, max_bytes: Option<u64>) -> Result<SqliteStore, StoreError> {
        let mut options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged ingest survives power loss, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // Ingest inserts into three indexes at random places; with SQLite's default
            // 2 MiB page cache nearly every insert reads and rewrites pages through the
            // kernel. 64 MiB per connection keeps the hot index pages in memory.
            .pragma("cache_size", "-65536");
        if let Some(bytes) = max_bytes {
            // The default page size is 4 KiB.
            options = options.pragma("max_page_count", (bytes / 4096).max(1).to_string());
        }
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { write, read })
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time_at(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    let v: i64 = row.try_get(column)?;
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| StoreError::Corrupt(format!("{column} {v} is out of range")))
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_source(&self, source: &Source) -> Result<(), StoreError> {
        let columns = sql::SourceColumns::of(source);
        sqlx::query(
            "INSERT INTO sources (name, tracking_since, covers, scopes, max_lag_us, updated_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET tracking_since = excluded.tracking_since,
                 covers = excluded.covers, scopes = excluded.scopes,
                 max_lag_us = excluded.max_lag_us, updated_at = excluded.updated_at",
        )
        .bind(source.name.as_str())
        .bind(micros(source.tracking_since))
        .bind(sql::covers_of(source).join(" "))
        .bind(columns.scopes)
        .bind(columns.max_lag_us)
        .bind(micros(Utc::now()))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn list_sources(&self) -> Result<Vec<Source>, StoreError> {
        sqlx::query(sql::SOURCE_SELECT)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| {
                let covers: String = row.try_get("covers")?;
                let covers: Vec<String> = covers.split_whitespace().map(str::to_string).collect();
                sql::source_from(
                    row.try_get("name")?,
                    time_at(row, "tracking_since")?,
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
        let done = sql::advance_complete_until::<Sqlite>(name, at)
            .build()
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn upsert_carriers(&self, carriers: &[Carrier]) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        for chunk in carriers.chunks(ROWS_PER_INSERT) {
            sql::upsert_carriers::<Sqlite>(chunk)
                .build()
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_carriers(&self) -> Result<Vec<Carrier>, StoreError> {
        sqlx::query(sql::SELECT_CARRIERS)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(sql::carrier_from)
            .collect()
    }

    async fn insert_events(&self, events: &[NewEvent]) -> Result<InsertOutcome, StoreError> {
        let ingested_at = micros(Utc::now());
        let mut tx = self.write.begin().await?;
        let mut inserted = 0;
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (source, source_event_id, number, kind, occurred_at, \
                 from_carrier, to_carrier, ingested_at) ",
            );
            insert.push_values(chunk, |mut row, e| {
                row.push_bind(e.fact.source.as_str().to_string())
                    .push_bind(e.fact.source_event_id.clone())
                    .push_bind(e.number.as_str().to_string())
                    .push_bind(e.fact.kind.as_str())
                    .push_bind(micros(e.fact.occurred_at))
                    .push_bind(e.fact.from_carrier.as_ref().map(|c| c.to_string()))
                    .push_bind(e.fact.to_carrier.as_ref().map(|c| c.to_string()))
                    .push_bind(ingested_at);
            });
            insert.push(" ON CONFLICT (source, source_event_id) DO NOTHING");
            inserted += insert.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(InsertOutcome {
            inserted,
            duplicates: events.len() as u64 - inserted,
        })
    }

    async fn history(&self, number: &E164) -> Result<Vec<EventFact>, StoreError> {
        sqlx::query(
            "SELECT source, source_event_id, kind, occurred_at, from_carrier, to_carrier \
             FROM events WHERE number = ?",
        )
        .bind(number.as_str().to_string())
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| sql::fact_from(row, time_at))
        .collect()
    }

    async fn histories(&self, numbers: &[E164]) -> Result<Vec<Vec<EventFact>>, StoreError> {
        let list = serde_json::to_string(&numbers.iter().map(E164::as_str).collect::<Vec<_>>())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // CROSS JOIN keeps the list as the outer loop, so each number is one index probe.
        let rows = sqlx::query(
            "SELECT e.number, e.source, e.source_event_id, e.kind, e.occurred_at, \
             e.from_carrier, e.to_carrier \
             FROM json_each(?) AS wanted CROSS JOIN events AS e ON e.number = wanted.value",
        )
        .bind(list)
        .fetch_all(&self.read)
        .await?;
        sql::group_histories(numbers, &rows, time_at)
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let mut select = QueryBuilder::<Sqlite>::new(sql::SELECT_EVENTS);
        sql::push_event_filters(&mut select, query, micros);
        select
            .build()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| sql::stored_event_from(row, time_at))
            .collect()
    }

    async fn upsert_ranges(&self, ranges: &[RangeEntry]) -> Result<u64, StoreError> {
        let now = micros(Utc::now());
        let mut tx = self.write.begin().await?;
        let mut written = 0;
        for chunk in ranges.chunks(ROWS_PER_INSERT) {
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO carrier_ranges (prefix, carrier, updated_at) ",
            );
            upsert.push_values(chunk, |mut row, r| {
                row.push_bind(r.prefix.as_str().to_string())
                    .push_bind(r.carrier.clone())
                    .push_bind(now);
            });
            upsert.push(
                " ON CONFLICT (prefix) DO UPDATE SET carrier = excluded.carrier, \
                 updated_at = excluded.updated_at",
            );
            written += upsert.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn load_ranges(&self) -> Result<Vec<RangeEntry>, StoreError> {
        sqlx::query("SELECT prefix, carrier FROM carrier_ranges")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| sql::range_from(row.try_get("prefix")?, row.try_get("carrier")?))
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    fn take_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Change>> {
        None
    }

    async fn create_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO tenants (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(key.tenant.as_str().to_string())
        .bind(micros(key.created_at))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant, scopes, hash, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(key.id.clone())
        .bind(key.tenant.as_str().to_string())
        .bind(key.scopes.to_string())
        .bind(key.hash.clone())
        .bind(micros(key.created_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        sqlx::query(
            "SELECT id, tenant, scopes, hash, created_at, revoked_at FROM api_keys WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&self.read)
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
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(key_from)
        .collect()
    }

    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(micros(Utc::now()))
                .bind(id.to_string())
                .execute(&self.write)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_time_precision(
        &self,
        tenant: &TenantName,
        precision: TimePrecision,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE tenants SET time_precision = ? WHERE name = ?")
            .bind(precision.as_str())
            .bind(tenant.as_str().to_string())
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn time_precision(&self, tenant: &TenantName) -> Result<TimePrecision, StoreError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT time_precision FROM tenants WHERE name = ?")
                .bind(tenant.as_str().to_string())
                .fetch_optional(&self.read)
                .await?;
        text.map_or(Ok(TimePrecision::default()), |t| sql::precision_from(&t))
    }

    async fn setting_or_init(&self, name: &str, initial: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(name.to_string())
            .bind(initial.to_string())
            .execute(&self.write)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
                .bind(name.to_string())
                .fetch_one(&self.write)
                .await?,
        )
    }

    async fn record_access(&self, records: &[AccessRecord]) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        for chunk in records.chunks(ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO access_log (tenant, number_hash, first_at, last_at, checks) ",
            );
            insert.push_values(chunk, |mut row, r| {
                row.push_bind(r.tenant.as_str().to_string())
                    .push_bind(r.number_hash.clone())
                    .push_bind(micros(r.first_at))
                    .push_bind(micros(r.last_at))
                    .push_bind(i64::try_from(r.checks).unwrap_or(i64::MAX));
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn access_log(&self, number_hash: &str) -> Result<Vec<AccessRecord>, StoreError> {
        sqlx::query(
            "SELECT tenant, number_hash, first_at, last_at, checks FROM access_log \
             WHERE number_hash = ? ORDER BY first_at",
        )
        .bind(number_hash.to_string())
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| {
            sql::access_from(
                row.try_get("tenant")?,
                row.try_get("number_hash")?,
                time_at(row, "first_at")?,
                time_at(row, "last_at")?,
                row.try_get("checks")?,
            )
        })
        .collect()
    }

    async fn purge_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM events WHERE occurred_at < ?")
            .bind(micros(before))
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }

    async fn upsert_watch(
        &self,
        tenant: &TenantName,
        entries: &[WatchRecord],
    ) -> Result<u64, StoreError> {
        let now = micros(Utc::now());
        let mut tx = self.write.begin().await?;
        let mut written = 0;
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO watchlist (tenant, customer_ref, number, owner_since_start, \
                 owner_since_end, updated_at) ",
            );
            upsert.push_values(chunk, |mut row, w| {
                let (start, end) = sql::owner_since_columns(&w.owner_since);
                row.push_bind(tenant.as_str().to_string())
                    .push_bind(w.customer_ref.clone())
                    .push_bind(w.number.as_str().to_string())
                    .push_bind(micros(start))
                    .push_bind(end.map(micros))
                    .push_bind(now);
            });
            upsert.push(
                " ON CONFLICT (tenant, customer_ref) DO UPDATE SET number = excluded.number, \
                 owner_since_start = excluded.owner_since_start, \
                 owner_since_end = excluded.owner_since_end, updated_at = excluded.updated_at",
            );
            written += upsert.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn remove_watch(&self, tenant: &TenantName, refs: &[String]) -> Result<u64, StoreError> {
        let mut removed = 0;
        let mut tx = self.write.begin().await?;
        for chunk in refs.chunks(ROWS_PER_INSERT) {
            let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM watchlist WHERE tenant = ");
            delete.push_bind(tenant.as_str().to_string());
            delete.push(" AND customer_ref IN (");
            let mut list = delete.separated(", ");
            for r in chunk {
                list.push_bind(r.clone());
            }
            delete.push(")");
            removed += delete.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
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
             WHERE tenant = ? AND customer_ref > ? ORDER BY customer_ref LIMIT ?",
        )
        .bind(tenant.as_str().to_string())
        .bind(after.unwrap_or("").to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| {
            let end: Option<i64> = row.try_get("owner_since_end")?;
            Ok(WatchRecord {
                customer_ref: row.try_get("customer_ref")?,
                number: E164::from_trusted(row.try_get("number")?),
                owner_since: sql::owner_since_from(
                    time_at(row, "owner_since_start")?,
                    end.and_then(DateTime::from_timestamp_micros),
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
        // A LEFT JOIN keeps the event window as SQLite's outer loop.
        let mut select = QueryBuilder::<Sqlite>::new(sql::ALERT_COLUMNS);
        sql::push_event_window(&mut select, after, kinds, limit);
        select
            .push(" LEFT JOIN watchlist w ON w.tenant = ")
            .push_bind(tenant.as_str().to_string())
            .push(" AND w.number = e.number AND ")
            .push(sql::ALERT_CONDITION)
            .push(" ORDER BY e.id, w.customer_ref");
        let rows = select
            .build()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| {
                let customer_ref: Option<String> = row.try_get("customer_ref")?;
                let entry = match customer_ref {
                    Some(customer_ref) => {
                        let end: Option<i64> = row.try_get("owner_since_end")?;
                        Some((
                            customer_ref,
                            sql::owner_since_from(
                                time_at(row, "owner_since_start")?,
                                end.and_then(DateTime::from_timestamp_micros),
                            ),
                        ))
                    }
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
        sql::number_events_after::<Sqlite>(number, after, kinds, limit)
            .build()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| sql::stored_event_from(row, time_at))
            .collect()
    }

    async fn last_event_id(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
                .fetch_one(&self.read)
                .await?,
        )
    }
    async fn create_subscription(&self, s: &SubscriptionRecord) -> Result<(), StoreError> {
        Queue::<Sqlite>::insert_subscription(s)
            .build()
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn subscriptions(
        &self,
        tenant: Option<&TenantName>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        Queue::<Sqlite>::select_subscriptions(tenant)
            .build()
            .fetch_all(&self.read)
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
        let mut tx = self.write.begin().await?;
        for chunk in deliveries.chunks(queue::DELIVERIES_PER_INSERT) {
            Queue::<Sqlite>::insert_deliveries(id, chunk)
                .build()
                .execute(&mut *tx)
                .await?;
        }
        Queue::<Sqlite>::update_subscription(id, cursor, sent, ended)
            .build()
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn due_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        Queue::<Sqlite>::select_due(limit)
            .build()
            .fetch_all(&self.read)
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
        Queue::<Sqlite>::finish_delivery(id, delivered, retry_at, error)
            .build()
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn sink_gone(&self, subscription_id: &str) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        Queue::<Sqlite>::end_gone(subscription_id)
            .build()
            .execute(&mut *tx)
            .await?;
        Queue::<Sqlite>::drop_pending(subscription_id)
            .build()
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn key_from(row: &SqliteRow) -> Result<KeyRecord, StoreError> {
    let revoked: Option<i64> = row.try_get("revoked_at")?;
    sql::key_from(
        row.try_get("id")?,
        row.try_get("tenant")?,
        row.try_get("scopes")?,
        row.try_get("hash")?,
        time_at(row, "created_at")?,
        revoked.and_then(DateTime::from_timestamp_micros),
    )
}
