//! Tenants, API keys and scopes. Keys are random 256-bit secrets shown once; only their
//! SHA-256 is stored, and presented keys are compared with it in constant time.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::FieldError;
use crate::domain::Field;

/// What an API key may do; each RPC and REST route needs one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `CheckNumber` and the CAMARA checks.
    Check,
    /// Batch audits of customer lists.
    Audit,
    /// Watchlists, alert streams and webhook subscriptions.
    Watch,
    /// Sending events.
    Ingest,
    /// Sources, carriers, ranges and the other administration RPCs.
    Admin,
}

impl Scope {
    /// Every scope, in the order they are listed.
    pub const ALL: [Scope; 5] = [
        Scope::Check,
        Scope::Audit,
        Scope::Watch,
        Scope::Ingest,
        Scope::Admin,
    ];

    /// The scope's name as keys and the CLI spell it, e.g. `check`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Check => "check",
            Scope::Audit => "audit",
            Scope::Watch => "watch",
            Scope::Ingest => "ingest",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one of [`Scope::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a scope (check, audit, watch, ingest, admin)")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or(UnknownScope(s))
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope.
    pub fn all() -> Scopes {
        Scopes(Scope::ALL.iter().fold(0, |acc, s| acc | s.bit()))
    }

    /// Whether `scope` is among these.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The scopes held, in [`Scope::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Whether any of `other` is among these.
    pub fn any_of(self, other: Scopes) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no scope is held.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// `Scope::Check | Scope::Admin`: a route either scope admits.
impl std::ops::BitOr for Scope {
    type Output = Scopes;

    fn bitor(self, other: Scope) -> Scopes {
        Scopes(self.bit() | other.bit())
    }
}

impl From<Scope> for Scopes {
    fn from(scope: Scope) -> Self {
        Scopes(scope.bit())
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |acc, s| acc | s.bit()))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for Scopes {
    type Err = UnknownScope;

    /// Comma-separated, e.g. `check,audit`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .filter(|part| !part.trim().is_empty())
            .map(str::parse)
            .collect()
    }
}

/// A tenant's name: the same rules as a source name. Shared, not copied: every admitted
/// request carries its tenant's name into its extensions and the access log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantName(Arc<str>);

impl FromStr for TenantName {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(TenantName(s.into()))
        } else {
            Err(FieldError::new(
                Field::Tenant,
                format!("{s:?} must be 1 to 64 letters, digits, '-', '_' or '.'"),
            ))
        }
    }
}

impl TenantName {
    /// Every caller of a server started with `--dev` (no keys).
    pub fn dev() -> TenantName {
        static DEV: LazyLock<TenantName> = LazyLock::new(|| TenantName("dev".into()));
        DEV.clone()
    }

    /// The tenant of the key made on first start.
    pub fn first() -> TenantName {
        TenantName("default".into())
    }

    /// The tenant's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How precisely a tenant is told when a SIM change or port happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TimePrecision {
    /// The instant as recorded.
    #[default]
    Exact,
    /// The UTC date only (time set to 00:00:00Z).
    Day,
    /// Not at all.
    None,
}

impl TimePrecision {
    /// The precision's name, e.g. `day`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimePrecision::Exact => "exact",
            TimePrecision::Day => "day",
            TimePrecision::None => "none",
        }
    }
}

impl TimePrecision {
    /// A time as this precision lets it be shown.
    pub fn apply(self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            TimePrecision::Exact => Some(t),
            TimePrecision::Day => t.date_naive().and_hms_opt(0, 0, 0).map(|d| d.and_utc()),
            TimePrecision::None => None,
        }
    }
}

impl FromStr for TimePrecision {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exact" => Ok(TimePrecision::Exact),
            "day" => Ok(TimePrecision::Day),
            "none" => Ok(TimePrecision::None),
            _ => Err(FieldError::new(
                Field::TimePrecision,
                format!("{s:?} is not one of exact, day, none"),
            )),
        }
    }
}

/// Public part of a key: lets operators list and revoke keys without the secret.
pub const KEY_PREFIX: &str = "ng_";

/// A freshly made key: the full text is shown once; only `hash` is kept.
pub struct NewKey {
    /// The public part, shown by `keys list` and used to revoke.
    pub id: String,
    /// The whole key, `ng_<id>_<secret>`: shown once, never stored.
    pub secret_text: String,
    /// What the store keeps: [`key_hash`] of the whole key.
    pub hash: [u8; 32],
}

impl NewKey {
    /// `ng_<id: 16 hex>_<secret: 64 hex>`; the secret is 256 bits from the OS-seeded CSPRNG.
    pub fn generate() -> NewKey {
        let id: [u8; 8] = rand::random();
        let secret: [u8; 32] = rand::random();
        let id = hex(&id);
        let secret_text = format!("{KEY_PREFIX}{id}_{}", hex(&secret));
        let hash = key_hash(&secret_text);
        NewKey {
            id,
            secret_text,
            hash,
        }
    }
}

/// The id part of a presented key, if it has the right shape.
pub fn key_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == 16
        && secret.len() == 64
        && id
            .bytes()
            .chain(secret.bytes())
            .all(|b| b.is_ascii_hexdigit());
    well_formed.then_some(id)
}

/// The SHA-256 of a presented key, as stored and compared.
pub fn key_hash(presented: &str) -> [u8; 32] {
    Sha256::digest(presented.as_bytes()).into()
}

/// Whether a presented key matches a stored hash, in time independent of where they differ.
pub fn key_matches(presented: &str, stored: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let hash = key_hash(presented);
    stored.len() == hash.len() && bool::from(hash.as_slice().ct_eq(stored))
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        let s: Scopes = "check, audit".parse().unwrap();
        assert!(s.contains(Scope::Check) && s.contains(Scope::Audit));
        assert!(!s.contains(Scope::Admin));
        assert_eq!(s.to_string(), "check,audit");
        assert_eq!(Scopes::all().to_string(), "check,audit,watch,ingest,admin");
        assert!("check,root".parse::<Scopes>().is_err());
        assert!("".parse::<Scopes>().unwrap().is_empty());
    }

    #[test]
    fn generated_keys_have_their_shape_and_match_only_themselves() {
        let a = NewKey::generate();
        let b = NewKey::generate();
        assert_ne!(a.secret_text, b.secret_text);
        assert_eq!(key_id(&a.secret_text), Some(a.id.as_str()));
        assert!(key_matches(&a.secret_text, &a.hash));
        assert!(!key_matches(&b.secret_text, &a.hash));
        assert!(!key_matches(&a.secret_text, &a.hash[..31]));
        let mut tampered = a.secret_text.clone();
        tampered.pop();
        tampered.push(if a.secret_text.ends_with('0') {
            '1'
        } else {
            '0'
        });
        assert!(!key_matches(&tampered, &a.hash));
        for bad in ["", "ng_", "ng_zz_zz", "Bearer x", &a.secret_text[1..]] {
            assert_eq!(key_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn precision_cuts_times() {
        let t = DateTime::parse_from_rfc3339("2026-05-10T13:45:12.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(TimePrecision::Exact.apply(t), Some(t));
        assert_eq!(
            TimePrecision::Day.apply(t).unwrap().to_rfc3339(),
            "2026-05-10T00:00:00+00:00"
        );
        assert_eq!(TimePrecision::None.apply(t), None);
    }

    #[test]
    fn tenant_names_and_precisions() {
        assert!("acme-bank".parse::<TenantName>().is_ok());
        assert_eq!(
            "a b".parse::<TenantName>().unwrap_err().field,
            Field::Tenant
        );
        assert_eq!("DAY".parse::<TimePrecision>().unwrap(), TimePrecision::Day);
        assert!("hour".parse::<TimePrecision>().is_err());
    }
}
