//! Configuration: TOML file, then environment overrides, then one `validate()`.
//!
//! Every struct denies unknown fields so that a typo is an error naming the key, every
//! default is a named function, and durations carry their unit in the key name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

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

/// What secrets print as.
pub const REDACTED: &str = "<redacted>";

/// Whether a librdkafka property holds a secret: a password, passphrase, client secret,
/// private key or the OAUTHBEARER configuration (which may hold any of them).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.trim().to_ascii_lowercase();
    ["password", "passphrase", "secret", "private.key", "ssl.key.pem", "ssl_key", "oauthbearer.config"]
        .iter()
        .any(|s| k.contains(s))
}

/// The pass-through properties with every secret replaced by the `${VAR}` reference it
/// came from (`references`), or by [`REDACTED`].
pub fn redacted(client: &BTreeMap<String, String>, references: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    client
        .iter()
        .map(|(k, v)| {
            let shown = match (is_secret_key(k), references.get(k)) {
                (false, _) => v.clone(),
                (true, Some(reference)) => reference.clone(),
                (true, None) => REDACTED.to_string(),
            };
            (k.clone(), shown)
        })
        .collect()
}

/// Replaces each `${NAME}` in `value` with the environment variable `NAME` (`get`); `$$`
/// is one `$`, and any other `$` stays as it is. `key` names the value in errors. An
/// unset variable is an error, never an empty string; the error never holds a value.
pub fn expand_vars(key: &str, value: &str, get: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(invalid(key, "has a `${` without its closing `}`"));
            };
            let name = &body[..end];
            if !is_variable_name(name) {
                return Err(invalid(
                    key,
                    format!("`${{{name}}}` is not a variable reference: a name is letters, digits and `_`"),
                ));
            }
            match get(name) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(invalid(key, format!("refers to the environment variable {name}, which is not set")))
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `name` can name an environment variable: letters, digits and `_`, not
/// starting with a digit.
fn is_variable_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `value` is exactly one `${NAME}` reference.
fn is_env_reference(value: &str) -> bool {
    value.strip_prefix("${").and_then(|v| v.strip_suffix('}')).is_some_and(is_variable_name)
}

/// A TOML or serde error message without the values it quotes (`invalid type: string
/// "…", expected a map`): the value may be a secret.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = ["invalid type: ", "invalid value: "].iter().filter_map(|p| rest.find(p).map(|i| (i, p))).min()
    {
        let (i, prefix) = i;
        out.push_str(&rest[..i + prefix.len()]);
        let after = &rest[i + prefix.len()..];
        // keep the kind ("integer", "string"), drop what follows up to ", expected"
        let kind_end = after.find([' ', ',']).unwrap_or(after.len());
        out.push_str(&after[..kind_end]);
        rest = match after.find(", expected") {
            Some(j) => &after[j..],
            None => "",
        };
    }
    out.push_str(rest);
    out
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

/// Topic names, inputs and outputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Usage events, keyed by account_id.
    pub usage: String,
    /// Support and feedback events, keyed by account_id; co-partitioned with `usage`.
    pub support: String,
    /// Account records (compacted; a null value deletes).
    pub accounts: String,
    /// Team records (compacted): a team's place in the org chart.
    pub teams: String,
    /// Health alerts out.
    pub alerts: String,
    /// Latest score per entity out (compacted).
    pub scores: String,
    /// Input that could not be decoded, validated or was late, with the reason in headers.
    pub deadletter: String,
    /// The compacted state changelog, partitioned like the inputs. cs-pulse creates it
    /// when missing. Default: `<kafka.group_id>-state-changelog`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changelog: Option<String>,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            usage: "cs.usage.v1".into(),
            support: "cs.support.v1".into(),
            accounts: "cs.accounts.v1".into(),
            teams: "cs.teams.v1".into(),
            alerts: "cs.health.alerts.v1".into(),
            scores: "cs.health.scores.v1".into(),
            deadletter: "cs.deadletter.v1".into(),
            changelog: None,
        }
    }
}

/// Event time settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TimeConfig {
    /// How far behind a partition's newest event time its watermark stays: events up to
    /// this much out of order are still on time.
    pub allowed_lateness_secs: u64,
    /// A partition with no new record for this long (wall clock) stops holding the
    /// pipeline watermark back.
    pub idle_timeout_secs: u64,
    /// Entities are evaluated at every multiple of this interval since the UNIX epoch.
    pub evaluation_interval_secs: u64,
    /// An event whose `occurred_at` is further than this ahead of the process's wall
    /// clock is dead-lettered (reason `future`) and changes nothing: a timestamp in
    /// microseconds, or a sentinel such as year 9999, must not drag the watermark ahead.
    pub max_future_secs: u64,
}

fn default_allowed_lateness_secs() -> u64 {
    3_600
}
fn default_idle_timeout_secs() -> u64 {
    30
}
fn default_evaluation_interval_secs() -> u64 {
    3_600
}
fn default_max_future_secs() -> u64 {
    3_600
}

impl Default for TimeConfig {
    fn default() -> Self {
        Self {
            allowed_lateness_secs: default_allowed_lateness_secs(),
            idle_timeout_secs: default_idle_timeout_secs(),
            evaluation_interval_secs: default_evaluation_interval_secs(),
            max_future_secs: default_max_future_secs(),
        }
    }
}

/// Adoption settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdoptionConfig {
    /// The features whose use makes up `breadth`. Empty leaves breadth out of the score.
    pub key_features: Vec<String>,
}

/// Time-to-production settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MagicNumberConfig {
    /// A change_created and its production deploy pair only when at most this far apart;
    /// an unmatched half expires after it.
    pub pending_ttl_secs: u64,
}

fn default_pending_ttl_secs() -> u64 {
    90 * 86_400
}

impl Default for MagicNumberConfig {
    fn default() -> Self {
        Self { pending_ttl_secs: default_pending_ttl_secs() }
    }
}

/// Caps that keep memory bounded whatever producers write (a request id written into
/// `user_id`, an event id into `team_id`, a flood of new account ids). An event that would
/// create an entity beyond a cap is dead-lettered with reason `limit` and counted in
/// `cs_pulse_limited_events_total{level}`; existing entities keep working. Caps count per
/// account and per input partition, never per instance, so outputs stay deterministic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Accounts one input partition holds (level `account`).
    pub max_accounts_per_partition: u64,
    /// Teams one account holds (level `team`).
    pub max_teams_per_account: u64,
    /// Teams all accounts of one input partition hold together (level `team`).
    pub max_teams_per_partition: u64,
    /// Distinct users with activity held for one account (level `user`).
    pub max_users_per_account: u64,
    /// Users with activity held for all accounts of one input partition (level `user`).
    pub max_users_per_partition: u64,
    /// Tickets one account holds: open ones, and closed ones for 30 days (level `ticket`).
    pub max_tickets_per_account: u64,
    /// Tickets all accounts of one input partition hold together (level `ticket`).
    pub max_tickets_per_partition: u64,
    /// Changes one account holds while pairing and while in a time-to-production window,
    /// and apps in production in its onboarding window (level `change`).
    pub max_changes_per_account: u64,
    /// Changes all accounts of one input partition hold together (level `change`).
    pub max_changes_per_partition: u64,
}

fn default_max_accounts_per_partition() -> u64 {
    50_000
}
fn default_max_teams_per_account() -> u64 {
    5_000
}
fn default_max_users_per_account() -> u64 {
    100_000
}
fn default_max_tickets_per_partition() -> u64 {
    500_000
}
fn default_max_changes_per_partition() -> u64 {
    2_000_000
}
fn default_max_teams_per_partition() -> u64 {
    200_000
}
fn default_max_users_per_partition() -> u64 {
    2_000_000
}
fn default_max_tickets_per_account() -> u64 {
    50_000
}
fn default_max_changes_per_account() -> u64 {
    500_000
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_accounts_per_partition: default_max_accounts_per_partition(),
            max_teams_per_account: default_max_teams_per_account(),
            max_teams_per_partition: default_max_teams_per_partition(),
            max_users_per_account: default_max_users_per_account(),
            max_users_per_partition: default_max_users_per_partition(),
            max_tickets_per_account: default_max_tickets_per_account(),
            max_tickets_per_partition: default_max_tickets_per_partition(),
            max_changes_per_account: default_max_changes_per_account(),
            max_changes_per_partition: default_max_changes_per_partition(),
        }
    }
}

/// Component weights. A weight of 0 leaves the component out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// Seat utilization (28-day active users over seats).
    pub utilization: f64,
    /// Share of key features used in 28 days.
    pub breadth: f64,
    /// Active users this week over the week before.
    pub trend: f64,
    /// DORA bucket of the p50 time to production.
    pub time_to_production: f64,
    /// Open tickets by priority and recent escalations.
    pub support: f64,
    /// NPS and CSAT over 90 days.
    pub sentiment: f64,
    /// Share of champions still active.
    pub champions: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            utilization: 25.0,
            breadth: 10.0,
            trend: 15.0,
            time_to_production: 15.0,
            support: 20.0,
            sentiment: 5.0,
            champions: 10.0,
        }
    }
}

impl Weights {
    /// `(component name, weight)` in the model's fixed order.
    pub fn entries(&self) -> [(&'static str, f64); 7] {
        [
            ("utilization", self.utilization),
            ("breadth", self.breadth),
            ("trend", self.trend),
            ("time_to_production", self.time_to_production),
            ("support", self.support),
            ("sentiment", self.sentiment),
            ("champions", self.champions),
        ]
    }
}

/// Partial weights for a segment: keys left out keep the global value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WeightOverrides {
    /// See [`Weights::utilization`].
    pub utilization: Option<f64>,
    /// See [`Weights::breadth`].
    pub breadth: Option<f64>,
    /// See [`Weights::trend`].
    pub trend: Option<f64>,
    /// See [`Weights::time_to_production`].
    pub time_to_production: Option<f64>,
    /// See [`Weights::support`].
    pub support: Option<f64>,
    /// See [`Weights::sentiment`].
    pub sentiment: Option<f64>,
    /// See [`Weights::champions`].
    pub champions: Option<f64>,
}

/// Band thresholds on the 0-100 score.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Bands {
    /// Score at or above which an entity is green.
    pub green: f64,
    /// Score at or above which an entity is yellow (below it: red).
    pub yellow: f64,
    /// How far past a boundary the score must move before the band changes.
    pub hysteresis: f64,
}

impl Default for Bands {
    fn default() -> Self {
        Self { green: 70.0, yellow: 40.0, hysteresis: 5.0 }
    }
}

/// Partial bands for a segment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BandOverrides {
    /// See [`Bands::green`].
    pub green: Option<f64>,
    /// See [`Bands::yellow`].
    pub yellow: Option<f64>,
    /// See [`Bands::hysteresis`].
    pub hysteresis: Option<f64>,
}

/// Overrides for accounts of one segment (`[health.segments.smb.weights]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentOverrides {
    /// Weights that differ for this segment.
    pub weights: WeightOverrides,
    /// Bands that differ for this segment.
    pub bands: BandOverrides,
}

/// The health model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// For this long after an entity's first evaluated tick its windows are still filling:
    /// scores are written but `health_band_changed` does not fire.
    pub warmup_secs: u64,
    /// Component weights.
    pub weights: Weights,
    /// Band thresholds and hysteresis.
    pub bands: Bands,
    /// Per account segment overrides, by segment name.
    pub segments: BTreeMap<String, SegmentOverrides>,
}

fn default_warmup_secs() -> u64 {
    7 * 86_400
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            warmup_secs: default_warmup_secs(),
            weights: Weights::default(),
            bands: Bands::default(),
            segments: BTreeMap::new(),
        }
    }
}

impl HealthConfig {
    /// The weights and bands in force for an account segment.
    pub fn for_segment(&self, segment: Option<&str>) -> (Weights, Bands) {
        let mut w = self.weights.clone();
        let mut b = self.bands.clone();
        if let Some(o) = segment.and_then(|s| self.segments.get(s)) {
            let ow = &o.weights;
            let set = |dst: &mut f64, v: Option<f64>| {
                if let Some(v) = v {
                    *dst = v;
                }
            };
            set(&mut w.utilization, ow.utilization);
            set(&mut w.breadth, ow.breadth);
            set(&mut w.trend, ow.trend);
            set(&mut w.time_to_production, ow.time_to_production);
            set(&mut w.support, ow.support);
            set(&mut w.sentiment, ow.sentiment);
            set(&mut w.champions, ow.champions);
            set(&mut b.green, o.bands.green);
            set(&mut b.yellow, o.bands.yellow);
            set(&mut b.hysteresis, o.bands.hysteresis);
        }
        (w, b)
    }
}

/// Delivery guarantee of the `run` pipeline.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Outputs, state and input offsets commit in one Kafka transaction.
    #[default]
    ExactlyOnce,
    /// Input offsets are committed after the outputs they caused are acknowledged; a crash
    /// may repeat alerts (consumers dedupe by `alert_id`).
    AtLeastOnce,
}

/// Processing settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    /// `exactly_once` or `at_least_once`.
    pub guarantee: Guarantee,
    /// How long one batch collects input before its outputs are flushed and its offsets
    /// committed.
    pub commit_interval_ms: u64,
    /// The most records one batch holds.
    pub max_batch_records: usize,
    /// Exactly-once: this instance's name in its transactional id
    /// (`<group_id>-<instance_id>`). Keep it stable across restarts (a pod name) so that a
    /// restarted instance fences its predecessor at once; two live instances must differ.
    /// Default: a new random one per start, and a crashed instance's open transaction is
    /// aborted after `transaction_timeout_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Exactly-once: how long the broker keeps a transaction open before aborting it.
    pub transaction_timeout_ms: u64,
}

fn default_commit_interval_ms() -> u64 {
    100
}
fn default_max_batch_records() -> usize {
    50_000
}
fn default_transaction_timeout_ms() -> u64 {
    60_000
}

static RANDOM_INSTANCE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos % 0xffff_ffff)
});

impl Default for ProcessingConfig {
    fn default() -> Self {
        Self {
            guarantee: Guarantee::default(),
            commit_interval_ms: default_commit_interval_ms(),
            max_batch_records: default_max_batch_records(),
            instance_id: None,
            transaction_timeout_ms: default_transaction_timeout_ms(),
        }
    }
}

/// Encoding of a topic's messages: alerts and scores out, events and records in.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// One JSON object per message.
    #[default]
    Json,
    /// Avro, Confluent wire format.
    Avro,
}

/// Encoding of a topic's messages.
pub type Format = OutputFormat;

/// Input encodings: `format` for every input topic, or one per input.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Default for every input: `json` or `avro`.
    pub format: Format,
    /// The usage topic's encoding, when it differs from `format`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Format>,
    /// The support topic's encoding, when it differs from `format`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support: Option<Format>,
    /// The accounts topic's encoding, when it differs from `format`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Format>,
    /// The teams topic's encoding, when it differs from `format`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teams: Option<Format>,
}

impl InputConfig {
    /// The encodings of the usage, support, accounts and teams topics.
    pub fn formats(&self) -> [Format; 4] {
        [self.usage, self.support, self.accounts, self.teams].map(|f| f.unwrap_or(self.format))
    }
}

/// A Confluent-compatible schema registry (Confluent, Apicurio's `/apis/ccompat/v7`,
/// Redpanda, Karapace). Basic auth comes from the environment:
/// `CS_PULSE_SCHEMA_REGISTRY_USERNAME` and `CS_PULSE_SCHEMA_REGISTRY_PASSWORD`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaRegistryConfig {
    /// Base URL, e.g. `http://127.0.0.1:8081`. Empty: no registry; Avro input is read
    /// with cs-pulse's own schemas as the writer schemas. `CS_PULSE_SCHEMA_REGISTRY_URL`
    /// overrides.
    pub url: String,
    /// A PEM file of the CA certificates that sign the registry's HTTPS certificate, in
    /// place of the system's. Empty: the system's trust store.
    pub ca_location: String,
}

/// Output settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// `json` or `avro`.
    pub format: OutputFormat,
}

/// Metrics endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`. `CS_PULSE_METRICS_BIND` overrides.
    pub bind: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { bind: "127.0.0.1:9464".into() }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Logging settings. The level comes from `RUST_LOG` (default `info`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`. `CS_PULSE_LOG_FORMAT` overrides.
    pub format: LogFormat,
    /// A `CS_PULSE_LOG_FORMAT` value that is neither, refused by [`Config::validate`].
    #[serde(skip)]
    pub bad_env_format: Option<String>,
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
    }

    /// Checks values and the rules that span keys. The error names the key and says why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(v) = &self.log.bad_env_format {
            return Err(invalid("CS_PULSE_LOG_FORMAT", format!("is {v:?}; it must be \"human\" or \"json\"")));
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err(invalid("kafka.bootstrap_servers", "must not be empty"));
        }
        if self.kafka.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "must not be empty"));
        }
        in_range("kafka.connect_timeout_secs", self.kafka.connect_timeout_secs, 1, 3600, "seconds")?;
        let t = &self.topics;
        let topics = [
            ("topics.usage", &t.usage),
            ("topics.support", &t.support),
            ("topics.accounts", &t.accounts),
            ("topics.teams", &t.teams),
            ("topics.alerts", &t.alerts),
            ("topics.scores", &t.scores),
            ("topics.deadletter", &t.deadletter),
            ("topics.changelog", &self.changelog_topic()),
        ];
        for (i, (key, name)) in topics.iter().enumerate() {
            if name.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
            if let Some((other, _)) = topics[..i].iter().find(|(_, n)| n == name) {
                return Err(invalid(key, format!("names the same topic '{name}' as `{other}`")));
            }
        }
        let t = &self.time;
        in_range("time.evaluation_interval_secs", t.evaluation_interval_secs, 60, 7 * DAY_SECS, "seconds")?;
        in_range("time.idle_timeout_secs", t.idle_timeout_secs, 1, DAY_SECS, "seconds")?;
        in_range("time.allowed_lateness_secs", t.allowed_lateness_secs, 0, 365 * DAY_SECS, "seconds")?;
        in_range("time.max_future_secs", t.max_future_secs, 0, 365 * DAY_SECS, "seconds")?;
        in_range("magic_number.pending_ttl_secs", self.magic_number.pending_ttl_secs, 1, 365 * DAY_SECS, "seconds")?;
        in_range("health.warmup_secs", self.health.warmup_secs, 0, 10 * 365 * DAY_SECS, "seconds")?;
        let l = &self.limits;
        for (key, v) in [
            ("limits.max_accounts_per_partition", l.max_accounts_per_partition),
            ("limits.max_teams_per_account", l.max_teams_per_account),
            ("limits.max_users_per_account", l.max_users_per_account),
            ("limits.max_teams_per_partition", l.max_teams_per_partition),
            ("limits.max_users_per_partition", l.max_users_per_partition),
            ("limits.max_tickets_per_partition", l.max_tickets_per_partition),
            ("limits.max_changes_per_partition", l.max_changes_per_partition),
            ("limits.max_tickets_per_account", l.max_tickets_per_account),
            ("limits.max_changes_per_account", l.max_changes_per_account),
        ] {
            in_range(key, v, 1, MAX_LIMIT, "")?;
        }
        if self.magic_number.pending_ttl_secs < self.time.allowed_lateness_secs {
            return Err(invalid(
                "magic_number.pending_ttl_secs",
                format!(
                    "{} is shorter than time.allowed_lateness_secs ({}): a pending half would expire before its partner may still arrive",
                    self.magic_number.pending_ttl_secs, self.time.allowed_lateness_secs
                ),
            ));
        }
        if self.adoption.key_features.len() > 1_000 {
            return Err(invalid(
                "adoption.key_features",
                format!("lists {} features; at most 1000", self.adoption.key_features.len()),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.adoption.key_features {
            if f.is_empty() {
                return Err(invalid("adoption.key_features", "holds an empty feature name"));
            }
            if !seen.insert(f) {
                return Err(invalid("adoption.key_features", format!("lists '{f}' twice")));
            }
        }
        check_weights("health.weights", &self.health.weights)?;
        check_bands("health.bands", &self.health.bands)?;
        for name in self.health.segments.keys() {
            let (w, b) = self.health.for_segment(Some(name));
            check_weights(&format!("health.segments.{name}.weights"), &w)?;
            check_bands(&format!("health.segments.{name}.bands"), &b)?;
        }
        let p = &self.processing;
        in_range("processing.commit_interval_ms", p.commit_interval_ms, 1, 60_000, "ms")?;
        in_range("processing.max_batch_records", p.max_batch_records as u64, 1, 1_000_000, "")?;
        // The broker refuses a transaction timeout above its transaction.max.timeout.ms
        // (15 minutes by default).
        in_range("processing.transaction_timeout_ms", p.transaction_timeout_ms, 1_000, 900_000, "ms")?;
        if p.commit_interval_ms >= p.transaction_timeout_ms {
            return Err(invalid(
                "processing.commit_interval_ms",
                format!(
                    "{} is not shorter than processing.transaction_timeout_ms ({}): every transaction would time out",
                    p.commit_interval_ms, p.transaction_timeout_ms
                ),
            ));
        }
        if self.processing.instance_id.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("processing.instance_id", "must not be empty"));
        }
        let url = self.schema_registry.url.trim();
        // `replay` leaves references unexpanded: such a URL is not checked.
        let unexpanded = url.contains("${");
        if !(url.is_empty() || unexpanded || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("schema_registry.url", format!("'{url}' is not an http:// or https:// URL")));
        }
        if self.output.format == OutputFormat::Avro && url.is_empty() {
            return Err(invalid(
                "output.format",
                "avro output needs schema_registry.url: consumers find the alert schema by the id cs-pulse registers",
            ));
        }
        self.metrics
            .bind
            .parse::<SocketAddr>()
            .map_err(|e| invalid("metrics.bind", format!("'{}' is not HOST:PORT ({e})", self.metrics.bind)))?;
        Ok(())
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

/// Seconds in a day, for the ranges of durations.
const DAY_SECS: u64 = 86_400;
/// The largest weight: weights are relative, and a sum of seven stays exact in `f64`.
pub const MAX_WEIGHT: f64 = 1_000_000.0;
/// The largest cap of `[limits]`.
pub const MAX_LIMIT: u64 = 1_000_000_000;

/// Refuses `v` outside `lo..=hi`, naming the key, the value and the range.
fn in_range(key: &str, v: u64, lo: u64, hi: u64, unit: &str) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&v) {
        return Ok(());
    }
    let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
    Err(invalid(key, format!("{v}{unit} is out of range: it must be within {lo}..={hi}{unit}")))
}

fn check_weights(key: &str, w: &Weights) -> Result<(), ConfigError> {
    for (name, v) in w.entries() {
        if !v.is_finite() || !(0.0..=MAX_WEIGHT).contains(&v) {
            return Err(invalid(&format!("{key}.{name}"), format!("{v} must be a number within 0..={MAX_WEIGHT}")));
        }
    }
    if w.entries().iter().all(|(_, v)| *v == 0.0) {
        return Err(invalid(key, "all weights are 0: no component would count"));
    }
    Ok(())
}

fn check_bands(key: &str, b: &Bands) -> Result<(), ConfigError> {
    for (name, v) in [("green", b.green), ("yellow", b.yellow), ("hysteresis", b.hysteresis)] {
        if !v.is_finite() || !(0.0..=100.0).contains(&v) {
            return Err(invalid(&format!("{key}.{name}"), format!("{v} must be within 0..=100")));
        }
    }
    if b.yellow >= b.green {
        return Err(invalid(&format!("{key}.yellow"), format!("{} must be below green ({})", b.yellow, b.green)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(s).map_err(|e| {
            let key = e.span().and_then(|span| dotted_key_at(s, span.start)).unwrap_or_default();
            ConfigError::Parse { path: "t".into(), message: format!("key `{key}`: {e}") }
        })?;
        c.apply_env(|_| None);
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn empty_file_gives_spec_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(c.topics.alerts, "cs.health.alerts.v1");
        assert_eq!(c.time.allowed_lateness_secs, 3600);
        assert_eq!(c.health.weights.support, 20.0);
        assert_eq!(c.health.bands.hysteresis, 5.0);
        assert_eq!(c.processing.guarantee, Guarantee::ExactlyOnce);
        assert_eq!(c.metrics.bind, "127.0.0.1:9464");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("[time]\nallowed_latenes_secs = 5\n").unwrap_err().to_string();
        assert!(e.contains("allowed_latenes_secs"), "{e}");
        let e = parse("[nonsense]\n").unwrap_err().to_string();
        assert!(e.contains("nonsense"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse("[health.bands]\nyellow = 80\n").unwrap_err().to_string();
        assert!(e.contains("health.bands.yellow"), "{e}");
        let e = parse("[health.weights]\nsupport = -1\n").unwrap_err().to_string();
        assert!(e.contains("health.weights.support"), "{e}");
        let e = parse("[metrics]\nbind = \"nowhere\"\n").unwrap_err().to_string();
        assert!(e.contains("metrics.bind"), "{e}");
        let e = parse("[processing]\nguarantee = \"maybe_once\"\n").unwrap_err().to_string();
        assert!(e.contains("maybe_once"), "{e}");
        let e = parse("[topics]\nscores = \"cs.health.alerts.v1\"\n").unwrap_err().to_string();
        assert!(e.contains("topics.scores"), "{e}");
        let e = parse("[health.segments.smb.bands]\ngreen = 30\n").unwrap_err().to_string();
        assert!(e.contains("health.segments.smb.bands.yellow"), "{e}");
        let e = parse("[output]\nformat = \"avro\"\n").unwrap_err().to_string();
        assert!(e.contains("output.format") && e.contains("schema_registry.url"), "{e}");
        let e = parse("[schema_registry]\nurl = \"localhost:8081\"\n").unwrap_err().to_string();
        assert!(e.contains("schema_registry.url"), "{e}");
        let e = parse("[input]\nusage = \"protobuf\"\n").unwrap_err().to_string();
        assert!(e.contains("protobuf"), "{e}");
    }

    #[test]
    fn values_that_overflow_or_make_no_sense_are_refused_naming_the_key() {
        for (toml, key) in [
            ("[time]\nallowed_lateness_secs = 18446744073709551615\n", "time.allowed_lateness_secs"),
            ("[time]\nevaluation_interval_secs = 9223372036854775807\n", "time.evaluation_interval_secs"),
            ("[time]\nevaluation_interval_secs = 1\n", "time.evaluation_interval_secs"),
            ("[time]\nmax_future_secs = 9223372036854775807\n", "time.max_future_secs"),
            ("[time]\nidle_timeout_secs = 0\n", "time.idle_timeout_secs"),
            ("[magic_number]\npending_ttl_secs = 9223372036854775807\n", "magic_number.pending_ttl_secs"),
            ("[health]\nwarmup_secs = 18446744073709551615\n", "health.warmup_secs"),
            ("[health.weights]\nsupport = 1e308\n", "health.weights.support"),
            ("[health.segments.smb.weights]\ntrend = 1e300\n", "health.segments.smb.weights.trend"),
            ("[limits]\nmax_teams_per_account = 0\n", "limits.max_teams_per_account"),
            ("[limits]\nmax_accounts_per_partition = 18446744073709551615\n", "limits.max_accounts_per_partition"),
            ("[processing]\ncommit_interval_ms = 18446744073709551615\n", "processing.commit_interval_ms"),
            ("[processing]\ntransaction_timeout_ms = 18446744073709551615\n", "processing.transaction_timeout_ms"),
            (
                "[processing]\ncommit_interval_ms = 60000\ntransaction_timeout_ms = 30000\n",
                "processing.commit_interval_ms",
            ),
            ("[processing]\nmax_batch_records = 18446744073709551615\n", "processing.max_batch_records"),
        ] {
            let e = parse(toml).unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
        // the largest accepted values still give an engine whose arithmetic fits
        let c = parse(
            "[time]\nallowed_lateness_secs = 31536000\nmax_future_secs = 31536000\nevaluation_interval_secs = 604800\n\
             [magic_number]\npending_ttl_secs = 31536000\n[health]\nwarmup_secs = 315360000\n\
             [health.weights]\nsupport = 1000000\nutilization = 1000000\n",
        )
        .unwrap();
        let e = crate::engine::EngineConfig::from_config(&c);
        assert_eq!(e.tick_of(crate::time::MAX_TIME_MS) % e.interval_ms, 0);
    }

    #[test]
    fn input_formats_default_to_input_format() {
        let c = parse("[input]\nformat = \"avro\"\nteams = \"json\"\n").unwrap();
        use super::OutputFormat::{Avro, Json};
        assert_eq!(c.input.formats(), [Avro, Avro, Avro, Json]);
        assert_eq!(Config::default().input.formats(), [Json; 4]);
    }

    #[test]
    fn segment_overrides_merge_over_globals() {
        let c =
            parse("[health.segments.smb.weights]\nsupport = 40\n[health.segments.smb.bands]\ngreen = 60\n").unwrap();
        let (w, b) = c.health.for_segment(Some("smb"));
        assert_eq!(w.support, 40.0);
        assert_eq!(w.utilization, 25.0);
        assert_eq!(b.green, 60.0);
        assert_eq!(b.yellow, 40.0);
        let (w, _) = c.health.for_segment(Some("enterprise"));
        assert_eq!(w.support, 20.0);
    }

    #[test]
    fn env_overrides_file() {
        let mut c = Config::default();
        c.apply_env(|k| (k == "CS_PULSE_BOOTSTRAP_SERVERS").then(|| "127.0.0.1:19092".to_string()));
        assert_eq!(c.kafka.bootstrap_servers, "127.0.0.1:19092");
        assert_eq!(c.metrics.bind, "127.0.0.1:9464");
    }

    #[test]
    fn log_format_and_group_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let mut c = Config::default();
        c.apply_env(env(&[("CS_PULSE_LOG_FORMAT", "JSON"), ("CS_PULSE_GROUP_ID", "cs-pulse-eu")]));
        assert_eq!((c.log.format, c.kafka.group_id.as_str()), (LogFormat::Json, "cs-pulse-eu"));
        assert!(c.validate().is_ok());
        let mut c = Config::default();
        c.apply_env(env(&[("CS_PULSE_LOG_FORMAT", "yaml")]));
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("CS_PULSE_LOG_FORMAT") && err.contains("\"yaml\""), "{err}");
    }

    #[test]
    fn effective_config_round_trips() {
        let c =
            parse("[adoption]\nkey_features = [\"deploys\"]\n[kafka.client]\n\"security.protocol\" = \"plaintext\"\n")
                .unwrap();
        let again = parse(&c.to_toml()).unwrap();
        assert_eq!(c, again);
    }

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn variable_references_expand_and_dollars_escape() {
        let env = vars(&[("PW", "s3cr$t"), ("HOST", "b1:9093")]);
        assert_eq!(expand_vars("k", "${PW}", &env).unwrap(), "s3cr$t");
        assert_eq!(expand_vars("k", "${HOST},b2:9093", &env).unwrap(), "b1:9093,b2:9093");
        assert_eq!(expand_vars("k", "$$${PW}$", &env).unwrap(), "$s3cr$t$");
        assert_eq!(expand_vars("k", "a$b $ {PW}", &env).unwrap(), "a$b $ {PW}");
        let e = expand_vars("kafka.client.\"sasl.password\"", "${NOPE}", &env).unwrap_err().to_string();
        assert!(e.contains("sasl.password") && e.contains("NOPE") && e.contains("not set"), "{e}");
        let e = expand_vars("k", "${PW", &env).unwrap_err().to_string();
        assert!(e.contains("closing"), "{e}");
        let e = expand_vars("k", "${1X}", &env).unwrap_err().to_string();
        assert!(e.contains("not a variable reference"), "{e}");
    }

    #[test]
    fn secrets_must_be_references_and_print_redacted() {
        let text = "[kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"hunter2\"\n";
        let e = Config::from_toml_with(text, "t", |_| None).unwrap_err().to_string();
        assert!(e.contains("kafka.client.\"sasl.password\"") && e.contains("environment"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        for key in ["ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret", "ssl.key.pem"] {
            let text = format!("[kafka.client]\n\"{key}\" = \"literal\"\n");
            assert!(Config::from_toml_with(&text, "t", |_| None).is_err(), "{key} accepted as a literal");
        }

        let text = "[kafka.client]\n\"sasl.username\" = \"svc\"\n\"sasl.password\" = \"${PW}\"\n\
                    \"ssl.key.password\" = \"${PW}\"\n";
        let cfg = Config::from_toml_with(text, "t", vars(&[("PW", "hunter2")])).unwrap();
        assert_eq!(cfg.kafka.client["sasl.password"], "hunter2", "the client gets the value");
        let shown = cfg.to_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("\"sasl.password\" = \"${PW}\""), "{shown}");
        assert!(shown.starts_with("# Secrets are redacted"), "{shown}");
        // what check-config prints loads again, to the same configuration
        let again = Config::from_toml_with(&shown, "t", vars(&[("PW", "hunter2")])).unwrap();
        assert_eq!(again, cfg);
        assert!(shown.contains("\"sasl.username\" = \"svc\""), "{shown}");
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("hunter2") && debug.contains("svc"), "{debug}");
        // a configuration built in code, with no reference, shows the placeholder
        let mut built = Config::default();
        built.kafka.client.insert("sasl.password".into(), "hunter2".into());
        let shown = built.to_toml();
        assert!(shown.contains("\"sasl.password\" = \"<redacted>\"") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn a_parse_error_names_the_key_and_never_echoes_the_line_or_the_value() {
        let text = "[kafka]\nconnect_timeout_secs = 5\n[kafka.client]\n\"sasl.password\" = \"hunter2\n";
        let e = Config::from_toml_with(text, "t", |_| None).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        for text in [
            "[kafka.client]\n\"sasl.password\" = 12345678\n",
            "[kafka]\nclient = \"sasl.password=hunter2\"\n",
            "[kafka.client]\n\"sasl.password\" = [\"hunter2\"]\n",
        ] {
            let e = Config::from_toml_with(text, "t", |_| None).unwrap_err().to_string();
            assert!(!e.contains("hunter2") && !e.contains("12345678"), "{e}");
            assert!(e.contains("invalid type") && e.contains("expected"), "{e}");
        }
        assert_eq!(
            without_values("invalid type: string \"a, b\", expected a map; invalid value: integer `-1`, expected u64"),
            "invalid type: string, expected a map; invalid value: integer, expected u64"
        );
    }

    #[test]
    fn replay_leaves_references_unexpanded_even_in_the_registry_url() {
        let dir = std::env::temp_dir().join(format!("cs-pulse-offline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(
            &p,
            "[kafka.client]\n\"sasl.password\" = \"${CS_PULSE_UNSET_TEST_VAR}\"\n\
             [schema_registry]\nurl = \"${CS_PULSE_UNSET_TEST_URL}\"\n",
        )
        .unwrap();
        let cfg = Config::load_offline(&p).unwrap();
        assert_eq!(cfg.schema_registry.url, "${CS_PULSE_UNSET_TEST_URL}");
        assert!(Config::load(&p).is_err(), "run and check-config need the variables");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn registry_and_bootstrap_references_expand_and_the_connect_timeout_is_bounded() {
        let text = "[kafka]\nbootstrap_servers = \"${B}\"\n[schema_registry]\nurl = \"https://${R}\"\n\
                    ca_location = \"${CA}\"\n";
        let cfg =
            Config::from_toml_with(text, "t", vars(&[("B", "h:9093"), ("R", "reg:8081"), ("CA", "/ca.pem")])).unwrap();
        assert_eq!(cfg.kafka.bootstrap_servers, "h:9093");
        assert_eq!(cfg.schema_registry.url, "https://reg:8081");
        assert_eq!(cfg.schema_registry.ca_location, "/ca.pem");
        let e = parse("[kafka]\nconnect_timeout_secs = 0\n").unwrap_err().to_string();
        assert!(e.contains("kafka.connect_timeout_secs"), "{e}");
    }

    proptest::proptest! {
        /// Any text: expanding never panics; text without `$` is unchanged; and a text
        /// with every `$` doubled expands back to itself.
        #[test]
        fn expanding_any_text_is_total_and_doubled_dollars_are_literal(text in ".{0,40}") {
            let env = vars(&[("A", "x")]);
            let _ = expand_vars("k", &text, &env);
            if !text.contains('$') {
                proptest::prop_assert_eq!(expand_vars("k", &text, &env).unwrap(), text.clone());
            }
            let escaped = text.replace('$', "$$");
            proptest::prop_assert_eq!(expand_vars("k", &escaped, &env).unwrap(), text);
        }
    }
}
