//! Reading numbers in international form (`+` and digits, as [`super::normalize`] leaves
//! every international input), and validating a number's E.164 form, as libphonenumber
//! does: the country code, the national prefix stripped only where libphonenumber strips
//! it, the region chosen among those sharing the code, and the number type decided by
//! whole-number matches of the plan's patterns in libphonenumber's order.
//!
//! phonenumber 0.3 departs from libphonenumber here: it matches a pattern from the start
//! without requiring it to reach the end (accepting invalid numbers and calling premium
//! rate numbers mobile), and it strips a national prefix after the country code even where
//! that leaves no valid number (`+78001234567`). It also runs every pattern through one
//! process-wide, mutex-guarded LRU of compiled regexes (about 6 µs a number, slower from
//! two threads). This module compiles the same metadata once per country code into plain
//! `regex::Regex` values, lock-free; the parser is still used for national-format input.

use std::sync::{LazyLock, OnceLock};

use phonenumber::country;
use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex::{Regex, RegexBuilder};

use super::NumberError;

/// Country calling codes have at most three digits.
const CODE_SPACE: usize = 1000;

/// Which calling codes the metadata knows, and each one's compiled plan, built on first use.
struct Plans {
    known: Box<[bool]>,
    plans: Box<[OnceLock<Option<CodePlan>>]>,
}

static PLANS: LazyLock<Plans> = LazyLock::new(|| Plans {
    known: (0..CODE_SPACE as u16)
        .map(|code| DATABASE.by_code(&code).is_some())
        .collect(),
    plans: (0..CODE_SPACE).map(|_| OnceLock::new()).collect(),
});

/// What reading a canonical number found: it is valid, and whether it is mobile (or a
/// pager, as [`super::ParsedNumber::mobile`] counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canonical {
    pub mobile: bool,
}

/// Whether the metadata knows `code` as a country calling code.
pub fn is_calling_code(code: u16) -> bool {
    PLANS.known.get(usize::from(code)).copied().unwrap_or(false)
}

/// The country calling code `digits` (E.164 without `+`, or a prefix of it) start with:
/// calling codes are prefix-free, so the first known 1-, 2- or 3-digit prefix is it.
pub fn calling_code(digits: &str) -> Option<u16> {
    (1..=3.min(digits.len())).find_map(|len| {
        let code: u16 = digits[..len].parse().ok()?;
        is_calling_code(code).then_some(code)
    })
}

/// Reads `digits` (E.164 without `+`, ASCII digits only) as libphonenumber reads
/// `+digits`: the E.164 form it stands for, and what it is.
pub fn read_international(digits: &str) -> Result<(String, Canonical), NumberError> {
    if digits.starts_with('0') {
        return Err(NumberError::Unparseable("invalid country code".into()));
    }
    let (code, national) = split_code(digits)
        .ok_or_else(|| NumberError::Unparseable("invalid country code".into()))?;
    if national.len() < MIN_NATIONAL_LEN {
        return Err(NumberError::Unparseable("too short".into()));
    }
    if national.len() > MAX_NATIONAL_LEN {
        return Err(NumberError::Unparseable("too long".into()));
    }
    let plan = plan(code).ok_or(NumberError::Invalid)?;
    // libphonenumber reads the rest by the rules of the code's main region.
    let main = plan.regions.first().ok_or(NumberError::Invalid)?;
    finish(
        code,
        plan,
        main.without_national_prefix(national.to_string()),
    )
}

/// Reads `digits` (a number in national format, ASCII digits only) as libphonenumber reads
/// it for `region` (an ISO 3166 code): an international call prefix starts a number in
/// international form; a leading country code is dropped where the number is only valid
/// without it; the national prefix is stripped where libphonenumber strips it.
pub fn read_national(digits: &str, region: &str) -> Result<(String, Canonical), NumberError> {
    let meta = DATABASE.by_id(region).ok_or(NumberError::NoRegion)?;
    let code = usize::from(meta.country_code());
    let plan = plan(code).ok_or(NumberError::Invalid)?;
    let home = plan
        .regions
        .iter()
        .find(|r| r.id == region)
        .ok_or(NumberError::Invalid)?;
    if let Some(idd) = &home.international_prefix
        && let Some(m) = idd.find(digits)
        && !m.is_empty()
        && !digits[m.end()..].starts_with('0')
    {
        return read_international(&digits[m.end()..]);
    }
    if let Some(rest) = digits.strip_prefix(code.to_string().as_str()) {
        let potential = home.without_national_prefix(rest.to_string());
        let general = &home.general.regex;
        if (!general.is_match(digits) && general.is_match(&potential))
            || matches!(home.length(digits), Length::TooLong)
        {
            // Read on as a number with its country code, by the code's main region.
            let main = plan.regions.first().ok_or(NumberError::Invalid)?;
            return finish(code, plan, main.without_national_prefix(potential));
        }
    }
    finish(code, plan, home.without_national_prefix(digits.to_string()))
}

/// The number `+{code}{national}`, if valid.
fn finish(
    code: usize,
    plan: &CodePlan,
    national: String,
) -> Result<(String, Canonical), NumberError> {
    if national.len() < MIN_NATIONAL_LEN {
        return Err(NumberError::Unparseable("too short".into()));
    }
    if national.len() > MAX_NATIONAL_LEN {
        return Err(NumberError::Unparseable("too long".into()));
    }
    let found = plan
        .region_for(&national)
        .and_then(|region| region.classify(&national))
        .ok_or(NumberError::Invalid)?;
    Ok((format!("+{code}{national}"), found))
}

/// Whether `e164` (`+` and digits) is a valid number, and what it is; nothing is stripped.
pub fn validate(e164: &str) -> Option<Canonical> {
    let (code, national) = split_code(e164.strip_prefix('+')?)?;
    let plan = plan(code)?;
    plan.region_for(national)?.classify(national)
}

/// libphonenumber's bounds on a national significant number.
const MIN_NATIONAL_LEN: usize = 2;
const MAX_NATIONAL_LEN: usize = 17;

/// The calling code `digits` start with, and the rest.
fn split_code(digits: &str) -> Option<(usize, &str)> {
    let code = calling_code(digits)?;
    let len = if code < 10 {
        1
    } else if code < 100 {
        2
    } else {
        3
    };
    Some((usize::from(code), &digits[len..]))
}

fn plan(code: usize) -> Option<&'static CodePlan> {
    PLANS.plans[code]
        .get_or_init(|| CodePlan::build(code as u16))
        .as_ref()
}

/// A descriptor's pattern, matched against the whole national number as libphonenumber
/// matches it, and its possible lengths.
struct Pattern {
    regex: Regex,
    lengths: Box<[u16]>,
}

impl Pattern {
    fn new(desc: &Descriptor) -> Option<Pattern> {
        Some(Pattern {
            regex: whole(desc.national_number().as_str())?,
            lengths: desc.possible_length().into(),
        })
    }

    fn matches(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && self.regex.is_match(national)
    }
}

/// Compiled as the metadata's patterns are meant: whitespace in them is ignored.
fn compile(source: &str) -> Option<Regex> {
    RegexBuilder::new(source)
        .ignore_whitespace(true)
        .build()
        .ok()
}

/// A pattern that must match at the start (libphonenumber's `lookingAt`).
fn anchored(source: &str) -> Option<Regex> {
    compile(&format!("^(?:{source})"))
}

/// A pattern that must match the whole text (libphonenumber's `matches`).
fn whole(source: &str) -> Option<Regex> {
    compile(&format!("^(?:{source})$"))
}

struct RegionPlan {
    /// The region's ISO 3166 code (`001` for non-geographic entities).
    id: String,
    /// The international call prefix dialled before a country code (`00`, `010`, ...).
    international_prefix: Option<Regex>,
    leading_digits: Option<Regex>,
    general: Pattern,
    /// Lengths only dialled locally (without an area code): not a number on their own.
    local_lengths: Box<[u16]>,
    /// The types libphonenumber tries before fixed line, in its order; `true` marks the
    /// pager (counted as mobile).
    others: Vec<(Pattern, bool)>,
    fixed_line: Option<Pattern>,
    mobile: Option<Pattern>,
    prefix_for_parsing: Option<Regex>,
    transform_rule: Option<String>,
}

impl RegionPlan {
    fn build(meta: &Metadata) -> Option<RegionPlan> {
        let d = meta.descriptors();
        let mut others = Vec::new();
        for (desc, pager) in [
            (d.premium_rate(), false),
            (d.toll_free(), false),
            (d.shared_cost(), false),
            (d.voip(), false),
            (d.personal_number(), false),
            (d.pager(), true),
            (d.uan(), false),
            (d.voicemail(), false),
        ] {
            if let Some(desc) = desc {
                others.push((Pattern::new(desc)?, pager));
            }
        }
        let optional = |desc: Option<&Descriptor>| match desc {
            Some(desc) => Pattern::new(desc).map(Some),
            None => Some(None),
        };
        Some(RegionPlan {
            id: meta.id().to_string(),
            international_prefix: match meta.international_prefix() {
                Some(re) => Some(anchored(re.as_str())?),
                None => None,
            },
            leading_digits: match meta.leading_digits() {
                Some(re) => Some(anchored(re.as_str())?),
                None => None,
            },
            general: Pattern::new(d.general())?,
            local_lengths: d.general().possible_local_length().into(),
            others,
            fixed_line: optional(d.fixed_line())?,
            mobile: optional(d.mobile())?,
            // Absent, it is the national prefix itself (as in libphonenumber's metadata).
            prefix_for_parsing: match (meta.national_prefix_for_parsing(), meta.national_prefix()) {
                (Some(re), _) => Some(anchored(re.as_str())?),
                (None, Some(prefix)) => Some(anchored(&regex::escape(prefix))?),
                (None, None) => None,
            },
            // Java's `$1` is regex's `${1}` (a digit after it must not join the name).
            transform_rule: meta.national_prefix_transform_rule().map(|rule| {
                (1..=9).fold(rule.to_string(), |rule, n| {
                    rule.replace(&format!("${n}"), &format!("${{{n}}}"))
                })
            }),
        })
    }

    /// `Some` if the number is valid: its type, as libphonenumber's `getNumberType` decides
    /// it (the first matching type before fixed line; a fixed-line number that also matches
    /// the mobile pattern is fixed line or mobile, counted as mobile).
    fn classify(&self, national: &str) -> Option<Canonical> {
        if !self.general.matches(national) {
            return None;
        }
        if let Some((_, pager)) = self.others.iter().find(|(p, _)| p.matches(national)) {
            return Some(Canonical { mobile: *pager });
        }
        let mobile = self.mobile.as_ref().is_some_and(|p| p.matches(national));
        let fixed = self
            .fixed_line
            .as_ref()
            .is_some_and(|p| p.matches(national));
        (fixed || mobile).then_some(Canonical { mobile })
    }

    /// The national number without its national prefix (or with the prefix transformed),
    /// where libphonenumber strips it: never when that turns a number the plan could hold
    /// into one it cannot.
    fn strip_national_prefix(&self, national: &str) -> Option<String> {
        let re = self.prefix_for_parsing.as_ref()?;
        let captures = re.captures(national)?;
        let matched = captures.get(0)?;
        let viable = self.general.regex.is_match(national);
        let last_group = captures.len().checked_sub(1).filter(|&n| n > 0);
        let transformed = match (&self.transform_rule, last_group) {
            (Some(rule), Some(group)) if captures.get(group).is_some() => {
                re.replacen(national, 1, rule.as_str()).into_owned()
            }
            _ => national[matched.end()..].to_string(),
        };
        if viable && !self.general.regex.is_match(&transformed) {
            return None;
        }
        Some(transformed)
    }

    /// libphonenumber's `testNumberLength` against the plan's general lengths.
    fn length(&self, national: &str) -> Length {
        let len = national.len() as u16;
        let lengths = &self.general.lengths;
        if self.local_lengths.contains(&len) {
            return Length::LocalOnly;
        }
        match (lengths.first(), lengths.last()) {
            (Some(&min), _) if len < min => Length::TooShort,
            (_, Some(&max)) if len > max => Length::TooLong,
            _ if lengths.is_empty() || lengths.contains(&len) => Length::Possible,
            _ => Length::Invalid,
        }
    }

    /// libphonenumber keeps a stripped national number unless its length is too short,
    /// only local, or not a possible length (a longer one is kept).
    fn length_allows_stripping(&self, national: &str) -> bool {
        matches!(self.length(national), Length::Possible | Length::TooLong)
    }

    /// The national number with its national prefix stripped where libphonenumber keeps
    /// the stripped form.
    fn without_national_prefix(&self, national: String) -> String {
        match self.strip_national_prefix(&national) {
            Some(stripped) if self.length_allows_stripping(&stripped) => stripped,
            _ => national,
        }
    }
}

/// What `testNumberLength` says of a national number's length.
enum Length {
    Possible,
    LocalOnly,
    TooShort,
    TooLong,
    Invalid,
}

struct CodePlan {
    /// In the metadata's order, which decides between regions sharing a code.
    regions: Vec<RegionPlan>,
}

impl CodePlan {
    fn build(code: u16) -> Option<CodePlan> {
        let ids = DATABASE.region(&code)?;
        let metas: Vec<&Metadata> = match ids.as_slice() {
            // Non-geographic entities are looked up by code; the first one answers.
            ["001"] => vec![*DATABASE.by_code(&code)?.first()?],
            [id] => {
                id.parse::<country::Id>().ok()?;
                vec![DATABASE.by_id(*id)?]
            }
            ids => ids
                .iter()
                .map(|id| DATABASE.by_id(*id))
                .collect::<Option<_>>()?,
        };
        let regions = metas
            .into_iter()
            .map(RegionPlan::build)
            .collect::<Option<_>>()?;
        Some(CodePlan { regions })
    }

    /// The region whose rules apply: the only one, else the first whose leading digits
    /// match or, lacking those, whose patterns know the number.
    fn region_for(&self, national: &str) -> Option<&RegionPlan> {
        if let [only] = self.regions.as_slice() {
            return Some(only);
        }
        self.regions.iter().find(|r| match &r.leading_digits {
            Some(re) => re.is_match(national),
            None => r.classify(national).is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(e164: &str) -> Result<(String, Canonical), NumberError> {
        read_international(e164.strip_prefix('+').unwrap())
    }

    #[test]
    fn numbers_in_international_form_read_as_libphonenumber_reads_them() {
        for (input, e164, mobile) in [
            ("+819012345678", "+819012345678", true),
            ("+81312345678", "+81312345678", false),
            ("+14155550123", "+14155550123", true), // NANP: fixed line or mobile
            ("+447912345678", "+447912345678", true),
            ("+4915112345678", "+4915112345678", true),
            ("+390212345678", "+390212345678", false), // Italy keeps its leading 0
            ("+78001234567", "+78001234567", false),   // RU toll free: the 8 is no prefix
            ("+37080012345", "+37080012345", false),
            ("+4903012345678", "+493012345678", false), // a trunk 0 after the code goes
        ] {
            let (read_as, found) = read(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((read_as.as_str(), found.mobile), (e164, mobile), "{input}");
            assert_eq!(validate(e164), Some(found), "{e164}");
        }
    }

    #[test]
    fn patterns_must_match_the_whole_number() {
        // Valid by a pattern's first digits only (issue 16's examples).
        for input in ["+855912345679", "+86101234678", "+26320201234"] {
            assert_eq!(read(input).unwrap_err(), NumberError::Invalid, "{input}");
        }
        // Premium rate in Malaysia: not mobile, although the mobile pattern starts alike.
        assert_eq!(
            read("+601600123456").unwrap().1,
            Canonical { mobile: false }
        );
    }

    #[test]
    fn national_numbers_read_as_libphonenumber_reads_them() {
        for (digits, region, e164) in [
            ("09012345678", "JP", "+819012345678"),
            ("0108190123456 78", "JP", "+819012345678"), // international call prefix 010
            ("88001234567", "RU", "+78001234567"),       // the 8 here is the trunk prefix
            ("88001234567", "KZ", "+78001234567"),
            ("880012345", "LT", "+37080012345"),
            ("4915123456789", "DE", "+494915123456789"), // valid as it is: 49 is no country code here
        ] {
            let digits: String = digits.chars().filter(char::is_ascii_digit).collect();
            let (read, _) =
                read_national(&digits, region).unwrap_or_else(|e| panic!("{digits} {region}: {e}"));
            assert_eq!(read, e164, "{digits} {region}");
        }
    }

    #[test]
    fn bad_codes_and_lengths_say_so() {
        for (input, expected) in [
            ("+0123456", "invalid country code"),
            ("+9991234567", "invalid country code"),
            ("+811", "too short"),
            ("+81123456789012345678", "too long"),
        ] {
            let e = read(input).unwrap_err().to_string();
            assert!(e.contains(expected), "{input}: {e}");
        }
    }
}
