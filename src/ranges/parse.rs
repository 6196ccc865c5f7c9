//! Readers for the two range formats: libphonenumber carrier files (`PREFIX|Carrier`) and
//! Japan's MIC block list (`block,carrier` with `0X0CDE` blocks).

use std::path::Path;
use std::str::FromStr;

use super::RangeEntry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RangeFormat {
    /// `PREFIX|Carrier` lines, `#` comments (libphonenumber `resources/carrier/en/*.txt`).
    Libphonenumber,
    /// `block,carrier` CSV of Japanese 100,000-number blocks (`090123` → prefix `8190123`).
    MicCsv,
}

impl RangeFormat {
    /// Guesses the format from a file name: `.csv` is the MIC list, anything else
    /// libphonenumber's.
    pub fn from_path(path: &Path) -> RangeFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => RangeFormat::MicCsv,
            _ => RangeFormat::Libphonenumber,
        }
    }
}

impl FromStr for RangeFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <RangeFormat as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| format!("{s:?} is not a range format (libphonenumber, mic-csv)"))
    }
}

/// A line that could not be read, with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedRanges {
    pub entries: Vec<RangeEntry>,
    /// The 1-based line of each entry.
    pub lines: Vec<usize>,
    pub errors: Vec<LineError>,
}

/// Reads a whole range file; bad lines are reported, not fatal.
pub fn parse_ranges(text: &str, format: RangeFormat) -> ParsedRanges {
    let mut parsed = ParsedRanges::default();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let result = match format {
            RangeFormat::Libphonenumber => libphonenumber_line(line),
            RangeFormat::MicCsv => mic_line(line),
        };
        match result {
            Ok(Some(entry)) => {
                parsed.entries.push(entry);
                parsed.lines.push(index + 1);
            }
            Ok(None) => {}
            Err(reason) => parsed.errors.push(LineError {
                line: index + 1,
                reason,
            }),
        }
    }
    parsed
}

fn libphonenumber_line(line: &str) -> Result<Option<RangeEntry>, String> {
    let (prefix, carrier) = line
        .split_once('|')
        .ok_or_else(|| "expected PREFIX|Carrier".to_string())?;
    entry(prefix, carrier).map(Some)
}

/// Japanese domestic mobile blocks are `0X0` plus three digits; in E.164 the trunk `0`
/// goes and `81` comes in front.
fn mic_line(line: &str) -> Result<Option<RangeEntry>, String> {
    let (block, carrier) = line
        .split_once(',')
        .ok_or_else(|| "expected block,carrier".to_string())?;
    let block = block.trim().trim_matches('"');
    if block.eq_ignore_ascii_case("block") {
        return Ok(None); // the header
    }
    let national = block
        .strip_prefix('0')
        .filter(|rest| rest.len() == 5 && rest.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("block {block:?} is not six digits starting with 0"))?;
    entry(&format!("81{national}"), carrier.trim().trim_matches('"')).map(Some)
}

fn entry(prefix: &str, carrier: &str) -> Result<RangeEntry, String> {
    let prefix = prefix.parse().map_err(|e| format!("prefix {e}"))?;
    let carrier = fold_fullwidth_ascii(carrier.trim());
    if carrier.is_empty() {
        return Err("carrier is empty".to_string());
    }
    Ok(RangeEntry { prefix, carrier })
}

/// The MIC list spells the same company with full-width and half-width letters
/// (`ＫＤＤＩ株式会社`, `KDDI株式会社`); folding full-width ASCII makes one carrier of them.
fn fold_fullwidth_ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libphonenumber_lines() {
        let text = "# header\n\n8190|NTT Docomo\n  81701|Softbank \nbad line\n|x\n8170|\n";
        let parsed = parse_ranges(text, RangeFormat::Libphonenumber);
        let got: Vec<_> = parsed
            .entries
            .iter()
            .map(|e| (e.prefix.as_str(), e.carrier.as_str()))
            .collect();
        assert_eq!(got, vec![("8190", "NTT Docomo"), ("81701", "Softbank")]);
        let lines: Vec<_> = parsed.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![5, 6, 7]);
    }

    #[test]
    fn mic_blocks_become_e164_prefixes_and_names_are_width_folded() {
        let text = "block,carrier\n090123,株式会社ＮＴＴドコモ\n060110,KDDI株式会社\n070100,ＫＤＤＩ株式会社\n12345,x\n";
        let parsed = parse_ranges(text, RangeFormat::MicCsv);
        let got: Vec<_> = parsed
            .entries
            .iter()
            .map(|e| (e.prefix.as_str(), e.carrier.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("8190123", "株式会社NTTドコモ"),
                ("8160110", "KDDI株式会社"),
                ("8170100", "KDDI株式会社"),
            ]
        );
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].line, 5);
    }

    proptest::proptest! {
        /// Any file: no panic; every error names a real line and says what is wrong; every
        /// entry is a well-formed prefix.
        #[test]
        fn any_text_is_read_without_panic(
            text in proptest::prop_oneof![
                ".{0,400}",
                "([0-9|,#a-zＡ-Ｚ ]{0,20}\n){0,20}",
            ],
            mic in proptest::bool::ANY,
        ) {
            let format = if mic { RangeFormat::MicCsv } else { RangeFormat::Libphonenumber };
            let parsed = parse_ranges(&text, format);
            let lines = text.lines().count();
            for e in &parsed.errors {
                proptest::prop_assert!(e.line >= 1 && e.line <= lines);
                proptest::prop_assert!(!e.reason.is_empty());
            }
            for entry in &parsed.entries {
                proptest::prop_assert!(entry.prefix.as_str().bytes().all(|b| b.is_ascii_digit()));
                proptest::prop_assert!(!entry.carrier.is_empty());
            }
            proptest::prop_assert!(parsed.entries.len() + parsed.errors.len() <= lines);
        }
    }

    #[test]
    fn format_from_file_name() {
        assert_eq!(
            RangeFormat::from_path(Path::new("x/mic_mobile_blocks.csv")),
            RangeFormat::MicCsv
        );
        assert_eq!(
            RangeFormat::from_path(Path::new("81.txt")),
            RangeFormat::Libphonenumber
        );
        assert_eq!("mic-csv".parse::<RangeFormat>(), Ok(RangeFormat::MicCsv));
    }
}
