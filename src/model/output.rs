//! What cs-pulse writes: alerts and score records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A level of a customer's org chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A team (has its own `team_id`).
    Team,
    /// A group of teams.
    Group,
    /// A business unit.
    BusinessUnit,
    /// A division.
    Division,
    /// The whole customer.
    Account,
}

impl Level {
    /// Every level, bottom up.
    pub const ALL: [Level; 5] = [Level::Team, Level::Group, Level::BusinessUnit, Level::Division, Level::Account];

    /// The snake_case name used in JSON, keys and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Team => "team",
            Level::Group => "group",
            Level::BusinessUnit => "business_unit",
            Level::Division => "division",
            Level::Account => "account",
        }
    }
}

/// An entity of the org chart: `(level, account_id, id)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    /// Its level.
    pub level: Level,
    /// The team id, the group/business unit/division name, or the account id.
    pub id: String,
    /// The customer it belongs to.
    pub account_id: String,
}

impl EntityRef {
    /// The key of its score record: `level:id` for teams and accounts, and
    /// `level:account_id/id` for groups, business units and divisions, whose names are
    /// unique only within an account.
    pub fn score_key(&self) -> String {
        match self.level {
            Level::Team | Level::Account => format!("{}:{}", self.level.as_str(), self.id),
            _ => format!("{}:{}/{}", self.level.as_str(), self.account_id, self.id),
        }
    }
}

/// A health band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// Below the yellow threshold.
    Red,
    /// Between the thresholds.
    Yellow,
    /// At or above the green threshold.
    Green,
}

impl Band {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Red => "red",
            Band::Yellow => "yellow",
            Band::Green => "green",
        }
    }
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Good news or a milestone.
    Info,
    /// Worth a look this week.
    Warning,
    /// Act now.
    Critical,
}

impl Severity {
    /// One level up (near renewal): info to warning, warning to critical.
    pub fn raised(self) -> Self {
        match self {
            Severity::Info => Severity::Warning,
            _ => Severity::Critical,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Where an account is in its lifecycle at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The first 90 days of the contract (and before it).
    Onboarding,
    /// Neither onboarding nor near renewal.
    Adoption,
    /// Within 90 days of the renewal date.
    Renewal,
}

/// The kinds of alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The health band changed.
    HealthBandChanged,
    /// Weekly active users fell by 30% or more.
    UsageDrop,
    /// Median time to production rose by 50% or more.
    MagicNumberRegressed,
    /// A champion has been inactive for 14 days.
    ChampionInactive,
    /// A ticket was escalated, or a P1 opened.
    SupportEscalation,
    /// 60 days into the contract without an app in production.
    OnboardingAtRisk,
    /// 90 days into the contract without an app in production.
    OnboardingMissed,
    /// First or third app in production within 90 days.
    OnboardingMilestone,
}

impl AlertKind {
    /// Every kind, for metric label pre-registration and summaries.
    pub const ALL: [AlertKind; 8] = [
        AlertKind::HealthBandChanged,
        AlertKind::UsageDrop,
        AlertKind::MagicNumberRegressed,
        AlertKind::ChampionInactive,
        AlertKind::SupportEscalation,
        AlertKind::OnboardingAtRisk,
        AlertKind::OnboardingMissed,
        AlertKind::OnboardingMilestone,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::HealthBandChanged => "health_band_changed",
            AlertKind::UsageDrop => "usage_drop",
            AlertKind::MagicNumberRegressed => "magic_number_regressed",
            AlertKind::ChampionInactive => "champion_inactive",
            AlertKind::SupportEscalation => "support_escalation",
            AlertKind::OnboardingAtRisk => "onboarding_at_risk",
            AlertKind::OnboardingMissed => "onboarding_missed",
            AlertKind::OnboardingMilestone => "onboarding_milestone",
        }
    }
}

/// The health part of an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthInfo {
    /// Score at `at`, 0-100, one decimal.
    pub score: f64,
    /// Band at `at`.
    pub band: Band,
    /// Score at the previous tick.
    pub previous_score: Option<f64>,
    /// Band at the previous tick.
    pub previous_band: Option<Band>,
}

/// An alert on the risk topic. Times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic id (kind, level, entity, `at`; or the event id for
    /// support_escalation) so consumers can dedupe.
    pub alert_id: String,
    /// What happened.
    pub kind: AlertKind,
    /// How urgent, after the renewal raise.
    pub severity: Severity,
    /// Who it is about.
    pub entity: EntityRef,
    /// The tick, or the triggering event's occurred_at for support_escalation.
    pub at: i64,
    /// Wall-clock time the alert was produced.
    pub emitted_at: i64,
    /// Lifecycle stage of the account at `at`.
    pub stage: Stage,
    /// Score and band now and at the previous tick; null for support_escalation.
    pub health: Option<HealthInfo>,
    /// Component scores at `at`.
    pub components: BTreeMap<String, f64>,
    /// Human sentences with the numbers that drove the alert, most important first.
    pub reasons: Vec<String>,
    /// Whole days from `at` to the renewal date, when it is not past.
    pub renewal_in_days: Option<i64>,
    /// Kind-specific numbers.
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// The latest score of an entity (the scores topic and `--scores`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    /// Who.
    pub entity: EntityRef,
    /// The tick.
    pub at: i64,
    /// 0-100, one decimal.
    pub score: f64,
    /// Band after hysteresis.
    pub band: Band,
    /// Component scores.
    pub components: BTreeMap<String, f64>,
}
