//! One `IngestEvents` stream: validate each event, commit accepted ones in batches, and
//! invalidate cached histories before anything is acknowledged.
//!
//! Validation and writing overlap: a writer task commits batch *k* while the stream's own
//! task validates batch *k+1* (on two cores that is the difference between one busy core
//! and two). At most one batch waits for the writer, so memory stays bounded.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::carriers::Unregistered;
use super::catalog::Catalog;
use super::commits::Commits;
use super::number_cache::NumberCache;
use super::{EngineConfig, EngineError};
use crate::domain::event::{NewEvent, RawEvent};
use crate::domain::number::{E164, calling_code};
use crate::domain::source::SourceName;
use crate::store::{EventStore, InsertOutcome};

/// Events per transaction unless configured otherwise.
pub const DEFAULT_INGEST_BATCH_SIZE: u64 = 50_000;

/// Rejections reported one by one; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 1_000;

/// What one ingest stream did with its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// Events stored.
    pub accepted: u64,
    /// Events already stored (same source and id), skipped.
    pub duplicates: u64,
    /// Events refused.
    pub rejected: u64,
    /// `(index in the stream, reason)`, the first [`MAX_REPORTED_ERRORS`].
    pub errors: Vec<(u64, String)>,
}

/// Canonical numbers a stream remembers having validated (feeds repeat numbers: a port
/// and the SIM change that follows it, re-sent files); past this many it starts afresh.
const REMEMBERED_NUMBERS: usize = 100_000;

/// Takes in events: validates them against the catalog, commits them in batches, drops the
/// cached histories they change and signals the commit to alert streams and webhooks.
pub struct IngestService {
    pub(super) events: Arc<dyn EventStore>,
    pub(super) catalog: Arc<Catalog>,
    pub(super) numbers: Arc<NumberCache>,
    pub(super) commits: Commits,
    pub(super) config: Arc<EngineConfig>,
}

impl IngestService {
    /// Starts an ingest stream; see [`IngestSession`].
    pub fn session(self: &Arc<Self>) -> IngestSession {
        IngestSession::new(self.clone())
    }
}

/// Which registered sources a stream's accepted events came from: streams usually carry
/// one, whose name labels the stream's counts; a mixed stream is counted as `several`.
#[derive(Debug, Default)]
enum StreamSources {
    #[default]
    None,
    One(String),
    Several,
}

impl StreamSources {
    fn saw(&mut self, name: &str) {
        match self {
            StreamSources::None => *self = StreamSources::One(name.to_string()),
            StreamSources::One(one) if one != name => *self = StreamSources::Several,
            _ => {}
        }
    }

    fn label(&self) -> &str {
        match self {
            StreamSources::None => "none",
            StreamSources::One(name) => name,
            StreamSources::Several => "several",
        }
    }
}

/// One ingest stream: validates events, writes them in batches and acknowledges each
/// batch after its commit.
pub struct IngestSession {
    service: Arc<IngestService>,
    /// Inputs that were already exactly their own valid E.164 form in this stream.
    valid_numbers: HashSet<String>,
    batch: Vec<NewEvent>,
    /// Carrier names of the batch to register first (only when the server does that).
    unregistered: Unregistered,
    rejected: u64,
    errors: Vec<(u64, String)>,
    /// The registered sources of the accepted events, for the metrics' label.
    sources: StreamSources,
    /// Sources are re-read from the store at most once per stream when an unknown name
    /// shows up (it may have been added through another replica).
    sources_reloaded: bool,
    batches: Option<mpsc::Sender<Vec<NewEvent>>>,
    writer: JoinHandle<Result<InsertOutcome, EngineError>>,
}

impl IngestSession {
    fn new(service: Arc<IngestService>) -> Self {
        let (batches, queue) = mpsc::channel(1);
        let writer = tokio::spawn(write_batches(service.clone(), queue));
        IngestSession {
            valid_numbers: HashSet::new(),
            batch: Vec::with_capacity(service.config.ingest_batch_size),
            unregistered: Unregistered::default(),
            service,
            rejected: 0,
            errors: Vec::new(),
            sources: StreamSources::default(),
            sources_reloaded: false,
            batches: Some(batches),
            writer,
        }
    }

    /// Takes the event at `index`. A bad event is recorded as rejected; only a store
    /// failure is an error.
    pub async fn push(&mut self, index: u64, raw: RawEvent) -> Result<(), EngineError> {
        let region = self.service.config.default_region;
        let register = self.service.config.register_unknown_carriers;
        let carriers = self.service.catalog.carriers();
        let known = &self.valid_numbers;
        let unregistered = &mut self.unregistered;
        let validated = NewEvent::validate_with(
            raw,
            Utc::now(),
            |input| {
                // A number seen before in exactly its E.164 form needs no second parse
                // (libphonenumber costs ~7 us a number).
                if known.contains(input) {
                    return Ok(E164::from_trusted(input.to_string()));
                }
                E164::parse(input, region)
            },
            |field, name, number| {
                let country = calling_code(number.digits());
                unregistered.resolve(&carriers, register, field, name, country)
            },
        );
        let event = match validated {
            Ok(event) => event,
            Err(e) => {
                self.reject(index, e.to_string());
                return Ok(());
            }
        };
        if !self.source_exists(&event.fact.source).await? {
            self.reject(
                index,
                format!("source {:?} is not registered", event.fact.source.as_str()),
            );
            return Ok(());
        }
        self.sources.saw(event.fact.source.as_str());
        if !self.valid_numbers.contains(event.number.as_str()) {
            if self.valid_numbers.len() >= REMEMBERED_NUMBERS {
                self.valid_numbers.clear();
            }
            self.valid_numbers.insert(event.number.as_str().to_string());
        }
        self.batch.push(event);
        if self.batch.len() >= self.service.config.ingest_batch_size {
            self.hand_over().await?;
        }
        Ok(())
    }

    /// Records the event at `index` as rejected (e.g. malformed before validation).
    pub fn reject(&mut self, index: u64, reason: String) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push((index, reason));
        }
    }

    /// Commits what is left, waits for every commit, and returns the summary.
    pub async fn finish(mut self) -> Result<IngestSummary, EngineError> {
        self.hand_over().await?;
        self.batches = None; // closing the queue lets the writer finish
        let written = (&mut self.writer)
            .await
            .map_err(|_| EngineError::WriterFailed)??;
        crate::metrics::ingested(
            self.sources.label(),
            written.inserted,
            written.duplicates,
            self.rejected,
        );
        Ok(IngestSummary {
            accepted: written.inserted,
            duplicates: written.duplicates,
            rejected: self.rejected,
            errors: std::mem::take(&mut self.errors),
        })
    }

    async fn source_exists(&mut self, name: &SourceName) -> Result<bool, EngineError> {
        if self.service.catalog.sources().contains(name) {
            return Ok(true);
        }
        if !self.sources_reloaded {
            self.sources_reloaded = true;
            self.service.catalog.reload_sources().await?;
            return Ok(self.service.catalog.sources().contains(name));
        }
        Ok(false)
    }

    /// Passes the current batch to the writer, waiting while it is still busy with the one
    /// before. If the writer has stopped, its error is the answer.
    async fn hand_over(&mut self) -> Result<(), EngineError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let unregistered = std::mem::take(&mut self.unregistered);
        self.service
            .catalog
            .register_unreviewed(unregistered)
            .await?;
        let batch = std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(self.service.config.ingest_batch_size),
        );
        let Some(batches) = &self.batches else {
            return Ok(());
        };
        if batches.send(batch).await.is_err() {
            self.batches = None;
            return match (&mut self.writer).await {
                Ok(Err(e)) => Err(e),
                _ => Err(EngineError::WriterFailed),
            };
        }
        Ok(())
    }
}

impl Drop for IngestSession {
    fn drop(&mut self) {
        // A stream that ends early (client gone) still has its queued batches committed,
        // none acknowledged; re-sending them is deduplicated.
        self.batches = None;
    }
}

/// Commits batches in order; each one's cached histories are dropped right after its
/// commit, so they are gone before the stream is acknowledged.
async fn write_batches(
    service: Arc<IngestService>,
    mut queue: mpsc::Receiver<Vec<NewEvent>>,
) -> Result<InsertOutcome, EngineError> {
    let mut total = InsertOutcome::default();
    while let Some(batch) = queue.recv().await {
        let outcome = service.events.insert_events(&batch).await?;
        service.numbers.invalidate(batch.iter().map(|e| &e.number));
        service.commits.bump();
        let mut delivered: Vec<&SourceName> = batch.iter().map(|e| &e.fact.source).collect();
        delivered.sort();
        delivered.dedup();
        service.catalog.heard_from(delivered).await?;
        total.inserted += outcome.inserted;
        total.duplicates += outcome.duplicates;
        tracing::debug!(
            inserted = outcome.inserted,
            duplicates = outcome.duplicates,
            "committed an ingest batch"
        );
    }
    Ok(total)
}
