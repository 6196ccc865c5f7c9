//! Checks: one number (`CheckNumber`) or a chunk of audit rows. Both read their inputs
//! and decide the same way, so an audit answers exactly what `CheckNumber` would for each
//! row; they differ only in how histories are fetched (one query per number, or one per
//! chunk).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;

use super::access_log::AccessLog;
use super::audit_memo::AuditMemo;
use super::availability::Availability;
use super::catalog::Catalog;
use super::number_cache::{NumberCache, NumberState};
use super::{EngineConfig, EngineError};
use crate::FastHash;
use crate::domain::Field;
use crate::domain::FieldError;
use crate::domain::auth::TenantName;
use crate::domain::decision::{CheckInput, Decision, MaxAge, decide};
use crate::domain::number::{E164, ParsedNumber, Region};
use crate::domain::owner_since::OwnerSince;
use crate::domain::upstream::UpstreamAnswer;
use crate::store::{EventStore, StoreError};

/// Audit rows waiting on the operator at once (per chunk); each provider's own limit
/// bounds the calls actually made.
const UPSTREAM_ROWS_IN_FLIGHT: usize = 256;

fn lock(memo: &Mutex<AuditMemo>) -> MutexGuard<'_, AuditMemo> {
    // The memo is only a cache of reads; a panic elsewhere leaves it usable.
    memo.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One check as asked, its fields not yet validated.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckRequest<'a> {
    /// E.164, or national format with `region` (or the server's default region).
    pub phone_number: &'a str,
    /// ISO 3166 region for a national-format number; may be empty.
    pub region: &'a str,
    /// 0 means the default window.
    pub max_age_hours: u32,
    /// An exact `owner_since`; at most one of this and `owner_since_date`.
    pub owner_since: Option<DateTime<Utc>>,
    /// `YYYY-MM-DD`; at most one of this and `owner_since`.
    pub owner_since_date: &'a str,
}

/// A row's answer: its number and decision, or what was wrong with its fields.
pub type CheckAnswer = Result<(E164, Decision), FieldError>;

/// A request whose fields are valid, with its number's state if the cache had it.
struct Prepared {
    max_age: MaxAge,
    owner_since: Option<OwnerSince>,
    number: Number,
}

enum Number {
    Cached(E164, NumberState),
    Parsed(ParsedNumber),
}

/// Answers checks: reads numbers and check fields, fetches histories (through the cache),
/// decides, completes the decision with the operator where needed, and records the
/// access.
pub struct CheckService {
    pub(super) events: Arc<dyn EventStore>,
    pub(super) catalog: Arc<Catalog>,
    pub(super) numbers: Arc<NumberCache>,
    pub(super) availability: Arc<Availability>,
    pub(super) access: Option<AccessLog>,
    pub(super) config: Arc<EngineConfig>,
}

impl CheckService {
    /// Reads a number given as E.164 or national format; `region` may be empty.
    pub fn parse_number(
        &self,
        field: Field,
        input: &str,
        region: &str,
    ) -> Result<ParsedNumber, FieldError> {
        let region = if region.trim().is_empty() {
            self.config.default_region
        } else {
            Some(self.region(region)?)
        };
        ParsedNumber::parse(input, region).map_err(|e| FieldError::new(field, e.to_string()))
    }

    fn region(&self, region: &str) -> Result<Region, FieldError> {
        region
            .parse()
            .map_err(|e| FieldError::new(Field::Region, format!("{e}")))
    }

    /// The window of `hours` (0: the default), refused past the server's limit.
    pub fn max_age(&self, hours: u32) -> Result<MaxAge, FieldError> {
        MaxAge::new(hours, self.config.max_lookback_hours)
    }

    /// `owner_since` as an instant, or as a date (`YYYY-MM-DD`) in the server's zone; at
    /// most one of the two.
    pub fn owner_since(
        &self,
        at: Option<DateTime<Utc>>,
        date: &str,
    ) -> Result<Option<OwnerSince>, FieldError> {
        let date = date.trim();
        match (at, date.is_empty()) {
            (Some(_), false) => Err(FieldError::new(
                Field::OwnerSinceDate,
                "cannot be given together with owner_since",
            )),
            (Some(at), true) => Ok(Some(OwnerSince::at(at))),
            (None, true) => Ok(None),
            (None, false) => {
                let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| {
                    FieldError::new(
                        Field::OwnerSinceDate,
                        format!("{date:?} is not a YYYY-MM-DD date"),
                    )
                })?;
                OwnerSince::on_date(day, &self.config.date_zone)
                    .map(Some)
                    .ok_or_else(|| FieldError::new(Field::OwnerSinceDate, "is out of range"))
            }
        }
    }

    /// Validates a request's fields in the order a client reads errors: window, then
    /// `owner_since`, then the number. A number cached under exactly this E.164 string is
    /// taken without parsing it again (the entry exists only because that string parsed).
    fn prepare(&self, request: &CheckRequest<'_>) -> Result<Prepared, FieldError> {
        let max_age = self.max_age(request.max_age_hours)?;
        let owner_since = self.owner_since(request.owner_since, request.owner_since_date)?;
        let number = match self.numbers.get_canonical(request.phone_number) {
            Some(state) => {
                if !request.region.trim().is_empty() {
                    self.region(request.region)?; // a bad region is refused on either path
                }
                Number::Cached(E164::from_trusted(request.phone_number.to_string()), state)
            }
            None => Number::Parsed(self.parse_number(
                Field::PhoneNumber,
                request.phone_number,
                request.region,
            )?),
        };
        Ok(Prepared {
            max_age,
            owner_since,
            number,
        })
    }

    fn ensure_up(&self) -> Result<(), EngineError> {
        if self.availability.is_up() {
            Ok(())
        } else {
            Err(EngineError::Unavailable)
        }
    }

    /// `CheckNumber`: the decision for one number as of now, recorded in the access log
    /// under the caller's tenant.
    pub async fn check(
        &self,
        caller: &TenantName,
        request: &CheckRequest<'_>,
    ) -> Result<(E164, Decision), EngineError> {
        let prepared = self.prepare(request)?;
        self.ensure_up()?;
        let (e164, state) = match prepared.number {
            Number::Cached(e164, state) => (e164, state),
            Number::Parsed(number) => {
                // The rare paths' futures are boxed: every layer above moves this
                // future, and inline they made it about 10 KiB (a memcpy per move).
                let load = self
                    .numbers
                    .get_or_load(&number, || self.events.history(&number.e164));
                let state = Box::pin(load).await?;
                (number.e164, state)
            }
        };
        let (max_age, owner_since) = (prepared.max_age, prepared.owner_since);
        let mut decision = self.decide(&e164, &state, max_age, owner_since, &[]);
        if let Some(needs) = self.upstream_needs(&state, &mut decision, owner_since.as_ref()) {
            decision =
                Box::pin(self.consult_upstream(&e164, &state, max_age, owner_since, needs)).await;
        }
        crate::metrics::decision(&decision);
        if let Some(log) = &self.access {
            log.record(caller, [&e164]).await;
        }
        Ok((e164, decision))
    }

    /// Checks a chunk of an audit's rows, one answer per row in order. A number is read
    /// from the shared cache if it is there, else from the audit's `memo` (so a number
    /// repeated in a list is answered from the same lookup), else from the store: one
    /// query for all of the chunk's remaining numbers. What the store returns goes into
    /// the memo, not the shared cache (see [`AuditMemo`]). A bad row gets its field
    /// error; only a store failure fails the chunk.
    pub async fn check_many(
        &self,
        caller: &TenantName,
        requests: &[CheckRequest<'_>],
        memo: &Mutex<AuditMemo>,
    ) -> Result<Vec<CheckAnswer>, EngineError> {
        let prepared: Vec<Result<Prepared, FieldError>> =
            requests.iter().map(|r| self.prepare(r)).collect();
        self.ensure_up()?;
        let mut known: HashMap<&str, NumberState, FastHash> = HashMap::default();
        let mut wanted: Vec<(&ParsedNumber, u64)> = Vec::new();
        let mut asked: HashSet<&str, FastHash> = HashSet::default();
        {
            let memo = lock(memo);
            for row in prepared.iter().flatten() {
                let Number::Parsed(number) = &row.number else {
                    continue;
                };
                let key = &number.e164;
                if known.contains_key(key.as_str()) || !asked.insert(key.as_str()) {
                    continue;
                }
                let epoch = self.numbers.epoch_of(key);
                // The memo, like the cache, only while the change feed is within its bound.
                let remembered = || memo.get(key, epoch).filter(|_| self.numbers.trusted());
                match self.numbers.get(key).or_else(remembered) {
                    Some(state) => {
                        known.insert(key.as_str(), state);
                    }
                    None => wanted.push((number, epoch)),
                }
            }
        }
        if !wanted.is_empty() {
            let numbers: Vec<E164> = wanted.iter().map(|(n, _)| n.e164.clone()).collect();
            let histories = self.events.histories(&numbers).await?;
            let mut memo = lock(memo);
            for (((number, epoch), e164), history) in wanted.iter().zip(numbers).zip(histories) {
                let state = NumberState {
                    mobile: number.mobile,
                    history: history.into(),
                };
                memo.insert(e164, state.clone(), *epoch);
                known.insert(number.e164.as_str(), state);
            }
        }
        let mut answers = Vec::with_capacity(prepared.len());
        let mut consult = Vec::new();
        for row in &prepared {
            let row = match row {
                Ok(row) => row,
                Err(e) => {
                    answers.push(Err(e.clone()));
                    continue;
                }
            };
            let (e164, state) = match &row.number {
                Number::Cached(e164, state) => (e164, state),
                Number::Parsed(number) => match known.get(number.e164.as_str()) {
                    Some(state) => (&number.e164, state),
                    None => {
                        return Err(
                            StoreError::Corrupt("a history read skipped a number".into()).into(),
                        );
                    }
                },
            };
            let mut decision = self.decide(e164, state, row.max_age, row.owner_since, &[]);
            if let Some(needs) = self.upstream_needs(state, &mut decision, row.owner_since.as_ref())
            {
                consult.push((answers.len(), e164, state, row, needs));
            }
            answers.push(Ok((e164.clone(), decision)));
        }
        // Rows the operator must complete, several at once; each provider bounds its own
        // calls, and repeated numbers share one call through the answer cache.
        let pending: Vec<_> = consult
            .into_iter()
            .map(|(i, e164, state, row, needs)| {
                let decision =
                    self.consult_upstream(e164, state, row.max_age, row.owner_since, needs);
                async move { (i, decision.await) }
            })
            .collect();
        let consulted: Vec<(usize, Decision)> = futures::stream::iter(pending)
            .buffer_unordered(UPSTREAM_ROWS_IN_FLIGHT)
            .collect()
            .await;
        for (i, decision) in consulted {
            if let Some(Ok((_, slot))) = answers.get_mut(i) {
                *slot = decision;
            }
        }
        for (_, decision) in answers.iter().flatten() {
            crate::metrics::decision(decision);
        }
        if let Some(log) = &self.access {
            log.record(caller, answers.iter().flatten().map(|(e164, _)| e164))
                .await;
        }
        Ok(answers)
    }

    pub(super) fn decide(
        &self,
        e164: &E164,
        state: &NumberState,
        max_age: MaxAge,
        owner_since: Option<OwnerSince>,
        upstream: &[UpstreamAnswer],
    ) -> Decision {
        self.decide_at(Utc::now(), e164, state, max_age, owner_since, upstream)
    }

    /// The decision as of `now`, over the catalog's ranges, carriers and sources.
    pub(super) fn decide_at(
        &self,
        now: DateTime<Utc>,
        e164: &E164,
        state: &NumberState,
        max_age: MaxAge,
        owner_since: Option<OwnerSince>,
        upstream: &[UpstreamAnswer],
    ) -> Decision {
        let catalog = self.catalog.snapshot();
        let input = CheckInput {
            now,
            max_age,
            owner_since,
            mobile: state.mobile,
            digits: e164.digits(),
            original_carrier: catalog.ranges.lookup(e164.digits()).map(|m| m.carrier),
            carriers: &catalog.carriers,
            sources: &catalog.sources,
            history: &state.history,
            upstream,
        };
        decide(&input, self.config.policy)
    }
}
