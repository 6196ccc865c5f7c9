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

use super::{Change, EventQuery, InsertOutcome, Store, StoreError, sql};
use crate::domain::event::{EventFact, NewEvent, StoredEvent};
use crate::domain::number::E164;
use crate::domain::source::Source;
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
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
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
        let covers: Vec<&str> = source.covers.iter().map(|p| p.as_str()).collect();
        sqlx::query(
            "INSERT INTO sources (name, tracking_since, covers, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET tracking_since = excluded.tracking_since,
                 covers = excluded.covers, updated_at = excluded.updated_at",
        )
        .bind(source.name.as_str())
        .bind(micros(source.tracking_since))
        .bind(covers.join(" "))
        .bind(micros(Utc::now()))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn list_sources(&self) -> Result<Vec<Source>, StoreError> {
        sqlx::query("SELECT name, tracking_since, covers FROM sources ORDER BY name")
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
                )
            })
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
                row.push_bind(e.source.as_str().to_string())
                    .push_bind(e.source_event_id.clone())
                    .push_bind(e.number.as_str().to_string())
                    .push_bind(e.fact.kind.as_str())
                    .push_bind(micros(e.fact.occurred_at))
                    .push_bind(e.fact.from_carrier.clone())
                    .push_bind(e.fact.to_carrier.clone())
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
            "SELECT kind, occurred_at, from_carrier, to_carrier FROM events WHERE number = ?",
        )
        .bind(number.as_str().to_string())
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| sql::fact_from(row, time_at))
        .collect()
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
}
