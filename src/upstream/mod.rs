//! Live look-ups at the operator (SPEC §5): where no source covers a number, the provider
//! serving its current carrier is asked through its CAMARA API. Answers are cached per
//! number and question; concurrent checks of one number make one call; failures and
//! "unknown number" answers are cached briefly so an outage is not hammered.

pub mod breaker;
mod client;
pub mod config;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use moka::Expiry;

use crate::domain::carrier::{CarrierId, CarrierRegistry};
use crate::domain::number::E164;
use crate::domain::upstream::{Question, UpstreamAnswer};
use crate::egress::Egress;
use breaker::BreakerConfig;
use client::{CallError, ProviderClient};
use config::ProvidersFile;

/// The providers and how to use them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub providers: ProvidersFile,
    pub settings: UpstreamSettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// How long an answer is reused. A "swapped" answer is also never reused past the
    /// window it was given for.
    pub answer_ttl: Duration,
    /// How long a failure or an "unknown number" answer is reused.
    pub error_ttl: Duration,
    /// Per request to the provider.
    pub timeout: Duration,
    pub breaker: BreakerConfig,
    /// Answers cached at most.
    pub cache_capacity: u64,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            answer_ttl: Duration::from_secs(15 * 60),
            error_ttl: Duration::from_secs(30),
            timeout: Duration::from_millis(800),
            breaker: BreakerConfig::default(),
            cache_capacity: 1_000_000,
        }
    }
}

/// One question about one number. The parameter is the window in hours (SIM swap) or
/// the date as days since the epoch (recycling), so a different window is another entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    provider: usize,
    number: String,
    question: Question,
    parameter: i64,
}

#[derive(Debug, Clone)]
struct Cached {
    outcome: Result<bool, String>,
    at: DateTime<Utc>,
    ttl: Duration,
}

/// Each entry lives for its own time to live.
struct PerEntry;

impl Expiry<Key, Cached> for PerEntry {
    fn expire_after_create(&self, _: &Key, value: &Cached, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// How long an outcome is reused: an answer for `answer_ttl`, a "yes" no longer than
/// `yes_limit` (the window it was given for), a failure for `error_ttl` or as long as the
/// provider asked to be left alone.
fn time_to_live(
    outcome: &Result<bool, CallError>,
    settings: &UpstreamSettings,
    yes_limit: Duration,
) -> Duration {
    match outcome {
        Ok(true) => settings.answer_ttl.min(yes_limit),
        Ok(false) => settings.answer_ttl,
        Err(e) => e
            .retry_after()
            .map_or(settings.error_ttl, |pause| pause.min(settings.answer_ttl)),
    }
}

pub struct Upstreams {
    providers: Vec<ProviderClient>,
    /// Per provider, the carrier ids its names resolve to in the registry (re-resolved
    /// when carriers change).
    serves: std::sync::RwLock<Vec<Vec<CarrierId>>>,
    cache: moka::future::Cache<Key, Cached>,
    settings: UpstreamSettings,
}

/// A provider chosen for a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route(usize);

impl Upstreams {
    /// Builds the clients; route them with [`Upstreams::resolve_carriers`].
    pub fn new(config: UpstreamConfig, egress: &Egress) -> Result<Upstreams, String> {
        let UpstreamConfig {
            providers: file,
            settings,
        } = config;
        let file = file.validated(egress.policy()).map_err(|e| e.to_string())?;
        let http = egress
            .client(reqwest::Client::builder())
            .map_err(|e| format!("cannot build the upstream HTTP client: {e}"))?;
        let providers = file
            .providers
            .into_iter()
            .map(|p| ProviderClient::new(p, http.clone(), settings.timeout, settings.breaker))
            .collect();
        Ok(Upstreams {
            providers,
            serves: std::sync::RwLock::default(),
            cache: moka::future::Cache::builder()
                .max_capacity(settings.cache_capacity)
                .expire_after(PerEntry)
                .build(),
            settings,
        })
    }

    pub fn names(&self) -> Vec<&str> {
        self.providers.iter().map(ProviderClient::name).collect()
    }

    /// Resolves each provider's carrier names to ids in `carriers`, for routing. Returns
    /// the names that resolve to none (`provider: reason`); those route nowhere until a
    /// carrier registered later makes them resolve.
    pub fn resolve_carriers(&self, carriers: &CarrierRegistry) -> Vec<String> {
        let mut unresolved = Vec::new();
        let serves = self
            .providers
            .iter()
            .map(|p| {
                p.provider
                    .carriers
                    .iter()
                    .filter_map(|name| match carriers.resolve(name, None) {
                        Ok(c) => Some(c.id.clone()),
                        Err(e) => {
                            unresolved.push(format!("provider {:?}: carriers: {e}", p.name()));
                            None
                        }
                    })
                    .collect()
            })
            .collect();
        *self
            .serves
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = serves;
        unresolved
    }

    /// The provider serving `carrier`, if one is configured.
    pub fn route(&self, carrier: Option<&CarrierId>) -> Option<Route> {
        let carrier = carrier?;
        self.serves
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .position(|ids| ids.contains(carrier))
            .map(Route)
    }

    /// SIM Swap `/check` for the last `max_age_hours`.
    pub async fn sim_swap(
        &self,
        route: Route,
        number: &E164,
        max_age_hours: u32,
    ) -> UpstreamAnswer {
        let key = self.key(route, number, Question::SimSwap, i64::from(max_age_hours));
        // A swap seen now may lie at the window's far edge: past one window it may be
        // outside the window asked for, so it is not reused longer.
        let window = Duration::from_secs(u64::from(max_age_hours) * 3600);
        self.answer(key, window, |p| p.sim_swapped(number, max_age_hours))
            .await
    }

    /// Number Recycling `/check` since `date`.
    pub async fn recycled(&self, route: Route, number: &E164, date: NaiveDate) -> UpstreamAnswer {
        let days = i64::from(date.num_days_from_ce());
        let key = self.key(route, number, Question::NumberRecycling, days);
        self.answer(key, self.settings.answer_ttl, |p| p.recycled(number, date))
            .await
    }

    fn key(&self, route: Route, number: &E164, question: Question, parameter: i64) -> Key {
        Key {
            provider: route.0,
            number: number.as_str().to_string(),
            question,
            parameter,
        }
    }

    /// The cached answer, or one call's (concurrent askers share it).
    async fn answer<'a, F, Fut>(&'a self, key: Key, true_limit: Duration, call: F) -> UpstreamAnswer
    where
        F: FnOnce(&'a ProviderClient) -> Fut,
        Fut: Future<Output = Result<bool, CallError>>,
    {
        let provider = &self.providers[key.provider];
        let question = key.question;
        let called = AtomicBool::new(false);
        let cached = self
            .cache
            .get_with(key, async {
                called.store(true, Ordering::Relaxed);
                let outcome = call(provider).await;
                let ttl = time_to_live(&outcome, &self.settings, true_limit);
                if let Err(e) = &outcome {
                    tracing::warn!(provider = provider.name(), error = %e, "upstream look-up failed");
                }
                Cached {
                    outcome: outcome.map_err(|e| e.to_string()),
                    at: Utc::now(),
                    ttl,
                }
            })
            .await;
        let fresh = called.load(Ordering::Relaxed);
        UpstreamAnswer {
            provider: provider.name().to_string(),
            question,
            outcome: cached.outcome,
            at: cached.at,
            cached: !fresh,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_failures_and_swaps_live_as_long_as_they_may() {
        let settings = UpstreamSettings {
            answer_ttl: Duration::from_secs(7200),
            error_ttl: Duration::from_secs(30),
            ..UpstreamSettings::default()
        };
        let hour = Duration::from_secs(3600);
        assert_eq!(
            time_to_live(&Ok(false), &settings, hour),
            settings.answer_ttl
        );
        assert_eq!(
            time_to_live(&Ok(true), &settings, hour),
            hour,
            "never past its window"
        );
        let day = 24 * hour;
        assert_eq!(time_to_live(&Ok(true), &settings, day), settings.answer_ttl);
        assert_eq!(
            time_to_live(&Err(CallError::Timeout(800)), &settings, hour),
            settings.error_ttl
        );
        assert_eq!(
            time_to_live(&Err(CallError::RateLimited(120)), &settings, hour),
            Duration::from_secs(120),
            "as long as Retry-After"
        );
    }
}
