//! The in-memory longest-prefix lookup over all carrier ranges.

use std::collections::HashMap;
use std::sync::Arc;

use super::RangeEntry;

/// Immutable lookup table; rebuilt whole after an import, then swapped in.
#[derive(Debug, Default)]
pub struct CarrierTable {
    by_prefix: HashMap<Box<str>, u32>,
    /// Carrier names, interned: thousands of prefixes share a handful of names.
    carriers: Vec<Arc<str>>,
    longest: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeMatch<'a> {
    pub prefix: &'a str,
    pub carrier: &'a str,
}

impl CarrierTable {
    /// Builds the table; where a prefix repeats, the later entry wins.
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a RangeEntry>) -> Self {
        let mut table = CarrierTable::default();
        let mut carrier_ids: HashMap<&str, u32> = HashMap::new();
        for entry in entries {
            let id = match carrier_ids.get(entry.carrier.as_str()) {
                Some(&id) => id,
                None => {
                    let id = u32::try_from(table.carriers.len()).unwrap_or(u32::MAX);
                    table.carriers.push(Arc::from(entry.carrier.as_str()));
                    carrier_ids.insert(entry.carrier.as_str(), id);
                    id
                }
            };
            let prefix = entry.prefix.as_str();
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

    fn entry(prefix: &str, carrier: &str) -> RangeEntry {
        RangeEntry {
            prefix: prefix.parse().unwrap(),
            carrier: carrier.into(),
        }
    }

    #[test]
    fn longest_prefix_wins_and_later_entries_override() {
        let entries = [
            entry("81701", "Softbank"),
            entry("817010", "NTT Docomo"),
            entry("8190", "KDDI"),
            entry("8190", "NTT Docomo"),
        ];
        let table = CarrierTable::new(&entries);
        assert_eq!(table.len(), 3);
        assert_eq!(table.lookup("817010123456").unwrap().carrier, "NTT Docomo");
        assert_eq!(table.lookup("817011123456").unwrap().carrier, "Softbank");
        let m = table.lookup("819012345678").unwrap();
        assert_eq!((m.prefix, m.carrier), ("8190", "NTT Docomo"));
        assert_eq!(table.lookup("818012345678"), None);
        assert_eq!(table.lookup("81"), None);
    }
}
