//! Phone numbers: parsed once at the edge into an [`E164`], the only form that is stored,
//! cached or used as a key.

mod canonical;
mod normalize;

pub use canonical::{calling_code, is_calling_code};

use std::fmt;
use std::str::FromStr;

use phonenumber::metadata::DATABASE;
use phonenumber::{Mode, country};

/// Longest input accepted before parsing; E.164 itself is at most 16 characters, so anything
/// much longer is garbage and is refused without touching the parser.
pub const MAX_INPUT_LEN: usize = 64;

/// Why an input is not a usable phone number. The messages read after the field name,
/// e.g. "phone_number is empty".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Nothing but spaces.
    #[error("is empty")]
    Empty,
    /// Longer than any number could be written.
    #[error("is longer than {MAX_INPUT_LEN} characters")]
    TooLong,
    /// A national number without a region to read it in.
    #[error("is not in E.164 form (+ and country code) and no region was given")]
    NoRegion,
    /// Not readable as a number; libphonenumber's reason.
    #[error("is not a phone number: {0}")]
    Unparseable(String),
    /// Readable, but not a valid number of its country.
    #[error("is not a valid phone number for its country")]
    Invalid,
    /// It carries an extension.
    #[error("has an extension; give the number alone")]
    Extension,
}

/// An ISO 3166 region used to read national-format numbers (`090-1234-5678` + `JP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region(country::Id);

/// A text that is not a known ISO 3166 region code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an ISO 3166 region code known to the phone number metadata")]
pub struct RegionError(String);

impl FromStr for Region {
    type Err = RegionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        country::Id::from_str(&upper)
            .map(Region)
            .map_err(|_| RegionError(s.to_string()))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_ref())
    }
}

/// A valid phone number in E.164 form (`+819012345678`). It can only be built by parsing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

/// What parsing learned about a number beyond its E.164 form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedNumber {
    /// The number in E.164 form.
    pub e164: E164,
    /// Mobile, or mobile-capable where the plan cannot tell (NANP's fixed-line-or-mobile).
    pub mobile: bool,
}

impl ParsedNumber {
    /// Parses `input` as E.164 or, given a `region`, as a national number, after rewriting
    /// what libphonenumber reads as plain digits (full-width forms, `tel:` URIs,
    /// punctuation; see `normalize.rs`). Validity is checked against libphonenumber's
    /// metadata; nothing is guessed.
    pub fn parse(input: &str, region: Option<Region>) -> Result<Self, NumberError> {
        if input.chars().count() > MAX_INPUT_LEN {
            return Err(NumberError::TooLong);
        }
        let input = normalize::normalize(input)?;
        let input = input.as_ref();
        if let Some(digits) = input.strip_prefix('+')
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            let (e164, found) = canonical::read_international(digits)?;
            return Ok(ParsedNumber {
                e164: E164(e164),
                mobile: found.mobile,
            });
        }
        if let Some(region) = region
            && !input.starts_with('+')
            && let Some(digits) = normalize::national_digits(input)
        {
            let (e164, found) = canonical::read_national(&digits, region.0.as_ref())?;
            return Ok(ParsedNumber {
                e164: E164(e164),
                mobile: found.mobile,
            });
        }
        // A number in international form carries its own country, as libphonenumber
        // reads it; phonenumber 0.3 would apply the given region's national prefix to it.
        let region = if input.starts_with('+') { None } else { region };
        let parsed = ParsedNumber::parse_with_library(input, region)?;
        // The library's validity and type come from patterns matched from the start only;
        // libphonenumber's from the whole number.
        let found = canonical::validate(parsed.e164.as_str()).ok_or(NumberError::Invalid)?;
        Ok(ParsedNumber {
            e164: parsed.e164,
            mobile: found.mobile,
        })
    }

    /// The library's reading alone, for any input shape.
    fn parse_with_library(input: &str, region: Option<Region>) -> Result<Self, NumberError> {
        let (parsed, national_starts_with_zero) = ParsedNumber::parse_once(input, region)?;
        // libphonenumber can keep a national trunk `0` after the country code
        // (`+49 0819...` read as `+490819...`) that it drops when it reads its own output,
        // so such a result is not yet canonical: one more pass settles it. Numbers whose
        // national part really starts with 0 (Italy) come back unchanged.
        if national_starts_with_zero && input.trim() != parsed.e164.as_str() {
            return ParsedNumber::parse_once(parsed.e164.as_str(), None).map(|(p, _)| p);
        }
        Ok(parsed)
    }

    /// One pass of the parser; also says whether the national part starts with `0`.
    fn parse_once(input: &str, region: Option<Region>) -> Result<(Self, bool), NumberError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(NumberError::Empty);
        }
        if input.len() > MAX_INPUT_LEN {
            return Err(NumberError::TooLong);
        }
        if region.is_none() && !input.starts_with('+') {
            return Err(NumberError::NoRegion);
        }
        let number = phonenumber::parse(region.map(|r| r.0), input)
            .map_err(|e| NumberError::Unparseable(e.to_string()))?;
        if number.extension().is_some() {
            return Err(NumberError::Extension);
        }
        if !number.is_valid() {
            return Err(NumberError::Invalid);
        }
        // Not `number_type()`: it drops the national part's leading zeros (Italian fixed
        // lines come out Unknown). The metadata's own patterns, on the national digits with
        // their zeros, say whether the number is mobile (or mobile-capable, as NANP's
        // fixed-line-or-mobile numbers also match the mobile pattern) or a pager.
        let national = number.national().to_string();
        let mobile = number.metadata(&DATABASE).is_some_and(|meta| {
            let d = meta.descriptors();
            [d.mobile(), d.pager()]
                .into_iter()
                .flatten()
                .any(|desc| desc.is_match(&national))
        });
        let e164 = E164(number.format().mode(Mode::E164).to_string());
        let national_starts_with_zero = e164
            .digits()
            .strip_prefix(number.code().value().to_string().as_str())
            .is_some_and(|national| national.starts_with('0'));
        Ok((ParsedNumber { e164, mobile }, national_starts_with_zero))
    }
}

impl E164 {
    /// Parses `input` (E.164, or national with `region`) and keeps only the E.164 form.
    pub fn parse(input: &str, region: Option<Region>) -> Result<Self, NumberError> {
        ParsedNumber::parse(input, region).map(|p| p.e164)
    }

    /// Rebuilds a value that was stored after an earlier successful parse. Only the store
    /// uses this: what it reads back was validated when it was written.
    pub(crate) fn from_trusted(e164: String) -> Self {
        E164(e164)
    }

    /// The number as text, e.g. `+819012345678`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without `+`: what carrier-range and source prefixes are matched against.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// A form safe for logs: country code area and the last two digits only.
    pub fn masked(&self) -> Masked<'_> {
        Masked(self)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lets caches keyed by `E164` be probed with a `&str`; `Hash` and `Eq` agree because both
/// come from the inner string.
impl std::borrow::Borrow<str> for E164 {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Display adapter that never shows a full number (phone numbers are personal data).
pub struct Masked<'a>(&'a E164);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.digits();
        let keep_head = 2.min(digits.len());
        let keep_tail = 2.min(digits.len() - keep_head);
        let hidden = digits.len() - keep_head - keep_tail;
        write!(
            f,
            "+{}{}{}",
            &digits[..keep_head],
            "*".repeat(hidden),
            &digits[digits.len() - keep_tail..]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jp() -> Option<Region> {
        Some("JP".parse().unwrap())
    }

    #[test]
    fn e164_and_national_forms_agree() {
        let a = ParsedNumber::parse("+819012345678", None).unwrap();
        let b = ParsedNumber::parse("090-1234-5678", jp()).unwrap();
        let c = ParsedNumber::parse(" +81 90 1234 5678 ", jp()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.e164.as_str(), "+819012345678");
        assert_eq!(a.e164.digits(), "819012345678");
        assert!(a.mobile);
    }

    #[test]
    fn fixed_line_is_valid_but_not_mobile() {
        let tokyo = ParsedNumber::parse("03-1234-5678", jp()).unwrap();
        assert_eq!(tokyo.e164.as_str(), "+81312345678");
        assert!(!tokyo.mobile);
    }

    #[test]
    fn bad_inputs_are_refused_with_their_reason() {
        assert_eq!(E164::parse("", None), Err(NumberError::Empty));
        assert_eq!(E164::parse("   ", jp()), Err(NumberError::Empty));
        assert_eq!(
            E164::parse(&"9".repeat(65), jp()),
            Err(NumberError::TooLong)
        );
        assert_eq!(E164::parse("09012345678", None), Err(NumberError::NoRegion));
        assert!(matches!(
            E164::parse("hello", jp()),
            Err(NumberError::Unparseable(_))
        ));
        assert_eq!(E164::parse("+81901234", None), Err(NumberError::Invalid));
        assert_eq!(
            E164::parse("+81 90 1234 5678 ext. 12", None),
            Err(NumberError::Extension)
        );
    }

    #[test]
    fn a_trunk_zero_after_the_country_code_settles_to_one_canonical_form() {
        // Found by the parse_number fuzz target: keypad letters, German code, trunk 0.
        for input in ["+49081zSeY", "+49 0819739"] {
            if let Ok(first) = ParsedNumber::parse(input, None) {
                let again = ParsedNumber::parse(first.e164.as_str(), None);
                assert_eq!(again.as_ref(), Ok(&first), "{input}");
            }
        }
        // Italian numbers keep their leading zero.
        let milan = ParsedNumber::parse("+39 02 1234 5678", None).unwrap();
        assert_eq!(milan.e164.as_str(), "+390212345678");
        assert!(!milan.mobile);
        assert!(
            ParsedNumber::parse("+39 312 345 6789", None)
                .unwrap()
                .mobile
        );
        assert_eq!(
            ParsedNumber::parse(milan.e164.as_str(), None).unwrap(),
            milan
        );
    }

    #[test]
    fn region_codes_parse_case_insensitively() {
        assert_eq!("jp".parse::<Region>().unwrap().to_string(), "JP");
        assert!("XX".parse::<Region>().is_err());
        assert!("".parse::<Region>().is_err());
    }

    proptest::proptest! {
        /// Any text, any region: an answer, never a panic; what parses is canonical and
        /// parses again to itself.
        #[test]
        fn parsing_never_panics_and_is_stable(
            input in proptest::prop_oneof![".{0,80}", "[+]?[0-9 ()-]{0,24}"],
            region in proptest::option::of(proptest::sample::select(vec!["JP", "US", "GB", "DE", "IN"])),
        ) {
            let region = region.map(|r| r.parse::<Region>().unwrap());
            match ParsedNumber::parse(&input, region) {
                Ok(p) => {
                    let text = p.e164.as_str();
                    proptest::prop_assert!(text.starts_with('+'));
                    proptest::prop_assert!(text.len() <= 16);
                    proptest::prop_assert!(text[1..].bytes().all(|b| b.is_ascii_digit()));
                    proptest::prop_assert_eq!(ParsedNumber::parse(text, None).unwrap(), p);
                }
                Err(e) => proptest::prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn masking_hides_the_subscriber_digits() {
        let n = E164::parse("+819012345678", None).unwrap();
        assert_eq!(n.masked().to_string(), "+81********78");
    }
}
