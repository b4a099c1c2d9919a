//! Telemetry: Prometheus metrics, what `/metrics` and `/readyz` say (served by
//! [`crate::api`]), and logging.
//!
//! Code that does something notable says so in one way: it builds the occurrence's struct
//! (in `telemetry/events.rs`) and calls `emit()`, which logs and counts it. Nothing outside this module
//! touches the metrics registry.

mod events;
mod metrics;

pub(crate) use events::*;

pub use metrics::{metrics, Metrics};

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::LogFormat;

static READY: AtomicBool = AtomicBool::new(false);

/// Input partitions stopped after a failure, with what `/readyz` says of each.
static FAILED: std::sync::Mutex<std::collections::BTreeMap<i32, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Marks input partition `partition` stopped (`/readyz` answers 503 and says why) or, with
/// `None`, no longer stopped (revoked from this instance).
fn set_partition_failed(partition: i32, why: Option<String>) {
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

/// The Prometheus text exposition of every metric, for `/metrics`.
pub fn exposition() -> String {
    metrics().render()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reason;

    #[test]
    fn rejections_are_counted_by_reason_and_late_events_apart() {
        let m = metrics();
        let invalid = m.invalid_events_total.with_label_values(&["t.test", "wrong_type"]);
        let too_late = m.invalid_events_total.with_label_values(&["t.test", "too_late"]);
        let late = m.late_events_total.with_label_values(&["t.test"]);
        let (i0, t0, l0) = (invalid.get(), too_late.get(), late.get());
        RecordRejected { topic: "t.test", partition: 0, offset: 1, reason: Reason::WrongType, detail: "x" }.emit();
        RecordRejected { topic: "t.test", partition: 0, offset: 2, reason: Reason::TooLate, detail: "old" }.emit();
        LateEventRead { topic: "t.test" }.emit();
        LateEventRead { topic: "t.test" }.emit();
        assert_eq!((invalid.get() - i0, too_late.get() - t0, late.get() - l0), (1, 1, 2));
        let text = m.render();
        assert!(text.contains("cs_pulse_invalid_events_total{reason=\"wrong_type\",topic=\"t.test\"}"), "{text}");
    }
}
