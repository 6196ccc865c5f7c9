//! The embedded default: one SQLite file, WAL mode, created and migrated on first open.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};

use super::sql::{self, count, micros};
use super::sql_store::{Announce, Backend};
use super::{
    AccessRecord, Change, EventFact, InsertOutcome, IntegrityCheck, StoreError, StoreOptions,
};
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
    /// The history reads' connections, used without sqlx (see [`HistoryReaders`]).
    histories: Arc<HistoryReaders>,
    /// Bulk inserts go through this connection, without sqlx (see
    /// [`SqliteBackend::write_rows`]).
    rows_writer: Arc<Mutex<rusqlite::Connection>>,
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
            .pragma("cache_size", PAGE_CACHE.to_string());
        if let Some(bytes) = store.sqlite_max_bytes {
            options = options.pragma("max_page_count", max_pages(bytes).to_string());
        }
        let file = options.get_filename().to_path_buf();
        if file != Path::new(":memory:") {
            let readers = if store.sqlite_group_readable {
                Readers::OwnerAndGroup
            } else {
                Readers::Owner
            };
            create_private(&file, readers)
                .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
            warn_if_readable_by_others(&file, "the database file", readers);
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
        let rows_writer = Arc::new(Mutex::new(open_rows_writer(&file, &store)?));
        let options = options.read_only(true);
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        let histories = Arc::new(HistoryReaders::new(file));
        let deferred_check =
            (store.sqlite_integrity_check == IntegrityCheck::Background).then_some(options);
        Ok(SqliteBackend {
            write,
            read,
            histories,
            rows_writer,
            deferred_check: Mutex::new(deferred_check),
        })
    }

    /// Runs `write` over `items` in one transaction through SQLite's API on the rows
    /// writer (no hop to sqlx's worker thread per statement), while the pool's one write
    /// connection is held so that no other write of this process runs meanwhile.
    ///
    /// A few rows are copied to a blocking thread, as sqlx would have done, so that the
    /// caller's reply goes out as soon as the commit is done. Many rows are written where
    /// the caller runs, its runtime thread first handing its other tasks to another
    /// (`block_in_place`): no copy, but the tasks it wakes wait their turn in the queue,
    /// which under load held a one-event ingest's acknowledgement 5 ms.
    async fn write_rows<I, R>(
        &self,
        items: &[I],
        write: impl Fn(&rusqlite::Transaction, &[I]) -> Result<R, rusqlite::Error> + Send + 'static,
    ) -> Result<R, StoreError>
    where
        I: Clone + Send + 'static,
        R: Send + 'static,
    {
        let _turn = self.write.acquire().await?;
        let writer = self.rows_writer.clone();
        let run = move |items: &[I]| {
            let mut db = writer.lock().unwrap_or_else(|e| e.into_inner());
            let tx = db.transaction()?;
            let written = write(&tx, items)?;
            tx.commit()?;
            Ok::<_, rusqlite::Error>(written)
        };
        if items.len() > COPIED_ROWS {
            return Ok(blocking(|| run(items))?);
        }
        let items = items.to_vec();
        Ok(on_blocking_thread("a write", move || run(&items)).await??)
    }
}

/// Writes of at most this many rows are copied to a blocking thread (see
/// [`SqliteBackend::write_rows`]).
const COPIED_ROWS: usize = 1_024;

/// Each connection's page cache (`cache_size`; negative: KiB). Ingest inserts into three
/// indexes at random places; with SQLite's default 2 MiB nearly every insert reads and
/// rewrites pages through the kernel. 64 MiB per connection keeps the hot index pages in
/// memory.
const PAGE_CACHE: i64 = -65536;

/// `max_page_count` for a cap of `bytes` (the default page size is 4 KiB).
fn max_pages(bytes: u64) -> u64 {
    (bytes / 4096).max(1)
}

/// How much of the file the history connections map: the most SQLite maps on Linux
/// (`SQLITE_MAX_MMAP_SIZE`, just under 2 GiB); reads past it go through `pread` and the
/// page cache. With the first GiB only, a 10M-event file (1.7 GB) cost the cold check
/// about a quarter of its rate (BENCHMARKS.md, cost_growth, 2026-12-08).
const HISTORY_MMAP: i64 = 0x7fff_0000;

/// Histories of at most this many numbers are read on the caller's thread.
const READ_IN_PLACE: usize = 16;

/// Idle history connections kept for reuse; more are opened while more read at once.
const IDLE_READERS: usize = 4;

/// Read-only connections for history reads, used directly rather than through sqlx.
///
/// A cold check is one indexed read of a few rows from pages the OS has cached: tens of
/// microseconds. Through sqlx each read was a hop to the connection's worker thread and
/// back (two thread wake-ups), and the answers, finishing one by one on those wake-ups,
/// went out in a write each; that cost a cold check about four times its read. Here the
/// read runs where the check runs, as the decision does. A page not in memory holds that
/// thread for one local disk read: WAL mode needs the file on a local disk anyway.
struct HistoryReaders {
    file: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl HistoryReaders {
    fn new(file: PathBuf) -> Self {
        HistoryReaders {
            file,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> Result<rusqlite::Connection, StoreError> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &self.file,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "cache_size", PAGE_CACHE)?;
        // Pages read from the mapped file rather than copied in by `pread`: 15% less CPU
        // per cold check. The cost is SQLite's: a disk that fails under a mapped page
        // stops the process (SIGBUS) instead of failing the read.
        conn.pragma_update(None, "mmap_size", HISTORY_MMAP)?;
        Ok(conn)
    }

    /// One query whatever the batch; the list as JSON keeps it one statement, prepared
    /// once per connection.
    fn read(&self, numbers: &[E164]) -> Result<Vec<Vec<EventFact>>, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let read = read_histories(&conn, numbers);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        read
    }
}

fn read_histories(
    conn: &rusqlite::Connection,
    numbers: &[E164],
) -> Result<Vec<Vec<EventFact>>, StoreError> {
    // Each number once: the join returns a listed number's events once per listing
    // (`group_by_number` gives a repeated number its history at each place).
    let mut seen = std::collections::HashSet::with_hasher(crate::FastHash::default());
    let distinct: Vec<&str> = numbers
        .iter()
        .map(E164::as_str)
        .filter(|n| numbers.len() == 1 || seen.insert(*n))
        .collect();
    let list = serde_json::to_string(&distinct).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    // CROSS JOIN keeps the list as the outer loop, so each number is one index probe.
    let mut select = conn.prepare_cached(
        "SELECT e.number, e.source, e.source_event_id, e.kind, e.occurred_at, \
         e.from_carrier, e.to_carrier \
         FROM json_each(?1) AS wanted CROSS JOIN events AS e ON e.number = wanted.value",
    )?;
    let rows = select.query_map([list], |row| {
        Ok((
            row.get::<_, String>(0)?,
            sql::StoredFact {
                source: row.get(1)?,
                source_event_id: row.get(2)?,
                kind: row.get(3)?,
                occurred_at: row.get(4)?,
                from_carrier: row.get(5)?,
                to_carrier: row.get(6)?,
            },
        ))
    })?;
    sql::group_by_number(
        numbers,
        rows.map(|row| {
            let (number, stored) = row?;
            Ok((number, sql::fact(stored)?))
        }),
    )
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

/// A write connection set up as the pool's are (`open`), for
/// [`SqliteBackend::write_rows`], but without foreign key checks: the only one its
/// tables have, `events.source`, the engine checks before it writes (sources are never
/// deleted), as on PostgreSQL, and a checked key would make every insert a statement
/// that may fail halfway.
fn open_rows_writer(file: &Path, store: &StoreOptions) -> Result<rusqlite::Connection, StoreError> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", false)?;
    conn.pragma_update(None, "cache_size", PAGE_CACHE)?;
    if let Some(bytes) = store.sqlite_max_bytes {
        conn.pragma_update(None, "max_page_count", max_pages(bytes).to_string())?;
    }
    Ok(conn)
}

const EVENT_COLUMNS: &[&str] = &[
    "source",
    "source_event_id",
    "number",
    "kind",
    "occurred_at",
    "from_carrier",
    "to_carrier",
    "ingested_at",
];

const ACCESS_COLUMNS: &[&str] = &["tenant", "number_hash", "first_at", "last_at", "checks"];

/// Rows per statement of [`insert_or_ignore`]: 64 × 8 columns is 512 parameters, each
/// statement prepared once per batch.
const ROWS_PER_INSERT: usize = 64;

/// Inserts `items` into `table` (`columns` named in order) as multi-row `INSERT OR
/// IGNORE` statements, `bind` setting one item's parameters from the index it is given;
/// returns the rows inserted.
///
/// `OR IGNORE` makes no statement one that may fail halfway, so SQLite keeps no
/// statement journal (with one, each statement first copied every page it changed to a
/// temporary file: 4.5 GB of writes per 1M events, a sixth of the ingest rate). What it
/// may ignore is only a repeated key: every other constraint of these tables (NOT NULL,
/// `events.kind`'s CHECK) is met by the types the values are bound from.
fn insert_or_ignore<T>(
    tx: &rusqlite::Transaction,
    table: &str,
    columns: &[&str],
    items: &[T],
    bind: impl Fn(&mut rusqlite::Statement, usize, &T) -> Result<(), rusqlite::Error>,
) -> Result<u64, rusqlite::Error> {
    let row = format!("({})", vec!["?"; columns.len()].join(", "));
    let statement = |rows: usize| {
        format!(
            "INSERT OR IGNORE INTO {table} ({}) VALUES {}",
            columns.join(", "),
            vec![row.as_str(); rows].join(", ")
        )
    };
    let run = |insert: &mut rusqlite::Statement, items: &[T]| {
        for (i, item) in items.iter().enumerate() {
            bind(insert, i * columns.len() + 1, item)?;
        }
        insert.raw_execute().map(|rows| rows as u64)
    };
    let mut inserted = 0;
    let mut chunks = items.chunks_exact(ROWS_PER_INSERT);
    if chunks.len() > 0 {
        let mut insert = tx.prepare(&statement(ROWS_PER_INSERT))?;
        for chunk in &mut chunks {
            inserted += run(&mut insert, chunk)?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        inserted += run(&mut tx.prepare(&statement(rest.len()))?, rest)?;
    }
    Ok(inserted)
}

/// Runs `work` on a blocking thread; `what` names it in the error if it panicked.
async fn on_blocking_thread<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Corrupt(format!("{what} stopped: {e}")))
}

/// Runs `work`, which blocks, on this thread; on a multi-threaded runtime the thread's
/// other tasks are first handed to another worker.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
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

    /// A repeated `(source, source_event_id)` is ignored: the first one stored stays.
    async fn insert_events(&self, events: &[NewEvent]) -> Result<InsertOutcome, StoreError> {
        let ingested_at = micros(Utc::now());
        let inserted = self
            .write_rows(events, move |tx, events| {
                insert_or_ignore(tx, "events", EVENT_COLUMNS, events, |insert, at, e| {
                    insert.raw_bind_parameter(at, e.fact.source.as_str())?;
                    insert.raw_bind_parameter(at + 1, &e.fact.source_event_id)?;
                    insert.raw_bind_parameter(at + 2, e.number.as_str())?;
                    insert.raw_bind_parameter(at + 3, e.fact.kind.as_str())?;
                    insert.raw_bind_parameter(at + 4, micros(e.fact.occurred_at))?;
                    insert.raw_bind_parameter(
                        at + 5,
                        e.fact.from_carrier.as_ref().map(|c| c.as_str()),
                    )?;
                    insert.raw_bind_parameter(
                        at + 6,
                        e.fact.to_carrier.as_ref().map(|c| c.as_str()),
                    )?;
                    insert.raw_bind_parameter(at + 7, ingested_at)
                })
            })
            .await?;
        Ok(InsertOutcome {
            inserted,
            duplicates: events.len() as u64 - inserted,
        })
    }

    async fn insert_access(&self, records: &[AccessRecord]) -> Result<(), StoreError> {
        self.write_rows(records, |tx, records| {
            insert_or_ignore(
                tx,
                "access_log",
                ACCESS_COLUMNS,
                records,
                |insert, at, r| {
                    insert.raw_bind_parameter(at, r.tenant.as_str())?;
                    insert.raw_bind_parameter(at + 1, &r.number_hash)?;
                    insert.raw_bind_parameter(at + 2, micros(r.first_at))?;
                    insert.raw_bind_parameter(at + 3, micros(r.last_at))?;
                    insert.raw_bind_parameter(at + 4, count(r.checks))
                },
            )
        })
        .await?;
        Ok(())
    }

    /// A check's few numbers are read on the calling thread; an audit chunk's thousands
    /// on a blocking thread, so that one read never holds a runtime thread for long.
    async fn histories(&self, numbers: &[E164]) -> Result<Vec<Vec<EventFact>>, StoreError> {
        if numbers.len() <= READ_IN_PLACE {
            return self.histories.read(numbers);
        }
        let (readers, numbers) = (self.histories.clone(), numbers.to_vec());
        on_blocking_thread("a history read", move || readers.read(&numbers)).await?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_connections_map_as_much_as_sqlite_allows() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("numguard.db");
        rusqlite::Connection::open(&file)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let conn = HistoryReaders::new(file).open().unwrap();
        let mapped = |conn: &rusqlite::Connection| -> i64 {
            conn.query_row("PRAGMA mmap_size", [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(mapped(&conn), HISTORY_MMAP, "taken as set");
        // SQLite silently lowers a value past its limit to the limit.
        conn.pragma_update(None, "mmap_size", 1_i64 << 40).unwrap();
        assert_eq!(mapped(&conn), HISTORY_MMAP, "no more can be mapped");
    }
}
