//! Any bytes as a phone number, with and without a region: no panic, and whatever parses
//! parses again to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numguard::domain::number::ParsedNumber;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for region in [None, "JP".parse().ok(), "US".parse().ok()] {
        if let Ok(parsed) = ParsedNumber::parse(text, region) {
            let again = ParsedNumber::parse(parsed.e164.as_str(), None);
            assert_eq!(again.as_ref(), Ok(&parsed));
        }
    }
});
