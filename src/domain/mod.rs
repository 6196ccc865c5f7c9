//! The domain: phone numbers, events, sources and the decision rules. Plain data and pure
//! functions; no I/O happens here.

pub mod auth;
pub mod camara;
pub mod carrier;
pub mod coverage;
pub mod decision;
pub mod egress;
pub mod event;
pub mod field;
pub mod number;
pub mod owner_since;
pub mod prefix;
pub mod source;
pub mod subscription;
#[cfg(test)]
pub(crate) mod test_support;
pub mod text;
pub mod upstream;
pub mod watch;

pub use field::Field;

/// A rejected input field. The message reads after the field name, so `Display` gives e.g.
/// "max_age_hours must be in 1..=2400, got 2401".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct FieldError {
    /// The field that was refused.
    pub field: Field,
    /// Why, reading after the field name.
    pub message: String,
}

impl FieldError {
    /// A refusal of `field`; `message` reads after the field's name.
    pub fn new(field: Field, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}
