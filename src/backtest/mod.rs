//! `cs-pulse backtest`: does the health model predict churn? The contract is SPEC's
//! "Backtest".
//!
//! The history is replayed through the same driver and engine as `run`
//! ([`crate::replay::replay_kept`]); the alerts and account scores it produces are compared
//! with what customers did (an outcomes file). [`metrics`] holds the numbers as pure
//! functions, [`summary`] puts them together for the band model and each alert kind.

pub mod metrics;
pub mod report;
pub mod summary;

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::model::OutcomeRecord;
use crate::replay::{ReplayError, ReplayFiles, ReplaySummary};
use summary::{Inputs, SignalRow, Summary};

/// What to backtest.
#[derive(Debug, Clone)]
pub struct BacktestOptions {
    /// The history: usage, support, account and team files (the output paths are not used).
    pub inputs: ReplayFiles,
    /// What customers did: NDJSON lines, or an Avro object container file (`.avro`), of
    /// `account_id`, `at`, `outcome`.
    pub outcomes: PathBuf,
    /// How long after a signal a churn counts as foretold by it, days.
    pub horizon_days: i64,
    /// Keep each account's scores and alerts for the report ([`Backtest::timelines`]).
    pub timelines: bool,
}

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// Replaying the history failed.
    #[error("{0}")]
    Replay(#[from] ReplayError),
    /// The outcomes file has a format this build does not read.
    #[error("{0}")]
    Unsupported(String),
    /// The outcomes file could not be read.
    #[error("{path}: {source}")]
    Outcomes {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl BacktestError {
    /// Whether the error is the user's input (exit 2) rather than a runtime failure.
    pub fn is_usage(&self) -> bool {
        match self {
            BacktestError::Replay(e) => e.is_usage(),
            BacktestError::Unsupported(_) => true,
            BacktestError::Outcomes { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        }
    }
}

/// What a backtest found.
#[derive(Debug, Clone, Serialize)]
pub struct Backtest {
    /// The alert policy the history was replayed under.
    pub policy: crate::config::AlertPolicy,
    /// The replay of the history.
    pub replay: ReplaySummary,
    /// Outcome lines read.
    pub outcomes_read: u64,
    /// Outcome lines refused (each logged as a warning with its line and reason).
    pub outcomes_refused: u64,
    /// The horizon, days.
    pub horizon_days: i64,
    /// The numbers.
    pub summary: Summary,
    /// Each account's score and alerts over the history, for the report (when asked for).
    #[serde(skip)]
    pub timelines: report::Timelines,
    /// The outcomes read.
    #[serde(skip)]
    pub outcomes: Vec<OutcomeRecord>,
}

/// Reads an outcomes file (NDJSON, or an Avro container by its `.avro` extension): valid
/// records, and how many were refused (each logged with its line or record number).
fn read_outcomes(path: &Path) -> Result<(Vec<OutcomeRecord>, u64), BacktestError> {
    let shown = path.display().to_string();
    let io = |source| BacktestError::Outcomes { path: shown.clone(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let (mut outcomes, mut refused) = (Vec::new(), 0);
    let mut take = |no: usize, decoded: Result<OutcomeRecord, crate::model::Rejection>| match decoded {
        Ok(o) => outcomes.push(o),
        Err(e) => {
            refused += 1;
            tracing::warn!(file = %shown, line = no, reason = e.reason(), error = %e.detail, "Outcome line refused.");
        }
    };
    if path.extension().is_some_and(|e| e == "avro") {
        let reader = apache_avro::Reader::new(std::io::BufReader::new(file))
            .map_err(|e| BacktestError::Unsupported(format!("{shown}: not an Avro object container file: {e}")))?;
        for (i, value) in reader.enumerate() {
            let value = value.map_err(|e| BacktestError::Unsupported(format!("{shown}: record {}: {e}", i + 1)))?;
            // Read as its JSON form: the same fields and rules as an NDJSON line.
            let decoded = serde_json::Value::try_from(value)
                .map_err(|e| crate::model::Rejection::new(crate::model::Reason::IncompatibleSchema, e.to_string()))
                .and_then(|v| crate::decode::json::decode_outcome(Some(v.to_string().as_bytes())));
            take(i + 1, decoded);
        }
    } else {
        for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
            let line = line.map_err(io)?;
            let text = line.strip_suffix(b"\r").unwrap_or(&line);
            if text.trim_ascii().is_empty() {
                continue;
            }
            take(i + 1, crate::decode::json::decode_outcome(Some(text)));
        }
    }
    Ok((outcomes, refused))
}

/// Replays the history and compares it with the outcomes.
pub fn run(cfg: &Config, opts: &BacktestOptions) -> Result<Backtest, BacktestError> {
    let (outcomes, refused) = read_outcomes(&opts.outcomes)?;
    let (replay, kept) = crate::replay::replay_kept(cfg, &opts.inputs)?;
    let first = kept.account_scores.iter().map(|s| s.at).min();
    let span_ms = match (first, replay.last_tick) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };
    let timelines = match (opts.timelines, first, replay.last_tick) {
        (true, Some(first), Some(last)) => report::Timelines::build(&kept.account_scores, &kept.alerts, first, last),
        _ => report::Timelines::default(),
    };
    let summary = summary::summarize(Inputs {
        alerts: &kept.alerts,
        scores: &kept.account_scores,
        outcomes: &outcomes,
        horizon_days: opts.horizon_days,
        span_ms,
        end_ms: replay.last_tick.unwrap_or(i64::MIN),
    });
    Ok(Backtest {
        policy: cfg.alerts.policy,
        replay,
        outcomes_read: outcomes.len() as u64 + refused,
        outcomes_refused: refused,
        horizon_days: opts.horizon_days,
        summary,
        timelines,
        outcomes,
    })
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.0} %", v * 100.0))
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn row_line(name: &str, r: &SignalRow) -> String {
    format!(
        "  {name:<34} {:>7} {:>9} {:>9} {:>7} {:>10} {:>9} {:>9}\n",
        r.count,
        num(r.per_account_month, 3),
        pct(r.churn.precision),
        pct(r.churn.recall),
        num(r.median_lead_days, 0),
        pct(r.ahead_churned.share),
        pct(r.ahead_retained.share),
    )
}

/// The summary as the terminal shows it.
pub fn format_summary(b: &Backtest) -> String {
    let s = &b.summary;
    let mut out = String::from("\n=== cs-pulse backtest ===\n");
    out.push_str(&format!(
        "accounts scored: {}   months: {:.1}   events: {}   ticks: {}\n",
        s.accounts, s.months, b.replay.events, b.replay.ticks
    ));
    let outcomes: Vec<String> = s.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    out.push_str(&format!(
        "outcomes: {}   (read {}, refused {})\n",
        if outcomes.is_empty() { "none".into() } else { outcomes.join(", ") },
        b.outcomes_read,
        b.outcomes_refused
    ));
    let m = &s.band_model;
    let n = |o: &str| m.scored_outcomes.get(o).copied().unwrap_or(0);
    out.push_str(&format!(
        "score 90 days before the outcome, ROC AUC: churned {} (n {})   contracted {} (n {})   against renewed and expanded (n {})\n",
        num(m.auc_churned, 3),
        n("churned"),
        num(m.auc_contracted, 3),
        n("contracted"),
        n("renewed") + n("expanded"),
    ));
    out.push_str(&format!(
        "alerts per account per month: {} on average, {} at the 90th percentile   (policy {})\n",
        num(s.alerts_per_account_month, 2),
        num(s.alerts_per_account_month_p90, 2),
        b.policy.as_str(),
    ));
    let ahead = |f: &crate::backtest::metrics::Flagged| f.outcomes;
    out.push_str(&format!(
        "\nsignals against churn within {} days; flagged: the share of churned (n {}) and of renewed or expanded (n {}) accounts with one {}-{} days before the outcome:\n  {:<34} {:>7} {:>9} {:>9} {:>7} {:>10} {:>9} {:>9}\n",
        b.horizon_days,
        ahead(&m.critical.ahead_churned),
        ahead(&m.critical.ahead_retained),
        summary::AHEAD_FROM_DAYS,
        summary::AHEAD_TO_DAYS,
        "signal", "count", "/acct/mo", "precision", "recall", "lead days", "churned", "retained"
    ));
    out.push_str(&row_line("entry into red", &m.red));
    out.push_str(&row_line("critical alerts (any kind)", &m.critical));
    for a in &s.alerts {
        out.push_str(&row_line(&format!("{} {}", a.kind.as_str(), a.severity.as_str()), &a.row));
    }
    out
}
