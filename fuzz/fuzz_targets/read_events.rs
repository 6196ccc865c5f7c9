//! Any bytes as an event file, CSV (under a valid header) and JSON Lines: no panic, and
//! every line is either an event or a reported error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numguard::cli::event_file::{EventFileFormat, read_events};

const HEADER: &[u8] = b"source_event_id,phone_number,kind,occurred_at,from_carrier,to_carrier\n";

fuzz_target!(|data: &[u8]| {
    let csv = [HEADER, data].concat();
    for (format, input) in [(EventFileFormat::Csv, &csv[..]), (EventFileFormat::Jsonl, data)] {
        let mut sent = 0u64;
        if let Ok(report) = read_events(input, format, "fuzz", |_| { sent += 1; true }, |_| {}) {
            assert_eq!(sent + report.errors.len() as u64, report.lines);
        }
    }
});
