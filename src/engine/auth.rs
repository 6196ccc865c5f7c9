//! Who may call: API keys and their scopes, per-key rate limits, and the in-flight limits
//! (global, and per tenant so that one tenant's open streams cannot take every place).
//! Every admitted request holds its places until it is answered.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::auth::{Scopes, TenantName, TimePrecision, key_id, key_matches};
use crate::error::ErrorKind;
use crate::store::{KeyRecord, Store, StoreError};

/// Keys and tenant settings are re-read this often, so a revocation made directly in the
/// database (`numguard keys revoke`) takes effect within this time even without a change
/// notification.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// Failed authentications one peer address may make at once, and per second after that.
/// Past them, a key from that address that is not already known is refused without being
/// looked up, so guessing keys costs the database nothing.
const PEER_FAILURE_BURST: f64 = 20.0;
const PEER_FAILURES_PER_SECOND: f64 = 2.0;

/// Compared with when a presented key's id is unknown, so unknown and known ids cost the
/// same hash.
const NO_KEY_HASH: [u8; 32] = [0; 32];

/// Whether callers need API keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every RPC needs `authorization: Bearer <key>` with the right scope.
    Keys,
    /// No keys (`serve --dev`, loopback only): every caller is tenant `dev` with all scopes.
    Disabled,
}

/// What callers may ask of the server, per key and in all.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests per second per key; 0 disables the rate limit.
    pub rate_per_second: f64,
    /// Requests a key may make at once after being idle.
    pub burst: f64,
    /// Requests in flight across the server before new ones are shed.
    pub max_in_flight: usize,
    /// Requests (streams included) one tenant may have in flight; with keys only (in dev
    /// mode there is one tenant).
    pub max_in_flight_per_tenant: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate_per_second: 1_000.0,
            burst: 2_000.0,
            max_in_flight: 1_024,
            max_in_flight_per_tenant: 256,
        }
    }
}

/// The caller, once admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's tenant.
    pub tenant: TenantName,
    /// What the key may do.
    pub scopes: Scopes,
    /// How precisely the tenant is told when changes happened.
    pub precision: TimePrecision,
}

/// Why a request was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No key was sent.
    #[error("missing API key: send the metadata `authorization: Bearer <key>`")]
    Missing,
    /// The key is unknown, malformed or revoked.
    #[error("unknown, malformed or revoked API key")]
    Invalid,
    /// The key lacks the scope the request needs.
    #[error("this API key lacks the {} scope", either(.0))]
    Forbidden(Scopes),
    /// The key is over its rate.
    #[error("rate limit of {limit} requests/s for this key exceeded; retry in {retry_ms} ms")]
    RateLimited {
        /// The key's rate, per second.
        limit: f64,
        /// When a token is next free.
        retry_ms: u64,
    },
    /// The server has its limit of requests in flight.
    #[error("the server is at its limit of {0} requests in flight; retry shortly")]
    Overloaded(usize),
    /// The caller's tenant has its limit of requests in flight.
    #[error("this tenant is at its limit of {0} requests in flight; retry shortly")]
    TenantOverloaded(usize),
    /// The caller's address has failed to authenticate too often.
    #[error("too many failed authentications from this address; retry in {retry_ms} ms")]
    PeerThrottled {
        /// When the address may try again.
        retry_ms: u64,
    },
    /// The key could not be looked up.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `check`, or "`check` or `admin`".
fn either(scopes: &Scopes) -> String {
    let names: Vec<String> = scopes.iter().map(|s| format!("`{s}`")).collect();
    names.join(" or ")
}

impl AuthError {
    /// What a client is told: never the database's own words.
    pub fn public_message(&self) -> String {
        match self {
            AuthError::Store(e) => e.public_message(),
            other => other.to_string(),
        }
    }

    /// The error's kind, which each transport maps to its own codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AuthError::Missing | AuthError::Invalid => ErrorKind::Unauthenticated,
            AuthError::Forbidden(_) => ErrorKind::PermissionDenied,
            AuthError::RateLimited { .. }
            | AuthError::Overloaded(_)
            | AuthError::TenantOverloaded(_)
            | AuthError::PeerThrottled { .. } => ErrorKind::ResourceExhausted,
            AuthError::Store(e) => e.kind(),
        }
    }

    /// Why the request was refused, as the metrics name it.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "no_key",
            AuthError::Invalid => "invalid_key",
            AuthError::Forbidden(_) => "scope",
            AuthError::RateLimited { .. } => "rate_limited",
            AuthError::Overloaded(_) => "shed",
            AuthError::TenantOverloaded(_) => "tenant_shed",
            AuthError::PeerThrottled { .. } => "peer_throttled",
            AuthError::Store(_) => "store",
        }
    }
}

/// An admitted request: who it is, and its place among the requests in flight.
#[derive(Debug)]
pub struct Admission {
    /// Who the caller is.
    pub principal: Principal,
    _permit: OwnedSemaphorePermit,
    _tenant_place: Option<TenantPlace>,
}

/// Requests in flight per tenant.
type TenantCounts = Arc<Mutex<HashMap<TenantName, usize>>>;

fn lock_counts(counts: &TenantCounts) -> std::sync::MutexGuard<'_, HashMap<TenantName, usize>> {
    // Plain counters; a panic elsewhere leaves them usable.
    counts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One of a tenant's in-flight places, given back when dropped.
#[derive(Debug)]
struct TenantPlace {
    counts: TenantCounts,
    tenant: TenantName,
}

impl TenantPlace {
    fn take(counts: &TenantCounts, tenant: &TenantName, limit: usize) -> Option<TenantPlace> {
        let mut map = lock_counts(counts);
        let n = map.entry(tenant.clone()).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(TenantPlace {
            counts: counts.clone(),
            tenant: tenant.clone(),
        })
    }
}

impl Drop for TenantPlace {
    fn drop(&mut self) {
        let mut map = lock_counts(&self.counts);
        if let Some(n) = map.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.tenant);
            }
        }
    }
}

/// A token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64) -> Arc<Mutex<Bucket>> {
        Arc::new(Mutex::new(Bucket {
            tokens: burst,
            at: Instant::now(),
        }))
    }

    /// The tokens after refilling at `rate` up to `burst`.
    fn refill(&mut self, rate: f64, burst: f64) -> f64 {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        self.tokens
    }

    /// Milliseconds until a token is free at `rate`.
    fn retry_ms(&self, rate: f64) -> u64 {
        ((1.0 - self.tokens) / rate * 1_000.0).ceil() as u64
    }
}

fn lock_bucket(bucket: &Mutex<Bucket>) -> std::sync::MutexGuard<'_, Bucket> {
    // A counter; a panic elsewhere leaves it usable.
    bucket
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Admits requests: the key, its scope, its rate, and a place among those in flight.
pub struct Authenticator {
    mode: AuthMode,
    limits: Limits,
    in_flight: Arc<Semaphore>,
    tenant_in_flight: TenantCounts,
    keys: Cache<String, KeyRecord>,
    /// Ids looked up and not found, apart from `keys` so that guessed ids cannot push
    /// real keys out.
    unknown_ids: Cache<String, ()>,
    precisions: Cache<TenantName, TimePrecision>,
    buckets: Cache<String, Arc<Mutex<Bucket>>>,
    peer_failures: Cache<IpAddr, Arc<Mutex<Bucket>>>,
}

impl Authenticator {
    /// An authenticator with empty caches.
    pub fn new(mode: AuthMode, limits: Limits) -> Self {
        Authenticator {
            mode,
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            tenant_in_flight: TenantCounts::default(),
            keys: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
            unknown_ids: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
            precisions: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
            buckets: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            peer_failures: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        }
    }

    /// Whether callers need API keys.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Admits a request that one of `scopes` allows, given the `authorization` metadata
    /// value and the address it came from (`None` where there is none, as in tests).
    pub async fn admit(
        &self,
        store: &dyn Store,
        authorization: Option<&str>,
        scopes: Scopes,
        peer: Option<IpAddr>,
    ) -> Result<Admission, AuthError> {
        // Shed load before spending anything on the request.
        let permit = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| AuthError::Overloaded(self.limits.max_in_flight))?;
        let (principal, tenant_place) = match self.mode {
            AuthMode::Disabled => {
                let principal = Principal {
                    tenant: TenantName::dev(),
                    scopes: Scopes::all(),
                    precision: TimePrecision::Exact,
                };
                (principal, None)
            }
            AuthMode::Keys => {
                let principal = self
                    .authenticate(store, authorization, scopes, peer)
                    .await
                    .inspect_err(|e| {
                        if matches!(e, AuthError::Missing | AuthError::Invalid) {
                            self.peer_failed(peer);
                        }
                    })?;
                let limit = self.limits.max_in_flight_per_tenant;
                let place = TenantPlace::take(&self.tenant_in_flight, &principal.tenant, limit)
                    .ok_or(AuthError::TenantOverloaded(limit))?;
                (principal, Some(place))
            }
        };
        Ok(Admission {
            principal,
            _permit: permit,
            _tenant_place: tenant_place,
        })
    }

    async fn authenticate(
        &self,
        store: &dyn Store,
        authorization: Option<&str>,
        needed: Scopes,
        peer: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let presented = authorization.and_then(bearer).ok_or(AuthError::Missing)?;
        let id = key_id(presented).ok_or(AuthError::Invalid)?;
        let record = match self.keys.get(id) {
            Some(record) => Some(record),
            None if self.unknown_ids.contains_key(id) => None,
            None => {
                self.peer_may_look_up(peer)?;
                let record = store.find_key(id).await?;
                match &record {
                    Some(record) => self.keys.insert(id.to_string(), record.clone()),
                    None => self.unknown_ids.insert(id.to_string(), ()),
                }
                record
            }
        };
        let hash = record.as_ref().map_or(&NO_KEY_HASH[..], |r| &r.hash[..]);
        let matches = key_matches(presented, hash);
        let record = record
            .filter(|r| matches && r.revoked_at.is_none())
            .ok_or(AuthError::Invalid)?;
        if !record.scopes.any_of(needed) {
            return Err(AuthError::Forbidden(needed));
        }
        self.take_token(&record.id)?;
        let precision = match self.precisions.get(&record.tenant) {
            Some(p) => p,
            None => {
                let p = store.time_precision(&record.tenant).await?;
                self.precisions.insert(record.tenant.clone(), p);
                p
            }
        };
        Ok(Principal {
            tenant: record.tenant,
            scopes: record.scopes,
            precision,
        })
    }

    /// Token bucket per key.
    fn take_token(&self, key: &str) -> Result<(), AuthError> {
        let Limits {
            rate_per_second: rate,
            burst,
            ..
        } = self.limits;
        if rate <= 0.0 {
            return Ok(());
        }
        let bucket = self.buckets.get_with_by_ref(key, || Bucket::full(burst));
        let mut b = lock_bucket(&bucket);
        if b.refill(rate, burst) >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(AuthError::RateLimited {
                limit: rate,
                retry_ms: b.retry_ms(rate),
            })
        }
    }

    /// Whether `peer` may have a key looked up: not while its failures are over budget.
    fn peer_may_look_up(&self, peer: Option<IpAddr>) -> Result<(), AuthError> {
        let Some(bucket) = peer.and_then(|p| self.peer_failures.get(&p)) else {
            return Ok(());
        };
        let mut b = lock_bucket(&bucket);
        if b.refill(PEER_FAILURES_PER_SECOND, PEER_FAILURE_BURST) >= 1.0 {
            Ok(())
        } else {
            Err(AuthError::PeerThrottled {
                retry_ms: b.retry_ms(PEER_FAILURES_PER_SECOND),
            })
        }
    }

    /// Counts a failed authentication against `peer`.
    fn peer_failed(&self, peer: Option<IpAddr>) {
        let Some(peer) = peer else {
            return;
        };
        let bucket = self
            .peer_failures
            .get_with(peer, || Bucket::full(PEER_FAILURE_BURST));
        let mut b = lock_bucket(&bucket);
        b.refill(PEER_FAILURES_PER_SECOND, PEER_FAILURE_BURST);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }

    /// Forgets cached keys and tenant settings (after a revocation or settings change).
    pub fn forget_cached(&self) {
        self.keys.invalidate_all();
        self.unknown_ids.invalidate_all();
        self.precisions.invalidate_all();
    }
}

/// The key in `Bearer <key>` (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, key) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn the_bucket_allows_its_burst_then_the_rate() {
        let auth = Authenticator::new(
            AuthMode::Keys,
            Limits {
                rate_per_second: 10.0,
                burst: 3.0,
                max_in_flight: 10,
                max_in_flight_per_tenant: 10,
            },
        );
        for _ in 0..3 {
            auth.take_token("k").unwrap();
        }
        match auth.take_token("k") {
            Err(AuthError::RateLimited { retry_ms, .. }) => assert!((1..=100).contains(&retry_ms)),
            other => panic!("{other:?}"),
        }
        // Another key has its own bucket.
        auth.take_token("other").unwrap();
        std::thread::sleep(Duration::from_millis(120));
        auth.take_token("k").unwrap();
    }

    #[test]
    fn a_peer_past_its_failures_may_not_have_keys_looked_up() {
        let auth = Authenticator::new(AuthMode::Keys, Limits::default());
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "::1".parse().unwrap());
        auth.peer_may_look_up(Some(a)).unwrap();
        for _ in 0..PEER_FAILURE_BURST as usize {
            auth.peer_failed(Some(a));
        }
        match auth.peer_may_look_up(Some(a)) {
            Err(AuthError::PeerThrottled { retry_ms }) => assert!((1..=500).contains(&retry_ms)),
            other => panic!("{other:?}"),
        }
        auth.peer_may_look_up(Some(b)).unwrap();
        auth.peer_may_look_up(None).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        auth.peer_may_look_up(Some(a)).unwrap();
    }

    #[test]
    fn a_tenant_holds_at_most_its_places_and_gives_them_back() {
        let counts = TenantCounts::default();
        let (a, b): (TenantName, TenantName) = ("a".parse().unwrap(), "b".parse().unwrap());
        let held: Vec<_> = (0..3)
            .map(|_| TenantPlace::take(&counts, &a, 3).unwrap())
            .collect();
        assert!(TenantPlace::take(&counts, &a, 3).is_none());
        assert!(
            TenantPlace::take(&counts, &b, 3).is_some(),
            "b has its own places"
        );
        drop(held);
        assert!(TenantPlace::take(&counts, &a, 3).is_some());
        assert!(
            lock_counts(&counts).is_empty(),
            "counts of idle tenants are dropped"
        );
    }
}
