//! The configuration's sections below `[kafka]`: each key with its default and its
//! documentation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// A late event (its tick already evaluated) is still applied to the state, unless it
    /// is more than this older than the last evaluated tick: then it is dead-lettered
    /// (reason `too_late`). Support tickets synced from a CRM in batches arrive late.
    pub max_lateness_secs: u64,
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
fn default_max_lateness_secs() -> u64 {
    90 * 86_400
}

impl Default for TimeConfig {
    fn default() -> Self {
        Self {
            allowed_lateness_secs: default_allowed_lateness_secs(),
            idle_timeout_secs: default_idle_timeout_secs(),
            evaluation_interval_secs: default_evaluation_interval_secs(),
            max_future_secs: default_max_future_secs(),
            max_lateness_secs: default_max_lateness_secs(),
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

pub(super) static RANDOM_INSTANCE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
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

/// Which alerts reach the alerts topic.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AlertPolicy {
    /// What a customer-success team acts on: at most one alert per account per tick
    /// besides `support_escalation`, naming every entity and condition that triggered;
    /// only the conditions the backtest showed to foretell churn (see the README).
    #[default]
    Focused,
    /// Every rule of the alert table, for every entity, as it fires.
    All,
}

impl AlertPolicy {
    /// The configured name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertPolicy::Focused => "focused",
            AlertPolicy::All => "all",
        }
    }
}

/// Alert settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// `focused` (default) or `all`.
    pub policy: AlertPolicy,
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

/// The HTTP API (`/v1/...` and the account pages), served on `metrics.bind`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The name of the environment variable that holds the bearer token every request
    /// but `/healthz` and `/readyz` must carry. Unset: no token is asked for (the API binds
    /// to loopback by default). The token itself is never in the file and never logged.
    pub token_env: Option<String>,
    /// The URL other instances of the group reach this one's API at, for example
    /// `http://10.1.2.3:9464`. `CS_PULSE_API_ADVERTISED_URL` overrides. Unset: derived from
    /// `metrics.bind` when that names a host (not 0.0.0.0 or ::).
    pub advertised_url: Option<String>,
}

impl ApiConfig {
    /// The advertised URL: the configured one, or `http://` and `bind` when it names a
    /// host; `None` when other instances cannot be told where this one is.
    pub fn advertised(&self, bind: &str) -> Option<String> {
        if let Some(u) = self.advertised_url.as_deref().filter(|u| !u.trim().is_empty()) {
            return Some(u.trim().trim_end_matches('/').to_string());
        }
        let addr: std::net::SocketAddr = bind.parse().ok()?;
        (!addr.ip().is_unspecified() && addr.port() != 0).then(|| format!("http://{addr}"))
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
    /// A `CS_PULSE_LOG_FORMAT` value that is neither, refused by [`crate::config::Config::validate`].
    #[serde(skip)]
    pub bad_env_format: Option<String>,
}
