//! Avro in and out: the Confluent wire format (magic byte 0, a 4-byte big-endian schema
//! id, the Avro binary body), writer schemas from a schema registry resolved against
//! cs-pulse's own schemas (`schemas/*.avsc`), object container files for `replay`, and
//! Avro alerts and scores.
//!
//! Each (writer schema id, input) pair is resolved once into a [`plan::Plan`] and cached;
//! a record is then decoded by running the plan over its bytes, borrowing its strings.

pub mod container;
pub mod output;
pub mod plan;
pub mod registry;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use apache_avro::Schema;

use crate::decode::{fields, DecodeError, Reason, Upsert};
use crate::model::{AccountRecord, Event, TeamRecord};
use plan::{Plan, ReaderSpec};
use registry::{Registry, RegistryError};

/// The schema of usage events.
pub const USAGE_SCHEMA: &str = include_str!("../../schemas/usage_event.avsc");
/// The schema of support events.
pub const SUPPORT_SCHEMA: &str = include_str!("../../schemas/support_event.avsc");
/// The schema of account records.
pub const ACCOUNT_SCHEMA: &str = include_str!("../../schemas/account_record.avsc");
/// The schema of team records.
pub const TEAM_SCHEMA: &str = include_str!("../../schemas/team_record.avsc");
/// The schema of alerts.
pub const ALERT_SCHEMA: &str = include_str!("../../schemas/health_alert.avsc");
/// The schema of score records.
pub const SCORE_SCHEMA: &str = include_str!("../../schemas/health_score.avsc");

/// What an input topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// Usage events.
    Usage,
    /// Support and feedback events.
    Support,
    /// Account records.
    Accounts,
    /// Team records.
    Teams,
}

impl Input {
    fn index(self) -> usize {
        self as usize
    }

    fn text(self) -> &'static str {
        [USAGE_SCHEMA, SUPPORT_SCHEMA, ACCOUNT_SCHEMA, TEAM_SCHEMA][self.index()]
    }

    fn name(self) -> &'static str {
        ["UsageEvent", "SupportEvent", "AccountRecord", "TeamRecord"][self.index()]
    }
}

struct Reader {
    schema: Schema,
    spec: ReaderSpec,
    /// The reader schema read as its own writer: the plan when no registry is configured.
    local: Arc<Plan>,
}

/// cs-pulse's reader schema for `input`, parsed once.
fn reader(input: Input) -> &'static Reader {
    static READERS: OnceLock<Vec<Reader>> = OnceLock::new();
    let readers = READERS.get_or_init(|| {
        [Input::Usage, Input::Support, Input::Accounts, Input::Teams]
            .into_iter()
            .map(|i| {
                // The schemas are part of the binary and checked by the tests.
                let schema = Schema::parse_str(i.text()).unwrap_or(Schema::Null);
                let spec =
                    ReaderSpec::of(i.name(), &schema).unwrap_or(ReaderSpec { name: i.name(), fields: Vec::new() });
                let local = Arc::new(Plan::compile(&schema, &spec).unwrap_or_else(|_| Plan::empty()));
                Reader { schema, spec, local }
            })
            .collect()
    });
    &readers[input.index()]
}

/// The parsed reader schema of `input`.
pub fn reader_schema(input: Input) -> &'static Schema {
    &reader(input).schema
}

/// Splits a Confluent-framed message into its schema id and Avro body.
pub fn split_frame(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match bytes {
        [0, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [0, ..] => Err(DecodeError::new(
            Reason::Undecodable,
            format!("{} bytes: too short for the Avro wire format's 5-byte header", bytes.len()),
        )),
        [] => Err(DecodeError::new(Reason::Undecodable, "empty payload")),
        [m, ..] => Err(DecodeError::new(
            Reason::Undecodable,
            format!("magic byte is {m:#04x}, not 0: not the Confluent Avro wire format"),
        )),
    }
}

/// Prefixes an Avro body with the Confluent header.
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Why an Avro record could not be decoded: the record's fault (dead-letter it), or the
/// registry's (retry later).
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    /// The record is bad.
    #[error("{0}")]
    Record(#[from] DecodeError),
    /// The registry could not be asked.
    #[error("schema registry: {0}")]
    Registry(String),
}

/// Decodes one input topic's Avro messages, with a resolved plan per writer schema id.
pub struct AvroInput {
    input: Input,
    registry: Option<Arc<Registry>>,
    plans: HashMap<u32, Result<Arc<Plan>, DecodeError>>,
}

impl AvroInput {
    /// A decoder for `input`; without a registry every record is read with cs-pulse's own
    /// schema as its writer schema, whatever id it carries.
    pub fn new(input: Input, registry: Option<Arc<Registry>>) -> Self {
        Self { input, registry, plans: HashMap::new() }
    }

    /// The plan for writer schema `id`, resolved at first use.
    fn plan(&mut self, id: u32) -> Result<Arc<Plan>, AvroError> {
        let Some(registry) = &self.registry else { return Ok(Arc::clone(&reader(self.input).local)) };
        if let Some(p) = self.plans.get(&id) {
            return p.clone().map_err(AvroError::Record);
        }
        let resolved = match registry.schema(id) {
            Ok(text) => match Schema::parse_str(&text) {
                Ok(writer) => Plan::compile(&writer, &reader(self.input).spec).map(Arc::new).map_err(|e| {
                    DecodeError::new(
                        Reason::IncompatibleSchema,
                        format!("writer schema {id} cannot be read as {}: {e}", self.input.name()),
                    )
                }),
                Err(e) => Err(DecodeError::new(
                    Reason::IncompatibleSchema,
                    format!("writer schema {id} from the registry does not parse: {e}"),
                )),
            },
            Err(RegistryError::NotFound(detail)) => {
                Err(DecodeError::new(Reason::UnknownSchema, format!("schema id {id} is not in the registry: {detail}")))
            }
            Err(RegistryError::Unavailable(e) | RegistryError::Refused(e)) => return Err(AvroError::Registry(e)),
        };
        match &resolved {
            Ok(_) => tracing::info!(input = self.input.name(), schema_id = id, "Resolved a writer schema."),
            Err(e) => tracing::warn!(input = self.input.name(), schema_id = id, error = %e, "Writer schema refused."),
        }
        self.plans.insert(id, resolved.clone());
        resolved.map_err(AvroError::Record)
    }

    fn with_record<T>(
        &mut self,
        bytes: Option<&[u8]>,
        f: impl FnOnce(&plan::Decoded<'_>) -> Result<T, DecodeError>,
    ) -> Result<T, AvroError> {
        let (id, body) = split_frame(bytes.unwrap_or_default())?;
        let plan = self.plan(id)?;
        let rec = plan.decode(body)?;
        Ok(f(&rec)?)
    }

    /// Decodes a usage event.
    pub fn usage(&mut self, bytes: Option<&[u8]>) -> Result<Event, AvroError> {
        self.with_record(bytes, |r| fields::usage(r))
    }

    /// Decodes a support event.
    pub fn support(&mut self, bytes: Option<&[u8]>) -> Result<Event, AvroError> {
        self.with_record(bytes, |r| fields::support(r))
    }

    /// Decodes an account record; a null value with a key is a deletion.
    pub fn account(&mut self, key: Option<&[u8]>, bytes: Option<&[u8]>) -> Result<Upsert<AccountRecord>, AvroError> {
        if bytes.is_none() {
            return Ok(fields::tombstone(key)?);
        }
        self.with_record(bytes, |r| fields::account(r).map(Upsert::Put))
    }

    /// Decodes a team record; a null value with a key is a deletion.
    pub fn team(&mut self, key: Option<&[u8]>, bytes: Option<&[u8]>) -> Result<Upsert<TeamRecord>, AvroError> {
        if bytes.is_none() {
            return Ok(fields::tombstone(key)?);
        }
        self.with_record(bytes, |r| fields::team(r).map(Upsert::Put))
    }
}

#[cfg(test)]
mod tests;
