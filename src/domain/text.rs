//! Free text that is stored or echoed (event ids, carrier names, customer refs, sink
//! tokens): refused, with its field named, when it holds a control character. NUL cannot
//! be stored by PostgreSQL at all (a whole batch failed on one), and the others would
//! reach logs and CSV reports; both backends refuse the same input in the same place.

use super::{Field, FieldError};

/// `value`, if it holds no control character (NUL, line breaks, escapes, C1 controls).
pub fn plain_text(field: Field, value: &str) -> Result<&str, FieldError> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(FieldError::new(
            field,
            format!("contains the control character U+{:04X}", u32::from(c)),
        )),
        None => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_by_field() {
        for bad in ["a\0b", "line\nbreak", "tab\there", "\u{1b}[31m", "c1\u{85}"] {
            let e = plain_text(Field::CustomerRef, bad).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("customer_ref contains the control character U+"),
                "{e}"
            );
        }
        for good in ["c-1", "株式会社ＮＴＴドコモ", "KDDI株式会社", "a b.c_d"] {
            assert_eq!(plain_text(Field::CustomerRef, good), Ok(good));
        }
    }
}
