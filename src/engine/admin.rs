//! Administration over the event log: listing stored events page by page, and the
//! retention purge. (Sources, carriers and ranges are edited through the catalog.)

use std::sync::Arc;

use chrono::Utc;

use super::number_cache::NumberCache;
use super::{EngineConfig, EngineError};
use crate::domain::event::StoredEvent;
use crate::store::{EventCursor, EventQuery, EventStore, StoreError};

/// Events the retention purge deletes per transaction: a writer waits for one chunk at
/// most (0.1-0.3 s measured at 30M events), not for a whole backlog.
const PURGE_CHUNK: u32 = 10_000;

/// A page of events and where the next one starts.
#[derive(Debug)]
pub struct EventPage {
    /// The page's events, newest first.
    pub events: Vec<StoredEvent>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<EventCursor>,
}

/// Lists and purges stored events.
pub struct AdminService {
    pub(super) events: Arc<dyn EventStore>,
    pub(super) numbers: Arc<NumberCache>,
    pub(super) config: Arc<EngineConfig>,
}

impl AdminService {
    /// A page of stored events matching `query`, with the cursor of the next page.
    pub async fn list_events(&self, mut query: EventQuery) -> Result<EventPage, EngineError> {
        let limit = query.limit as usize;
        // One more row than asked tells whether another page exists.
        query.limit = query.limit.saturating_add(1);
        let mut events = self.events.list_events(&query).await?;
        let next = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| EventCursor {
                occurred_at: e.event.fact.occurred_at,
                id: e.id,
            })
        } else {
            None
        };
        Ok(EventPage { events, next })
    }

    /// Deletes events older than the retention period, if one is set; returns how many.
    /// It deletes in chunks, each its own transaction, so ingests wait for one chunk at
    /// most; each chunk's numbers leave the cache as it commits.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let Some(retention) = self.config.retention else {
            return Ok(0);
        };
        let before = Utc::now() - retention;
        let started = std::time::Instant::now();
        let mut purged = 0u64;
        loop {
            let numbers = self.events.purge_events(before, PURGE_CHUNK).await?;
            self.numbers.invalidate(&numbers);
            purged += numbers.len() as u64;
            if numbers.len() < PURGE_CHUNK as usize {
                break;
            }
        }
        if purged > 0 {
            tracing::info!(
                purged,
                seconds = started.elapsed().as_secs_f64(),
                "purged events past the retention period"
            );
        }
        Ok(purged)
    }
}
