//! Watchlists and alert streams. An alert is a stored event on a watched number after the
//! watching entry's owner_since; its cursor is the event's id, which grows in commit
//! order. A stream reads its tenant's alerts from the store page by page after its cursor
//! and waits for the next commit when it has caught up, so replay and live delivery are
//! one loop: no gap and no repeat at the switch, and a slow reader only falls behind in
//! the store, never in memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::sync::watch;

use super::EngineError;
use super::check::CheckService;
use super::commits::Commits;
use super::number_cache::NumberState;
use crate::domain::Field;
use crate::domain::FieldError;
use crate::domain::auth::TenantName;
use crate::domain::decision::Decision;
use crate::domain::event::{EventKind, StoredEvent};
use crate::domain::number::ParsedNumber;
use crate::domain::text::plain_text;
use crate::domain::watch::WatchEntry;
use crate::store::{AlertRow, EventStore, WatchlistStore};

/// Events scanned per store query.
const PAGE: u32 = 1_000;
/// A stream re-reads the store at least this often, even without a commit signal.
const POLL_FALLBACK: Duration = Duration::from_secs(1);
/// Longest accepted `customer_ref`.
pub const MAX_CUSTOMER_REF_LEN: usize = 200;

/// A watchlist entry as received.
#[derive(Debug, Clone, Default)]
pub struct RawWatch {
    /// The tenant's key for the entry.
    pub customer_ref: String,
    /// The number as sent.
    pub phone_number: String,
    /// Region for a national-format number; may be empty.
    pub region: String,
    /// An exact `owner_since`; at most one of this and `owner_since_date`.
    pub owner_since: Option<DateTime<Utc>>,
    /// A date-only `owner_since`, `YYYY-MM-DD`; may be empty.
    pub owner_since_date: String,
}

/// Where an alert stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStart {
    /// Only alerts of events stored after the stream opens.
    Now,
    /// After this cursor; 0 replays every alert from the first.
    After(u64),
}

/// An event that concerns watched numbers, with the decision it leads to.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The event's id: resume after it to miss nothing.
    pub cursor: u64,
    /// The tenant's entries for the number.
    pub customer_refs: Vec<String>,
    /// The event.
    pub event: StoredEvent,
    /// The check's answer for the number just after the event.
    pub decision: Decision,
}

/// Watchlists and the alerts on them: entries are validated like checks, alerts are
/// scanned from the store and decided as of their event, and streams share their scans.
pub struct AlertService {
    pub(super) watchlist: Arc<dyn WatchlistStore>,
    pub(super) events: Arc<dyn EventStore>,
    pub(super) checks: Arc<CheckService>,
    pub(super) commits: Commits,
    pub(super) pages: SharedPages,
}

impl AlertService {
    /// Stores the valid entries (the last one wins for a repeated customer_ref) and
    /// returns how many, with `(index, reason)` for each refused entry.
    pub async fn upsert_watch(
        &self,
        tenant: &TenantName,
        entries: Vec<RawWatch>,
    ) -> Result<(u64, Vec<(u32, String)>), EngineError> {
        let mut valid: Vec<WatchEntry> = Vec::with_capacity(entries.len());
        let mut position: HashMap<String, usize> = HashMap::new();
        let mut errors = Vec::new();
        for (index, raw) in entries.into_iter().enumerate() {
            match self.watch_record(raw) {
                Ok(record) => match position.get(&record.customer_ref) {
                    Some(&i) => valid[i] = record,
                    None => {
                        position.insert(record.customer_ref.clone(), valid.len());
                        valid.push(record);
                    }
                },
                Err(e) => errors.push((u32::try_from(index).unwrap_or(u32::MAX), e.to_string())),
            }
        }
        let upserted = if valid.is_empty() {
            0
        } else {
            self.watchlist.upsert_watch(tenant, &valid).await?
        };
        // Shared scans were made with the old watchlist.
        self.pages.invalidate_all();
        Ok((upserted, errors))
    }

    fn watch_record(&self, raw: RawWatch) -> Result<WatchEntry, FieldError> {
        let customer_ref = plain_text(Field::CustomerRef, raw.customer_ref.trim())?.to_string();
        if customer_ref.is_empty() {
            return Err(FieldError::new(Field::CustomerRef, "is empty"));
        }
        if customer_ref.len() > MAX_CUSTOMER_REF_LEN {
            return Err(FieldError::new(
                Field::CustomerRef,
                format!("is longer than {MAX_CUSTOMER_REF_LEN} bytes"),
            ));
        }
        let number = self
            .checks
            .parse_number(Field::PhoneNumber, &raw.phone_number, &raw.region)?
            .e164;
        let owner_since = self
            .checks
            .owner_since(raw.owner_since, &raw.owner_since_date)?
            .ok_or_else(|| {
                FieldError::new(
                    Field::OwnerSince,
                    "is missing (give owner_since or owner_since_date)",
                )
            })?;
        Ok(WatchEntry {
            customer_ref,
            number,
            owner_since,
        })
    }

    /// Removes the tenant's entries with these refs; returns how many there were.
    pub async fn remove_watch(
        &self,
        tenant: &TenantName,
        refs: &[String],
    ) -> Result<u64, EngineError> {
        for r in refs {
            plain_text(Field::CustomerRefs, r)?;
        }
        let removed = self.watchlist.remove_watch(tenant, refs).await?;
        self.pages.invalidate_all();
        Ok(removed)
    }

    /// A page of the tenant's entries by customer_ref, and the ref to continue after.
    pub async fn list_watch(
        &self,
        tenant: &TenantName,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<WatchEntry>, Option<String>), EngineError> {
        // The token is the last customer_ref of the page before: anything else is refused,
        // as ListEvents refuses a token it did not issue.
        if let Some(token) = after
            && (token.len() > MAX_CUSTOMER_REF_LEN
                || plain_text(Field::PageToken, token).is_err()
                || token.trim() != token)
        {
            return Err(
                FieldError::new(Field::PageToken, "is not a token this server issued").into(),
            );
        }
        let mut page = self
            .watchlist
            .list_watch(tenant, after, limit.saturating_add(1))
            .await?;
        let next = if page.len() > limit as usize {
            page.truncate(limit as usize);
            page.last().map(|w| w.customer_ref.clone())
        } else {
            None
        };
        Ok((page, next))
    }

    /// The tenant's alerts from `start`, optionally only some kinds, as a stream that
    /// ends with an error if the store fails, with the cursor the stream starts after (a
    /// client that reconnects before its first alert resumes there). A cursor past the
    /// newest event is refused: it came from another database (or one restored from an
    /// older backup), and waiting for the store to reach it would silently skip every
    /// alert until then. The stream reads the store only while it is polled, so a slow
    /// client falls behind in the store, not in memory.
    pub async fn alerts(
        self: &Arc<Self>,
        tenant: TenantName,
        start: AlertStart,
        mut kinds: Vec<EventKind>,
    ) -> Result<
        (
            u64,
            impl Stream<Item = Result<Arc<Alert>, EngineError>> + Send + 'static,
        ),
        EngineError,
    > {
        let newest = self.events.last_event_id().await?;
        let cursor = match start {
            AlertStart::Now => newest,
            AlertStart::After(n) => match i64::try_from(n) {
                Ok(n) if n <= newest => n,
                _ => {
                    return Err(FieldError::new(
                        Field::ResumeAfter,
                        format!(
                            "cursor {n} is past the newest event ({newest}); it belongs to \
                             another database or one restored from an older backup"
                        ),
                    )
                    .into());
                }
            },
        };
        tracing::debug!(
            tenant = tenant.as_str(),
            after = cursor,
            "alert stream opened"
        );
        kinds.sort();
        kinds.dedup();
        let follower = Follower {
            service: self.clone(),
            commits: self.commits.subscribe(),
            tenant,
            cursor,
            kinds,
            page: None,
            next: 0,
            wait: false,
        };
        let stream = futures::stream::unfold(Some(follower), |follower| async move {
            let mut follower = follower?;
            match follower.next_alert().await {
                Ok(alert) => Some((Ok(alert), Some(follower))),
                // The error is the stream's last item.
                Err(e) => Some((Err(e), None)),
            }
        });
        Ok((u64::try_from(cursor).unwrap_or(0), stream))
    }

    /// The check of the alert's number as of its event, for the earliest watching entry.
    async fn alert_decision(&self, row: &AlertRow) -> Result<Decision, EngineError> {
        let e164 = &row.event.event.number;
        let number = ParsedNumber::parse(e164.as_str(), None).map_err(|e| {
            EngineError::Invalid(FieldError::new(Field::PhoneNumber, e.to_string()))
        })?;
        let state = self
            .checks
            .numbers
            .get_or_load(&number, || self.events.history(e164))
            .await?;
        let at = row.event.event.fact.occurred_at;
        let as_of_event = NumberState {
            mobile: number.mobile,
            history: state
                .history
                .iter()
                .filter(|f| f.occurred_at <= at)
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        };
        let max_age = self.checks.max_age(0)?;
        Ok(self
            .checks
            .decide_at(at, e164, &as_of_event, max_age, Some(row.owner_since), &[]))
    }
}

/// Alerts of one scan, with their checks, shared by every stream at the same position.
#[derive(Debug)]
pub(super) struct ScannedPage {
    pub(super) alerts: Vec<Arc<Alert>>,
    pub(super) scanned_to: Option<i64>,
    /// The scan read up to the newest event of every commit its key counts.
    pub(super) read_to_newest: bool,
}

/// Streams of one tenant that have caught up sit at the same position; after a commit
/// they would all scan the same events and compute the same checks. The first one does
/// it; the others wait for and share its result. A page is keyed by the commit counter
/// read before its scan, so it holds every commit counted there, and a later commit
/// makes a new key instead of an outdated hit.
pub(super) type PageKey = (TenantName, i64, u64, Vec<EventKind>);
pub(super) type SharedPages =
    moka::sync::Cache<PageKey, Arc<tokio::sync::OnceCell<Arc<ScannedPage>>>>;

pub(super) fn shared_pages() -> SharedPages {
    // Kept no longer than a stream's fallback poll, so that a poll without a commit
    // signal (one lost on the way) reads the store again within two of them.
    moka::sync::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(POLL_FALLBACK)
        .build()
}

impl AlertService {
    /// One page of the tenant's alerts after `cursor`, holding at least every commit
    /// counted before the call, shared with the streams at the same position.
    pub(super) async fn scan(
        &self,
        tenant: &TenantName,
        cursor: i64,
        kinds: &[EventKind],
    ) -> Result<Arc<ScannedPage>, EngineError> {
        let key = (
            tenant.clone(),
            cursor,
            self.commits.current(),
            kinds.to_vec(),
        );
        let cell = self
            .pages
            .get_with(key, || Arc::new(tokio::sync::OnceCell::new()));
        let page = cell
            .get_or_try_init(|| async {
                let page = self
                    .watchlist
                    .alerts_after(tenant, cursor, kinds, PAGE)
                    .await?;
                let mut alerts = Vec::with_capacity(page.alerts.len());
                for row in page.alerts {
                    let decision = self.alert_decision(&row).await?;
                    alerts.push(Arc::new(Alert {
                        cursor: u64::try_from(row.event.id).unwrap_or(0),
                        customer_refs: row.customer_refs,
                        event: row.event,
                        decision,
                    }));
                }
                Ok::<_, EngineError>(Arc::new(ScannedPage {
                    alerts,
                    scanned_to: page.scanned_to,
                    read_to_newest: page.scanned < PAGE,
                }))
            })
            .await?;
        Ok(page.clone())
    }
}

/// One alert stream's position: it scans (or shares the scan of) the page after its
/// cursor, hands out the page's alerts one by one, and waits for the next commit only
/// when a scan has read every commit it knows of.
struct Follower {
    service: Arc<AlertService>,
    commits: watch::Receiver<u64>,
    tenant: TenantName,
    cursor: i64,
    kinds: Vec<EventKind>,
    page: Option<Arc<ScannedPage>>,
    /// The next alert of `page` to hand out.
    next: usize,
    /// The last scan read everything committed before it: wait for a commit.
    wait: bool,
}

impl Follower {
    async fn next_alert(&mut self) -> Result<Arc<Alert>, EngineError> {
        loop {
            if let Some(page) = &self.page {
                if let Some(alert) = page.alerts.get(self.next) {
                    self.next += 1;
                    return Ok(alert.clone());
                }
                self.page = None;
            }
            if self.wait {
                tokio::select! {
                    _ = self.commits.changed() => {}
                    _ = tokio::time::sleep(POLL_FALLBACK) => {}
                }
            }
            // Marked seen before the scan, which holds every commit seen, so one during it
            // is waited for again.
            self.commits.borrow_and_update();
            let page = self
                .service
                .scan(&self.tenant, self.cursor, &self.kinds)
                .await?;
            self.wait = page.read_to_newest;
            if let Some(to) = page.scanned_to {
                // Past the whole window, watched or not.
                self.cursor = to;
            }
            self.next = 0;
            self.page = Some(page);
        }
    }
}
