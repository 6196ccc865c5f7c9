//! Event sources (feeds) and the coverage they declare.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::FieldError;
use super::number::E164;
use super::prefix::Prefix;

pub const MAX_SOURCE_NAME_LEN: usize = 64;

/// A source's name: 1..=64 of letters, digits, `-`, `_`, `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceNameError {
    #[error("is empty")]
    Empty,
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
            Ok(SourceName(s.to_string()))
        } else {
            Err(SourceNameError::Malformed(s.to_string()))
        }
    }
}

impl SourceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A named feed whose data is complete from `tracking_since` on, for the numbers under
/// its `covers` prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: SourceName,
    pub tracking_since: DateTime<Utc>,
    pub covers: Vec<Prefix>,
}

impl Source {
    /// Validates a source as received; `covers` must name at least one prefix.
    pub fn new(
        name: &str,
        tracking_since: Option<DateTime<Utc>>,
        covers: &[String],
    ) -> Result<Source, FieldError> {
        let name = name
            .parse()
            .map_err(|e: SourceNameError| FieldError::new("name", e.to_string()))?;
        let tracking_since =
            tracking_since.ok_or_else(|| FieldError::new("tracking_since", "is missing"))?;
        if covers.is_empty() {
            return Err(FieldError::new(
                "covers",
                "is empty; name at least one prefix such as \"81\"",
            ));
        }
        let mut prefixes = covers
            .iter()
            .map(|c| c.parse::<Prefix>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| FieldError::new("covers", format!("has a prefix that {e}")))?;
        prefixes.sort();
        prefixes.dedup();
        Ok(Source {
            name,
            tracking_since: super::event::to_storage_precision(tracking_since),
            covers: prefixes,
        })
    }

    pub fn covers(&self, number: &E164) -> bool {
        self.covers.iter().any(|p| p.matches(number.digits()))
    }
}

/// All known sources, for coverage questions and ingest validation.
#[derive(Debug, Clone, Default)]
pub struct SourceSet {
    sources: Vec<Source>,
}

impl SourceSet {
    pub fn new(mut sources: Vec<Source>) -> Self {
        sources.sort_by(|a, b| a.name.cmp(&b.name));
        SourceSet { sources }
    }

    pub fn contains(&self, name: &SourceName) -> bool {
        self.sources.binary_search_by(|s| s.name.cmp(name)).is_ok()
    }

    /// The earliest `tracking_since` among the sources covering the number; `None` if no
    /// source covers it.
    pub fn covered_since(&self, number: &E164) -> Option<DateTime<Utc>> {
        self.sources
            .iter()
            .filter(|s| s.covers(number))
            .map(|s| s.tracking_since)
            .min()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Source> {
        self.sources.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn source(name: &str, since: DateTime<Utc>, covers: &[&str]) -> Source {
        let covers: Vec<String> = covers.iter().map(|c| c.to_string()).collect();
        Source::new(name, Some(since), &covers).unwrap()
    }

    #[test]
    fn coverage_is_the_earliest_matching_source() {
        let set = SourceSet::new(vec![
            source("jp-all", at(2026, 1, 1), &["81"]),
            source("docomo", at(2025, 1, 1), &["8190"]),
            source("uk", at(2020, 1, 1), &["44"]),
        ]);
        let mobile = E164::parse("+819012345678", None).unwrap();
        let other = E164::parse("+818012345678", None).unwrap();
        let us = E164::parse("+12015550123", None).unwrap();
        assert_eq!(set.covered_since(&mobile), Some(at(2025, 1, 1)));
        assert_eq!(set.covered_since(&other), Some(at(2026, 1, 1)));
        assert_eq!(set.covered_since(&us), None);
        assert!(set.contains(&"docomo".parse().unwrap()));
        assert!(!set.contains(&"kddi".parse().unwrap()));
    }

    #[test]
    fn invalid_sources_name_the_field() {
        let since = Some(at(2026, 1, 1));
        let covers = vec!["81".to_string()];
        assert_eq!(Source::new("", since, &covers).unwrap_err().field, "name");
        assert_eq!(
            Source::new("a b", since, &covers).unwrap_err().field,
            "name"
        );
        assert_eq!(
            Source::new("ok", None, &covers).unwrap_err().field,
            "tracking_since"
        );
        assert_eq!(Source::new("ok", since, &[]).unwrap_err().field, "covers");
        assert_eq!(
            Source::new("ok", since, &["+81".to_string()])
                .unwrap_err()
                .field,
            "covers"
        );
    }
}
