//! Decoding and validating input records, JSON or Avro. Every record that fails carries a
//! short, stable reason code ([`crate::model::Reason`]) that goes into metrics labels and
//! dead-letter headers.

pub mod avro;
pub mod fields;
pub mod json;

use crate::model::{AccountRecord, Event, Input, Rejection, TeamRecord};

/// Why a record could not be decoded: the record's fault (dead-letter it), or the schema
/// registry's (retry later; the record is not the problem).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record is bad.
    #[error("{0}")]
    Rejected(#[from] Rejection),
    /// The schema registry could not be asked for the record's writer schema.
    #[error("schema registry: {0}")]
    Registry(String),
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
    avro: [Option<avro::AvroInput>; 4],
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
        use crate::config::Format;
        let formats = cfg.input.formats();
        let avro = std::array::from_fn(|i| {
            (formats[i] == Format::Avro).then(|| avro::AvroInput::new(Input::ALL[i], registry.clone()))
        });
        Self { avro }
    }

    /// JSON everywhere.
    pub fn json() -> Self {
        Self { avro: [None, None, None, None] }
    }

    /// Decodes a usage event.
    pub fn usage(&mut self, bytes: Option<&[u8]>) -> Result<Event, DecodeError> {
        match &mut self.avro[0] {
            Some(a) => a.usage(bytes),
            None => Ok(json::decode_usage(bytes)?),
        }
    }

    /// Decodes a support event.
    pub fn support(&mut self, bytes: Option<&[u8]>) -> Result<Event, DecodeError> {
        match &mut self.avro[1] {
            Some(a) => a.support(bytes),
            None => Ok(json::decode_support(bytes)?),
        }
    }

    /// Decodes an account record or its deletion.
    pub fn account(&mut self, key: Option<&[u8]>, bytes: Option<&[u8]>) -> Result<Upsert<AccountRecord>, DecodeError> {
        match &mut self.avro[2] {
            Some(a) => a.account(key, bytes),
            None => Ok(json::decode_account(key, bytes)?),
        }
    }

    /// Decodes a team record or its deletion.
    pub fn team(&mut self, key: Option<&[u8]>, bytes: Option<&[u8]>) -> Result<Upsert<TeamRecord>, DecodeError> {
        match &mut self.avro[3] {
            Some(a) => a.team(key, bytes),
            None => Ok(json::decode_team(key, bytes)?),
        }
    }
}
