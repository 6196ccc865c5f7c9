//! One `IngestEvents` stream: validate each event, commit accepted ones in batches, and
//! invalidate cached histories before anything is acknowledged.

use chrono::Utc;

use super::{Engine, EngineError};
use crate::domain::event::{NewEvent, RawEvent};
use crate::domain::source::SourceName;

/// Rejections reported one by one; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 1_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// `(index in the stream, reason)`, the first [`MAX_REPORTED_ERRORS`].
    pub errors: Vec<(u64, String)>,
}

pub struct IngestSession<'a> {
    engine: &'a Engine,
    batch: Vec<NewEvent>,
    summary: IngestSummary,
    /// Sources are re-read from the store at most once per stream when an unknown name
    /// shows up (it may have been added through another replica).
    sources_reloaded: bool,
}

impl<'a> IngestSession<'a> {
    pub(super) fn new(engine: &'a Engine) -> Self {
        IngestSession {
            engine,
            batch: Vec::with_capacity(engine.config.ingest_batch_size),
            summary: IngestSummary::default(),
            sources_reloaded: false,
        }
    }

    /// Takes the event at `index`. A bad event is recorded as rejected; only a store
    /// failure is an error.
    pub async fn push(&mut self, index: u64, raw: RawEvent) -> Result<(), EngineError> {
        let validated = NewEvent::validate(raw, self.engine.config.default_region, Utc::now());
        let event = match validated {
            Ok(event) => event,
            Err(e) => {
                self.reject(index, e.to_string());
                return Ok(());
            }
        };
        if !self.source_exists(&event.source).await? {
            self.reject(
                index,
                format!("source {:?} is not registered", event.source.as_str()),
            );
            return Ok(());
        }
        self.batch.push(event);
        if self.batch.len() >= self.engine.config.ingest_batch_size {
            self.flush().await?;
        }
        Ok(())
    }

    /// Commits what is left and returns the summary.
    pub async fn finish(mut self) -> Result<IngestSummary, EngineError> {
        self.flush().await?;
        Ok(self.summary)
    }

    async fn source_exists(&mut self, name: &SourceName) -> Result<bool, EngineError> {
        if self.engine.sources().contains(name) {
            return Ok(true);
        }
        if !self.sources_reloaded {
            self.sources_reloaded = true;
            self.engine.reload_sources().await?;
            return Ok(self.engine.sources().contains(name));
        }
        Ok(false)
    }

    /// Records the event at `index` as rejected (e.g. malformed before validation).
    pub fn reject(&mut self, index: u64, reason: String) {
        self.summary.rejected += 1;
        if self.summary.errors.len() < MAX_REPORTED_ERRORS {
            self.summary.errors.push((index, reason));
        }
    }

    async fn flush(&mut self) -> Result<(), EngineError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let outcome = self
            .engine
            .store
            .insert_events(&self.batch)
            .await
            .map_err(|e| self.engine.store_failed(e))?;
        self.engine
            .histories
            .invalidate(self.batch.iter().map(|e| &e.number));
        self.summary.accepted += outcome.inserted;
        self.summary.duplicates += outcome.duplicates;
        tracing::debug!(
            inserted = outcome.inserted,
            duplicates = outcome.duplicates,
            "committed an ingest batch"
        );
        self.batch.clear();
        Ok(())
    }
}
