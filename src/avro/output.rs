//! Alerts and score records as Avro (`output.format = "avro"`): Confluent-framed with the
//! ids their schemas have in the registry under `<topic>-value`.

use apache_avro::types::Value;
use apache_avro::Schema;

use super::registry::{Registry, RegistryError};
use super::{frame, ALERT_SCHEMA, SCORE_SCHEMA};
use crate::model::{Alert, ScoreRecord};

/// Encodes alerts and scores with registered schema ids.
#[derive(Debug)]
pub struct AvroOutput {
    alert_schema: Schema,
    score_schema: Schema,
    alert_id: u32,
    score_id: u32,
}

/// Parses one of cs-pulse's own schemas (checked by the tests).
fn own(text: &str) -> Schema {
    Schema::parse_str(text).unwrap_or(Schema::Null)
}

impl AvroOutput {
    /// Registers (or finds) the alert and score schemas under `<topic>-value`.
    pub fn register(registry: &Registry, alerts_topic: &str, scores_topic: &str) -> Result<Self, RegistryError> {
        let alert_id = registry.register(&format!("{alerts_topic}-value"), ALERT_SCHEMA)?;
        let score_id = registry.register(&format!("{scores_topic}-value"), SCORE_SCHEMA)?;
        tracing::info!(alert_schema_id = alert_id, score_schema_id = score_id, "Avro output schemas registered.");
        Ok(Self::with_ids(alert_id, score_id))
    }

    /// An encoder that frames with the given ids.
    pub fn with_ids(alert_id: u32, score_id: u32) -> Self {
        Self { alert_schema: own(ALERT_SCHEMA), score_schema: own(SCORE_SCHEMA), alert_id, score_id }
    }

    /// An alert, framed.
    pub fn alert(&self, a: &Alert) -> Result<Vec<u8>, String> {
        Ok(frame(self.alert_id, &encode(&self.alert_schema, a)?))
    }

    /// A score record, framed.
    pub fn score(&self, s: &ScoreRecord) -> Result<Vec<u8>, String> {
        Ok(frame(self.score_id, &encode(&self.score_schema, s)?))
    }
}

/// The Avro binary body of `v` under `schema`, by way of its JSON form (which is the
/// spec's contract for alerts and scores).
pub fn encode(schema: &Schema, v: &impl serde::Serialize) -> Result<Vec<u8>, String> {
    let json = serde_json::to_value(v).map_err(|e| e.to_string())?;
    let value = from_json(&json).resolve(schema).map_err(|e| e.to_string())?;
    apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .map_err(|e| e.to_string())
}

/// A JSON value as an Avro value; resolution against the schema then picks union
/// branches and enum symbols. Whole numbers become longs (serde's unsigned integers would
/// become fixed bytes).
pub fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Long(i),
            None => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::String(s.clone()),
        J::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        J::Object(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    }
}
