//! A backtest's summary: the [`metrics`](super::metrics) of the band model and of each alert
//! kind and severity, from what a replay wrote (alerts, account score records) and the
//! outcomes.
//!
//! - The band model's signals are an account's entries into red (a score record in red
//!   whose previous one was in another band; an account first scored red has not entered
//!   it), and critical alerts of any kind.
//! - Recall counts the churns of accounts scored before they churned: an account the
//!   history never saw, or saw only after it left, cannot have been warned about.
//! - Lead times run from the first signal within the horizon before the churn.
//! - Discrimination: each outcome is paired with its account's score 90 days before it
//!   (the last score record at or before then, when then is within the history); churned
//!   accounts are told apart from renewed and expanded ones, and contracted ones on their
//!   own.
//! - An alert counts for its entity's account, whatever the entity's level.
//! - Flagged ahead: of the churns, and of the renewals and expansions, whose whole window
//!   from 180 down to 60 days before them the account was scored in, the share whose
//!   account had a signal in that window: early enough to act on, and telling churn from
//!   staying only if the second share is much lower than the first.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::metrics::{
    auc, churn_times, flagged_ahead, lead_times_days, median, per_account_month, quantile, Flagged, PrecisionRecall,
    Signal,
};
use crate::model::{Alert, AlertKind, Band, Level, Outcome, OutcomeRecord, ScoreRecord, Severity};
use crate::time::DAY_MS;

/// How long before an outcome the score that predicts it is read.
pub const SCORE_LEAD_DAYS: i64 = 90;

/// The window ahead of an outcome in which a signal counts as flagging it: from this many
/// days before it...
pub const AHEAD_FROM_DAYS: i64 = 180;
/// ...down to this many.
pub const AHEAD_TO_DAYS: i64 = 60;

/// What a backtest compares.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Every alert the replay wrote.
    pub alerts: &'a [Alert],
    /// Every score record the replay wrote (only accounts' are read), in time order.
    pub scores: &'a [ScoreRecord],
    /// What customers did.
    pub outcomes: &'a [OutcomeRecord],
    /// How long after a signal a churn counts as foretold by it.
    pub horizon_days: i64,
    /// The time the replay covered, ms: from its first to its last tick.
    pub span_ms: i64,
    /// The last tick of the replay, epoch ms: a score is not read for a time after it.
    pub end_ms: i64,
}

/// The numbers of one kind of signal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalRow {
    /// Signals.
    pub count: u64,
    /// Signals per account per month.
    pub per_account_month: Option<f64>,
    /// Against churn within the horizon.
    pub churn: PrecisionRecall,
    /// Median days from the first signal within the horizon before a churn to the churn.
    pub median_lead_days: Option<f64>,
    /// Churns flagged 180 to 60 days ahead.
    pub ahead_churned: Flagged,
    /// Renewals and expansions flagged 180 to 60 days ahead: false alarms.
    pub ahead_retained: Flagged,
}

/// The band model's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BandModel {
    /// Entries into red, as a signal.
    pub red: SignalRow,
    /// Critical alerts of any kind, as a signal (lead time from the first).
    pub critical: SignalRow,
    /// ROC AUC of the account score 90 days before the outcome: churned against renewed or
    /// expanded.
    pub auc_churned: Option<f64>,
    /// The same for contracted against renewed or expanded.
    pub auc_contracted: Option<f64>,
    /// Outcomes with a score 90 days before them, by outcome.
    pub scored_outcomes: BTreeMap<&'static str, u64>,
}

/// A backtest's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Accounts with a score record.
    pub accounts: u64,
    /// Months the replay covered.
    pub months: f64,
    /// Outcomes by kind.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// The band model.
    pub band_model: BandModel,
    /// Each alert kind and severity that fired, with its numbers.
    pub alerts: Vec<AlertRow>,
    /// Alerts of every kind per account per month: the mean over accounts...
    pub alerts_per_account_month: Option<f64>,
    /// ...and the 90th percentile (nearest rank).
    pub alerts_per_account_month_p90: Option<f64>,
}

/// The numbers of one alert kind and severity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    /// The kind.
    pub kind: AlertKind,
    /// The severity.
    pub severity: Severity,
    /// Its numbers.
    #[serde(flatten)]
    pub row: SignalRow,
}

/// What every row is measured against.
struct Against<'a> {
    churns: BTreeMap<String, i64>,
    horizon_ms: i64,
    accounts: u64,
    span_ms: i64,
    /// Outcomes whose window ahead the history covers: churns, and renewals or expansions.
    ahead_churned: Vec<(&'a str, i64)>,
    ahead_retained: Vec<(&'a str, i64)>,
}

impl Against<'_> {
    fn row(&self, signals: &[Signal]) -> SignalRow {
        let ahead = |outcomes: &[(&str, i64)]| {
            flagged_ahead(signals, outcomes, AHEAD_FROM_DAYS * DAY_MS, AHEAD_TO_DAYS * DAY_MS)
        };
        SignalRow {
            count: signals.len() as u64,
            per_account_month: per_account_month(signals.len() as u64, self.accounts, self.span_ms),
            churn: super::metrics::precision_recall(signals, &self.churns, self.horizon_ms),
            median_lead_days: median(&lead_times_days(signals, &self.churns, self.horizon_ms)),
            ahead_churned: ahead(&self.ahead_churned),
            ahead_retained: ahead(&self.ahead_retained),
        }
    }
}

/// Entries into red, from account score records in time order.
fn red_entries(scores: &[ScoreRecord]) -> Vec<Signal> {
    let mut last: BTreeMap<&str, Band> = BTreeMap::new();
    let mut out = Vec::new();
    for s in scores.iter().filter(|s| s.entity.level == Level::Account) {
        let before = last.insert(&s.entity.account_id, s.band);
        if s.band == Band::Red && before.is_some_and(|b| b != Band::Red) {
            out.push(Signal { account_id: s.entity.account_id.clone(), at: s.at });
        }
    }
    out
}

/// Each account's score history, in time order.
fn histories(scores: &[ScoreRecord]) -> BTreeMap<&str, Vec<(i64, f64)>> {
    let mut h: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
    for s in scores.iter().filter(|s| s.entity.level == Level::Account) {
        h.entry(&s.entity.account_id).or_default().push((s.at, s.score));
    }
    for v in h.values_mut() {
        v.sort_by_key(|(at, _)| *at);
    }
    h
}

/// The account's score at `at`: its last record at or before then.
fn score_at(history: &[(i64, f64)], at: i64) -> Option<f64> {
    let n = history.partition_point(|(t, _)| *t <= at);
    n.checked_sub(1).map(|i| history[i].1)
}

/// The summary of a backtest.
pub fn summarize(inputs: Inputs<'_>) -> Summary {
    let horizon_ms = inputs.horizon_days.saturating_mul(DAY_MS);
    let mut first_scored: BTreeMap<&str, i64> = BTreeMap::new();
    for s in inputs.scores.iter().filter(|s| s.entity.level == Level::Account) {
        let t = first_scored.entry(s.entity.account_id.as_str()).or_insert(s.at);
        *t = (*t).min(s.at);
    }
    let all_churns = churn_times(inputs.outcomes.iter().map(|o| (o.account_id.as_str(), o.at, o.outcome)));
    let mut churns = all_churns.clone();
    churns.retain(|account, at| first_scored.get(account.as_str()).is_some_and(|first| first <= at));
    // A signal after its account churned is about an account that is gone, whether or
    // not recall counts that churn.
    let gone = |s: &Signal| all_churns.get(&s.account_id).is_some_and(|c| s.at > *c);
    let accounts: BTreeSet<&str> = inputs
        .scores
        .iter()
        .filter(|s| s.entity.level == Level::Account)
        .map(|s| s.entity.account_id.as_str())
        .collect();
    let n_accounts = accounts.len() as u64;
    let span = inputs.span_ms;
    let signal = |a: &Alert| Signal { account_id: a.entity.account_id.clone(), at: a.at };

    let critical: Vec<Signal> =
        inputs.alerts.iter().filter(|a| a.severity == Severity::Critical).map(signal).filter(|s| !gone(s)).collect();
    let mut by_kind: BTreeMap<(AlertKind, Severity), Vec<Signal>> = BTreeMap::new();
    for a in inputs.alerts {
        let s = signal(a);
        if !gone(&s) {
            by_kind.entry((a.kind, a.severity)).or_default().push(s);
        }
    }

    let ahead = |wanted: &[Outcome]| -> Vec<(&str, i64)> {
        inputs
            .outcomes
            .iter()
            .filter(|o| wanted.contains(&o.outcome))
            .filter(|o| {
                let covered_from = first_scored
                    .get(o.account_id.as_str())
                    .is_some_and(|f| *f <= o.at.saturating_sub(AHEAD_FROM_DAYS * DAY_MS));
                covered_from && o.at.saturating_sub(AHEAD_TO_DAYS * DAY_MS) <= inputs.end_ms
            })
            .map(|o| (o.account_id.as_str(), o.at))
            .collect()
    };
    let against = Against {
        ahead_churned: ahead(&[Outcome::Churned]),
        ahead_retained: ahead(&[Outcome::Renewed, Outcome::Expanded]),
        churns,
        horizon_ms,
        accounts: n_accounts,
        span_ms: span,
    };
    let mut per_account: BTreeMap<&str, u64> = accounts.iter().map(|a| (*a, 0)).collect();
    for a in inputs.alerts {
        if let Some(n) = per_account.get_mut(a.entity.account_id.as_str()) {
            *n += 1;
        }
    }
    let volumes: Vec<f64> = per_account.values().filter_map(|n| per_account_month(*n, 1, span)).collect();

    let history = histories(inputs.scores);
    let mut scored: BTreeMap<Outcome, Vec<f64>> = BTreeMap::new();
    for o in inputs.outcomes {
        let before = o.at.saturating_sub(SCORE_LEAD_DAYS * DAY_MS);
        if before > inputs.end_ms {
            continue;
        }
        if let Some(s) = history.get(o.account_id.as_str()).and_then(|h| score_at(h, before)) {
            scored.entry(o.outcome).or_default().push(s);
        }
    }
    let of = |o: Outcome| scored.get(&o).cloned().unwrap_or_default();
    let stayed: Vec<f64> = of(Outcome::Renewed).into_iter().chain(of(Outcome::Expanded)).collect();

    let mut outcomes = BTreeMap::new();
    for o in inputs.outcomes {
        *outcomes.entry(o.outcome.as_str()).or_insert(0) += 1;
    }
    Summary {
        accounts: n_accounts,
        months: span as f64 / DAY_MS as f64 / super::metrics::DAYS_PER_MONTH,
        outcomes,
        band_model: BandModel {
            red: against.row(&red_entries(inputs.scores).into_iter().filter(|s| !gone(s)).collect::<Vec<_>>()),
            critical: against.row(&critical),
            auc_churned: auc(&of(Outcome::Churned), &stayed),
            auc_contracted: auc(&of(Outcome::Contracted), &stayed),
            scored_outcomes: scored.iter().map(|(o, v)| (o.as_str(), v.len() as u64)).collect(),
        },
        alerts: by_kind
            .into_iter()
            .map(|((kind, severity), signals)| AlertRow { kind, severity, row: against.row(&signals) })
            .collect(),
        alerts_per_account_month: per_account_month(per_account.values().sum(), n_accounts, span),
        alerts_per_account_month_p90: quantile(&volumes, 0.9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EntityRef, Stage};

    const D: i64 = DAY_MS;

    fn score(account: &str, day: i64, score: f64, band: Band) -> ScoreRecord {
        ScoreRecord {
            entity: EntityRef { level: Level::Account, id: account.into(), account_id: account.into() },
            at: day * D,
            score,
            band,
            components: BTreeMap::new(),
        }
    }

    fn alert(account: &str, day: i64, kind: AlertKind, severity: Severity) -> Alert {
        Alert {
            alert_id: format!("{account}-{day}"),
            kind,
            severity,
            entity: EntityRef { level: Level::Team, id: "t".into(), account_id: account.into() },
            at: day * D,
            emitted_at: 0,
            stage: Stage::Adoption,
            health: None,
            components: BTreeMap::new(),
            reasons: Vec::new(),
            renewal_in_days: None,
            details: serde_json::Map::new(),
        }
    }

    /// The summary of a history of `days` days, with the default horizon.
    fn over_days(alerts: &[Alert], scores: &[ScoreRecord], outcomes: &[OutcomeRecord], days: i64) -> Summary {
        summarize(Inputs { alerts, scores, outcomes, horizon_days: 180, span_ms: days * D, end_ms: days * D })
    }

    fn outcome(account: &str, day: i64, outcome: Outcome) -> OutcomeRecord {
        OutcomeRecord { account_id: account.into(), at: day * D, outcome }
    }

    #[test]
    fn a_small_history_by_hand() {
        use Band::{Green, Red, Yellow};
        // a: green, into red on day 100, churns on day 200.
        // b: yellow, red on day 50, back to yellow, red again on day 300; renews on day 360.
        // c: green throughout, renews on day 360.
        // d: green then yellow, contracts on day 360.
        let scores = [
            score("a", 0, 80.0, Green),
            score("b", 0, 60.0, Yellow),
            score("c", 0, 90.0, Green),
            score("d", 0, 85.0, Green),
            score("b", 50, 40.0, Red),
            score("b", 60, 66.0, Yellow),
            score("a", 100, 30.0, Red),
            score("d", 200, 70.0, Yellow),
            score("b", 300, 45.0, Red),
            // e is red from its first score: it never entered red.
            score("e", 0, 20.0, Red),
        ];
        let alerts = [
            alert("a", 90, AlertKind::UsageDrop, Severity::Critical),
            alert("a", 95, AlertKind::UsageDrop, Severity::Warning),
            alert("b", 300, AlertKind::UsageDrop, Severity::Critical),
            alert("c", 10, AlertKind::SupportEscalation, Severity::Critical),
        ];
        let outcomes = [
            outcome("a", 200, Outcome::Churned),
            outcome("b", 360, Outcome::Renewed),
            outcome("c", 360, Outcome::Renewed),
            outcome("d", 360, Outcome::Contracted),
        ];
        let s = over_days(&alerts, &scores, &outcomes, 360);
        assert_eq!(s.accounts, 5);
        // Entries into red: a day 100, b day 50, b day 300. Only a's precedes a churn.
        let red = &s.band_model.red;
        assert_eq!((red.count, red.churn.signals_before_churn), (3, 1));
        assert_eq!((red.churn.churned, red.churn.churned_with_signal), (1, 1));
        assert_eq!(red.median_lead_days, Some(100.0));
        // First critical alert before a's churn: day 90, 110 days of lead. Three critical
        // alerts, one before a churn.
        let crit = &s.band_model.critical;
        assert_eq!((crit.count, crit.churn.signals_before_churn), (3, 1));
        assert_eq!(crit.median_lead_days, Some(110.0));
        // Scores 90 days before: a (day 110) 30; b (day 270) 66; c (day 270) 90; d (day
        // 270) 70. Churned {30} against stayed {66, 90}: AUC 1. Contracted {70} against
        // {66, 90}: lower than 90 only, AUC 0.5.
        assert_eq!(s.band_model.auc_churned, Some(1.0));
        assert_eq!(s.band_model.auc_contracted, Some(0.5));
        assert_eq!(s.band_model.scored_outcomes.values().sum::<u64>(), 4);
        // By kind and severity, in kind order: usage_drop critical (2), usage_drop warning
        // (1), support_escalation critical (1).
        let counts: Vec<(AlertKind, Severity, u64)> =
            s.alerts.iter().map(|a| (a.kind, a.severity, a.row.count)).collect();
        assert!(counts.contains(&(AlertKind::UsageDrop, Severity::Critical, 2)), "{counts:?}");
        assert!(counts.contains(&(AlertKind::UsageDrop, Severity::Warning, 1)), "{counts:?}");
        assert!(counts.contains(&(AlertKind::SupportEscalation, Severity::Critical, 1)), "{counts:?}");
        let drop_crit = &s
            .alerts
            .iter()
            .find(|a| a.kind == AlertKind::UsageDrop && a.severity == Severity::Critical)
            .expect("row")
            .row;
        assert_eq!(drop_crit.churn.precision, Some(0.5));
        // 2 alerts over 5 accounts in 360 days.
        let months = 360.0 / super::super::metrics::DAYS_PER_MONTH;
        assert!((drop_crit.per_account_month.unwrap_or(0.0) - 2.0 / 5.0 / months).abs() < 1e-12);
        assert_eq!(s.outcomes.get("renewed"), Some(&2));
    }

    #[test]
    fn churns_the_history_never_saw_and_scores_after_it_do_not_count() {
        // b churned before its first score; c's outcome is 90 days after the history ends
        // plus a year, so no score is read for it.
        let scores =
            [score("a", 0, 80.0, Band::Green), score("b", 100, 30.0, Band::Red), score("c", 0, 90.0, Band::Green)];
        let alerts = [alert("b", 100, AlertKind::UsageDrop, Severity::Critical)];
        let outcomes = [
            outcome("a", 50, Outcome::Renewed),
            outcome("b", 60, Outcome::Churned),
            outcome("c", 600, Outcome::Churned),
        ];
        let s = over_days(&alerts, &scores, &outcomes, 100);
        // Recall counts c (scored before it churned), not b.
        assert_eq!(s.band_model.critical.churn.churned, 1);
        // b's alert came after its churn: left out of precision.
        assert_eq!(s.band_model.critical.churn.signals, 0);
        // c's score would be read on day 510, after the history: none.
        assert_eq!(s.band_model.auc_churned, None);
    }

    #[test]
    fn flagged_ahead_counts_only_outcomes_whose_window_the_history_covers() {
        // a: scored from day 0, churns on day 200 (window days 20..140), alert on day 100.
        // b: scored from day 50, churns on day 200: its window starts before its first score.
        // c: scored from day 0, churns on day 400: the history (300 days) ends before day 340.
        let scores =
            [score("a", 0, 80.0, Band::Green), score("b", 50, 80.0, Band::Green), score("c", 0, 80.0, Band::Green)];
        let alerts = [alert("a", 100, AlertKind::UsageDrop, Severity::Critical)];
        let outcomes = [
            outcome("a", 200, Outcome::Churned),
            outcome("b", 200, Outcome::Churned),
            outcome("c", 400, Outcome::Churned),
        ];
        let s = over_days(&alerts, &scores, &outcomes, 300);
        let f = s.band_model.critical.ahead_churned;
        assert_eq!((f.outcomes, f.flagged, f.share), (1, 1, Some(1.0)));
        assert_eq!(s.band_model.critical.ahead_retained.outcomes, 0);
        // one alert over three accounts and 300 days: the mean; a's is the 90th percentile
        let months = 300.0 / super::super::metrics::DAYS_PER_MONTH;
        assert!((s.alerts_per_account_month.unwrap_or(0.0) - 1.0 / 3.0 / months).abs() < 1e-12);
        assert!((s.alerts_per_account_month_p90.unwrap_or(0.0) - 1.0 / months).abs() < 1e-12);
    }

    #[test]
    fn no_score_before_an_outcome_leaves_it_out_of_the_auc() {
        let scores = [score("a", 100, 30.0, Band::Red)];
        let outcomes = [outcome("a", 150, Outcome::Churned), outcome("b", 150, Outcome::Renewed)];
        let s = over_days(&[], &scores, &outcomes, 150);
        assert_eq!(s.band_model.auc_churned, None);
        assert!(s.band_model.scored_outcomes.is_empty());
        assert!(s.alerts.is_empty());
    }
}
