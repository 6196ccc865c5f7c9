//! The range files the binary ships with (`data/`), embedded so it works from any directory.
//! Loaded on first start, when the range table is empty.

use super::{RangeEntry, RangeFormat, parse_ranges};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranges::CarrierTable;

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
        let table = CarrierTable::new(&shipped_ranges());
        // 090-123x-xxxx: MIC block 090123 (KDDI; full-width letters folded).
        assert_eq!(
            table.lookup("819012345678").unwrap().carrier,
            "KDDI株式会社"
        );
        // 090-100x-xxxx: MIC block 090100.
        assert_eq!(
            table.lookup("819010012345").unwrap().carrier,
            "株式会社NTTドコモ"
        );
        // 080-600: libphonenumber says Okinawa Cellular, MIC says KDDI.
        assert_eq!(
            table.lookup("818060012345").unwrap().carrier,
            "KDDI株式会社"
        );
        // 070-96x is not in this MIC snapshot; libphonenumber's 81709 still answers.
        assert_eq!(
            table.lookup("817096012345").unwrap().carrier,
            "Rakuten Communications"
        );
        // Other countries come from libphonenumber.
        assert!(table.lookup("447700900123").is_some());
    }
}
