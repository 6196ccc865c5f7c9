//! Statements and row readers shared by the backends. Every instant is stored as integer
//! microseconds since the epoch on both, so one text and one reader serve both.

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use super::{EventQuery, StoreError};
use crate::domain::carrier::{Carrier, CarrierId};
use crate::domain::event::{EventFact, EventKind, NewEvent, StoredEvent};
use crate::domain::number::E164;
use crate::domain::owner_since::OwnerSince;
use crate::domain::source::{Scope, Source, SourceName};
use crate::ranges::RangeEntry;

pub const SELECT_EVENTS: &str = "SELECT id, source, source_event_id, number, kind, occurred_at, \
     from_carrier, to_carrier, ingested_at FROM events WHERE 1 = 1";

/// Appends the WHERE conditions, newest-first order and limit of a listing.
pub fn push_event_filters<DB>(sql: &mut QueryBuilder<DB>, query: &EventQuery)
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    if let Some(number) = &query.number {
        sql.push(" AND number = ")
            .push_bind(number.as_str().to_string());
    }
    if !query.kinds.is_empty() {
        sql.push(" AND kind IN (");
        let mut kinds = sql.separated(", ");
        for kind in &query.kinds {
            kinds.push_bind(kind.as_str().to_string());
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
        sql.push(" AND (occurred_at < ")
            .push_bind(micros(after.occurred_at))
            .push(" OR (occurred_at = ")
            .push_bind(micros(after.occurred_at))
            .push(" AND id < ")
            .push_bind(after.id)
            .push("))");
    }
    sql.push(" ORDER BY occurred_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(query.limit));
}

fn kind_from(text: &str) -> Result<EventKind, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown event kind {text:?}")))
}

/// Reads `source, source_event_id, kind, occurred_at, from_carrier, to_carrier`.
pub fn fact_from<R>(row: &R) -> Result<EventFact, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    fact(StoredFact {
        source: row.try_get("source")?,
        source_event_id: row.try_get("source_event_id")?,
        kind: row.try_get("kind")?,
        occurred_at: row.try_get("occurred_at")?,
        from_carrier: row.try_get("from_carrier")?,
        to_carrier: row.try_get("to_carrier")?,
    })
}

/// An event's columns as stored, whichever way they were read.
#[derive(Debug)]
pub struct StoredFact {
    /// `source`.
    pub source: String,
    /// `source_event_id`.
    pub source_event_id: String,
    /// `kind`.
    pub kind: String,
    /// `occurred_at`, microseconds.
    pub occurred_at: i64,
    /// `from_carrier`.
    pub from_carrier: Option<String>,
    /// `to_carrier`.
    pub to_carrier: Option<String>,
}

/// The event those columns hold.
pub fn fact(stored: StoredFact) -> Result<EventFact, StoreError> {
    Ok(EventFact {
        source: stored
            .source
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("source name: {e}")))?,
        source_event_id: stored.source_event_id,
        kind: kind_from(&stored.kind)?,
        occurred_at: from_micros(stored.occurred_at)?,
        from_carrier: carrier_id_from(stored.from_carrier),
        to_carrier: carrier_id_from(stored.to_carrier),
    })
}

/// Events store carrier ids (events from before carriers had ids keep the name they came
/// with; it matches no id, so no carrier-scoped source counts them as its subscriber's).
fn carrier_id_from(text: Option<String>) -> Option<CarrierId> {
    text.map(|t| CarrierId::from_trusted(&t))
}

/// Sorts rows of `number` plus the [`fact_from`] columns into one history per number, in
/// the order of `numbers`.
pub fn group_histories<R>(numbers: &[E164], rows: &[R]) -> Result<Vec<Vec<EventFact>>, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    group_by_number(
        numbers,
        rows.iter()
            .map(|row| Ok((row.try_get("number")?, fact_from(row)?))),
    )
}

/// Sorts (number, event) pairs into one history per number, in `numbers`' order; a
/// number asked for twice gets its history at each place.
pub fn group_by_number(
    numbers: &[E164],
    facts: impl IntoIterator<Item = Result<(String, EventFact), StoreError>>,
) -> Result<Vec<Vec<EventFact>>, StoreError> {
    let mut position: std::collections::HashMap<&str, usize, crate::FastHash> =
        std::collections::HashMap::default();
    // For each place, the earlier place of the same number, if any.
    let repeats: Vec<Option<usize>> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| match position.entry(n.as_str()) {
            std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
            std::collections::hash_map::Entry::Vacant(place) => {
                place.insert(i);
                None
            }
        })
        .collect();
    let mut histories = vec![Vec::new(); numbers.len()];
    for pair in facts {
        let (number, fact) = pair?;
        let Some(&i) = position.get(number.as_str()) else {
            return Err(StoreError::Corrupt(format!(
                "a history read returned a number that was not asked for ({})",
                E164::from_trusted(number).masked()
            )));
        };
        histories[i].push(fact);
    }
    for (i, first) in repeats.into_iter().enumerate() {
        if let Some(first) = first {
            histories[i] = histories[first].clone();
        }
    }
    Ok(histories)
}

/// Reads a whole row of [`SELECT_EVENTS`].
pub fn stored_event_from<R>(row: &R) -> Result<StoredEvent, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(StoredEvent {
        id: row.try_get("id")?,
        event: NewEvent {
            number: E164::from_trusted(row.try_get("number")?),
            fact: fact_from(row)?,
        },
        ingested_at: time_at(row, "ingested_at")?,
    })
}

/// A scope as stored, in the `scopes` JSON column.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredScope {
    prefix: String,
    carriers: Vec<String>,
    kinds: Vec<String>,
}

/// The `scopes` column of a source.
pub fn scopes_json(source: &Source) -> String {
    let stored: Vec<StoredScope> = source
        .scopes
        .iter()
        .map(|s| StoredScope {
            prefix: s.prefix.to_string(),
            carriers: s.carriers.iter().map(|c| c.to_string()).collect(),
            kinds: s.kinds.iter().map(|k| k.as_str().to_string()).collect(),
        })
        .collect();
    serde_json::to_string(&stored).unwrap_or_else(|_| "[]".to_string())
}

/// The legacy `covers` column: every prefix the source's scopes name.
pub fn covers_of(source: &Source) -> Vec<String> {
    let mut covers: Vec<String> = source.scopes.iter().map(|s| s.prefix.to_string()).collect();
    covers.dedup();
    covers
}

/// The columns a source is stored in beside its name, tracking start and covers.
pub struct SourceColumns {
    pub scopes: Option<String>,
    pub max_lag_us: Option<i64>,
    pub complete_until_us: Option<i64>,
}

impl SourceColumns {
    pub fn of(source: &Source) -> SourceColumns {
        SourceColumns {
            scopes: Some(scopes_json(source)),
            max_lag_us: source.max_lag.and_then(|lag| lag.num_microseconds()),
            complete_until_us: source.complete_until.map(micros),
        }
    }

    pub fn read<R>(row: &R) -> Result<SourceColumns, StoreError>
    where
        R: Row,
        for<'c> &'c str: ColumnIndex<R>,
        for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(SourceColumns {
            scopes: row.try_get("scopes")?,
            max_lag_us: row.try_get("max_lag_us")?,
            complete_until_us: row.try_get("complete_until_us")?,
        })
    }
}

/// Every source with every column [`source_from`] reads.
pub const SOURCE_SELECT: &str = "SELECT name, tracking_since, covers, scopes, max_lag_us, \
     complete_until_us FROM sources ORDER BY name";

/// A source as stored. Scopes were validated on the way in, so they are read back as
/// they are; a row without scopes takes its covers as whole prefixes.
pub fn source_from(
    name: String,
    tracking_since: DateTime<Utc>,
    covers: &[String],
    columns: SourceColumns,
) -> Result<Source, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("source {name:?}: {e}"));
    let scopes = match &columns.scopes {
        None => covers
            .iter()
            .map(|c| whole_scope(c))
            .collect::<Result<Vec<_>, String>>()
            .map_err(corrupt)?,
        Some(json) => serde_json::from_str::<Vec<StoredScope>>(json)
            .map_err(|e| corrupt(e.to_string()))?
            .into_iter()
            .map(|s| {
                let kinds = s
                    .kinds
                    .iter()
                    .map(|k| k.parse().map_err(|e| format!("{e}")))
                    .collect::<Result<Vec<_>, String>>()?;
                Ok(Scope::new(
                    s.prefix.parse().map_err(|e| format!("{e}"))?,
                    s.carriers
                        .iter()
                        .map(|c| CarrierId::from_trusted(c))
                        .collect(),
                    kinds,
                ))
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(corrupt)?,
    };
    Ok(Source {
        name: name.parse().map_err(|e| corrupt(format!("{e}")))?,
        tracking_since,
        scopes,
        max_lag: columns.max_lag_us.map(chrono::Duration::microseconds),
        complete_until: columns.complete_until_us.map(from_micros).transpose()?,
    })
}

fn whole_scope(prefix: &str) -> Result<Scope, String> {
    let prefix = prefix.parse().map_err(|e| format!("{e}"))?;
    Ok(Scope::new(prefix, Vec::new(), Vec::new()))
}

/// Moves a source's `complete_until` forward to `at`, never back.
pub fn advance_complete_until<DB>(name: &SourceName, at: DateTime<Utc>) -> QueryBuilder<DB>
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::new(
        "UPDATE sources SET complete_until_us = CASE WHEN complete_until_us IS NULL OR complete_until_us < ",
    );
    sql.push_bind(micros(at))
        .push(" THEN ")
        .push_bind(micros(at))
        .push(" ELSE complete_until_us END WHERE name = ")
        .push_bind(name.as_str().to_string());
    sql
}

pub const SELECT_CARRIERS: &str =
    "SELECT id, name, country_code, mcc_mnc, aliases, reviewed FROM carriers ORDER BY id";

/// Inserts or replaces carriers by id.
pub fn upsert_carriers<DB>(carriers: &[Carrier]) -> QueryBuilder<DB>
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    bool: for<'t> Encode<'t, DB> + Type<DB>,
{
    let now = micros(Utc::now());
    let mut sql = QueryBuilder::new(
        "INSERT INTO carriers (id, name, country_code, mcc_mnc, aliases, reviewed, updated_at) ",
    );
    sql.push_values(carriers, |mut row, c| {
        row.push_bind(c.id.to_string())
            .push_bind(c.name.clone())
            .push_bind(i64::from(c.country_code))
            .push_bind(serde_json::to_string(&c.mcc_mnc).unwrap_or_else(|_| "[]".into()))
            .push_bind(serde_json::to_string(&c.aliases).unwrap_or_else(|_| "[]".into()))
            .push_bind(c.reviewed)
            .push_bind(now);
    });
    sql.push(
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
         country_code = excluded.country_code, mcc_mnc = excluded.mcc_mnc, \
         aliases = excluded.aliases, reviewed = excluded.reviewed, \
         updated_at = excluded.updated_at",
    );
    sql
}

/// Reads a row of [`SELECT_CARRIERS`].
pub fn carrier_from<R>(row: &R) -> Result<Carrier, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: String = row.try_get("id")?;
    let corrupt = |e: String| StoreError::Corrupt(format!("carrier {id:?}: {e}"));
    let list = |column: &str| -> Result<Vec<String>, StoreError> {
        let json: String = row.try_get(column)?;
        serde_json::from_str(&json).map_err(|e| corrupt(e.to_string()))
    };
    let country_code: i64 = row.try_get("country_code")?;
    Ok(Carrier {
        id: CarrierId::from_trusted(&id),
        name: row.try_get("name")?,
        country_code: u16::try_from(country_code).map_err(|e| corrupt(e.to_string()))?,
        mcc_mnc: list("mcc_mnc")?,
        aliases: list("aliases")?,
        reviewed: row.try_get("reviewed")?,
    })
}

pub fn range_from(prefix: String, carrier: String) -> Result<RangeEntry, StoreError> {
    Ok(RangeEntry {
        prefix: prefix
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("range prefix: {e}")))?,
        carrier,
    })
}

pub fn key_from(
    id: String,
    tenant: String,
    scopes: String,
    hash: Vec<u8>,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
) -> Result<super::KeyRecord, StoreError> {
    Ok(super::KeyRecord {
        tenant: tenant
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("key {id}: {e}")))?,
        scopes: scopes
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("key {id}: {e}")))?,
        id,
        hash,
        created_at,
        revoked_at,
    })
}

pub fn precision_from(text: &str) -> Result<crate::domain::auth::TimePrecision, StoreError> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("time precision: {e}")))
}

pub fn access_from(
    tenant: String,
    number_hash: String,
    first_at: DateTime<Utc>,
    last_at: DateTime<Utc>,
    checks: i64,
) -> Result<super::AccessRecord, StoreError> {
    Ok(super::AccessRecord {
        tenant: tenant
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("access log: {e}")))?,
        number_hash,
        first_at,
        last_at,
        checks: u64::try_from(checks).unwrap_or(0),
    })
}

/// The window of events an alert query scans: the next `limit` events after `after`
/// (of the wanted kinds), in id order. Scanning events first, then looking each one's
/// number up in the watchlist, keeps a poll cheap however long the watchlist is.
pub fn push_event_window<DB>(
    sql: &mut QueryBuilder<DB>,
    after: i64,
    kinds: &[EventKind],
    limit: u32,
) where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    sql.push("(");
    push_events_after(sql, after, kinds);
    sql.push(" ORDER BY id LIMIT ")
        .push_bind(i64::from(limit))
        .push(") AS e");
}

/// `SELECT <event columns> FROM events WHERE id > after [AND kind IN kinds]`.
fn push_events_after<DB>(sql: &mut QueryBuilder<DB>, after: i64, kinds: &[EventKind])
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    sql.push(
        "SELECT id, source, source_event_id, number, kind, occurred_at, from_carrier, \
         to_carrier, ingested_at FROM events WHERE id > ",
    )
    .push_bind(after);
    if !kinds.is_empty() {
        sql.push(" AND kind IN (");
        let mut list = sql.separated(", ");
        for kind in kinds {
            list.push_bind(kind.as_str().to_string());
        }
        sql.push(")");
    }
}

/// One number's events (of `kinds`) after id `after`, in id order: what a subscription to
/// that number has not yet seen.
pub fn number_events_after<DB>(
    number: &E164,
    after: i64,
    kinds: &[EventKind],
    limit: u32,
) -> QueryBuilder<DB>
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::new("");
    push_events_after(&mut sql, after, kinds);
    sql.push(" AND number = ")
        .push_bind(number.as_str().to_string())
        .push(" ORDER BY id LIMIT ")
        .push_bind(i64::from(limit));
    sql
}

/// The columns of an alert query: the event, and the watching entry (NULL when none).
pub const ALERT_COLUMNS: &str = "SELECT e.id, e.source, e.source_event_id, e.number, e.kind, \
     e.occurred_at, e.from_carrier, e.to_carrier, e.ingested_at, w.customer_ref, \
     w.owner_since_start, w.owner_since_end FROM ";

/// The alert condition: the event follows the entry's owner_since (for a date, an event
/// on that day counts).
pub const ALERT_CONDITION: &str = "((w.owner_since_end IS NULL AND e.occurred_at > \
     w.owner_since_start) OR (w.owner_since_end IS NOT NULL AND e.occurred_at >= \
     w.owner_since_start))";

/// An owner_since as stored: a day when it has an end.
pub fn owner_since_from(start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> OwnerSince {
    match end {
        Some(end) => OwnerSince::Day { start, end },
        None => OwnerSince::At(start),
    }
}

/// Start and optional end for storage.
pub fn owner_since_columns(o: &OwnerSince) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
    match *o {
        OwnerSince::At(at) => (at, None),
        OwnerSince::Day { start, end } => (start, Some(end)),
    }
}

/// Folds (event, entry) rows into one alert per event, earliest owner_since first; rows
/// without an entry only move the scan on. Returns the alerts and the last event id
/// scanned.
pub fn group_alerts(rows: Vec<(StoredEvent, Option<(String, OwnerSince)>)>) -> super::AlertPage {
    let scanned_to = rows.iter().map(|(e, _)| e.id).max();
    let mut scanned = 0;
    let mut alerts: Vec<super::AlertRow> = Vec::new();
    let mut previous = None;
    for (event, entry) in rows {
        // Rows come in event id order, one per watching entry.
        if previous != Some(event.id) {
            scanned += 1;
            previous = Some(event.id);
        }
        let Some((customer_ref, owner_since)) = entry else {
            continue;
        };
        match alerts.last_mut() {
            Some(last) if last.event.id == event.id => {
                last.customer_refs.push(customer_ref);
                if owner_since.coverage_needed_from() < last.owner_since.coverage_needed_from() {
                    last.owner_since = owner_since;
                }
            }
            _ => alerts.push(super::AlertRow {
                event,
                customer_refs: vec![customer_ref],
                owner_since,
            }),
        }
    }
    super::AlertPage {
        alerts,
        scanned_to,
        scanned,
    }
}

pub const SELECT_SUBSCRIPTIONS: &str = "SELECT id, tenant, sink, kinds, token, expire_at, \
     max_events, sent, cursor, ended_reason, created_at, number, format, token_expire_at \
     FROM subscriptions";

/// Each subscription's queue head (its oldest undelivered event), when it is due: a
/// subscription's events are delivered in order, one at a time.
pub const SELECT_DUE: &str = "SELECT d.id, d.subscription_id, d.body, d.attempts, s.sink, \
     s.token, s.tenant FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
     WHERE d.delivered_at IS NULL AND d.id = (SELECT MIN(p.id) FROM deliveries p \
     WHERE p.subscription_id = d.subscription_id AND p.delivered_at IS NULL) \
     AND d.next_attempt_at <= ";

/// A count as stored: a BIGINT, saturating.
pub fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn from_micros(v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| StoreError::Corrupt(format!("time {v} is out of range")))
}

/// Reads an instant column.
pub fn time_at<R>(row: &R, column: &str) -> Result<DateTime<Utc>, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    from_micros(row.try_get(column)?)
}

/// Reads an optional instant column.
pub fn optional_time_at<R>(row: &R, column: &str) -> Result<Option<DateTime<Utc>>, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get::<Option<i64>, _>(column)?
        .map(from_micros)
        .transpose()
}

/// Reads a row of [`SELECT_SUBSCRIPTIONS`] (same column types on both backends).
pub fn subscription_from<R>(row: &R) -> Result<super::SubscriptionRecord, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: String = row.try_get("id")?;
    let tenant: String = row.try_get("tenant")?;
    let kinds: String = row.try_get("kinds")?;
    let expire_at: Option<i64> = row.try_get("expire_at")?;
    let max_events: Option<i64> = row.try_get("max_events")?;
    let sent: i64 = row.try_get("sent")?;
    let number: Option<String> = row.try_get("number")?;
    let format: String = row.try_get("format")?;
    let token_expire_at: Option<i64> = row.try_get("token_expire_at")?;
    Ok(super::SubscriptionRecord {
        number: number.map(E164::from_trusted),
        format: format
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("subscription {id}: {e}")))?,
        token_expire_at: token_expire_at.map(from_micros).transpose()?,
        created_at: from_micros(row.try_get("created_at")?)?,
        tenant: tenant
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("subscription {id}: {e}")))?,
        kinds: kinds
            .split(',')
            .filter(|k| !k.is_empty())
            .map(kind_from)
            .collect::<Result<_, _>>()?,
        sink: row.try_get("sink")?,
        token: row.try_get("token")?,
        expire_at: expire_at.map(from_micros).transpose()?,
        max_events: max_events.map(|m| u64::try_from(m).unwrap_or(0)),
        sent: u64::try_from(sent).unwrap_or(0),
        cursor: row.try_get("cursor")?,
        ended_reason: row.try_get("ended_reason")?,
        id,
    })
}

pub fn kinds_text(kinds: &[EventKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads a row of [`SELECT_DUE`].
pub fn delivery_from<R>(row: &R) -> Result<super::Delivery, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let attempts: i64 = row.try_get("attempts")?;
    Ok(super::Delivery {
        id: row.try_get("id")?,
        subscription_id: row.try_get("subscription_id")?,
        body: row.try_get("body")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        sink: row.try_get("sink")?,
        token: row.try_get("token")?,
        tenant: row.try_get("tenant")?,
    })
}

/// Webhook-queue statements. Their tables hold integer times on both backends, so one
/// builder serves both; each store only runs what it is given.
pub mod queue {
    use std::marker::PhantomData;

    use chrono::{DateTime, Utc};
    use sqlx::{Database, Encode, QueryBuilder, Type};

    use super::{count, kinds_text, micros};
    use crate::domain::auth::TenantName;
    use crate::store::SubscriptionRecord;

    /// Events per multi-row insert: four columns each, well within either bind limit.
    pub const DELIVERIES_PER_INSERT: usize = 500;

    /// The statements, for one backend.
    pub struct Queue<DB>(PhantomData<DB>);

    impl<DB> Queue<DB>
    where
        DB: Database,
        DB::Arguments: Default,
        String: for<'t> Encode<'t, DB> + Type<DB>,
        Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
        i64: for<'t> Encode<'t, DB> + Type<DB>,
        Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
    {
        pub fn insert_subscription(s: &SubscriptionRecord) -> QueryBuilder<DB> {
            let mut insert = QueryBuilder::new(
                "INSERT INTO subscriptions (id, tenant, sink, kinds, token, expire_at, max_events, \
                 sent, cursor, created_at, number, format, token_expire_at) VALUES (",
            );
            let mut values = insert.separated(", ");
            values
                .push_bind(s.id.clone())
                .push_bind(s.tenant.as_str().to_string())
                .push_bind(s.sink.clone())
                .push_bind(kinds_text(&s.kinds))
                .push_bind(s.token.clone())
                .push_bind(s.expire_at.map(micros))
                .push_bind(s.max_events.map(count))
                .push_bind(count(s.sent))
                .push_bind(s.cursor)
                .push_bind(micros(s.created_at))
                .push_bind(s.number.as_ref().map(|n| n.as_str().to_string()))
                .push_bind(s.format.as_str().to_string())
                .push_bind(s.token_expire_at.map(micros));
            insert.push(")");
            insert
        }

        /// A tenant's subscriptions, or every active one.
        pub fn select_subscriptions(tenant: Option<&TenantName>) -> QueryBuilder<DB> {
            let mut select = QueryBuilder::new(super::SELECT_SUBSCRIPTIONS);
            match tenant {
                Some(t) => {
                    select
                        .push(" WHERE tenant = ")
                        .push_bind(t.as_str().to_string());
                }
                None => {
                    select.push(" WHERE ended_reason IS NULL");
                }
            }
            select.push(" ORDER BY created_at, id");
            select
        }

        /// Queues `(ce_id, body)` events; one already queued is skipped.
        pub fn insert_deliveries(
            subscription: &str,
            events: &[(String, String)],
        ) -> QueryBuilder<DB> {
            let now = micros(Utc::now());
            let mut insert = QueryBuilder::new(
                "INSERT INTO deliveries (subscription_id, ce_id, body, next_attempt_at, queued_at) ",
            );
            insert.push_values(events, |mut row, (ce_id, body)| {
                row.push_bind(subscription.to_string())
                    .push_bind(ce_id.clone())
                    .push_bind(body.clone())
                    .push_bind(now)
                    .push_bind(now);
            });
            insert.push(" ON CONFLICT (ce_id) DO NOTHING");
            insert
        }

        pub fn update_subscription(
            id: &str,
            cursor: i64,
            sent: u64,
            ended: Option<&str>,
        ) -> QueryBuilder<DB> {
            let mut update = QueryBuilder::new("UPDATE subscriptions SET cursor = ");
            update
                .push_bind(cursor)
                .push(", sent = ")
                .push_bind(count(sent))
                .push(", ended_reason = COALESCE(ended_reason, ")
                .push_bind(ended.map(str::to_string))
                .push(") WHERE id = ")
                .push_bind(id.to_string());
            update
        }

        pub fn select_due(limit: u32) -> QueryBuilder<DB> {
            let mut select = QueryBuilder::new(super::SELECT_DUE);
            select
                .push_bind(micros(Utc::now()))
                .push(" ORDER BY d.id LIMIT ")
                .push_bind(i64::from(limit));
            select
        }

        pub fn finish_delivery(
            id: i64,
            delivered: bool,
            retry_at: DateTime<Utc>,
            error: Option<&str>,
        ) -> QueryBuilder<DB> {
            let now = micros(Utc::now());
            let mut update =
                QueryBuilder::new("UPDATE deliveries SET attempts = attempts + 1, delivered_at = ");
            update
                .push_bind(delivered.then_some(now))
                .push(", first_failed_at = COALESCE(first_failed_at, ")
                .push_bind((!delivered).then_some(now))
                .push("), next_attempt_at = ")
                .push_bind(micros(retry_at))
                .push(", last_error = ")
                .push_bind(error.map(str::to_string))
                .push(" WHERE id = ")
                .push_bind(id);
            update
        }

        /// The subscription's waiting deliveries are due now.
        pub fn retry_pending(subscription: &str) -> QueryBuilder<DB> {
            let mut update = QueryBuilder::new("UPDATE deliveries SET next_attempt_at = ");
            update
                .push_bind(micros(Utc::now()))
                .push(" WHERE delivered_at IS NULL AND subscription_id = ")
                .push_bind(subscription.to_string());
            update
        }

        /// 410 Gone: the subscription ends ...
        pub fn end_gone(subscription: &str) -> QueryBuilder<DB> {
            let mut end = QueryBuilder::new(
                "UPDATE subscriptions SET ended_reason = 'SINK_GONE' \
                 WHERE ended_reason IS NULL AND id = ",
            );
            end.push_bind(subscription.to_string());
            end
        }

        /// ... and what it still had queued is closed unsent.
        pub fn drop_pending(subscription: &str) -> QueryBuilder<DB> {
            let mut update = QueryBuilder::new("UPDATE deliveries SET delivered_at = ");
            update
                .push_bind(micros(Utc::now()))
                .push(
                    ", last_error = 'not sent: the sink answered 410 Gone' \
                     WHERE delivered_at IS NULL AND subscription_id = ",
                )
                .push_bind(subscription.to_string());
            update
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{EventFact, NewEvent, StoredEvent};
    use crate::domain::number::E164;
    use chrono::TimeZone;

    fn stored(id: i64) -> StoredEvent {
        let at = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
        StoredEvent {
            id,
            event: NewEvent {
                number: E164::parse("+819012345678", None).unwrap(),
                fact: EventFact {
                    source: "feed".parse().unwrap(),
                    source_event_id: format!("e{id}"),
                    kind: EventKind::SimSwap,
                    occurred_at: at,
                    from_carrier: None,
                    to_carrier: None,
                },
            },
            ingested_at: at,
        }
    }

    fn since(day: u32) -> OwnerSince {
        OwnerSince::At(Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0).unwrap())
    }

    #[test]
    fn rows_fold_into_one_alert_per_event_and_unwatched_events_only_move_the_scan() {
        let page = group_alerts(vec![
            (stored(3), Some(("a".into(), since(5)))),
            (stored(3), Some(("b".into(), since(2)))),
            (stored(4), None),
            (stored(7), Some(("a".into(), since(5)))),
            (stored(9), None),
        ]);
        assert_eq!(page.scanned_to, Some(9));
        assert_eq!(page.scanned, 4, "four events, one of them watched twice");
        assert_eq!(page.alerts.len(), 2);
        assert_eq!(page.alerts[0].customer_refs, vec!["a", "b"]);
        assert_eq!(
            page.alerts[0].owner_since,
            since(2),
            "the earliest owner_since"
        );
        assert_eq!(page.alerts[1].event.id, 7);
        assert_eq!(group_alerts(vec![]).scanned_to, None);
        assert_eq!(group_alerts(vec![]).scanned, 0);
    }
}
