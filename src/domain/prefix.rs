//! Number prefixes: country calling code plus leading national digits, without `+`
//! (`81`, `8190`, `819012`). Carrier ranges and source coverage are both keyed by them.

use std::fmt;
use std::str::FromStr;

/// E.164 allows at most 15 digits, so a longer prefix can match nothing.
pub const MAX_PREFIX_LEN: usize = 15;

/// A number prefix: leading digits of E.164 without `+`, e.g. `8190`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(String);

/// Why a text is not a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// Nothing but spaces.
    #[error("is empty")]
    Empty,
    /// Not 1 to 15 digits, or starting with 0.
    #[error("{0:?} must be 1 to {MAX_PREFIX_LEN} digits without `+`, not starting with 0")]
    Malformed(String),
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(PrefixError::Empty);
        }
        let well_formed = s.len() <= MAX_PREFIX_LEN
            && s.bytes().all(|b| b.is_ascii_digit())
            && !s.starts_with('0');
        if well_formed {
            Ok(Prefix(s.to_string()))
        } else {
            Err(PrefixError::Malformed(s.to_string()))
        }
    }
}

impl Prefix {
    /// The prefix's digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a number's digits (E.164 without `+`) fall under this prefix.
    pub fn matches(&self, digits: &str) -> bool {
        digits.starts_with(&self.0)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_digits_without_plus_or_leading_zero() {
        assert_eq!("8190".parse::<Prefix>().unwrap().as_str(), "8190");
        assert_eq!(" 81 ".parse::<Prefix>().unwrap().as_str(), "81");
        assert_eq!("".parse::<Prefix>(), Err(PrefixError::Empty));
        assert!("+81".parse::<Prefix>().is_err());
        assert!("090".parse::<Prefix>().is_err());
        assert!("81a".parse::<Prefix>().is_err());
        assert!("1234567890123456".parse::<Prefix>().is_err());
    }

    #[test]
    fn matching_is_by_leading_digits() {
        let p: Prefix = "8190".parse().unwrap();
        assert!(p.matches("819012345678"));
        assert!(!p.matches("818012345678"));
        assert!(!p.matches("819"));
    }
}
