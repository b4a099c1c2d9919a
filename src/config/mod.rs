//! Configuration: TOML file, then environment overrides, then one `validate()`.
//!
//! Every struct denies unknown fields so that a typo is an error naming the key, every
//! default is a named function, and durations carry their unit in the key name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

mod secrets;
mod sections;
mod validate;

pub use secrets::{expand_vars, is_secret_key, redacted, REDACTED};
use secrets::{is_env_reference, without_values};
use sections::RANDOM_INSTANCE;
pub use sections::{
    AdoptionConfig, AlertPolicy, AlertsConfig, ApiConfig, BandOverrides, Bands, Format, Guarantee, HealthConfig,
    InputConfig, LimitsConfig, LogConfig, LogFormat, MagicNumberConfig, MetricsConfig, OutputConfig, OutputFormat,
    ProcessingConfig, SchemaRegistryConfig, SegmentOverrides, TimeConfig, TopicsConfig, WeightOverrides, Weights,
};
pub use validate::{MAX_LIMIT, MAX_WEIGHT};

/// A configuration error: the message names the key and says why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema (unknown key, wrong type).
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The path given.
        path: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A value is out of its allowed range, or keys contradict each other.
    #[error("invalid config key `{key}`: {why}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// Why it is rejected.
        why: String,
    },
}

fn invalid(key: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), why: why.into() }
}

/// The whole configuration of cs-pulse.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kafka connection.
    pub kafka: KafkaConfig,
    /// Topic names.
    pub topics: TopicsConfig,
    /// Event time: lateness, idleness and the evaluation tick.
    pub time: TimeConfig,
    /// Adoption metrics.
    pub adoption: AdoptionConfig,
    /// Time to production (the magic number).
    pub magic_number: MagicNumberConfig,
    /// The health model.
    pub health: HealthConfig,
    /// Which alerts are written.
    pub alerts: AlertsConfig,
    /// Caps on the entities one account, and the accounts one input partition, may hold.
    pub limits: LimitsConfig,
    /// Processing guarantee and batching.
    pub processing: ProcessingConfig,
    /// Input encodings.
    pub input: InputConfig,
    /// Output encoding.
    pub output: OutputConfig,
    /// Schema registry for Avro.
    pub schema_registry: SchemaRegistryConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// The HTTP API beside it: who may ask, and how other instances reach this one.
    pub api: ApiConfig,
    /// Logging.
    pub log: LogConfig,
}

/// Kafka connection settings.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list. The environment variable
    /// `CS_PULSE_BOOTSTRAP_SERVERS` overrides it.
    pub bootstrap_servers: String,
    /// Consumer group shared by every instance of one deployment.
    pub group_id: String,
    /// How long `run` and `gen` wait, at start, for the brokers to answer before they
    /// give up naming the servers tried. An authentication or TLS failure ends the wait at
    /// once.
    pub connect_timeout_secs: u64,
    /// Any librdkafka property, passed through as is (`security.protocol`, `sasl.*`,
    /// `ssl.*`). A secret ([`is_secret_key`]) must be a `${VAR}` reference to the
    /// environment; values are printed redacted.
    pub client: BTreeMap<String, String>,
    /// The `${VAR}` reference each secret of `client` was given as, for display.
    #[serde(skip)]
    pub secret_references: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("group_id", &self.group_id)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("client", &redacted(&self.client, &self.secret_references))
            .finish()
    }
}

fn default_bootstrap_servers() -> String {
    "127.0.0.1:9092".into()
}
fn default_group_id() -> String {
    "cs-pulse".into()
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: default_bootstrap_servers(),
            group_id: default_group_id(),
            connect_timeout_secs: 30,
            client: BTreeMap::new(),
            secret_references: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Reads a TOML file, applies environment overrides and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses TOML text, applies environment overrides and validates. `origin` names the
    /// source in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with(text, origin, |k| std::env::var(k).ok())
    }

    /// Like [`Config::load`], for commands that use neither Kafka nor the schema registry
    /// (`replay`): their `${VAR}` references are left as they are, so that the variables
    /// need not be set.
    pub fn load_offline(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::parse_toml(&text, &path.display().to_string(), |k| std::env::var(k).ok(), false)
    }

    /// [`Config::from_toml`] with the environment given as a function.
    pub fn from_toml_with(text: &str, origin: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::parse_toml(text, origin, env, true)
    }

    fn parse_toml(
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
        expand: bool,
    ) -> Result<Self, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let key = e.span().and_then(|span| dotted_key_at(text, span.start));
            // toml's own rendering quotes the offending line, which may hold a secret:
            // say where instead.
            let at = e.span().map(|span| {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            let message =
                format!("{}{}", at.unwrap_or_default(), without_values(&e.message().trim().replace('\n', " ")));
            ConfigError::Parse {
                path: origin.to_string(),
                message: match key {
                    Some(key) => format!("key `{key}`: {message}"),
                    None => message,
                },
            }
        })?;
        cfg.keep_secret_references()?;
        if expand {
            cfg.expand_env_references(&env)?;
        }
        cfg.apply_env(&env);
        cfg.validate()?;
        Ok(cfg)
    }

    /// The defaults, with environment overrides applied.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut cfg = Config::default();
        cfg.apply_env(|k| std::env::var(k).ok());
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses a secret written into the file itself: it must be a `${VAR}` reference,
    /// which is kept for display.
    fn keep_secret_references(&mut self) -> Result<(), ConfigError> {
        for (k, v) in &self.kafka.client {
            if !is_secret_key(k) {
                continue;
            }
            if !is_env_reference(v) {
                return Err(invalid(
                    &format!("kafka.client.\"{k}\""),
                    "is a secret and must come from the environment, not the file: write it as \"${VAR}\" \
                     (for example \"${CS_PULSE_KAFKA_PASSWORD}\") and set VAR where cs-pulse runs",
                ));
            }
            self.kafka.secret_references.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    /// Replaces `${VAR}` references in the Kafka and schema registry settings with the
    /// environment's values.
    fn expand_env_references(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        self.kafka.bootstrap_servers = expand_vars("kafka.bootstrap_servers", &self.kafka.bootstrap_servers, env)?;
        self.kafka.group_id = expand_vars("kafka.group_id", &self.kafka.group_id, env)?;
        for (k, v) in self.kafka.client.iter_mut() {
            *v = expand_vars(&format!("kafka.client.\"{k}\""), v, env)?;
        }
        let r = &mut self.schema_registry;
        r.url = expand_vars("schema_registry.url", &r.url, env)?;
        r.ca_location = expand_vars("schema_registry.ca_location", &r.ca_location, env)?;
        Ok(())
    }

    /// Applies `CS_PULSE_BOOTSTRAP_SERVERS`, `CS_PULSE_GROUP_ID`, `CS_PULSE_METRICS_BIND`,
    /// `CS_PULSE_SCHEMA_REGISTRY_URL` and `CS_PULSE_LOG_FORMAT` (`human` or `json`; any
    /// other value is refused by [`Config::validate`]).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("CS_PULSE_GROUP_ID").filter(|v| !v.is_empty()) {
            self.kafka.group_id = v;
        }
        if let Some(v) = get("CS_PULSE_LOG_FORMAT").filter(|v| !v.is_empty()) {
            match v.trim().to_ascii_lowercase().as_str() {
                "json" => self.log.format = LogFormat::Json,
                "human" => self.log.format = LogFormat::Human,
                _ => self.log.bad_env_format = Some(v),
            }
        }
        if let Some(v) = get("CS_PULSE_BOOTSTRAP_SERVERS").filter(|v| !v.is_empty()) {
            self.kafka.bootstrap_servers = v;
        }
        if let Some(v) = get("CS_PULSE_METRICS_BIND").filter(|v| !v.is_empty()) {
            self.metrics.bind = v;
        }
        if let Some(v) = get("CS_PULSE_SCHEMA_REGISTRY_URL").filter(|v| !v.is_empty()) {
            self.schema_registry.url = v;
        }
        if let Some(v) = get("CS_PULSE_API_ADVERTISED_URL").filter(|v| !v.is_empty()) {
            self.api.advertised_url = Some(v);
        }
    }

    /// The transactional id of this instance's producer.
    pub fn transactional_id(&self) -> String {
        let instance = self.processing.instance_id.clone().unwrap_or_else(|| RANDOM_INSTANCE.clone());
        format!("{}-{instance}", self.kafka.group_id)
    }

    /// The state changelog topic: `topics.changelog`, or derived from the group id.
    pub fn changelog_topic(&self) -> String {
        self.topics.changelog.clone().unwrap_or_else(|| format!("{}-state-changelog", self.kafka.group_id))
    }

    /// The effective configuration as TOML. A secret is shown as the `${VAR}` reference
    /// it came from, never as its value, so that the output loads again.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.kafka.client = redacted(&self.kafka.client, &self.kafka.secret_references);
        let header = if shown.kafka.client.keys().any(|k| is_secret_key(k)) {
            "# Secrets are redacted: shown as the ${VAR} references they come from, never as values.\n"
        } else {
            ""
        };
        match toml::to_string_pretty(&shown) {
            Ok(text) => format!("{header}{text}"),
            Err(e) => format!("# cannot render: {e}\n"),
        }
    }
}

/// The dotted key (`time.allowed_lateness_secs`) of the `key = value` line holding byte
/// `offset` of a TOML text, under the last `[table]` header above it.
fn dotted_key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

#[cfg(test)]
mod tests;
