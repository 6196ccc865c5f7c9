//! What libphonenumber reads exactly like plain ASCII digits, rewritten before parsing:
//! full-width forms and other scripts' digits (what Japanese users type and paste), an
//! RFC 3966 `tel:` URI, and punctuation anywhere between the digits of an international
//! number (the parser misreads it inside the first group after `+`).

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use super::NumberError;

/// The input as the parser should see it.
pub(super) fn normalize(input: &str) -> Result<Cow<'_, str>, NumberError> {
    let mut text = Cow::Borrowed(input.trim());
    if !text.is_ascii() {
        text = Cow::Owned(ascii_forms(&text));
    }
    if let Some(uri) = strip_tel(&text) {
        text = Cow::Owned(from_tel_uri(uri)?);
    }
    if text
        .bytes()
        .any(|b| b.is_ascii_alphabetic() || matches!(b, b'#' | b'~'))
    {
        if EXTENSION.is_match(&text) {
            return Err(NumberError::Extension);
        }
        if text.bytes().any(|b| b.is_ascii_alphabetic()) {
            // libphonenumber takes letters only in a text that has digits to begin with.
            if text.bytes().filter(u8::is_ascii_digit).count() < 3 {
                return Err(NumberError::Unparseable("not a number".into()));
            }
            text = Cow::Owned(letters_read(&text));
        }
    }
    if let Some(digits) = international_digits(&text) {
        text = Cow::Owned(digits);
    }
    Ok(text)
}

/// Full-width forms to their ASCII forms (NFKC), and the digits and dashes NFKC keeps.
fn ascii_forms(text: &str) -> String {
    text.nfkc()
        .map(|c| match c {
            // Arabic-Indic and Extended Arabic-Indic digits.
            '\u{0660}'..='\u{0669}' => char::from(b'0' + (c as u32 - 0x0660) as u8),
            '\u{06F0}'..='\u{06F9}' => char::from(b'0' + (c as u32 - 0x06F0) as u8),
            // Dashes libphonenumber takes as punctuation: hyphen to horizontal bar, minus,
            // the katakana prolonged sound mark.
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{30FC}' => '-',
            other => other,
        })
        .collect()
}

/// An extension at the end, as libphonenumber finds one before it reads letters: a
/// marker (`ext`, `extension`, `x`, `#`, `~`, `доб`, `anexo`, ...) and its digits.
static EXTENSION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:[ \t,]*(?:e?xt(?:ensi(?:o\x{0301}?|ó))?n?|доб|anexo)[:.]?[ \t,-]*\d{1,20}#?|[ \t,]*(?:[x#~]|int)[:.]?[ \t,-]*\d{1,9}#?|[- ]+\d{1,6}#)$",
    )
    .expect("the extension pattern compiles")
});

/// Letters as libphonenumber reads them: three or more make a vanity number, read as
/// the keypad's digits (`1-800-FLOWERS`); fewer are dropped as noise.
fn letters_read(text: &str) -> String {
    let letters = text.bytes().filter(u8::is_ascii_alphabetic).count();
    text.chars()
        .filter_map(|c| match c.to_ascii_uppercase() {
            letter @ 'A'..='Z' => (letters >= 3).then(|| keypad(letter)),
            other => Some(other),
        })
        .collect()
}

fn keypad(letter: char) -> char {
    match letter {
        'A'..='C' => '2',
        'D'..='F' => '3',
        'G'..='I' => '4',
        'J'..='L' => '5',
        'M'..='O' => '6',
        'P'..='S' => '7',
        'T'..='V' => '8',
        _ => '9',
    }
}

fn strip_tel(text: &str) -> Option<&str> {
    let prefix = text.get(..4)?;
    prefix.eq_ignore_ascii_case("tel:").then(|| &text[4..])
}

/// An RFC 3966 number: a local number takes its country from a global
/// `phone-context=+CC`; an `ext=` parameter is an extension; others are ignored.
fn from_tel_uri(uri: &str) -> Result<String, NumberError> {
    let mut parts = uri.split(';');
    let mut number = parts.next().unwrap_or_default().to_string();
    for parameter in parts {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        if name.eq_ignore_ascii_case("ext") {
            return Err(NumberError::Extension);
        }
        if name.eq_ignore_ascii_case("phone-context")
            && value.starts_with('+')
            && !number.starts_with('+')
        {
            number.insert_str(0, value);
        }
    }
    Ok(number)
}

/// The digits of a national-format number written with digits and punctuation only.
pub(super) fn national_digits(text: &str) -> Option<String> {
    let plain = text
        .chars()
        .all(|c| c.is_ascii_digit() || PUNCTUATION.contains(&c));
    (plain && text.bytes().any(|b| b.is_ascii_digit()))
        .then(|| text.chars().filter(char::is_ascii_digit).collect())
}

/// What libphonenumber skips between digits.
const PUNCTUATION: [char; 6] = [' ', '-', '.', '(', ')', '/'];

/// `+` and digits, when the text is `+` and digits with only punctuation between them.
fn international_digits(text: &str) -> Option<String> {
    let rest = text.strip_prefix('+')?;
    if rest.bytes().all(|b| b.is_ascii_digit()) {
        return None; // already canonical: nothing to rewrite
    }
    national_digits(rest).map(|digits| format!("+{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_libphonenumber_reads_as_plain_digits() {
        for (input, expected) in [
            ("０９０-１２３４-５６７８", "090-1234-5678"),
            ("＋８１ ９０ １２３４ ５６７８", "+819012345678"),
            ("０９０ー１２３４ー５６７８", "090-1234-5678"),
            ("+٨١٩٠١٢٣٤٥٦٧٨", "+819012345678"),
            ("tel:+81-90-1234-5678", "+819012345678"),
            ("TEL:+81-90-1234-5678;isub=12", "+819012345678"),
            // As libphonenumber does: the context's code, then the number as written.
            ("tel:090-1234-5678;phone-context=+81", "+8109012345678"),
            (
                "tel:090-1234-5678;phone-context=example.com",
                "090-1234-5678",
            ),
            ("+81901234-5678", "+819012345678"),
            ("+1415-5550123", "+14155550123"),
            ("+49 (30) 1234.56", "+4930123456"),
            ("+819012345678", "+819012345678"),
            (" 090-1234-5678 ", "090-1234-5678"),
            ("+1-800-FLOWERS", "+18003569377"),
            ("+252711a23456", "+25271123456"),
        ] {
            assert_eq!(normalize(input).unwrap(), expected, "{input:?}");
        }
    }

    #[test]
    fn each_form_parses_to_the_same_number() {
        let jp = Some("JP".parse().unwrap());
        for (input, region) in [
            ("０９０-１２３４-５６７８", jp),
            ("＋８１ ９０ １２３４ ５６７８", None),
            ("tel:+81-90-1234-5678", None),
            ("tel:090-1234-5678;phone-context=+81", None),
            ("tel:090-1234-5678;phone-context=example.com", jp),
            ("+81901234-5678", None),
            ("+81 (0)90 1234 5678", None),
        ] {
            let parsed = super::super::ParsedNumber::parse(input, region)
                .unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(parsed.e164.as_str(), "+819012345678", "{input:?}");
            assert!(parsed.mobile, "{input:?}");
        }
        for (input, e164) in [
            ("+1415-5550123", "+14155550123"),
            ("+49301234-56", "+4930123456"),
        ] {
            let parsed = super::super::ParsedNumber::parse(input, None)
                .unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(parsed.e164.as_str(), e164, "{input:?}");
        }
    }

    #[test]
    fn extensions_are_refused_and_other_signs_left_to_the_parser() {
        assert_eq!(normalize("+81 90 1234 5678*").unwrap(), "+81 90 1234 5678*");
        for input in [
            "+1 415 555 0123 ext. 12",
            "+1 415 555 0123 x12",
            "+1 415 555 0123 #12",
            "+81 90 1234 5678#", // libphonenumber: extension 5678
        ] {
            assert_eq!(
                normalize(input).unwrap_err(),
                NumberError::Extension,
                "{input:?}"
            );
        }
        assert_eq!(
            normalize("tel:+81-90-1234-5678;ext=12").unwrap_err(),
            NumberError::Extension
        );
    }
}
