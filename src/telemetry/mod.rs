//! Telemetry: Prometheus metrics, the `/metrics` `/healthz` `/readyz` endpoint, logging,
//! and one struct per notable occurrence whose `emit()` both logs and counts.

mod http;
mod metrics;

pub use http::serve;
pub use metrics::{metrics, Metrics};

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::LogFormat;
use crate::decode::Reason;
use crate::model::Alert;

static READY: AtomicBool = AtomicBool::new(false);

/// Input partitions stopped after a failure, with what `/readyz` says of each.
static FAILED: std::sync::Mutex<std::collections::BTreeMap<i32, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Marks input partition `partition` stopped (`/readyz` answers 503 and says why) or, with
/// `None`, no longer stopped (revoked from this instance).
pub fn set_partition_failed(partition: i32, why: Option<String>) {
    if let Ok(mut m) = FAILED.lock() {
        match why {
            Some(w) => {
                m.insert(partition, w);
            }
            None => {
                m.remove(&partition);
            }
        }
        metrics().failed_partitions.set(m.len() as i64);
    }
}

/// What `/readyz` says of the stopped partitions, one line each; empty when none is.
pub fn failed_partitions() -> Vec<String> {
    FAILED.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
}

/// Marks the process ready (`/readyz` answers 200) or not.
pub fn set_ready(ready: bool) {
    READY.store(ready, Ordering::SeqCst);
}

/// Whether the process is ready.
pub fn is_ready() -> bool {
    READY.load(Ordering::SeqCst)
}

/// Installs the tracing subscriber: level from `RUST_LOG` (default `info`), human or
/// JSON lines on stderr. Calling it twice is harmless.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| "info".parse().unwrap_or_default());
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => {
            registry.with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr)).try_init()
        }
        LogFormat::Human => registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).try_init(),
    };
    drop(result);
}

/// Records were read from an input topic.
pub struct EventsReceived<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// How many.
    pub count: u64,
}

impl EventsReceived<'_> {
    /// Counts them.
    pub fn emit(self) {
        metrics().events_total.with_label_values(&[self.topic]).inc_by(self.count);
    }
}

/// A record was rejected and dead-lettered.
pub struct RecordRejected<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition (-1 for files).
    pub partition: i32,
    /// Source offset (line number for files).
    pub offset: i64,
    /// Why.
    pub reason: Reason,
    /// Detail naming the field.
    pub detail: &'a str,
}

impl RecordRejected<'_> {
    /// Logs at DEBUG (per record) and counts: late events in
    /// `cs_pulse_late_events_total`, the rest in `cs_pulse_invalid_events_total`.
    pub fn emit(self) {
        tracing::debug!(
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            reason = self.reason.as_str(),
            error = self.detail,
            "Record dead-lettered."
        );
        let m = metrics();
        if self.reason == Reason::Late {
            m.late_events_total.with_label_values(&[self.topic]).inc();
        } else {
            m.invalid_events_total.with_label_values(&[self.topic, self.reason.as_str()]).inc();
        }
    }
}

/// An event was refused because it would have created an entity beyond a cap.
pub struct EventLimited {
    /// The capped level.
    pub level: crate::engine::LimitLevel,
    /// The cap's configuration key.
    pub key: &'static str,
    /// The cap.
    pub cap: usize,
}

impl EventLimited {
    /// Counts it in `cs_pulse_limited_events_total{level}`, and warns the first time
    /// each level's cap is reached in this process (per event it logs only at DEBUG,
    /// through [`RecordRejected`]).
    pub fn emit(self) {
        use crate::engine::LimitLevel;
        static WARNED: [AtomicBool; 5] = [
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicBool::new(false),
        ];
        metrics().limited_events_total.with_label_values(&[self.level.as_str()]).inc();
        let i = LimitLevel::ALL.iter().position(|l| *l == self.level).unwrap_or(0);
        if !WARNED[i].swap(true, Ordering::Relaxed) {
            tracing::warn!(
                level = self.level.as_str(),
                cap = self.cap,
                key = self.key,
                "Cap reached: events that would create a new entity at this level are dead-lettered (reason limit); existing entities keep working."
            );
        }
    }
}

/// Changes paired or expired (the magic number).
pub struct ChangesMeasured<'a> {
    /// Times to production of changes that paired, ms.
    pub paired_ttp_ms: &'a [i64],
    /// Halves that expired unmatched.
    pub expired: u64,
}

impl ChangesMeasured<'_> {
    /// Observes the histogram and counts expiries.
    pub fn emit(self) {
        let m = metrics();
        for ms in self.paired_ttp_ms {
            m.time_to_production_seconds.observe(*ms as f64 / 1000.0);
        }
        m.changes_expired_total.inc_by(self.expired);
    }
}

/// Alerts were produced.
pub struct AlertsEmitted<'a> {
    /// The alerts.
    pub alerts: &'a [Alert],
}

impl AlertsEmitted<'_> {
    /// Counts them by kind and severity, and logs each at INFO: alerts are rare and are
    /// the product's output, not per-event noise.
    pub fn emit(self) {
        let m = metrics();
        for a in self.alerts {
            m.alerts_total.with_label_values(&[a.kind.as_str(), a.severity.as_str()]).inc();
            tracing::info!(
                kind = a.kind.as_str(),
                severity = a.severity.as_str(),
                level = a.entity.level.as_str(),
                entity = %a.entity.id,
                account = %a.entity.account_id,
                at = a.at,
                "Alert."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_counted_by_reason() {
        let m = metrics();
        let invalid = m.invalid_events_total.with_label_values(&["t.test", "wrong_type"]);
        let late = m.late_events_total.with_label_values(&["t.test"]);
        let (i0, l0) = (invalid.get(), late.get());
        RecordRejected { topic: "t.test", partition: 0, offset: 1, reason: Reason::WrongType, detail: "x" }.emit();
        RecordRejected { topic: "t.test", partition: 0, offset: 2, reason: Reason::Late, detail: "late" }.emit();
        RecordRejected { topic: "t.test", partition: 0, offset: 3, reason: Reason::Late, detail: "late" }.emit();
        assert_eq!(invalid.get() - i0, 1);
        assert_eq!(late.get() - l0, 2);
        let text = m.render();
        assert!(text.contains("cs_pulse_invalid_events_total{reason=\"wrong_type\",topic=\"t.test\"}"), "{text}");
    }
}
