//! A lock-free reading of numbers already in canonical E.164 form (`+819012345678`), the
//! form customer lists and event feeds almost always use.
//!
//! phonenumber 0.3 runs every metadata pattern through one process-wide, mutex-guarded LRU
//! of compiled regexes: about 6 µs a number here, and slower, not faster, from two threads.
//! This module compiles the same metadata patterns once per country code into plain
//! `regex::Regex` values and repeats the library's steps for this one input shape. It
//! answers only when the library would keep the digits as given and find the number valid;
//! everything else (a national prefix that the library would strip, a national part that
//! starts with 0, invalid numbers) is left to the library, so answers and error messages
//! are the library's own. A test compares the two on numbers from every country code.

use std::sync::{LazyLock, OnceLock};

use phonenumber::country;
use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex::{Regex, RegexBuilder};

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

/// Reads `input` if it is `+` and digits that the library would accept unchanged as a
/// valid number; `None` means "ask the library".
pub fn read(input: &str) -> Option<Canonical> {
    let digits = input.strip_prefix('+')?;
    if !(4..=15).contains(&digits.len())
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return None;
    }
    // Like the library: the first of the 1-, 2- and 3-digit prefixes that is a known code.
    let (code, national) = (1..=3).find_map(|len| {
        let code: usize = digits[..len].parse().ok()?;
        PLANS.known[code].then(|| (code, &digits[len..]))
    })?;
    if national.starts_with('0') {
        return None;
    }
    let plan = PLANS.plans[code]
        .get_or_init(|| CodePlan::build(code as u16))
        .as_ref()?;
    let region = plan.region_for(national)?;
    if region.would_strip_prefix(national) {
        return None;
    }
    region.classify(national)
}

/// A descriptor's pattern, anchored at the start as the library matches it, and its
/// possible lengths.
struct Pattern {
    regex: Regex,
    lengths: Box<[u16]>,
}

impl Pattern {
    fn new(desc: &Descriptor) -> Option<Pattern> {
        Some(Pattern {
            regex: anchored(desc.national_number().as_str())?,
            lengths: desc.possible_length().into(),
        })
    }

    fn matches(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && self.regex.is_match(national)
    }
}

/// The library looks for a match that starts at 0 (`find` then `start() == 0`); anchoring
/// the pattern gives the same answer in one step. It compiles its patterns with
/// whitespace ignored, so these are too.
fn anchored(source: &str) -> Option<Regex> {
    RegexBuilder::new(&format!("^(?:{source})"))
        .ignore_whitespace(true)
        .build()
        .ok()
}

struct RegionPlan {
    leading_digits: Option<Regex>,
    general: Pattern,
    /// Every number type's pattern; `true` marks mobile and pager.
    kinds: Vec<(Pattern, bool)>,
    national_prefix: Option<String>,
    prefix_for_parsing: Option<Regex>,
    has_transform_rule: bool,
}

impl RegionPlan {
    fn build(meta: &Metadata) -> Option<RegionPlan> {
        let d = meta.descriptors();
        let mut kinds = Vec::new();
        for (desc, mobile) in [
            (d.premium_rate(), false),
            (d.toll_free(), false),
            (d.shared_cost(), false),
            (d.voip(), false),
            (d.personal_number(), false),
            (d.pager(), true),
            (d.uan(), false),
            (d.voicemail(), false),
            (d.fixed_line(), false),
            (d.mobile(), true),
        ] {
            if let Some(desc) = desc {
                kinds.push((Pattern::new(desc)?, mobile));
            }
        }
        Some(RegionPlan {
            leading_digits: match meta.leading_digits() {
                Some(re) => Some(anchored(re.as_str())?),
                None => None,
            },
            general: Pattern::new(d.general())?,
            kinds,
            national_prefix: meta.national_prefix().map(str::to_owned),
            prefix_for_parsing: match meta.national_prefix_for_parsing() {
                Some(re) => Some(anchored(re.as_str())?),
                None => None,
            },
            has_transform_rule: meta.national_prefix_transform_rule().is_some(),
        })
    }

    /// `Some` if the number is valid (the library's number type is not Unknown).
    fn classify(&self, national: &str) -> Option<Canonical> {
        if !self.general.matches(national) {
            return None;
        }
        let mut valid = false;
        let mut mobile = false;
        for (pattern, is_mobile) in &self.kinds {
            if (!valid || (*is_mobile && !mobile)) && pattern.matches(national) {
                valid = true;
                mobile |= *is_mobile;
            }
        }
        valid.then_some(Canonical { mobile })
    }

    /// Whether the library's national-prefix handling could change these digits. An empty
    /// match of the parsing pattern without a transform rule removes nothing.
    fn would_strip_prefix(&self, national: &str) -> bool {
        if self
            .national_prefix
            .as_deref()
            .is_some_and(|p| national.starts_with(p))
        {
            return true;
        }
        self.prefix_for_parsing
            .as_ref()
            .and_then(|re| re.find(national))
            .is_some_and(|m| !m.is_empty() || self.has_transform_rule)
    }
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
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::super::ParsedNumber;
    use super::*;

    /// What the library alone says about `input`.
    fn library(input: &str) -> Option<ParsedNumber> {
        ParsedNumber::parse_with_library(input, None).ok()
    }

    /// Every answer of the fast reading must be the library's; returns how many valid,
    /// canonical inputs it answered and how many it left to the library.
    fn compare(inputs: impl IntoIterator<Item = String>) -> (usize, usize) {
        let (mut answered, mut left) = (0, 0);
        for input in inputs {
            let fast = read(&input);
            let slow = library(&input).filter(|p| p.e164.as_str() == input);
            match (fast, slow) {
                (Some(fast), Some(slow)) => {
                    assert_eq!(fast.mobile, slow.mobile, "{input}: mobile differs");
                    answered += 1;
                }
                (Some(_), None) => panic!("{input}: read as valid, the library refuses it"),
                (None, Some(_)) => left += 1,
                (None, None) => {}
            }
        }
        (answered, left)
    }

    /// The metadata's example numbers for every region, then the same with their last
    /// digits replaced, plus random digit strings under every code.
    #[test]
    fn agrees_with_the_library_on_every_country_code() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut inputs = Vec::new();
        for meta in DATABASE.iter() {
            let code = meta.country_code();
            let d = meta.descriptors();
            let descriptors = [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ];
            for example in descriptors
                .into_iter()
                .flatten()
                .filter_map(|d| d.example())
            {
                inputs.push(format!("+{code}{example}"));
                for _ in 0..20 {
                    let keep = example.len().saturating_sub(rng.random_range(1..=4));
                    let tail: String = (keep..example.len())
                        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                        .collect();
                    inputs.push(format!("+{code}{}{tail}", &example[..keep]));
                }
            }
            for _ in 0..40 {
                let len = rng.random_range(2..=13);
                let national: String = (0..len)
                    .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                    .collect();
                inputs.push(format!("+{code}{national}"));
            }
        }
        let (answered, left) = compare(inputs);
        // The fast reading must carry the bulk of valid canonical numbers, or it is useless.
        assert!(
            answered > 9 * left,
            "answered {answered}, left {left} to the library"
        );
    }

    #[test]
    fn common_mobile_numbers_take_the_fast_reading() {
        for (input, mobile) in [
            ("+819012345678", true),
            ("+81312345678", false),
            ("+14155550123", true), // NANP: fixed line or mobile
            ("+447912345678", true),
            ("+4915112345678", true),
        ] {
            assert_eq!(read(input), Some(Canonical { mobile }), "{input}");
        }
        for input in [
            "+390212345678",
            "+81901234",
            "819012345678",
            "+81 90 1234 5678",
        ] {
            assert_eq!(read(input), None, "{input}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_disagrees_with_the_library(digits in "[1-9][0-9]{3,14}") {
            let input = format!("+{digits}");
            compare([input]);
        }
    }
}
