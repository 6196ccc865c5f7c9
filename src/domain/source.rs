//! Event sources (feeds) and the coverage they declare.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};

use super::FieldError;
use super::carrier::{CarrierId, CarrierRegistry};
use super::event::EventKind;
use super::number::calling_code;
use super::prefix::Prefix;
use crate::domain::Field;

/// Longest accepted source name.
pub const MAX_SOURCE_NAME_LEN: usize = 64;

/// A source's name: 1..=64 of letters, digits, `-`, `_`, `.`. Shared, not copied: every
/// event of a history and every answer's coverage names its sources, and a clone is only
/// a count.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceName(std::sync::Arc<str>);

/// Why a text is not a source name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceNameError {
    /// Nothing but spaces.
    #[error("is empty")]
    Empty,
    /// Too long, or with characters other than letters, digits, `-`, `_` and `.`.
    #[error("{0:?} must be 1 to {MAX_SOURCE_NAME_LEN} letters, digits, '-', '_' or '.'")]
    Malformed(String),
}

impl FromStr for SourceName {
    type Err = SourceNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SourceNameError::Empty);
        }
        let well_formed = s.len() <= MAX_SOURCE_NAME_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if well_formed {
            Ok(SourceName(std::sync::Arc::from(s)))
        } else {
            Err(SourceNameError::Malformed(s.to_string()))
        }
    }
}

impl SourceName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<SourceName> for String {
    fn from(name: SourceName) -> String {
        name.0.as_ref().to_owned()
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one scope of a source sees: numbers under `prefix`, while served by one of
/// `carriers` (any carrier when empty), events of `kinds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The numbers it sees.
    pub prefix: Prefix,
    /// Sorted, without repeats; empty means any carrier.
    pub carriers: Vec<CarrierId>,
    /// Sorted, without repeats; never empty (no kinds given means all five).
    pub kinds: Vec<EventKind>,
    /// `kinds` as bits, for the check's hot path.
    kind_bits: u8,
}

/// A scope as received: carrier names not yet resolved, kinds possibly empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawScope {
    /// The prefix as given.
    pub prefix: String,
    /// Carrier names or ids as given; empty means any carrier.
    pub carriers: Vec<String>,
    /// The kinds it reports; empty means all five.
    pub kinds: Vec<EventKind>,
}

impl RawScope {
    /// The legacy `covers` form: every carrier and every kind under `prefix`.
    pub fn whole(prefix: &str) -> RawScope {
        RawScope {
            prefix: prefix.to_string(),
            ..RawScope::default()
        }
    }
}

impl Scope {
    /// Validates a scope, resolving its carrier names (in the prefix's country) to ids.
    pub fn resolve(raw: &RawScope, carriers: &CarrierRegistry) -> Result<Scope, FieldError> {
        let prefix: Prefix = raw
            .prefix
            .parse()
            .map_err(|e| FieldError::new(Field::ScopesPrefix, format!("{e}")))?;
        let country = calling_code(prefix.as_str());
        let ids = raw
            .carriers
            .iter()
            .map(|name| {
                carriers
                    .resolve(name, country)
                    .map(|c| c.id.clone())
                    .map_err(|e| FieldError::new(Field::ScopesCarriers, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scope::new(prefix, ids, raw.kinds.clone()))
    }

    /// A scope of resolved carriers; no kinds means all five.
    pub fn new(prefix: Prefix, mut carriers: Vec<CarrierId>, mut kinds: Vec<EventKind>) -> Scope {
        carriers.sort();
        carriers.dedup();
        if kinds.is_empty() {
            kinds = EventKind::ALL.to_vec();
        }
        kinds.sort();
        kinds.dedup();
        let kind_bits = kinds.iter().fold(0, |bits, k| bits | k.bit());
        Scope {
            prefix,
            carriers,
            kinds,
            kind_bits,
        }
    }

    /// All carriers and all kinds: what a bare prefix used to mean.
    pub fn is_whole(&self) -> bool {
        self.carriers.is_empty() && self.kinds.len() == EventKind::ALL.len()
    }

    /// Whether it reports `kind` on numbers under its prefix (whoever serves them).
    pub fn reports(&self, digits: &str, kind: EventKind) -> bool {
        self.prefix.matches(digits) && self.kind_bits & kind.bit() != 0
    }

    /// Its kinds as [`EventKind::bit`]s.
    pub fn kind_bits(&self) -> u8 {
        self.kind_bits
    }

    /// Whether it sees subscribers of `carrier` (a number's serving carrier).
    pub fn sees_carrier(&self, carrier: Option<&CarrierId>) -> bool {
        self.carriers.is_empty() || carrier.is_some_and(|c| self.carriers.contains(c))
    }
}

/// A named feed: complete from `tracking_since` on, within its scopes, up to where its
/// freshness says (SPEC §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Its unique name.
    pub name: SourceName,
    /// From when it reports every event within its scopes.
    pub tracking_since: DateTime<Utc>,
    /// What it sees.
    pub scopes: Vec<Scope>,
    /// A live feed: heard from within this long, it counts as complete up to now. `None`
    /// for a source fed by files, complete only up to the cut-off each file declares.
    pub max_lag: Option<Duration>,
    /// Up to when its data is complete, as last heard or declared; `None` until then.
    pub complete_until: Option<DateTime<Utc>>,
}

/// What every source starts with unless the operator says otherwise: a live feed that
/// must be heard from at least once an hour.
pub const DEFAULT_MAX_LAG: Duration = Duration::hours(1);

impl Source {
    /// Validates a source as received; it must have at least one scope.
    pub fn new(
        name: &str,
        tracking_since: Option<DateTime<Utc>>,
        scopes: &[RawScope],
        max_lag: Option<Duration>,
        carriers: &CarrierRegistry,
    ) -> Result<Source, FieldError> {
        let name = name
            .parse()
            .map_err(|e: SourceNameError| FieldError::new(Field::Name, e.to_string()))?;
        let tracking_since =
            tracking_since.ok_or_else(|| FieldError::new(Field::TrackingSince, "is missing"))?;
        if scopes.is_empty() {
            return Err(FieldError::new(
                Field::Scopes,
                "is empty; give at least one scope (or a covers prefix such as \"81\")",
            ));
        }
        if max_lag.is_some_and(|lag| lag <= Duration::zero()) {
            return Err(FieldError::new(
                Field::MaxLag,
                "must be positive when given",
            ));
        }
        let mut scopes = scopes
            .iter()
            .map(|raw| Scope::resolve(raw, carriers))
            .collect::<Result<Vec<_>, _>>()?;
        scopes.sort_by(|a, b| {
            (&a.prefix, &a.carriers, &a.kinds).cmp(&(&b.prefix, &b.carriers, &b.kinds))
        });
        scopes.dedup();
        Ok(Source {
            name,
            tracking_since: super::event::to_storage_precision(tracking_since),
            scopes,
            max_lag,
            complete_until: None,
        })
    }

    /// Whether it is live and was heard from within `max_lag` of `now`.
    pub fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        Freshness::of(self).is_fresh(now.timestamp_micros())
    }

    /// The last instant its data is complete at, as of `now`: now itself while fresh,
    /// else its `complete_until` (never later than now); `None` if it never was.
    pub fn complete_to(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Freshness::of(self)
            .complete_to(now.timestamp_micros())
            .and_then(DateTime::from_timestamp_micros)
    }
}

/// A source's freshness in microseconds: the rule of SPEC §1, written once, cheap enough
/// for every check.
#[derive(Debug, Clone, Copy)]
struct Freshness {
    tracking_since: i64,
    complete_until: Option<i64>,
    max_lag: Option<i64>,
}

impl Freshness {
    fn of(source: &Source) -> Freshness {
        Freshness {
            tracking_since: source.tracking_since.timestamp_micros(),
            complete_until: source.complete_until.map(|t| t.timestamp_micros()),
            max_lag: source.max_lag.and_then(|lag| lag.num_microseconds()),
        }
    }

    fn is_fresh(&self, now: i64) -> bool {
        match (self.max_lag, self.complete_until) {
            (Some(lag), Some(until)) => now.saturating_sub(until) <= lag,
            _ => false,
        }
    }

    fn complete_to(&self, now: i64) -> Option<i64> {
        if self.is_fresh(now) {
            Some(now)
        } else {
            self.complete_until.map(|until| until.min(now))
        }
    }
}

/// All known sources, for coverage questions and ingest validation.
#[derive(Debug, Clone, Default)]
pub struct SourceSet {
    /// By name.
    sources: Vec<Source>,
    freshness: Vec<Freshness>,
    /// Each distinct scope prefix with the scopes that have it: a check compares the
    /// number with a few prefixes, not with every scope.
    by_prefix: Vec<PrefixScopes>,
    /// How long the store keeps events (microseconds), when a retention purge deletes
    /// older ones: no source's data is complete further back than that.
    retention: Option<i64>,
}

/// One source's kinds under one prefix (and, where scoped, for one carrier): what a
/// check needs of a scope, with no strings to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeEntry {
    /// The source's position in the (name-ordered) set.
    pub source: usize,
    /// [`EventKind::bit`]s.
    pub kinds: u8,
}

/// The scopes under one prefix, split by whom they see: a check looks up the carriers
/// that served the number instead of testing every carrier-scoped scope.
#[derive(Debug, Clone)]
pub struct PrefixScopes {
    prefix: Prefix,
    /// Scopes that see every carrier's subscribers.
    pub any_carrier: Vec<ScopeEntry>,
    /// Scopes that see one carrier's subscribers, by carrier id (sorted).
    by_carrier: Vec<(CarrierId, Vec<ScopeEntry>)>,
}

impl PrefixScopes {
    /// The scopes that see subscribers of `carrier`, besides `any_carrier`.
    pub fn of_carrier(&self, carrier: Option<&CarrierId>) -> &[ScopeEntry] {
        carrier
            .and_then(|c| self.by_carrier.binary_search_by(|(id, _)| id.cmp(c)).ok())
            .map_or(&[], |i| &self.by_carrier[i].1)
    }
}

/// Adds a scope's entry; a source's scopes that differ only in kinds make one entry.
fn add_entry(entries: &mut Vec<ScopeEntry>, entry: ScopeEntry) {
    match entries.iter_mut().find(|e| e.source == entry.source) {
        Some(e) => e.kinds |= entry.kinds,
        None => entries.push(entry),
    }
}

impl SourceSet {
    /// Indexes the sources' scopes by prefix and carrier.
    pub fn new(mut sources: Vec<Source>) -> Self {
        sources.sort_by(|a, b| a.name.cmp(&b.name));
        let mut by_prefix: Vec<PrefixScopes> = Vec::new();
        for (source, scope) in sources
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.scopes.iter().map(move |scope| (i, scope)))
        {
            let at = match by_prefix.iter().position(|g| g.prefix == scope.prefix) {
                Some(i) => i,
                None => {
                    by_prefix.push(PrefixScopes {
                        prefix: scope.prefix.clone(),
                        any_carrier: Vec::new(),
                        by_carrier: Vec::new(),
                    });
                    by_prefix.len() - 1
                }
            };
            let group = &mut by_prefix[at];
            let entry = ScopeEntry {
                source,
                kinds: scope.kind_bits(),
            };
            if scope.carriers.is_empty() {
                add_entry(&mut group.any_carrier, entry);
            }
            for carrier in &scope.carriers {
                let i = match group.by_carrier.binary_search_by(|(id, _)| id.cmp(carrier)) {
                    Ok(i) => i,
                    Err(i) => {
                        group.by_carrier.insert(i, (carrier.clone(), Vec::new()));
                        i
                    }
                };
                add_entry(&mut group.by_carrier[i].1, entry);
            }
        }
        SourceSet {
            freshness: sources.iter().map(Freshness::of).collect(),
            sources,
            by_prefix,
            retention: None,
        }
    }

    /// The scopes under each prefix that takes in `digits`.
    pub fn scopes_taking_in<'a>(
        &'a self,
        digits: &'a str,
    ) -> impl Iterator<Item = &'a PrefixScopes> + 'a {
        self.by_prefix
            .iter()
            .filter(|group| group.prefix.matches(digits))
    }

    /// The source at `position` (in name order).
    pub fn at(&self, position: usize) -> Option<&Source> {
        self.sources.get(position)
    }

    /// The instants (microseconds) the source at `position` has complete data for, as of
    /// `now`: from its `tracking_since` to where its freshness says.
    pub fn complete_stretch(&self, position: usize, now: i64) -> Option<(i64, i64)> {
        let f = self.freshness.get(position)?;
        let end = f.complete_to(now)?;
        let start = match self.kept_since(now) {
            Some(kept) => f.tracking_since.max(kept),
            None => f.tracking_since,
        };
        (start <= end).then_some((start, end))
    }

    /// The same sources over a store that keeps events for `retention` only (`None`:
    /// kept for ever). A purge removes evidence, so coverage may not reach past it.
    pub fn retaining(mut self, retention: Option<chrono::Duration>) -> SourceSet {
        self.retention = retention.and_then(|r| r.num_microseconds());
        self
    }

    /// The earliest instant (microseconds) whose events the store still keeps as of `now`,
    /// when a retention period is set.
    pub fn kept_since(&self, now: i64) -> Option<i64> {
        self.retention.map(|r| now.saturating_sub(r))
    }

    /// The source with this name.
    pub fn get(&self, name: &SourceName) -> Option<&Source> {
        self.sources
            .binary_search_by(|s| s.name.cmp(name))
            .ok()
            .map(|i| &self.sources[i])
    }

    /// Whether a source has this name.
    pub fn contains(&self, name: &SourceName) -> bool {
        self.get(name).is_some()
    }

    /// Every source, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Source> {
        self.sources.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::carrier::Carrier;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn registry() -> CarrierRegistry {
        let docomo = Carrier::new(
            "jp-docomo",
            "NTT docomo",
            81,
            &[],
            &["株式会社NTTドコモ".into()],
        );
        CarrierRegistry::new(vec![docomo.unwrap()])
    }

    fn whole(prefixes: &[&str]) -> Vec<RawScope> {
        prefixes.iter().map(|p| RawScope::whole(p)).collect()
    }

    #[test]
    fn scopes_resolve_carriers_and_default_to_every_kind() {
        let raw = RawScope {
            prefix: "81".into(),
            carriers: vec!["株式会社ＮＴＴドコモ".into(), "jp-docomo".into()],
            kinds: vec![],
        };
        let scope = Scope::resolve(&raw, &registry()).unwrap();
        assert_eq!(scope.carriers, vec!["jp-docomo".parse().unwrap()]);
        assert_eq!(scope.kinds.len(), 5);
        assert!(!scope.is_whole());
        assert!(scope.sees_carrier(Some(&"jp-docomo".parse().unwrap())));
        assert!(!scope.sees_carrier(Some(&"jp-kddi".parse().unwrap())));
        assert!(!scope.sees_carrier(None));
        let unknown = RawScope {
            carriers: vec!["SoftBank".into()],
            ..raw
        };
        let err = Scope::resolve(&unknown, &registry()).unwrap_err();
        assert_eq!(err.field, Field::ScopesCarriers);
        assert!(err.message.contains("SoftBank"), "{err}");
    }

    #[test]
    fn freshness_follows_max_lag() {
        let now = at(2026, 6, 2);
        let mut live = Source::new(
            "feed",
            Some(at(2026, 1, 1)),
            &whole(&["81"]),
            Some(DEFAULT_MAX_LAG),
            &registry(),
        )
        .unwrap();
        assert_eq!(live.complete_to(now), None, "never heard from");
        live.complete_until = Some(now - Duration::minutes(59));
        assert!(live.is_fresh(now));
        assert_eq!(live.complete_to(now), Some(now));
        live.complete_until = Some(now - Duration::minutes(61));
        assert!(!live.is_fresh(now));
        assert_eq!(live.complete_to(now), live.complete_until);
        let mut file = Source::new(
            "file",
            Some(at(2026, 1, 1)),
            &whole(&["81"]),
            None,
            &registry(),
        )
        .unwrap();
        file.complete_until = Some(now - Duration::seconds(1));
        assert!(!file.is_fresh(now));
        assert_eq!(file.complete_to(now), file.complete_until);
        file.complete_until = Some(now + Duration::days(1));
        assert_eq!(file.complete_to(now), Some(now), "never past now");
    }

    #[test]
    fn invalid_sources_name_the_field() {
        let since = Some(at(2026, 1, 1));
        let r = registry();
        let new =
            |name: &str, since, scopes: &[RawScope], lag| Source::new(name, since, scopes, lag, &r);
        let field = |e: Result<Source, FieldError>| e.unwrap_err().field;
        assert_eq!(field(new("", since, &whole(&["81"]), None)), Field::Name);
        assert_eq!(field(new("a b", since, &whole(&["81"]), None)), Field::Name);
        assert_eq!(
            field(new("ok", None, &whole(&["81"]), None)),
            Field::TrackingSince
        );
        assert_eq!(field(new("ok", since, &[], None)), Field::Scopes);
        assert_eq!(
            field(new("ok", since, &whole(&["+81"]), None)),
            Field::ScopesPrefix
        );
        assert_eq!(
            field(new("ok", since, &whole(&["81"]), Some(Duration::zero()))),
            Field::MaxLag
        );
        let set = SourceSet::new(vec![
            new("docomo", since, &whole(&["8190", "81", "8190"]), None).unwrap(),
        ]);
        assert_eq!(set.get(&"docomo".parse().unwrap()).unwrap().scopes.len(), 2);
        assert!(!set.contains(&"kddi".parse().unwrap()));
    }
}
