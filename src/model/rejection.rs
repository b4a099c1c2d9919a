//! Why a record is refused: the stable reason codes of dead letters and metrics.

/// Why a record was rejected. The `as_str()` codes are stable: they are metric label
/// values and dead-letter header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not UTF-8, not JSON, not Avro, or an empty payload on an event topic.
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
    /// The event is more than `time.max_lateness_secs` older than the last evaluated
    /// tick. (A late event within that is applied, not rejected.)
    TooLate,
    /// The Avro writer schema cannot be read as cs-pulse's schema (or a union branch the
    /// record uses cannot).
    IncompatibleSchema,
    /// The Avro schema id is not in the schema registry.
    UnknownSchema,
    /// `occurred_at` is further ahead of the wall clock than `time.max_future_secs`.
    Future,
    /// The event would create an entity beyond a cap of `[limits]`.
    Limit,
    /// A string field is longer than cs-pulse accepts.
    TooLong,
}

impl Reason {
    /// Every reason, for metric pre-registration.
    pub const ALL: [Reason; 12] = [
        Reason::Undecodable,
        Reason::NotObject,
        Reason::MissingField,
        Reason::WrongType,
        Reason::UnknownEnum,
        Reason::InvalidValue,
        Reason::TooLate,
        Reason::IncompatibleSchema,
        Reason::UnknownSchema,
        Reason::Future,
        Reason::Limit,
        Reason::TooLong,
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
            Reason::TooLate => "too_late",
            Reason::IncompatibleSchema => "incompatible_schema",
            Reason::UnknownSchema => "unknown_schema",
            Reason::Future => "future",
            Reason::Limit => "limit",
            Reason::TooLong => "too_long",
        }
    }
}

/// Why a record goes to the dead-letter topic: a stable reason and a human detail. Decoding
/// produces it for records that are not valid, the engine for events it cannot take (too
/// late, future, over a limit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct Rejection {
    /// Stable reason code.
    pub reason: Reason,
    /// Human detail naming the field and what was wrong.
    pub detail: String,
}

impl Rejection {
    /// A rejection for `reason`, with its detail.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }

    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        self.reason.as_str()
    }
}
