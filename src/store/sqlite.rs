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

use super::{EventQuery, InsertOutcome, Store, StoreError};
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
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged ingest survives power loss, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
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

fn from_micros(v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {v} is out of range")))
}

fn kind_from(text: &str) -> Result<EventKind, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown event kind {text:?}")))
}

fn fact_from(row: &SqliteRow) -> Result<EventFact, StoreError> {
    Ok(EventFact {
        kind: kind_from(row.try_get("kind")?)?,
        occurred_at: from_micros(row.try_get("occurred_at")?)?,
        from_carrier: row.try_get("from_carrier")?,
        to_carrier: row.try_get("to_carrier")?,
    })
}

fn source_from(row: &SqliteRow) -> Result<Source, StoreError> {
    let name: String = row.try_get("name")?;
    let covers: String = row.try_get("covers")?;
    let covers: Vec<String> = covers.split_whitespace().map(str::to_string).collect();
    Source::new(
        &name,
        Some(from_micros(row.try_get("tracking_since")?)?),
        &covers,
    )
    .map_err(|e| StoreError::Corrupt(format!("source {name:?}: {e}")))
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
            .map(source_from)
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
        .map(fact_from)
        .collect()
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "SELECT id, source, source_event_id, number, kind, occurred_at, from_carrier, \
             to_carrier, ingested_at FROM events WHERE 1 = 1",
        );
        if let Some(number) = &query.number {
            sql.push(" AND number = ")
                .push_bind(number.as_str().to_string());
        }
        if !query.kinds.is_empty() {
            sql.push(" AND kind IN (");
            let mut kinds = sql.separated(", ");
            for kind in &query.kinds {
                kinds.push_bind(kind.as_str());
            }
            sql.push(")");
        }
        if let Some(since) = query.since {
            sql.push(" AND occurred_at >= ").push_bind(micros(since));
        }
        if let Some(until) = query.until {
            sql.push(" AND occurred_at < ").push_bind(micros(until));
        }
        if let Some(after) = query.after {
            let at = micros(after.occurred_at);
            sql.push(" AND (occurred_at < ")
                .push_bind(at)
                .push(" OR (occurred_at = ")
                .push_bind(at)
                .push(" AND id < ")
                .push_bind(after.id)
                .push("))");
        }
        sql.push(" ORDER BY occurred_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(query.limit));
        sql.build()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| {
                let source: String = row.try_get("source")?;
                let source: SourceName = source
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("source name: {e}")))?;
                Ok(StoredEvent {
                    id: row.try_get("id")?,
                    event: NewEvent {
                        source,
                        source_event_id: row.try_get("source_event_id")?,
                        number: E164::from_trusted(row.try_get("number")?),
                        fact: fact_from(row)?,
                    },
                    ingested_at: from_micros(row.try_get("ingested_at")?)?,
                })
            })
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
            .map(|row| {
                let prefix: String = row.try_get("prefix")?;
                Ok(RangeEntry {
                    prefix: prefix
                        .parse()
                        .map_err(|e| StoreError::Corrupt(format!("range prefix: {e}")))?,
                    carrier: row.try_get("carrier")?,
                })
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }
}
