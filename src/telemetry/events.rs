//! One struct per notable occurrence; its `emit()` logs it and counts it.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{metrics, set_partition_failed};
use crate::model::{Alert, Partition, Reason};
use crate::time::{EventTime, Tick, WallClock};

/// Records were read from an input topic.
pub(crate) struct EventsReceived<'a> {
    /// Topic name.
    pub(crate) topic: &'a str,
    /// How many.
    pub(crate) count: u64,
}

impl EventsReceived<'_> {
    /// Counts them.
    pub(crate) fn emit(self) {
        metrics().events_total.with_label_values(&[self.topic]).inc_by(self.count);
    }
}

/// A record was rejected and dead-lettered.
pub(crate) struct RecordRejected<'a> {
    /// Source topic.
    pub(crate) topic: &'a str,
    /// Source partition (-1 for files).
    pub(crate) partition: i32,
    /// Source offset (line number for files).
    pub(crate) offset: i64,
    /// Why.
    pub(crate) reason: Reason,
    /// Detail naming the field.
    pub(crate) detail: &'a str,
}

impl RecordRejected<'_> {
    /// Logs at DEBUG (per record) and counts it in `cs_pulse_invalid_events_total`.
    pub(crate) fn emit(self) {
        tracing::debug!(
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            reason = self.reason.as_str(),
            error = self.detail,
            "Record dead-lettered."
        );
        metrics().invalid_events_total.with_label_values(&[self.topic, self.reason.as_str()]).inc();
    }
}

/// The input topics `run` reads: their per-topic counters exist from the start, at 0,
/// so that a dashboard shows "none yet" rather than "no data".
pub(crate) struct InputTopics<'a> {
    /// The usage and support topics.
    pub(crate) topics: &'a [String],
}

impl InputTopics<'_> {
    /// Registers the counters.
    pub(crate) fn emit(self) {
        let m = metrics();
        for t in self.topics {
            m.events_total.with_label_values(&[t]);
            m.late_events_total.with_label_values(&[t]);
        }
    }
}

/// An event arrived after its tick was evaluated: applied all the same, or dead-lettered
/// `too_late` (then a [`RecordRejected`] too).
pub(crate) struct LateEventRead<'a> {
    /// Source topic.
    pub(crate) topic: &'a str,
}

impl LateEventRead<'_> {
    /// Counts it in `cs_pulse_late_events_total`.
    pub(crate) fn emit(self) {
        metrics().late_events_total.with_label_values(&[self.topic]).inc();
    }
}

/// An event was refused because it would have created an entity beyond a cap.
pub(crate) struct EventLimited {
    /// The capped level.
    pub(crate) level: crate::engine::LimitLevel,
    /// The cap's configuration key.
    pub(crate) key: &'static str,
    /// The cap.
    pub(crate) cap: usize,
}

impl EventLimited {
    /// Counts it in `cs_pulse_limited_events_total{level}`, and warns the first time
    /// each level's cap is reached in this process (per event it logs only at DEBUG,
    /// through [`RecordRejected`]).
    pub(crate) fn emit(self) {
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
pub(crate) struct ChangesMeasured<'a> {
    /// Times to production of changes that paired, ms.
    pub(crate) paired_ttp_ms: &'a [i64],
    /// Halves that expired unmatched.
    pub(crate) expired: u64,
}

impl ChangesMeasured<'_> {
    /// Observes the histogram and counts expiries.
    pub(crate) fn emit(self) {
        let m = metrics();
        for ms in self.paired_ttp_ms {
            m.time_to_production_seconds.observe(*ms as f64 / 1000.0);
        }
        m.changes_expired_total.inc_by(self.expired);
    }
}

/// Alerts were produced.
pub(crate) struct AlertsEmitted<'a> {
    /// The alerts.
    pub(crate) alerts: &'a [Alert],
}

impl AlertsEmitted<'_> {
    /// Counts them by kind and severity, and logs each at INFO: alerts are rare and are
    /// the product's output, not per-event noise.
    pub(crate) fn emit(self) {
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

/// The pipeline watermark was computed.
pub(crate) struct WatermarkAdvanced {
    /// The watermark.
    pub(crate) watermark: EventTime,
    /// The wall clock.
    pub(crate) now: WallClock,
}

impl WatermarkAdvanced {
    /// Sets the watermark and its delay behind the wall clock.
    pub(crate) fn emit(self) {
        let m = metrics();
        m.watermark_timestamp_seconds.set(self.watermark.0 as f64 / 1000.0);
        m.watermark_delay_seconds.set((self.now.0 - self.watermark.0) as f64 / 1000.0);
    }
}

/// Ticks were evaluated.
pub(crate) struct TicksEvaluated {
    /// How many (summed over partitions).
    pub(crate) ticks: u64,
    /// The latest tick every partition has evaluated, if any has.
    pub(crate) earliest_evaluated: Option<Tick>,
}

impl TicksEvaluated {
    /// Counts them and sets the evaluated-tick gauge.
    pub(crate) fn emit(self) {
        let m = metrics();
        m.ticks_evaluated_total.inc_by(self.ticks);
        if let Some(t) = self.earliest_evaluated {
            m.evaluated_tick_timestamp_seconds.set(t.0 as f64 / 1000.0);
        }
    }
}

/// Score records were produced.
pub(crate) struct ScoresEmitted {
    /// How many.
    pub(crate) count: usize,
}

impl ScoresEmitted {
    /// Counts them.
    pub(crate) fn emit(self) {
        metrics().scores_total.inc_by(self.count as u64);
    }
}

/// An input partition stopped: processing one of its records or ticks failed (a defect).
pub(crate) struct PartitionStopped<'a> {
    /// The partition.
    pub(crate) partition: Partition,
    /// What was being processed.
    pub(crate) what: &'a str,
    /// The failure.
    pub(crate) error: &'a str,
    /// What `/readyz` says of it.
    pub(crate) why: &'a str,
}

impl PartitionStopped<'_> {
    /// Logs at ERROR, counts it, and makes `/readyz` answer 503 saying why.
    pub(crate) fn emit(self) {
        tracing::error!(
            partition = self.partition.0,
            what = self.what,
            error = self.error,
            "Processing failed; the input partition is stopped until a restart, the others go on."
        );
        metrics().partition_failures_total.inc();
        set_partition_failed(self.partition.0, Some(self.why.to_string()));
    }
}

/// A stopped input partition was revoked from this instance: it is no longer its concern.
pub(crate) struct StoppedPartitionReleased {
    /// The partition.
    pub(crate) partition: Partition,
}

impl StoppedPartitionReleased {
    /// Clears it from `/readyz`.
    pub(crate) fn emit(self) {
        set_partition_failed(self.partition.0, None);
    }
}

/// The consumer group gave partitions to this instance or took them away.
pub(crate) struct Rebalanced {
    /// Assigned (true) or revoked.
    pub(crate) assigned: bool,
}

impl Rebalanced {
    /// Counts it by kind.
    pub(crate) fn emit(self) {
        let kind = if self.assigned { "assign" } else { "revoke" };
        metrics().rebalances_total.with_label_values(&[kind]).inc();
    }
}

/// The input partitions this instance owns changed.
pub(crate) struct PartitionsOwned<'a> {
    /// Assigned (true) or revoked.
    pub(crate) assigned: bool,
    /// The input partitions owned now.
    pub(crate) partitions: &'a std::collections::BTreeSet<crate::model::InputPartition>,
}

impl PartitionsOwned<'_> {
    /// Logs them at INFO and sets the gauge.
    pub(crate) fn emit(self) {
        if self.assigned {
            tracing::info!(partitions = ?self.partitions, "Partitions assigned.");
        } else {
            tracing::info!(partitions = ?self.partitions, "Partitions revoked.");
        }
        metrics().assigned_partitions.set(self.partitions.len() as i64);
    }
}

/// An offset commit finished (at-least-once).
pub(crate) struct OffsetsCommitted<'a> {
    /// Why it failed, if it did.
    pub(crate) error: Option<&'a rdkafka::error::KafkaError>,
}

impl OffsetsCommitted<'_> {
    /// Counts it by outcome; a failure is a warning (the records are read again).
    pub(crate) fn emit(self) {
        let outcome = if self.error.is_some() { "error" } else { "ok" };
        metrics().commits_total.with_label_values(&[outcome]).inc();
        if let Some(e) = self.error {
            tracing::warn!(error = %e, "Offset commit failed; the records will be read again.");
        }
    }
}

/// An exactly-once batch's transaction ended.
pub(crate) struct TransactionEnded<'a> {
    /// Why it was aborted; `None` when it committed.
    pub(crate) aborted: Option<&'a str>,
    /// Transactions aborted in a row, this one included.
    pub(crate) attempt: u32,
}

impl TransactionEnded<'_> {
    /// Counts it by outcome; an abort is a warning.
    pub(crate) fn emit(self) {
        let outcome = if self.aborted.is_some() { "aborted" } else { "committed" };
        metrics().transactions_total.with_label_values(&[outcome]).inc();
        if let Some(e) = self.aborted {
            tracing::warn!(error = %e, attempt = self.attempt, "Transaction aborted; rewinding to the last committed batch.");
        }
    }
}

/// A batch was processed and committed.
pub(crate) struct BatchCommitted {
    /// How long it took, commit included.
    pub(crate) seconds: f64,
}

impl BatchCommitted {
    /// Observes its duration.
    pub(crate) fn emit(self) {
        metrics().batch_duration_seconds.observe(self.seconds);
    }
}

/// A consumer failed for good and is replaced by a new one.
pub(crate) struct ConsumerReplaced<'a> {
    /// Why it failed.
    pub(crate) error: &'a str,
    /// Consumers failed in a row.
    pub(crate) attempt: u32,
}

impl ConsumerReplaced<'_> {
    /// Counts it and warns.
    pub(crate) fn emit(self) {
        metrics().consumer_restarts_total.inc();
        tracing::warn!(error = %self.error, attempt = self.attempt, "Consumer failed; starting a new one from the committed state.");
    }
}

/// The statistics gave an input partition's lag.
pub(crate) struct ConsumerLag<'a> {
    /// The topic.
    pub(crate) topic: &'a str,
    /// The partition.
    pub(crate) partition: i32,
    /// Records between the position and the end.
    pub(crate) lag: i64,
}

impl ConsumerLag<'_> {
    /// Sets the lag gauge.
    pub(crate) fn emit(self) {
        metrics().consumer_lag.with_label_values(&[self.topic, &self.partition.to_string()]).set(self.lag);
    }
}

/// An account or team record was applied.
pub(crate) struct DimensionRecordApplied<'a> {
    /// Its topic.
    pub(crate) topic: &'a str,
}

impl DimensionRecordApplied<'_> {
    /// Counts it.
    pub(crate) fn emit(self) {
        metrics().dimension_records_total.with_label_values(&[self.topic]).inc();
    }
}

/// A partition's state was read back from its changelog.
pub(crate) struct StateRestored {
    /// The partition.
    pub(crate) partition: i32,
    /// Changelog records read.
    pub(crate) records: usize,
    /// How long it took.
    pub(crate) seconds: f64,
}

impl StateRestored {
    /// Observes the duration and logs at INFO.
    pub(crate) fn emit(self) {
        metrics().restore_duration_seconds.observe(self.seconds);
        tracing::info!(partition = self.partition, records = self.records, seconds = self.seconds, "State restored.");
    }
}

/// The size of the state held, and its entities by band.
pub(crate) struct StateMeasured<'a> {
    /// Accounts, teams, (team, user) activity sets and tickets held.
    pub(crate) size: crate::engine::StateSize,
    /// Entities by level and band at their last tick.
    pub(crate) bands: &'a std::collections::HashMap<(crate::model::Level, crate::model::Band), u64>,
}

impl StateMeasured<'_> {
    /// Sets the state gauges.
    pub(crate) fn emit(self) {
        let m = metrics();
        let s = self.size;
        for (kind, v) in
            [("accounts", s.accounts), ("teams", s.teams), ("user_activity", s.user_activity), ("tickets", s.tickets)]
        {
            m.state_entries.with_label_values(&[kind]).set(v as i64);
        }
        m.set_entities(self.bands);
    }
}

/// Kafka acknowledged an output record, or refused it.
pub(crate) struct OutputDelivered<'a> {
    /// For an alert fired by a record: its append time, epoch ms.
    pub(crate) trigger_ms: Option<i64>,
    /// Why Kafka refused it, with its topic and partition.
    pub(crate) error: Option<(&'a rdkafka::error::KafkaError, &'a str, i32)>,
}

impl OutputDelivered<'_> {
    /// Observes event-to-alert latency, or counts and logs the failure at ERROR.
    pub(crate) fn emit(self) {
        let m = metrics();
        match self.error {
            None => {
                if let Some(t) = self.trigger_ms {
                    let secs = (crate::time::now_ms() - t).max(0) as f64 / 1000.0;
                    m.event_to_alert_latency_seconds.observe(secs);
                }
            }
            Some((e, topic, partition)) => {
                m.output_errors_total.inc();
                tracing::error!(topic, partition, error = %e, "Output record not acknowledged.");
            }
        }
    }
}

/// A record was produced to the dead-letter topic.
pub(crate) struct DeadLetterProduced;

impl DeadLetterProduced {
    /// Counts it.
    pub(crate) fn emit(self) {
        metrics().deadletter_records_total.inc();
    }
}

/// A state change was produced to the changelog.
pub(crate) struct ChangelogWritten {
    /// Key and value bytes.
    pub(crate) bytes: usize,
}

impl ChangelogWritten {
    /// Counts the record and its bytes.
    pub(crate) fn emit(self) {
        let m = metrics();
        m.changelog_records_total.inc();
        m.changelog_bytes_total.inc_by(self.bytes as u64);
    }
}
