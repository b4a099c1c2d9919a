//! Decoding and validating input records. Every failure carries a short, stable reason
//! code that goes into metrics labels and dead-letter headers.

pub mod fields;
pub mod json;

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
    /// The event's tick has already been evaluated.
    Late,
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
        Reason::Late,
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
            Reason::Late => "late",
            Reason::IncompatibleSchema => "incompatible_schema",
            Reason::UnknownSchema => "unknown_schema",
            Reason::Future => "future",
            Reason::Limit => "limit",
            Reason::TooLong => "too_long",
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

/// The decoders of the four input topics, JSON or Avro as configured
/// (`input.format` and per-input overrides), sharing one schema registry client.
pub struct Decoders {
    avro: [Option<crate::avro::AvroInput>; 4],
}

impl std::fmt::Debug for Decoders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let formats = self.avro.each_ref().map(|a| if a.is_some() { "avro" } else { "json" });
        f.debug_struct("Decoders").field("usage, support, accounts, teams", &formats).finish()
    }
}

impl Decoders {
    /// The decoders `cfg` asks for; Avro inputs find their writer schemas in `registry`,
    /// when there is one.
    pub fn new(cfg: &crate::config::Config, registry: Option<std::sync::Arc<crate::avro::registry::Registry>>) -> Self {
        use crate::avro::{AvroInput, Input};
        use crate::config::Format;
        let formats = cfg.input.formats();
        let inputs = [Input::Usage, Input::Support, Input::Accounts, Input::Teams];
        let avro =
            std::array::from_fn(|i| (formats[i] == Format::Avro).then(|| AvroInput::new(inputs[i], registry.clone())));
        Self { avro }
    }

    /// JSON everywhere.
    pub fn json() -> Self {
        Self { avro: [None, None, None, None] }
    }

    /// Decodes a usage event.
    pub fn usage(&mut self, bytes: Option<&[u8]>) -> Result<crate::model::Event, crate::avro::AvroError> {
        match &mut self.avro[0] {
            Some(a) => a.usage(bytes),
            None => Ok(json::decode_usage(bytes)?),
        }
    }

    /// Decodes a support event.
    pub fn support(&mut self, bytes: Option<&[u8]>) -> Result<crate::model::Event, crate::avro::AvroError> {
        match &mut self.avro[1] {
            Some(a) => a.support(bytes),
            None => Ok(json::decode_support(bytes)?),
        }
    }

    /// Decodes an account record or its deletion.
    pub fn account(
        &mut self,
        key: Option<&[u8]>,
        bytes: Option<&[u8]>,
    ) -> Result<Upsert<crate::model::AccountRecord>, crate::avro::AvroError> {
        match &mut self.avro[2] {
            Some(a) => a.account(key, bytes),
            None => Ok(json::decode_account(key, bytes)?),
        }
    }

    /// Decodes a team record or its deletion.
    pub fn team(
        &mut self,
        key: Option<&[u8]>,
        bytes: Option<&[u8]>,
    ) -> Result<Upsert<crate::model::TeamRecord>, crate::avro::AvroError> {
        match &mut self.avro[3] {
            Some(a) => a.team(key, bytes),
            None => Ok(json::decode_team(key, bytes)?),
        }
    }
}
