//! Decoding and validating input records. Every failure carries a short, stable reason
//! code that goes into metrics labels and dead-letter headers.

pub mod json;

/// Why a record was rejected. The `as_str()` codes are stable: they are metric label
/// values and dead-letter header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not UTF-8, not JSON, or an empty payload on an event topic.
    Undecodable,
    /// Valid JSON but not an object.
    NotObject,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A string field is not one of its allowed values.
    UnknownEnum,
    /// A field's value is out of range or breaks a cross-field rule.
    InvalidValue,
    /// The event's tick has already been evaluated.
    Late,
}

impl Reason {
    /// Every reason, for metric pre-registration.
    pub const ALL: [Reason; 7] = [
        Reason::Undecodable,
        Reason::NotObject,
        Reason::MissingField,
        Reason::WrongType,
        Reason::UnknownEnum,
        Reason::InvalidValue,
        Reason::Late,
    ];

    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Undecodable => "undecodable",
            Reason::NotObject => "not_object",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::UnknownEnum => "unknown_enum",
            Reason::InvalidValue => "invalid_value",
            Reason::Late => "late",
        }
    }
}

/// A record that could not be turned into an event or record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct DecodeError {
    /// Stable reason code.
    pub reason: Reason,
    /// Human detail naming the field and what was wrong.
    pub detail: String,
}

impl DecodeError {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }

    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        self.reason.as_str()
    }
}

/// A dimension record or its deletion (a compacted topic's tombstone).
#[derive(Debug, Clone, PartialEq)]
pub enum Upsert<T> {
    /// Insert or replace.
    Put(T),
    /// Delete the record with this key.
    Delete(String),
}
