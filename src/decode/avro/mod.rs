//! Avro input: writer schemas from the schema registry resolved against cs-pulse's own
//! (`schemas/*.avsc`), and object container files for `replay`.
//!
//! Each (writer schema id, input) pair is resolved once into a plan (`plan::Plan`) and cached;
//! a record is then decoded by running the plan over its bytes, borrowing its strings.

pub mod container;
pub(crate) mod plan;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use apache_avro::Schema;

use super::{fields, DecodeError, Upsert};
use crate::avro::registry::{Registry, RegistryError};
use crate::avro::{split_frame, ACCOUNT_SCHEMA, SUPPORT_SCHEMA, TEAM_SCHEMA, USAGE_SCHEMA};
use crate::model::{AccountRecord, Event, Input, Reason, Rejection, TeamRecord};
use plan::{Plan, ReaderSpec};

/// cs-pulse's schema of `input`, and the name of its record.
fn schema_of(input: Input) -> (&'static str, &'static str) {
    match input {
        Input::Usage => (USAGE_SCHEMA, "UsageEvent"),
        Input::Support => (SUPPORT_SCHEMA, "SupportEvent"),
        Input::Accounts => (ACCOUNT_SCHEMA, "AccountRecord"),
        Input::Teams => (TEAM_SCHEMA, "TeamRecord"),
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
        Input::ALL
            .into_iter()
            .map(|i| {
                let (text, name) = schema_of(i);
                // The schemas are part of the binary and checked by the tests.
                let schema = Schema::parse_str(text).unwrap_or(Schema::Null);
                let spec = ReaderSpec::of(name, &schema).unwrap_or(ReaderSpec { name, fields: Vec::new() });
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

/// Decodes one input topic's Avro messages, with a resolved plan per writer schema id.
pub struct AvroInput {
    input: Input,
    registry: Option<Arc<Registry>>,
    plans: HashMap<u32, Result<Arc<Plan>, Rejection>>,
}

impl AvroInput {
    /// A decoder for `input`; without a registry every record is read with cs-pulse's own
    /// schema as its writer schema, whatever id it carries.
    pub fn new(input: Input, registry: Option<Arc<Registry>>) -> Self {
        Self { input, registry, plans: HashMap::new() }
    }

    /// The plan for writer schema `id`, resolved at first use.
    fn plan(&mut self, id: u32) -> Result<Arc<Plan>, DecodeError> {
        let Some(registry) = &self.registry else { return Ok(Arc::clone(&reader(self.input).local)) };
        if let Some(p) = self.plans.get(&id) {
            return p.clone().map_err(DecodeError::Rejected);
        }
        let resolved = match registry.schema(id) {
            Ok(text) => match Schema::parse_str(&text) {
                Ok(writer) => Plan::compile(&writer, &reader(self.input).spec).map(Arc::new).map_err(|e| {
                    Rejection::new(
                        Reason::IncompatibleSchema,
                        format!("writer schema {id} cannot be read as {}: {e}", schema_of(self.input).1),
                    )
                }),
                Err(e) => Err(Rejection::new(
                    Reason::IncompatibleSchema,
                    format!("writer schema {id} from the registry does not parse: {e}"),
                )),
            },
            Err(RegistryError::NotFound(detail)) => {
                Err(Rejection::new(Reason::UnknownSchema, format!("schema id {id} is not in the registry: {detail}")))
            }
            Err(RegistryError::Unavailable(e) | RegistryError::Refused(e)) => return Err(DecodeError::Registry(e)),
        };
        match &resolved {
            Ok(_) => tracing::info!(input = schema_of(self.input).1, schema_id = id, "Resolved a writer schema."),
            Err(e) => {
                tracing::warn!(input = schema_of(self.input).1, schema_id = id, error = %e, "Writer schema refused.")
            }
        }
        self.plans.insert(id, resolved.clone());
        resolved.map_err(DecodeError::Rejected)
    }

    fn with_record<T>(
        &mut self,
        bytes: Option<&[u8]>,
        f: impl FnOnce(&plan::Decoded<'_>) -> Result<T, Rejection>,
    ) -> Result<T, DecodeError> {
        let (id, body) = split_frame(bytes.unwrap_or_default())?;
        let plan = self.plan(id)?;
        let rec = plan.decode(body)?;
        Ok(f(&rec)?)
    }

    /// Decodes a usage event.
    pub fn usage(&mut self, bytes: Option<&[u8]>) -> Result<Event, DecodeError> {
        self.with_record(bytes, |r| fields::usage(r))
    }

    /// Decodes a support event.
    pub fn support(&mut self, bytes: Option<&[u8]>) -> Result<Event, DecodeError> {
        self.with_record(bytes, |r| fields::support(r))
    }

    /// Decodes an account record; a null value with a key is a deletion.
    pub fn account(&mut self, key: Option<&[u8]>, bytes: Option<&[u8]>) -> Result<Upsert<AccountRecord>, DecodeError> {
        if bytes.is_none() {
            return Ok(fields::tombstone(key)?);
        }
        self.with_record(bytes, |r| fields::account(r).map(Upsert::Put))
    }

    /// Decodes a team record; a null value with a key is a deletion.
    pub fn team(&mut self, key: Option<&[u8]>, bytes: Option<&[u8]>) -> Result<Upsert<TeamRecord>, DecodeError> {
        if bytes.is_none() {
            return Ok(fields::tombstone(key)?);
        }
        self.with_record(bytes, |r| fields::team(r).map(Upsert::Put))
    }
}

#[cfg(test)]
mod tests;
