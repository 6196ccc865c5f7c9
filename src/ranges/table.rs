//! The in-memory longest-prefix lookup over all carrier ranges.

use std::collections::HashMap;

use crate::FastHash;
use crate::domain::carrier::CarrierId;
use crate::domain::prefix::Prefix;

/// Immutable lookup table; rebuilt whole after an import, then swapped in.
#[derive(Debug, Default)]
pub struct CarrierTable {
    by_prefix: HashMap<Box<str>, u32, FastHash>,
    /// Carrier ids, interned: thousands of prefixes share a handful of carriers.
    carriers: Vec<CarrierId>,
    longest: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeMatch<'a> {
    pub prefix: &'a str,
    pub carrier: &'a CarrierId,
}

impl CarrierTable {
    /// Builds the table from `(prefix, carrier id)` pairs; where a prefix repeats, the
    /// later pair wins.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a Prefix, &'a CarrierId)>) -> Self {
        let mut table = CarrierTable::default();
        let mut carrier_ids: HashMap<&CarrierId, u32> = HashMap::new();
        for (prefix, carrier) in entries {
            let id = match carrier_ids.get(carrier) {
                Some(&id) => id,
                None => {
                    let id = u32::try_from(table.carriers.len()).unwrap_or(u32::MAX);
                    table.carriers.push(carrier.clone());
                    carrier_ids.insert(carrier, id);
                    id
                }
            };
            let prefix = prefix.as_str();
            table.longest = table.longest.max(prefix.len());
            table.by_prefix.insert(prefix.into(), id);
        }
        table
    }

    /// The longest prefix of `digits` (E.164 without `+`) that has a carrier.
    pub fn lookup(&self, digits: &str) -> Option<RangeMatch<'_>> {
        let top = self.longest.min(digits.len());
        (1..=top).rev().find_map(|len| {
            let (prefix, &id) = self.by_prefix.get_key_value(&digits[..len])?;
            let carrier = self.carriers.get(id as usize)?;
            Some(RangeMatch { prefix, carrier })
        })
    }

    pub fn len(&self) -> usize {
        self.by_prefix.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(prefix: &str, carrier: &str) -> (Prefix, CarrierId) {
        (prefix.parse().unwrap(), carrier.parse().unwrap())
    }

    #[test]
    fn longest_prefix_wins_and_later_entries_override() {
        let entries = [
            entry("81701", "jp-softbank"),
            entry("817010", "jp-docomo"),
            entry("8190", "jp-kddi"),
            entry("8190", "jp-docomo"),
        ];
        let table = CarrierTable::new(entries.iter().map(|(p, c)| (p, c)));
        assert_eq!(table.len(), 3);
        assert_eq!(
            table.lookup("817010123456").unwrap().carrier.as_str(),
            "jp-docomo"
        );
        assert_eq!(
            table.lookup("817011123456").unwrap().carrier.as_str(),
            "jp-softbank"
        );
        let m = table.lookup("819012345678").unwrap();
        assert_eq!((m.prefix, m.carrier.as_str()), ("8190", "jp-docomo"));
        assert_eq!(table.lookup("818012345678"), None);
        assert_eq!(table.lookup("81"), None);
    }
}
