//! Carrier ranges: which operator a block of numbers was assigned to (the original carrier).

pub mod parse;
pub mod shipped;
pub mod table;

pub use parse::{LineError, ParsedRanges, RangeFormat, parse_ranges};
pub use table::{CarrierTable, RangeMatch};

use crate::domain::prefix::Prefix;

/// One `prefix → carrier` assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeEntry {
    pub prefix: Prefix,
    pub carrier: String,
}
