//! Any bytes as a carrier range file in both formats: no panic, errors on real lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numguard::ranges::{RangeFormat, parse_ranges};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for format in [RangeFormat::Libphonenumber, RangeFormat::MicCsv] {
        let parsed = parse_ranges(&text, format);
        let lines = text.lines().count();
        assert!(parsed.errors.iter().all(|e| e.line >= 1 && e.line <= lines));
    }
});
