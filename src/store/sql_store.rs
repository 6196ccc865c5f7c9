//! The one storage implementation, generic over the backend: every statement that reads
//! the same on SQLite and PostgreSQL is written here once. A [`Backend`] supplies only
//! what differs: its pools, the bulk event insert, the batch history read, the alert
//! query's watchlist join and the change feed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder, Row, Type,
};
use tokio::sync::mpsc::UnboundedReceiver;

use super::sql::queue::{self, Queue};
use super::sql::{self, micros, optional_time_at, time_at};
use super::{
    AccessLogStore, AccessRecord, Advance, AlertPage, CatalogStore, Change, ChangeFeed, Delivery,
    DeliveryBacklog, EventQuery, EventStore, InsertOutcome, KeyRecord, KeyStore, PoolUsage,
    StoreError, SubscriptionRecord, SubscriptionStore, WatchlistStore,
};
use crate::domain::auth::{TenantName, TimePrecision};
use crate::domain::carrier::Carrier;
use crate::domain::event::{EventFact, EventKind, NewEvent, StoredEvent};
use crate::domain::number::E164;
use crate::domain::source::{Source, SourceName};
use crate::domain::subscription::DeliveryState;
use crate::domain::watch::WatchEntry;
use crate::ranges::RangeEntry;

/// Rows per multi-row statement: 8 columns × 500 stays far below either bind limit.
const ROWS_PER_STATEMENT: usize = 500;

/// How many rows a statement touched, on either backend.
pub trait Affected {
    /// Rows inserted, updated or deleted.
    fn rows(&self) -> u64;
}

impl Affected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl Affected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// Which part of the catalog a write changed, for replicas sharing the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// Sources were created or changed.
    Sources,
    /// Carriers were registered or changed.
    Carriers,
    /// Carrier ranges were imported.
    Ranges,
    /// A key was revoked or a tenant's settings changed.
    Keys,
}

/// What differs between the backends.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The sqlx database.
    type Db: Database<QueryResult: Affected>;
    /// Where reads go.
    fn reader(&self) -> &Pool<Self::Db>;
    /// Where writes go (and reads that must see this process's last write).
    fn writer(&self) -> &Pool<Self::Db>;
    /// Inserts a batch of events in one transaction; returns after the commit.
    async fn insert_events(&self, events: &[NewEvent]) -> Result<InsertOutcome, StoreError>;
    /// Inserts access-log records in one transaction.
    async fn insert_access(&self, records: &[AccessRecord]) -> Result<(), StoreError>;
    /// Every event of each of these numbers, read in one query, one history per number
    /// in `numbers`' order.
    async fn histories(&self, numbers: &[E164]) -> Result<Vec<Vec<EventFact>>, StoreError>;
    /// Joins an alert query's event window `e` to the tenant's watchlist as `w`, keeping
    /// events no entry watches.
    fn push_watch_join(sql: &mut QueryBuilder<Self::Db>, tenant: &TenantName);
    /// Tells the other processes sharing the database what changed.
    async fn announce(&self, what: Announce) -> Result<(), StoreError>;
    /// See [`Store::take_changes`].
    fn take_changes(&self) -> Option<UnboundedReceiver<Change>>;
    /// See [`ChangeFeed::check_integrity`]; only SQLite leaves one for later.
    async fn check_integrity(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// A [`Store`] over any [`Backend`].
pub struct SqlStore<B> {
    backend: B,
}

impl<B> SqlStore<B> {
    /// The store over an opened backend.
    pub fn new(backend: B) -> SqlStore<B> {
        SqlStore { backend }
    }
}

/// Runs statements in one transaction; returns the rows they touched.
pub(super) async fn write_all<DB>(
    pool: &Pool<DB>,
    statements: Vec<QueryBuilder<DB>>,
) -> Result<u64, StoreError>
where
    DB: Database<QueryResult: Affected>,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let mut tx = pool.begin().await?;
    let mut touched = 0;
    for mut statement in statements {
        touched += statement.build().execute(&mut *tx).await?.rows();
    }
    tx.commit().await?;
    Ok(touched)
}

/// Runs one statement; returns the rows it touched.
async fn write<DB>(pool: &Pool<DB>, mut statement: QueryBuilder<DB>) -> Result<u64, StoreError>
where
    DB: Database<QueryResult: Affected>,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    Ok(statement.build().execute(pool).await?.rows())
}

/// Runs one query; returns its rows.
async fn read<DB>(pool: &Pool<DB>, mut query: QueryBuilder<DB>) -> Result<Vec<DB::Row>, StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    Ok(query.build().fetch_all(pool).await?)
}

/// `INSERT INTO <table> (<columns>) ` followed by one multi-row VALUES per chunk.
pub(super) fn chunked<DB, T>(
    items: &[T],
    head: &str,
    tail: &str,
    mut row: impl FnMut(&mut sqlx::query_builder::Separated<'_, DB, &'static str>, &T),
) -> Vec<QueryBuilder<DB>>
where
    DB: Database,
{
    items
        .chunks(ROWS_PER_STATEMENT)
        .map(|chunk| {
            let mut statement = QueryBuilder::new(head);
            statement.push_values(chunk, |mut values, item| row(&mut values, item));
            statement.push(tail);
            statement
        })
        .collect()
}

const SELECT_KEYS: &str = "SELECT id, tenant, scopes, hash, created_at, revoked_at FROM api_keys";

/// Writes `impl $trait for SqlStore<B>` with the bounds the generic statements need, so
/// the bounds are written once for the seven store traits.
macro_rules! sql_impl {
    ($trait:ident { $($body:tt)* }) => {
        #[async_trait]
        impl<B> $trait for SqlStore<B>
        where
    B: Backend,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    for<'c> &'c str: ColumnIndex<<B::Db as Database>::Row>,
    for<'t> String: Encode<'t, B::Db> + Decode<'t, B::Db> + Type<B::Db>,
    for<'t> Option<String>: Encode<'t, B::Db> + Decode<'t, B::Db> + Type<B::Db>,
    for<'t> i64: Encode<'t, B::Db> + Decode<'t, B::Db> + Type<B::Db>,
    for<'t> Option<i64>: Encode<'t, B::Db> + Decode<'t, B::Db> + Type<B::Db>,
    for<'t> bool: Encode<'t, B::Db> + Decode<'t, B::Db> + Type<B::Db>,
    for<'t> Vec<u8>: Encode<'t, B::Db> + Decode<'t, B::Db> + Type<B::Db>,
        {
            $($body)*
        }
    };
}

sql_impl!(CatalogStore {
    async fn upsert_source(&self, source: &Source) -> Result<(), StoreError> {
        let columns = sql::SourceColumns::of(source);
        let mut upsert = QueryBuilder::new(
            "INSERT INTO sources (name, tracking_since, covers, scopes, max_lag_us, updated_at) \
             VALUES (",
        );
        upsert
            .separated(", ")
            .push_bind(source.name.as_str().to_string())
            .push_bind(micros(source.tracking_since))
            .push_bind(sql::covers_of(source).join(" "))
            .push_bind(columns.scopes)
            .push_bind(columns.max_lag_us)
            .push_bind(micros(Utc::now()));
        upsert.push(
            ") ON CONFLICT (name) DO UPDATE SET tracking_since = excluded.tracking_since, \
             covers = excluded.covers, scopes = excluded.scopes, \
             max_lag_us = excluded.max_lag_us, updated_at = excluded.updated_at",
        );
        write(self.backend.writer(), upsert).await?;
        self.backend.announce(Announce::Sources).await
    }

    async fn list_sources(&self) -> Result<Vec<Source>, StoreError> {
        read(self.backend.reader(), QueryBuilder::new(sql::SOURCE_SELECT))
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
        let advanced =
            write(self.backend.writer(), sql::advance_complete_until(name, at)).await? > 0;
        if advanced {
            self.backend.announce(Announce::Sources).await?;
        }
        Ok(advanced)
    }

    async fn upsert_carriers(&self, carriers: &[Carrier]) -> Result<(), StoreError> {
        let statements = carriers
            .chunks(ROWS_PER_STATEMENT)
            .map(sql::upsert_carriers)
            .collect();
        write_all(self.backend.writer(), statements).await?;
        self.backend.announce(Announce::Carriers).await
    }

    async fn list_carriers(&self) -> Result<Vec<Carrier>, StoreError> {
        read(
            self.backend.reader(),
            QueryBuilder::new(sql::SELECT_CARRIERS),
        )
        .await?
        .iter()
        .map(sql::carrier_from)
        .collect()
    }

    async fn upsert_ranges(&self, ranges: &[RangeEntry]) -> Result<u64, StoreError> {
        let now = micros(Utc::now());
        let statements = chunked(
            ranges,
            "INSERT INTO carrier_ranges (prefix, carrier, updated_at) ",
            " ON CONFLICT (prefix) DO UPDATE SET carrier = excluded.carrier, \
             updated_at = excluded.updated_at",
            |row, r| {
                row.push_bind(r.prefix.as_str().to_string())
                    .push_bind(r.carrier.clone())
                    .push_bind(now);
            },
        );
        let written = write_all(self.backend.writer(), statements).await?;
        self.backend.announce(Announce::Ranges).await?;
        Ok(written)
    }

    async fn load_ranges(&self) -> Result<Vec<RangeEntry>, StoreError> {
        read(
            self.backend.reader(),
            QueryBuilder::new("SELECT prefix, carrier FROM carrier_ranges"),
        )
        .await?
        .iter()
        .map(|row| sql::range_from(row.try_get("prefix")?, row.try_get("carrier")?))
        .collect()
    }
});

sql_impl!(EventStore {
    async fn insert_events(&self, events: &[NewEvent]) -> Result<InsertOutcome, StoreError> {
        self.backend.insert_events(events).await
    }

    async fn history(&self, number: &E164) -> Result<Vec<EventFact>, StoreError> {
        let mut histories = self.backend.histories(std::slice::from_ref(number)).await?;
        Ok(histories.pop().unwrap_or_default())
    }

    async fn histories(&self, numbers: &[E164]) -> Result<Vec<Vec<EventFact>>, StoreError> {
        self.backend.histories(numbers).await
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let mut select = QueryBuilder::new(sql::SELECT_EVENTS);
        sql::push_event_filters(&mut select, query);
        read(self.backend.reader(), select)
            .await?
            .iter()
            .map(sql::stored_event_from)
            .collect()
    }

    async fn purge_events(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<E164>, StoreError> {
        // A number's newest PORT stays however old: it says which carrier serves the
        // number now, and so which carrier-scoped sources see it.
        let mut delete = QueryBuilder::new(
            "DELETE FROM events WHERE id IN (SELECT old.id FROM events old \
             WHERE old.occurred_at < ",
        );
        delete.push_bind(micros(before));
        delete.push(
            " AND (old.kind <> 'PORT' OR EXISTS (SELECT 1 FROM events later \
             WHERE later.number = old.number AND later.kind = 'PORT' \
             AND (later.occurred_at, later.source, later.source_event_id) \
             > (old.occurred_at, old.source, old.source_event_id))) \
             ORDER BY old.occurred_at LIMIT ",
        );
        delete.push_bind(i64::from(limit));
        delete.push(") RETURNING number");
        read(self.backend.writer(), delete)
            .await?
            .iter()
            .map(|row| Ok(E164::from_trusted(row.try_get("number")?)))
            .collect()
    }

    async fn last_event_id(&self) -> Result<i64, StoreError> {
        let rows = read(
            self.backend.reader(),
            QueryBuilder::new("SELECT COALESCE(MAX(id), 0) AS last FROM events"),
        )
        .await?;
        match rows.first() {
            Some(row) => Ok(row.try_get("last")?),
            None => Ok(0),
        }
    }

    async fn number_events_after(
        &self,
        number: &E164,
        after: i64,
        kinds: &[EventKind],
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        read(
            self.backend.reader(),
            sql::number_events_after(number, after, kinds, limit),
        )
        .await?
        .iter()
        .map(sql::stored_event_from)
        .collect()
    }
});

sql_impl!(KeyStore {
    async fn create_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let mut tenant = QueryBuilder::new("INSERT INTO tenants (name, created_at) VALUES (");
        tenant
            .separated(", ")
            .push_bind(key.tenant.as_str().to_string())
            .push_bind(micros(key.created_at));
        tenant.push(") ON CONFLICT (name) DO NOTHING");
        let mut insert = QueryBuilder::new(
            "INSERT INTO api_keys (id, tenant, scopes, hash, created_at) VALUES (",
        );
        insert
            .separated(", ")
            .push_bind(key.id.clone())
            .push_bind(key.tenant.as_str().to_string())
            .push_bind(key.scopes.to_string())
            .push_bind(key.hash.clone())
            .push_bind(micros(key.created_at));
        insert.push(")");
        write_all(self.backend.writer(), vec![tenant, insert]).await?;
        Ok(())
    }

    async fn find_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let mut select = QueryBuilder::new(SELECT_KEYS);
        select.push(" WHERE id = ").push_bind(id.to_string());
        read(self.backend.reader(), select)
            .await?
            .first()
            .map(key_from)
            .transpose()
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut select = QueryBuilder::new(SELECT_KEYS);
        select.push(" ORDER BY tenant, created_at");
        read(self.backend.reader(), select)
            .await?
            .iter()
            .map(key_from)
            .collect()
    }

    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let mut revoke = QueryBuilder::new("UPDATE api_keys SET revoked_at = ");
        revoke
            .push_bind(micros(Utc::now()))
            .push(" WHERE revoked_at IS NULL AND id = ")
            .push_bind(id.to_string());
        let revoked = write(self.backend.writer(), revoke).await? > 0;
        self.backend.announce(Announce::Keys).await?;
        Ok(revoked)
    }

    async fn set_time_precision(
        &self,
        tenant: &TenantName,
        precision: TimePrecision,
    ) -> Result<bool, StoreError> {
        let mut update = QueryBuilder::new("UPDATE tenants SET time_precision = ");
        update
            .push_bind(precision.as_str().to_string())
            .push(" WHERE name = ")
            .push_bind(tenant.as_str().to_string());
        let changed = write(self.backend.writer(), update).await? > 0;
        self.backend.announce(Announce::Keys).await?;
        Ok(changed)
    }

    async fn time_precision(&self, tenant: &TenantName) -> Result<TimePrecision, StoreError> {
        let mut select = QueryBuilder::new("SELECT time_precision FROM tenants WHERE name = ");
        select.push_bind(tenant.as_str().to_string());
        match read(self.backend.reader(), select).await?.first() {
            Some(row) => sql::precision_from(&row.try_get::<String, _>("time_precision")?),
            None => Ok(TimePrecision::default()),
        }
    }
});

sql_impl!(AccessLogStore {
    async fn setting_or_init(&self, name: &str, initial: &str) -> Result<String, StoreError> {
        let mut insert = QueryBuilder::new("INSERT INTO settings (name, value) VALUES (");
        insert
            .separated(", ")
            .push_bind(name.to_string())
            .push_bind(initial.to_string());
        insert.push(") ON CONFLICT DO NOTHING");
        write(self.backend.writer(), insert).await?;
        let mut select = QueryBuilder::new("SELECT value FROM settings WHERE name = ");
        select.push_bind(name.to_string());
        // The writer: a reader might not see the row written just now.
        let rows = read(self.backend.writer(), select).await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt(format!("setting {name:?} was not stored")))?;
        Ok(row.try_get("value")?)
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let mut select = QueryBuilder::new("SELECT value FROM settings WHERE name = ");
        select.push_bind(name.to_string());
        let rows = read(self.backend.writer(), select).await?;
        Ok(rows.first().map(|row| row.try_get("value")).transpose()?)
    }

    async fn record_access(&self, records: &[AccessRecord]) -> Result<(), StoreError> {
        self.backend.insert_access(records).await
    }

    async fn access_log(&self, number_hash: &str) -> Result<Vec<AccessRecord>, StoreError> {
        let mut select = QueryBuilder::new(
            "SELECT tenant, number_hash, first_at, last_at, checks FROM access_log \
             WHERE number_hash = ",
        );
        select
            .push_bind(number_hash.to_string())
            .push(" ORDER BY first_at");
        read(self.backend.reader(), select)
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
});

sql_impl!(WatchlistStore {
    async fn upsert_watch(
        &self,
        tenant: &TenantName,
        entries: &[WatchEntry],
    ) -> Result<u64, StoreError> {
        let now = micros(Utc::now());
        let statements = chunked(
            entries,
            "INSERT INTO watchlist (tenant, customer_ref, number, owner_since_start, \
             owner_since_end, updated_at) ",
            " ON CONFLICT (tenant, customer_ref) DO UPDATE SET number = excluded.number, \
             owner_since_start = excluded.owner_since_start, \
             owner_since_end = excluded.owner_since_end, updated_at = excluded.updated_at",
            |row, w| {
                let (start, end) = sql::owner_since_columns(&w.owner_since);
                row.push_bind(tenant.as_str().to_string())
                    .push_bind(w.customer_ref.clone())
                    .push_bind(w.number.as_str().to_string())
                    .push_bind(micros(start))
                    .push_bind(end.map(micros))
                    .push_bind(now);
            },
        );
        write_all(self.backend.writer(), statements).await
    }

    async fn remove_watch(&self, tenant: &TenantName, refs: &[String]) -> Result<u64, StoreError> {
        let statements = refs
            .chunks(ROWS_PER_STATEMENT)
            .map(|chunk| {
                let mut delete = QueryBuilder::new("DELETE FROM watchlist WHERE tenant = ");
                delete
                    .push_bind(tenant.as_str().to_string())
                    .push(" AND customer_ref IN (");
                let mut list = delete.separated(", ");
                for r in chunk {
                    list.push_bind(r.clone());
                }
                delete.push(")");
                delete
            })
            .collect();
        write_all(self.backend.writer(), statements).await
    }

    async fn list_watch(
        &self,
        tenant: &TenantName,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WatchEntry>, StoreError> {
        let mut select = QueryBuilder::new(
            "SELECT customer_ref, number, owner_since_start, owner_since_end FROM watchlist \
             WHERE tenant = ",
        );
        select
            .push_bind(tenant.as_str().to_string())
            .push(" AND customer_ref > ")
            .push_bind(after.unwrap_or("").to_string())
            .push(" ORDER BY customer_ref LIMIT ")
            .push_bind(i64::from(limit));
        read(self.backend.reader(), select)
            .await?
            .iter()
            .map(|row| {
                Ok(WatchEntry {
                    customer_ref: row.try_get("customer_ref")?,
                    number: E164::from_trusted(row.try_get("number")?),
                    owner_since: sql::owner_since_from(
                        time_at(row, "owner_since_start")?,
                        optional_time_at(row, "owner_since_end")?,
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
        let mut select = QueryBuilder::new(sql::ALERT_COLUMNS);
        sql::push_event_window(&mut select, after, kinds, limit);
        B::push_watch_join(&mut select, tenant);
        select.push(" ORDER BY e.id, w.customer_ref");
        let rows = read(self.backend.reader(), select)
            .await?
            .iter()
            .map(|row| {
                let customer_ref: Option<String> = row.try_get("customer_ref")?;
                let entry = match customer_ref {
                    Some(customer_ref) => Some((
                        customer_ref,
                        sql::owner_since_from(
                            time_at(row, "owner_since_start")?,
                            optional_time_at(row, "owner_since_end")?,
                        ),
                    )),
                    None => None,
                };
                Ok((sql::stored_event_from(row)?, entry))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(sql::group_alerts(rows))
    }
});

sql_impl!(SubscriptionStore {
    async fn create_subscription(&self, s: &SubscriptionRecord) -> Result<(), StoreError> {
        write(self.backend.writer(), Queue::insert_subscription(s)).await?;
        Ok(())
    }

    async fn subscriptions(
        &self,
        tenant: Option<&TenantName>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        read(self.backend.reader(), Queue::select_subscriptions(tenant))
            .await?
            .iter()
            .map(sql::subscription_from)
            .collect()
    }

    async fn advance_subscriptions(&self, advances: &[Advance]) -> Result<(), StoreError> {
        let mut statements: Vec<QueryBuilder<B::Db>> = Vec::new();
        for a in advances {
            statements.extend(
                a.deliveries
                    .chunks(queue::DELIVERIES_PER_INSERT)
                    .map(|chunk| Queue::insert_deliveries(&a.id, chunk)),
            );
            statements.push(Queue::update_subscription(&a.id, a.cursor, a.sent, a.ended));
        }
        if !statements.is_empty() {
            write_all(self.backend.writer(), statements).await?;
        }
        Ok(())
    }

    async fn due_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        read(self.backend.reader(), Queue::select_due(limit))
            .await?
            .iter()
            .map(sql::delivery_from)
            .collect()
    }

    async fn delivery_backlog(
        &self,
        failing_before: DateTime<Utc>,
    ) -> Result<DeliveryBacklog, StoreError> {
        let mut query = QueryBuilder::new(
            "SELECT count(*) AS n, MIN(queued_at) AS oldest, \
               COUNT(DISTINCT CASE WHEN first_failed_at < ",
        );
        query.push_bind(micros(failing_before)).push(
            " THEN subscription_id END) AS failing \
             FROM deliveries WHERE delivered_at IS NULL",
        );
        let rows = read(self.backend.reader(), query).await?;
        let Some(row) = rows.first() else {
            return Ok(DeliveryBacklog::default());
        };
        Ok(DeliveryBacklog {
            pending: u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0),
            oldest_pending: row
                .try_get::<Option<i64>, _>("oldest")?
                .and_then(DateTime::from_timestamp_micros),
            failing_subscriptions: u64::try_from(row.try_get::<i64, _>("failing")?)
                .unwrap_or(0),
        })
    }

    async fn retry_deliveries(&self, subscription_id: &str) -> Result<u64, StoreError> {
        write(self.backend.writer(), Queue::retry_pending(subscription_id)).await
    }

    async fn delivery_states(
        &self,
        tenant: &TenantName,
    ) -> Result<Vec<(String, DeliveryState)>, StoreError> {
        // Sums cast to BIGINT: PostgreSQL sums BIGINTs as NUMERIC.
        let mut query = QueryBuilder::new(
            "SELECT d.subscription_id, \
               CAST(SUM(CASE WHEN d.delivered_at IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS delivered, \
               CAST(SUM(CASE WHEN d.delivered_at IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS pending, \
               CAST(SUM(d.attempts) - SUM(CASE WHEN d.delivered_at IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS failed, \
               MAX(d.delivered_at) AS last_success, \
               MIN(CASE WHEN d.delivered_at IS NULL THEN d.next_attempt_at END) AS next_attempt, \
               MIN(CASE WHEN d.delivered_at IS NULL THEN d.queued_at END) AS oldest_pending, \
               MIN(CASE WHEN d.delivered_at IS NULL THEN d.first_failed_at END) AS failing_since, \
               (SELECT p.last_error FROM deliveries p WHERE p.subscription_id = d.subscription_id \
                  AND p.delivered_at IS NULL ORDER BY p.id LIMIT 1) AS last_error \
             FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
             WHERE s.tenant = ",
        );
        query
            .push_bind(tenant.as_str().to_string())
            .push(" GROUP BY d.subscription_id");
        read(self.backend.reader(), query)
            .await?
            .iter()
            .map(|row| {
                let count = |column: &str| -> Result<u64, StoreError> {
                    Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or(0))
                };
                let time = |column: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
                    Ok(row
                        .try_get::<Option<i64>, _>(column)?
                        .and_then(DateTime::from_timestamp_micros))
                };
                Ok((
                    row.try_get("subscription_id")?,
                    DeliveryState {
                        delivered: count("delivered")?,
                        pending: count("pending")?,
                        failed_attempts: count("failed")?,
                        last_success: time("last_success")?,
                        last_error: row.try_get("last_error")?,
                        next_attempt: time("next_attempt")?,
                        oldest_pending: time("oldest_pending")?,
                        failing_since: time("failing_since")?,
                    },
                ))
            })
            .collect()
    }

    async fn finish_delivery(
        &self,
        id: i64,
        delivered: bool,
        retry_at: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        write(
            self.backend.writer(),
            Queue::finish_delivery(id, delivered, retry_at, error),
        )
        .await?;
        Ok(())
    }

    async fn sink_gone(&self, subscription_id: &str) -> Result<(), StoreError> {
        write_all(
            self.backend.writer(),
            vec![
                Queue::end_gone(subscription_id),
                Queue::drop_pending(subscription_id),
            ],
        )
        .await?;
        Ok(())
    }

    async fn sink_tokens(&self) -> Result<Vec<(String, String)>, StoreError> {
        let select = QueryBuilder::new(
            "SELECT id, token FROM subscriptions WHERE token IS NOT NULL ORDER BY id",
        );
        let rows = read(self.backend.writer(), select).await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("token")?)))
            .collect()
    }

    async fn set_sink_token(&self, subscription_id: &str, token: &str) -> Result<(), StoreError> {
        let mut update = QueryBuilder::new("UPDATE subscriptions SET token = ");
        update.push_bind(token.to_string());
        update.push(" WHERE id = ");
        update.push_bind(subscription_id.to_string());
        write(self.backend.writer(), update).await?;
        Ok(())
    }
});

sql_impl!(ChangeFeed {
    async fn ping(&self) -> Result<(), StoreError> {
        read(self.backend.reader(), QueryBuilder::new("SELECT 1")).await?;
        Ok(())
    }

    fn take_changes(&self) -> Option<UnboundedReceiver<Change>> {
        self.backend.take_changes()
    }

    fn pool_usage(&self) -> Vec<PoolUsage> {
        let usage = |pool: &'static str, p: &Pool<B::Db>| PoolUsage {
            pool,
            open: p.size(),
            idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
        };
        let (reader, writer) = (self.backend.reader(), self.backend.writer());
        if std::ptr::eq(reader, writer) {
            vec![usage("main", reader)]
        } else {
            vec![usage("read", reader), usage("write", writer)]
        }
    }

    async fn check_integrity(&self) -> Result<bool, StoreError> {
        self.backend.check_integrity().await
    }
});

/// Reads a row of [`SELECT_KEYS`].
fn key_from<R>(row: &R) -> Result<KeyRecord, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    sql::key_from(
        row.try_get("id")?,
        row.try_get("tenant")?,
        row.try_get("scopes")?,
        row.try_get("hash")?,
        time_at(row, "created_at")?,
        optional_time_at(row, "revoked_at")?,
    )
}
