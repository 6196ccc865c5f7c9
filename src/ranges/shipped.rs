//! The range files the binary ships with (`data/`), embedded so it works from any directory.
//! Loaded on first start, when the range table is empty.

use super::{RangeEntry, RangeFormat, parse_ranges};
use crate::domain::carrier::Carrier;

/// The registry of the shipped ranges' carriers (`data/carriers.csv`).
const SHIPPED_CARRIERS: &str = include_str!("../../data/carriers.csv");

/// In import order: a later file wins where two give the same prefix, so Japan's MIC list
/// (the regulator's own designations) comes after libphonenumber's 81.txt.
const SHIPPED: &[(&str, RangeFormat, &str)] = &[
    (
        "carrier/1.txt",
        RangeFormat::Libphonenumber,
        include_str!("../../data/carrier/1.txt"),
    ),
    (
        "carrier/33.txt",
        RangeFormat::Libphonenumber,
        include_str!("../../data/carrier/33.txt"),
    ),
    (
        "carrier/44.txt",
        RangeFormat::Libphonenumber,
        include_str!("../../data/carrier/44.txt"),
    ),
    (
        "carrier/49.txt",
        RangeFormat::Libphonenumber,
        include_str!("../../data/carrier/49.txt"),
    ),
    (
        "carrier/81.txt",
        RangeFormat::Libphonenumber,
        include_str!("../../data/carrier/81.txt"),
    ),
    (
        "carrier/86.txt",
        RangeFormat::Libphonenumber,
        include_str!("../../data/carrier/86.txt"),
    ),
    (
        "carrier/91.txt",
        RangeFormat::Libphonenumber,
        include_str!("../../data/carrier/91.txt"),
    ),
    (
        "jp-number-blocks/mic_mobile_blocks.csv",
        RangeFormat::MicCsv,
        include_str!("../../data/jp-number-blocks/mic_mobile_blocks.csv"),
    ),
];

/// Every shipped range, in import order.
pub fn shipped_ranges() -> Vec<RangeEntry> {
    SHIPPED
        .iter()
        .flat_map(|(_, format, text)| parse_ranges(text, *format).entries)
        .collect()
}

/// Every carrier of the shipped ranges, with the spellings joined that name one operator.
pub fn shipped_carriers() -> Vec<Carrier> {
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_reader(SHIPPED_CARRIERS.as_bytes());
    let list = |field: &str| -> Vec<String> {
        field
            .split('|')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    reader
        .records()
        .flatten()
        .filter_map(|row| {
            let country_code = row.get(1)?.parse().ok()?;
            let carrier = Carrier::new(
                row.get(0)?,
                row.get(2)?,
                country_code,
                &list(row.get(3)?),
                &list(row.get(4)?),
            );
            carrier.ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::carrier::CarrierRegistry;
    use crate::domain::number::calling_code;
    use crate::ranges::CarrierTable;

    fn registry() -> CarrierRegistry {
        CarrierRegistry::new(shipped_carriers())
    }

    fn table() -> CarrierTable {
        let registry = registry();
        let resolved: Vec<_> = shipped_ranges()
            .into_iter()
            .map(|r| {
                let cc = calling_code(r.prefix.as_str());
                let id = registry.resolve(&r.carrier, cc).unwrap().id.clone();
                (r.prefix, id)
            })
            .collect();
        CarrierTable::new(resolved.iter().map(|(p, c)| (p, c)))
    }

    #[test]
    fn the_shipped_registry_is_whole_and_unambiguous() {
        let rows = SHIPPED_CARRIERS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
        let carriers = shipped_carriers();
        assert_eq!(
            carriers.len(),
            rows - 1,
            "every row but the header is a carrier"
        );
        let registry = CarrierRegistry::new(carriers.clone());
        for carrier in &carriers {
            assert_eq!(registry.conflict(carrier), None, "{}", carrier.id);
        }
        // Every shipped range names a carrier of its own country, by one spelling or another.
        for range in shipped_ranges() {
            let cc = calling_code(range.prefix.as_str());
            let carrier = registry
                .resolve(&range.carrier, cc)
                .unwrap_or_else(|e| panic!("{}: {e}", range.prefix));
            assert_eq!(Some(carrier.country_code), cc, "{}", range.carrier);
        }
    }

    #[test]
    fn japanese_spellings_join_one_operator() {
        let registry = registry();
        let id = |name: &str| registry.resolve(name, Some(81)).unwrap().id.to_string();
        for (names, expected) in [
            (
                &["株式会社ＮＴＴドコモ", "NTT Docomo", "docomo", "jp-docomo"][..],
                "jp-docomo",
            ),
            (
                &["KDDI株式会社", "ＫＤＤＩ株式会社", "KDDI", "au"][..],
                "jp-kddi",
            ),
            (
                &["沖縄セルラー電話株式会社", "Okinawa Cellular"][..],
                "jp-okinawa-cellular",
            ),
            (
                &["ソフトバンク株式会社", "Softbank", "SoftBank"][..],
                "jp-softbank",
            ),
            (
                &[
                    "楽天モバイル株式会社",
                    "Rakuten Communications",
                    "Rakuten Mobile",
                ][..],
                "jp-rakuten",
            ),
        ] {
            for name in names {
                assert_eq!(id(name), expected, "{name}");
            }
        }
        let docomo = registry.get(&"jp-docomo".parse().unwrap()).unwrap();
        assert_eq!(docomo.mcc_mnc, ["44010"]);
        assert_eq!(docomo.country_code, 81);
    }

    #[test]
    fn shipped_files_parse_cleanly() {
        for (name, format, text) in SHIPPED {
            let parsed = parse_ranges(text, *format);
            assert!(parsed.errors.is_empty(), "{name}: {:?}", parsed.errors);
            assert!(!parsed.entries.is_empty(), "{name} is empty");
        }
    }

    #[test]
    fn japan_uses_mic_designations_over_libphonenumber() {
        let table = table();
        let carrier = |digits: &str| table.lookup(digits).unwrap().carrier.to_string();
        // 090-123x-xxxx: MIC block 090123 (KDDI).
        assert_eq!(carrier("819012345678"), "jp-kddi");
        // 090-100x-xxxx: MIC block 090100.
        assert_eq!(carrier("819010012345"), "jp-docomo");
        // 080-600: libphonenumber says Okinawa Cellular, MIC says KDDI.
        assert_eq!(carrier("818060012345"), "jp-kddi");
        // 070-96x is not in this MIC snapshot; libphonenumber's 81709 still answers.
        assert_eq!(carrier("817096012345"), "jp-rakuten");
        // Other countries come from libphonenumber.
        assert!(table.lookup("447700900123").is_some());
    }
}
