//! The embedded default: one SQLite file, WAL mode, created and migrated on first open.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};

use super::sql::{self, micros};
use super::sql_store::{Announce, Backend, chunked, write_all};
use super::{Change, EventFact, InsertOutcome, IntegrityCheck, StoreError, StoreOptions};
use crate::domain::auth::TenantName;
use crate::domain::event::NewEvent;
use crate::domain::number::E164;
use crate::private_files::{Readers, create_private, warn_if_readable_by_others};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite [`Backend`]: one writer connection and a few read-only ones.
pub struct SqliteBackend {
    /// SQLite has one writer at a time; a one-connection pool queues writers in-process
    /// instead of having them spin on the file lock.
    write: SqlitePool,
    read: SqlitePool,
    /// How to open a connection of its own for the integrity check left for after start,
    /// until it runs.
    deferred_check: Mutex<Option<SqliteConnectOptions>>,
}

impl SqliteBackend {
    /// `max_bytes` caps the file (SQLite's `max_page_count`); writes past it fail as full.
    pub async fn open(url: &str, store: StoreOptions) -> Result<SqliteBackend, StoreError> {
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
        if let Some(bytes) = store.sqlite_max_bytes {
            // The default page size is 4 KiB.
            options = options.pragma("max_page_count", (bytes / 4096).max(1).to_string());
        }
        let file = options.get_filename();
        if file != std::path::Path::new(":memory:") {
            let readers = if store.sqlite_group_readable {
                Readers::OwnerAndGroup
            } else {
                Readers::Owner
            };
            create_private(file, readers)
                .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
            warn_if_readable_by_others(file, "the database file", readers);
        }
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&write).await?;
        // A page damaged in the middle would otherwise show only when a read reaches it,
        // halfway through an audit.
        if store.sqlite_integrity_check == IntegrityCheck::BeforeServing {
            quick_check(&mut *write.acquire().await?).await?;
        }
        let options = options.read_only(true);
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        let deferred_check =
            (store.sqlite_integrity_check == IntegrityCheck::Background).then_some(options);
        Ok(SqliteBackend {
            write,
            read,
            deferred_check: Mutex::new(deferred_check),
        })
    }
}

/// `PRAGMA quick_check`: reads every page; `Damaged` with SQLite's first finding.
async fn quick_check(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let verdict: String = sqlx::query_scalar("PRAGMA quick_check(1)")
        .fetch_one(conn)
        .await?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(StoreError::Damaged(verdict))
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    type Db = Sqlite;

    fn reader(&self) -> &SqlitePool {
        &self.read
    }

    fn writer(&self) -> &SqlitePool {
        &self.write
    }

    async fn insert_events(&self, events: &[NewEvent]) -> Result<InsertOutcome, StoreError> {
        let ingested_at = micros(Utc::now());
        let statements = chunked(
            events,
            "INSERT INTO events (source, source_event_id, number, kind, occurred_at, \
             from_carrier, to_carrier, ingested_at) ",
            " ON CONFLICT (source, source_event_id) DO NOTHING",
            |row, e| {
                row.push_bind(e.fact.source.as_str().to_string())
                    .push_bind(e.fact.source_event_id.clone())
                    .push_bind(e.number.as_str().to_string())
                    .push_bind(e.fact.kind.as_str())
                    .push_bind(micros(e.fact.occurred_at))
                    .push_bind(e.fact.from_carrier.as_ref().map(|c| c.to_string()))
                    .push_bind(e.fact.to_carrier.as_ref().map(|c| c.to_string()))
                    .push_bind(ingested_at);
            },
        );
        let inserted = write_all(&self.write, statements).await?;
        Ok(InsertOutcome {
            inserted,
            duplicates: events.len() as u64 - inserted,
        })
    }

    /// One row and one JSON text whatever the batch: sqlx's SQLite driver hands each row
    /// from its worker thread to the caller as a message of its own, a thread wake-up
    /// each, which cost a cold check more than reading the events.
    async fn histories(&self, numbers: &[E164]) -> Result<Vec<Vec<EventFact>>, StoreError> {
        let list = serde_json::to_string(&numbers.iter().map(E164::as_str).collect::<Vec<_>>())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // CROSS JOIN keeps the list as the outer loop, so each number is one index probe.
        let events: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(e.number, json_array(e.source, \
             e.source_event_id, e.kind, e.occurred_at, e.from_carrier, e.to_carrier))) \
             FROM json_each(?) AS wanted CROSS JOIN events AS e ON e.number = wanted.value",
        )
        .bind(list)
        .fetch_one(&self.read)
        .await?;
        let events: Vec<(String, sql::StoredFact)> = serde_json::from_str(&events)
            .map_err(|e| StoreError::Corrupt(format!("a history read: {e}")))?;
        sql::group_by_number(
            numbers,
            events
                .into_iter()
                .map(|(number, stored)| Ok((number, sql::fact(stored)?))),
        )
    }

    fn push_watch_join(sql: &mut QueryBuilder<Sqlite>, tenant: &TenantName) {
        // A LEFT JOIN keeps the event window as SQLite's outer loop.
        sql.push(" LEFT JOIN watchlist w ON w.tenant = ")
            .push_bind(tenant.as_str().to_string())
            .push(" AND w.number = e.number AND ")
            .push(sql::ALERT_CONDITION);
    }

    /// This process is the only writer: there is no one to tell.
    async fn announce(&self, _: Announce) -> Result<(), StoreError> {
        Ok(())
    }

    fn take_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Change>> {
        None
    }

    /// On a connection of its own, so that the minutes it may take at tens of gigabytes
    /// hold none of the pools' connections.
    async fn check_integrity(&self) -> Result<bool, StoreError> {
        let Some(options) = self
            .deferred_check
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(false);
        };
        let mut conn = SqliteConnection::connect_with(&options).await?;
        quick_check(&mut conn).await.map(|()| true)
    }
}
