//! Carriers (SPEC §1): one operator under a stable id, and every spelling under which its
//! name reaches numguard. Range files, feeds and operators spell the same company in
//! different scripts and widths (`株式会社ＮＴＴドコモ`, `NTT Docomo`, `docomo`), so names
//! are matched by a folded key and resolved to an id before anything compares them.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use unicode_normalization::UnicodeNormalization;

use super::FieldError;
use crate::domain::Field;

/// Longest accepted carrier id.
pub const MAX_CARRIER_ID_LEN: usize = 64;
/// Longest accepted carrier name or alias.
pub const MAX_CARRIER_NAME_LEN: usize = 200;

/// A carrier's stable id: lower-case letters, digits and `-`, e.g. `jp-docomo`. Owned,
/// not shared: a clone on every check is cheaper as a small copy than as a reference count
/// that every core bumps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CarrierId(Box<str>);

/// A text that is not a well-formed carrier id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} must be 1 to {MAX_CARRIER_ID_LEN} lower-case letters, digits or '-'")]
pub struct CarrierIdError(String);

impl FromStr for CarrierId {
    type Err = CarrierIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let well_formed = !s.is_empty()
            && s.len() <= MAX_CARRIER_ID_LEN
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if well_formed {
            Ok(CarrierId(Box::from(s)))
        } else {
            Err(CarrierIdError(s.to_string()))
        }
    }
}

impl CarrierId {
    /// An id read back from the store, which only holds ids that were validated on the
    /// way in.
    pub fn from_trusted(s: &str) -> CarrierId {
        CarrierId(Box::from(s))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CarrierId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Legal-form words dropped when names are compared (`Inc.`, `Co., Ltd.`, `GmbH`).
const CORPORATE_WORDS: &[&str] = &[
    "inc",
    "incorporated",
    "ltd",
    "limited",
    "co",
    "corp",
    "corporation",
    "company",
    "llc",
    "plc",
    "gmbh",
    "ag",
    "sa",
    "kk",
];

/// Japanese legal forms, written inside names without spaces (`株式会社NTTドコモ`).
const CORPORATE_MARKS: &[&str] = &["株式会社", "有限会社", "合同会社", "(株)"];

/// The form in which names are compared (SPEC §1): NFKC (so width does not matter), lower
/// case, without corporate forms, spaces or punctuation. `株式会社ＮＴＴドコモ` and
/// `NTTドコモ` have the same key; `NTT Docomo` has another, joined by an alias.
pub fn match_key(name: &str) -> String {
    let mut folded: String = name.nfkc().flat_map(char::to_lowercase).collect();
    for mark in CORPORATE_MARKS {
        folded = folded.replace(mark, " ");
    }
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty() && !CORPORATE_WORDS.contains(word))
        .collect()
}

/// One operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier {
    /// Its stable id.
    pub id: CarrierId,
    /// How answers name it.
    pub name: String,
    /// Its country calling code (`81`).
    pub country_code: u16,
    /// Its mobile network codes, MCC then MNC (`44010`), where known.
    pub mcc_mnc: Vec<String>,
    /// Other spellings of its name; its name and id match too.
    pub aliases: Vec<String>,
    /// `false` for a carrier the server registered on its own from an unknown name, until
    /// an operator looks at it.
    pub reviewed: bool,
}

impl Carrier {
    /// Validates a carrier as received.
    pub fn new(
        id: &str,
        name: &str,
        country_code: u32,
        mcc_mnc: &[String],
        aliases: &[String],
    ) -> Result<Carrier, FieldError> {
        let id: CarrierId = id
            .trim()
            .parse()
            .map_err(|e: CarrierIdError| FieldError::new(Field::Id, e.to_string()))?;
        let name = carrier_name(Field::Name, name)?;
        let country_code = u16::try_from(country_code)
            .ok()
            .filter(|&c| super::number::is_calling_code(c))
            .ok_or_else(|| {
                FieldError::new(
                    Field::CountryCode,
                    format!("{country_code} is not a country calling code"),
                )
            })?;
        let mcc_mnc = mcc_mnc
            .iter()
            .map(|code| {
                let code = code.trim().replace('-', "");
                if (5..=6).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()) {
                    Ok(code)
                } else {
                    Err(FieldError::new(
                        Field::MccMnc,
                        format!("{code:?} is not an MCC and MNC (5 or 6 digits, e.g. 44010)"),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let aliases = aliases
            .iter()
            .map(|a| carrier_name(Field::Aliases, a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut carrier = Carrier {
            id,
            name,
            country_code,
            mcc_mnc,
            aliases: Vec::new(),
            reviewed: true,
        };
        carrier.add_aliases(aliases);
        Ok(carrier)
    }

    /// Adds spellings, skipping any that already match it.
    pub fn add_aliases(&mut self, aliases: impl IntoIterator<Item = String>) {
        for alias in aliases {
            let key = match_key(&alias);
            if !self.keys().any(|k| k == key) {
                self.aliases.push(alias);
            }
        }
    }

    /// Every key under which it is found: its name's, its aliases' and its id's.
    pub fn keys(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(self.name.as_str())
            .chain(self.aliases.iter().map(String::as_str))
            .chain(std::iter::once(self.id.as_str()))
            .map(match_key)
    }
}

/// A name as given: trimmed, not empty, not too long, and with something left to match on.
pub fn carrier_name(field: Field, name: &str) -> Result<String, FieldError> {
    let name = super::text::plain_text(field, name.trim())?;
    if name.len() > MAX_CARRIER_NAME_LEN {
        return Err(FieldError::new(
            field,
            format!("is longer than {MAX_CARRIER_NAME_LEN} bytes"),
        ));
    }
    if match_key(name).is_empty() {
        return Err(FieldError::new(
            field,
            format!(
                "{name:?} is not a carrier name (nothing but spaces, punctuation or a legal form)"
            ),
        ));
    }
    Ok(name.to_string())
}

/// Why a name did not resolve to one carrier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No carrier has this name, alias or id.
    #[error(
        "{0:?} is not a known carrier name or id; register it with `numguard carriers add` or `carriers alias`"
    )]
    Unknown(String),
    /// Several carriers (of different countries) share this spelling.
    #[error("{name:?} names more than one carrier ({}); give the carrier's id", .ids.join(", "))]
    Ambiguous {
        /// The name given.
        name: String,
        /// The carriers it could mean.
        ids: Vec<String>,
    },
}

/// Every carrier, found by id or by any spelling of its name.
#[derive(Debug, Clone, Default)]
pub struct CarrierRegistry {
    carriers: Vec<Carrier>,
    by_id: HashMap<CarrierId, usize, crate::FastHash>,
    by_key: HashMap<String, Vec<usize>>,
}

/// Where two carriers of one country share a spelling, so a name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{alias:?} already names carrier {existing} in country code {country_code}")]
pub struct AliasConflict {
    /// The spelling in conflict.
    pub alias: String,
    /// The carrier it already names.
    pub existing: CarrierId,
    /// The country code both carriers share.
    pub country_code: u16,
}

impl CarrierRegistry {
    /// Builds the registry; carriers are listed by id.
    pub fn new(mut carriers: Vec<Carrier>) -> CarrierRegistry {
        carriers.sort_by(|a, b| a.id.cmp(&b.id));
        let mut registry = CarrierRegistry {
            by_id: HashMap::with_capacity_and_hasher(carriers.len(), Default::default()),
            by_key: HashMap::new(),
            carriers: Vec::new(),
        };
        for (i, carrier) in carriers.iter().enumerate() {
            registry.by_id.insert(carrier.id.clone(), i);
            for key in carrier.keys() {
                let holders = registry.by_key.entry(key).or_default();
                if !holders.contains(&i) {
                    holders.push(i);
                }
            }
        }
        registry.carriers = carriers;
        registry
    }

    /// The carrier with this id.
    pub fn get(&self, id: &CarrierId) -> Option<&Carrier> {
        self.by_id.get(id).map(|&i| &self.carriers[i])
    }

    /// The carrier a name (or id) means. Where a spelling is shared by carriers of
    /// different countries (`Vodafone`), `country_code` tells them apart.
    pub fn resolve(&self, name: &str, country_code: Option<u16>) -> Result<&Carrier, ResolveError> {
        if let Some(carrier) = name.trim().parse().ok().and_then(|id| self.get(&id)) {
            return Ok(carrier);
        }
        let holders: Vec<&Carrier> = self
            .by_key
            .get(&match_key(name))
            .into_iter()
            .flatten()
            .map(|&i| &self.carriers[i])
            .collect();
        let narrowed: Vec<&Carrier> = match country_code {
            Some(cc) if holders.len() > 1 => holders
                .iter()
                .copied()
                .filter(|c| c.country_code == cc)
                .collect(),
            _ => holders,
        };
        match narrowed.as_slice() {
            [one] => Ok(one),
            [] => Err(ResolveError::Unknown(name.trim().to_string())),
            many => Err(ResolveError::Ambiguous {
                name: name.trim().to_string(),
                ids: many.iter().map(|c| c.id.to_string()).collect(),
            }),
        }
    }

    /// The first of `carrier`'s spellings that another carrier of its country already
    /// has; registering it would make that name ambiguous.
    pub fn conflict(&self, carrier: &Carrier) -> Option<AliasConflict> {
        carrier.keys().find_map(|key| {
            let other = self.by_key.get(&key)?.iter().find_map(|&i| {
                let other = &self.carriers[i];
                (other.id != carrier.id && other.country_code == carrier.country_code)
                    .then_some(other)
            })?;
            let alias = std::iter::once(&carrier.name)
                .chain(&carrier.aliases)
                .find(|a| match_key(a) == key)
                .cloned()
                .unwrap_or_else(|| carrier.id.to_string());
            Some(AliasConflict {
                alias,
                existing: other.id.clone(),
                country_code: carrier.country_code,
            })
        })
    }

    /// The display name of a carrier id; the id itself if the registry does not know it.
    pub fn name_of<'a>(&'a self, id: &'a CarrierId) -> &'a str {
        self.get(id).map_or(id.as_str(), |c| c.name.as_str())
    }

    /// Every carrier, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Carrier> {
        self.carriers.iter()
    }
}

/// An id for a carrier the server registers on its own from an unknown name: the name's
/// ASCII letters and digits where it has some, else a short hash of its key.
pub fn provisional_id(name: &str, country_code: u16) -> CarrierId {
    let key = match_key(name);
    let ascii: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(40)
        .collect();
    let tail = if ascii.len() >= 2 {
        ascii
    } else {
        // FNV-1a: stable across builds and platforms, unlike the std hasher.
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{:08x}", hash as u32)
    };
    CarrierId::from_trusted(&format!("new-{country_code}-{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carrier(id: &str, cc: u32, name: &str, aliases: &[&str]) -> Carrier {
        let aliases: Vec<String> = aliases.iter().map(|a| a.to_string()).collect();
        Carrier::new(id, name, cc, &[], &aliases).unwrap()
    }

    #[test]
    fn keys_ignore_width_case_spaces_punctuation_and_legal_forms() {
        assert_eq!(match_key("株式会社ＮＴＴドコモ"), match_key("NTTドコモ"));
        assert_eq!(match_key("ＫＤＤＩ株式会社"), "kddi");
        assert_eq!(match_key("KDDI Corp."), "kddi");
        assert_eq!(match_key("T-Mobile USA, Inc."), "tmobileusa");
        assert_eq!(match_key("Vodafone Co., Ltd."), "vodafone");
        assert_eq!(match_key("㈱ソフトバンク"), match_key("ソフトバンク"));
        assert_ne!(match_key("NTT Docomo"), match_key("株式会社NTTドコモ"));
        assert_eq!(match_key("Inc."), "");
    }

    #[test]
    fn names_resolve_by_any_spelling_and_by_id() {
        let registry = CarrierRegistry::new(vec![
            carrier(
                "jp-docomo",
                81,
                "NTT docomo",
                &["株式会社NTTドコモ", "docomo"],
            ),
            carrier("jp-kddi", 81, "KDDI (au)", &["KDDI株式会社", "au"]),
        ]);
        for name in ["株式会社ＮＴＴドコモ", "NTT Docomo", "DOCOMO", "jp-docomo"] {
            assert_eq!(
                registry.resolve(name, None).unwrap().id.as_str(),
                "jp-docomo"
            );
        }
        for name in ["KDDI", "ＫＤＤＩ株式会社", "au", "KDDI Corp."] {
            assert_eq!(
                registry.resolve(name, Some(81)).unwrap().id.as_str(),
                "jp-kddi"
            );
        }
        assert_eq!(
            registry.resolve("SoftBank", None),
            Err(ResolveError::Unknown("SoftBank".into()))
        );
    }

    #[test]
    fn a_name_shared_across_countries_is_told_apart_by_country_code() {
        let registry = CarrierRegistry::new(vec![
            carrier("gb-vodafone", 44, "Vodafone", &[]),
            carrier("de-vodafone", 49, "Vodafone", &[]),
        ]);
        assert_eq!(
            registry.resolve("Vodafone", Some(49)).unwrap().id.as_str(),
            "de-vodafone"
        );
        assert!(matches!(
            registry.resolve("Vodafone", None),
            Err(ResolveError::Ambiguous { .. })
        ));
        assert!(registry.resolve("Vodafone", Some(81)).is_err());
    }

    #[test]
    fn a_spelling_taken_in_the_same_country_is_a_conflict() {
        let registry = CarrierRegistry::new(vec![carrier("jp-kddi", 81, "KDDI", &["au"])]);
        let clash = carrier("jp-other", 81, "Other", &["AU"]);
        let conflict = registry.conflict(&clash).unwrap();
        assert_eq!(
            (conflict.alias.as_str(), conflict.existing.as_str()),
            ("AU", "jp-kddi")
        );
        assert_eq!(registry.conflict(&carrier("us-au", 1, "AU", &[])), None);
        // Re-registering a carrier under its own spellings is no conflict.
        assert_eq!(
            registry.conflict(&carrier("jp-kddi", 81, "KDDI", &["au"])),
            None
        );
    }

    #[test]
    fn bad_carriers_name_the_field() {
        let field = |id: &str, name: &str, cc: u32, mcc: &[&str]| {
            let mcc: Vec<String> = mcc.iter().map(|m| m.to_string()).collect();
            Carrier::new(id, name, cc, &mcc, &[]).unwrap_err().field
        };
        assert_eq!(field("JP Docomo", "docomo", 81, &[]), Field::Id);
        assert_eq!(field("jp-docomo", " ", 81, &[]), Field::Name);
        assert_eq!(field("jp-docomo", "Co., Ltd.", 81, &[]), Field::Name);
        assert_eq!(field("jp-docomo", "docomo", 999, &[]), Field::CountryCode);
        assert_eq!(field("jp-docomo", "docomo", 81, &["4401"]), Field::MccMnc);
        let ok = Carrier::new(
            "jp-docomo",
            "docomo",
            81,
            &["440-10".into()],
            &["Docomo".into()],
        )
        .unwrap();
        assert_eq!(ok.mcc_mnc, vec!["44010"]);
        assert!(
            ok.aliases.is_empty(),
            "an alias with the name's key adds nothing"
        );
    }

    #[test]
    fn provisional_ids_are_valid_and_stable() {
        let id = provisional_id("Mobile Example, Inc.", 44);
        assert_eq!(id.as_str(), "new-44-mobileexample");
        let kana = provisional_id("ドコモ", 81);
        assert_eq!(kana, provisional_id("ドコモ", 81));
        assert!(kana.as_str().parse::<CarrierId>().is_ok());
        assert_ne!(kana, provisional_id("ソフトバンク", 81));
    }
}
