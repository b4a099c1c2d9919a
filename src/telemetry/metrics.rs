//! The metric catalogue. Label values come from small fixed sets: topic names, partition
//! numbers, reason codes, alert kinds and severities, levels and bands.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric cs-pulse exports.
pub struct Metrics {
    registry: Registry,
    /// `cs_pulse_events_total{topic}`: records read from input topics.
    pub events_total: IntCounterVec,
    /// `cs_pulse_invalid_events_total{topic,reason}`: records dead-lettered, by reason.
    pub invalid_events_total: IntCounterVec,
    /// `cs_pulse_late_events_total{topic}`: events read after their tick was evaluated
    /// (applied, or dead-lettered `too_late`).
    pub late_events_total: IntCounterVec,
    /// `cs_pulse_deadletter_records_total`: records written to the dead-letter output.
    pub deadletter_records_total: IntCounter,
    /// `cs_pulse_dimension_records_total{topic}`: account and team records applied.
    pub dimension_records_total: IntCounterVec,
    /// `cs_pulse_consumer_lag{topic,partition}`: messages behind the partition's end.
    pub consumer_lag: IntGaugeVec,
    /// `cs_pulse_watermark_timestamp_seconds`: the pipeline watermark.
    pub watermark_timestamp_seconds: Gauge,
    /// `cs_pulse_watermark_delay_seconds`: wall clock minus the pipeline watermark.
    pub watermark_delay_seconds: Gauge,
    /// `cs_pulse_ticks_evaluated_total`: evaluation ticks run (summed over partitions).
    pub ticks_evaluated_total: IntCounter,
    /// `cs_pulse_event_to_alert_latency_seconds`: from a triggering record's append to
    /// its alert being acknowledged by Kafka.
    pub event_to_alert_latency_seconds: Histogram,
    /// `cs_pulse_batch_duration_seconds`: processing time of one batch, commit included.
    pub batch_duration_seconds: Histogram,
    /// `cs_pulse_state_entries{kind}`: accounts, teams, user_activity, tickets held.
    pub state_entries: IntGaugeVec,
    /// `cs_pulse_alerts_total{kind,severity}`: alerts produced.
    pub alerts_total: IntCounterVec,
    /// `cs_pulse_scores_total`: score records produced.
    pub scores_total: IntCounter,
    /// `cs_pulse_commits_total{outcome}`: offset commits (`ok`, `error`).
    pub commits_total: IntCounterVec,
    /// `cs_pulse_rebalances_total{kind}`: partition assignments and revocations.
    pub rebalances_total: IntCounterVec,
    /// `cs_pulse_consumer_restarts_total`: consumers replaced after failing for good (a
    /// fenced static member).
    pub consumer_restarts_total: IntCounter,
    /// `cs_pulse_assigned_partitions`: input partitions this instance owns.
    pub assigned_partitions: IntGauge,
    /// `cs_pulse_entities{level,band}`: entities by band at their last tick.
    pub entities: IntGaugeVec,
    /// `cs_pulse_output_errors_total`: outputs Kafka did not acknowledge.
    pub output_errors_total: IntCounter,
    /// `cs_pulse_changelog_records_total`: state changes written to the changelog.
    pub changelog_records_total: IntCounter,
    /// `cs_pulse_changelog_bytes_total`: bytes of state changes written (keys and values).
    pub changelog_bytes_total: IntCounter,
    /// `cs_pulse_restore_duration_seconds`: time to restore one partition's state.
    pub restore_duration_seconds: Histogram,
    /// `cs_pulse_time_to_production_seconds`: time to production of each change as it
    /// pairs; the 1d, 7d and 30d bucket bounds are the DORA elite/high/medium limits.
    pub time_to_production_seconds: Histogram,
    /// `cs_pulse_changes_expired_total`: halves of changes that found no partner in time.
    pub changes_expired_total: IntCounter,
    /// `cs_pulse_transactions_total{outcome}`: exactly-once batches `committed` or `aborted`.
    pub transactions_total: IntCounterVec,
    /// `cs_pulse_evaluated_tick_timestamp_seconds`: the latest tick every owned partition
    /// has evaluated (behind the watermark while a backlog is worked off).
    pub evaluated_tick_timestamp_seconds: Gauge,
    /// `cs_pulse_limited_events_total{level}`: events dead-lettered (reason `limit`)
    /// because they would have created an entity beyond a cap of `[limits]`.
    pub limited_events_total: IntCounterVec,
    /// `cs_pulse_partition_failures_total`: input partitions stopped because processing
    /// one of their records failed (a defect); the others go on.
    pub partition_failures_total: IntCounter,
    /// `cs_pulse_failed_partitions`: input partitions stopped now, until a restart.
    pub failed_partitions: IntGauge,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(h.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    h
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    r.register(Box::new(m.clone())).unwrap_or_else(|e| panic!("metric: {e}"));
    m
}

impl Metrics {
    // Metric definitions are static: a failure here is a programming error caught by the
    // first test that touches metrics, so panicking is the right response.
    fn new() -> Self {
        let r = Registry::new();
        let latency_buckets = vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        let m = Metrics {
            events_total: counter_vec(&r, "cs_pulse_events_total", "Records read from input topics.", &["topic"]),
            invalid_events_total: counter_vec(
                &r,
                "cs_pulse_invalid_events_total",
                "Input records that could not be decoded or validated, dead-lettered, by reason.",
                &["topic", "reason"],
            ),
            late_events_total: counter_vec(
                &r,
                "cs_pulse_late_events_total",
                "Events read after their tick was evaluated: applied from the next tick, or dead-lettered too_late beyond time.max_lateness_secs.",
                &["topic"],
            ),
            deadletter_records_total: register(
                &r,
                IntCounter::new("cs_pulse_deadletter_records_total", "Records written to the dead-letter output.")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            dimension_records_total: counter_vec(
                &r,
                "cs_pulse_dimension_records_total",
                "Account and team records applied.",
                &["topic"],
            ),
            consumer_lag: gauge_vec(
                &r,
                "cs_pulse_consumer_lag",
                "Messages between the consumer position and the end of the partition.",
                &["topic", "partition"],
            ),
            watermark_timestamp_seconds: register(
                &r,
                Gauge::new("cs_pulse_watermark_timestamp_seconds", "The pipeline watermark, as UNIX time.")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            watermark_delay_seconds: register(
                &r,
                Gauge::new("cs_pulse_watermark_delay_seconds", "Wall-clock time minus the pipeline watermark.")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            ticks_evaluated_total: register(
                &r,
                IntCounter::new("cs_pulse_ticks_evaluated_total", "Evaluation ticks run, summed over partitions.")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            event_to_alert_latency_seconds: histogram(
                &r,
                "cs_pulse_event_to_alert_latency_seconds",
                "From a triggering record's append to its alert being acknowledged.",
                latency_buckets,
            ),
            batch_duration_seconds: histogram(
                &r,
                "cs_pulse_batch_duration_seconds",
                "Processing time of one batch, outputs flushed and offsets committed.",
                vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
            ),
            state_entries: gauge_vec(
                &r,
                "cs_pulse_state_entries",
                "Entries held in state, by kind (accounts, teams, user_activity, tickets).",
                &["kind"],
            ),
            alerts_total: counter_vec(&r, "cs_pulse_alerts_total", "Alerts produced.", &["kind", "severity"]),
            scores_total: register(
                &r,
                IntCounter::new("cs_pulse_scores_total", "Score records produced.").unwrap_or_else(|e| panic!("{e}")),
            ),
            commits_total: counter_vec(&r, "cs_pulse_commits_total", "Input offset commits.", &["outcome"]),
            rebalances_total: counter_vec(
                &r,
                "cs_pulse_rebalances_total",
                "Consumer group rebalances seen, by kind (assign, revoke, lost).",
                &["kind"],
            ),
            consumer_restarts_total: register(
                &r,
                IntCounter::new(
                    "cs_pulse_consumer_restarts_total",
                    "Consumers replaced after failing for good (a fenced static member).",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            assigned_partitions: register(
                &r,
                IntGauge::new("cs_pulse_assigned_partitions", "Input partitions owned by this instance.")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            entities: gauge_vec(
                &r,
                "cs_pulse_entities",
                "Entities by health band at their last evaluation.",
                &["level", "band"],
            ),
            output_errors_total: register(
                &r,
                IntCounter::new("cs_pulse_output_errors_total", "Output records Kafka did not acknowledge.")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            changelog_records_total: register(
                &r,
                IntCounter::new("cs_pulse_changelog_records_total", "State changes written to the changelog.")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            changelog_bytes_total: register(
                &r,
                IntCounter::new("cs_pulse_changelog_bytes_total", "Bytes of state changes written to the changelog.")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            restore_duration_seconds: histogram(
                &r,
                "cs_pulse_restore_duration_seconds",
                "Time to restore one partition's state from the changelog.",
                vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0],
            ),
            time_to_production_seconds: histogram(
                &r,
                "cs_pulse_time_to_production_seconds",
                "Time from change_created to its first production deploy, per change.",
                vec![3_600.0, 21_600.0, 86_400.0, 172_800.0, 604_800.0, 1_209_600.0, 2_592_000.0, 7_776_000.0],
            ),
            changes_expired_total: register(
                &r,
                IntCounter::new("cs_pulse_changes_expired_total", "Halves of changes that expired without a partner.")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            transactions_total: counter_vec(
                &r,
                "cs_pulse_transactions_total",
                "Exactly-once batch transactions, by outcome (committed, aborted).",
                &["outcome"],
            ),
            evaluated_tick_timestamp_seconds: register(
                &r,
                Gauge::new(
                    "cs_pulse_evaluated_tick_timestamp_seconds",
                    "The latest tick every owned partition has evaluated, as UNIX time.",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            limited_events_total: counter_vec(
                &r,
                "cs_pulse_limited_events_total",
                "Events dead-lettered because they would have created an entity beyond a cap, by the capped level.",
                &["level"],
            ),
            partition_failures_total: register(
                &r,
                IntCounter::new(
                    "cs_pulse_partition_failures_total",
                    "Input partitions stopped because processing one of their records failed.",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            failed_partitions: register(
                &r,
                IntGauge::new("cs_pulse_failed_partitions", "Input partitions stopped until a restart.")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            registry: r,
        };
        for level in crate::engine::LimitLevel::ALL {
            m.limited_events_total.with_label_values(&[level.as_str()]);
        }
        for kind in crate::model::AlertKind::ALL {
            for sev in ["info", "warning", "critical"] {
                m.alerts_total.with_label_values(&[kind.as_str(), sev]);
            }
        }
        for outcome in ["ok", "error"] {
            m.commits_total.with_label_values(&[outcome]);
        }
        for outcome in ["committed", "aborted"] {
            m.transactions_total.with_label_values(&[outcome]);
        }
        for kind in ["assign", "revoke", "lost"] {
            m.rebalances_total.with_label_values(&[kind]);
        }
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Sets `cs_pulse_entities` from band counts, zeroing combinations not present.
    pub fn set_entities(&self, counts: &std::collections::HashMap<(crate::model::Level, crate::model::Band), u64>) {
        use crate::model::{Band, Level};
        for level in Level::ALL {
            for band in [Band::Green, Band::Yellow, Band::Red] {
                let n = counts.get(&(level, band)).copied().unwrap_or(0);
                self.entities.with_label_values(&[level.as_str(), band.as_str()]).set(n as i64);
            }
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}
