//! Where `run`'s records come from: the input consumer's context (rebalances, statistics,
//! commit results) and the reader of the dimension topics.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

use super::batch::dead_letter;
use super::{PipelineError, RunSummary, METADATA_TIMEOUT};
use crate::avro::registry::Registry;
use crate::config::Config;
use crate::decode::{DecodeError, Decoders};
use crate::dims::Dimensions;
use crate::kafka::admin::partition_counts;
use crate::kafka::sink::KafkaSink;
use crate::kafka::{client_config, LogContext};
use crate::model::{EventInput, InputPartition, Partition};
use crate::telemetry::{ConsumerLag, DimensionRecordApplied, OffsetsCommitted, Rebalanced};

/// How long loading the dimension topics at start may take before `run` goes on without
/// the rest.
const DIMS_LOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// A rebalance, queued by the consumer's callback for the loop to apply.
pub(super) enum RebalanceEvent {
    /// Topic partitions given to this instance.
    Assigned(Vec<(String, i32)>),
    /// Topic partitions taken away.
    Revoked(Vec<(String, i32)>),
}

/// Consumer context: queues rebalance events for the loop, exports lag from statistics,
/// and counts commit results.
pub(super) struct PipelineContext {
    pub(super) events: Mutex<Vec<RebalanceEvent>>,
    input_topics: [String; 2],
    /// Input partition -> the consumer has read all it holds, from the latest statistics.
    pub(super) caught_up: Mutex<HashMap<InputPartition, bool>>,
    /// Records between the position and the end, summed over the partitions being
    /// fetched, from the latest statistics.
    pub(super) backlog: AtomicI64,
}

impl PipelineContext {
    pub(super) fn new(input_topics: [String; 2]) -> Self {
        Self {
            events: Mutex::new(Vec::new()),
            input_topics,
            caught_up: Mutex::new(HashMap::new()),
            backlog: AtomicI64::new(0),
        }
    }
}

fn tpl_elements(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
}

impl ClientContext for PipelineContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::kafka::forward_log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::forward_error(&error, reason);
    }

    fn stats(&self, stats: Statistics) {
        let mut caught_up = Vec::new();
        let mut backlog = 0;
        for (input, topic) in EventInput::ALL.into_iter().zip(&self.input_topics) {
            let Some(t) = stats.topics.get(topic) else { continue };
            for (p, ps) in &t.partitions {
                if *p < 0 {
                    continue;
                }
                let hi = ps.hi_offset;
                // app_offset is the position: the offset after the last record handed to
                // cs-pulse; -1001 until the first one.
                let lag = if ps.app_offset >= 0 { (hi - ps.app_offset).max(0) } else { ps.consumer_lag };
                if lag >= 0 {
                    ConsumerLag { topic, partition: *p, lag }.emit();
                    if ps.fetch_state == "active" {
                        backlog += lag;
                    }
                }
                // Before the first record of this session the position is the committed
                // offset.
                let position = if ps.app_offset >= 0 { ps.app_offset } else { ps.committed_offset };
                let done = hi >= 0 && (hi == ps.lo_offset || position >= hi);
                caught_up.push((InputPartition { input, partition: Partition(*p) }, done));
            }
        }
        if let Ok(mut map) = self.caught_up.lock() {
            map.extend(caught_up);
        }
        self.backlog.store(backlog, Ordering::Relaxed);
    }
}

impl ConsumerContext for PipelineContext {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let ev = match rebalance {
            Rebalance::Assign(tpl) => {
                Rebalanced { assigned: true }.emit();
                RebalanceEvent::Assigned(tpl_elements(tpl))
            }
            Rebalance::Revoke(tpl) => {
                Rebalanced { assigned: false }.emit();
                RebalanceEvent::Revoked(tpl_elements(tpl))
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "Rebalance error.");
                return;
            }
        };
        if let Ok(mut q) = self.events.lock() {
            q.push(ev);
        }
        // What the statistics said about the old assignment no longer holds.
        if let Ok(mut map) = self.caught_up.lock() {
            map.clear();
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _offsets: &TopicPartitionList) {
        OffsetsCommitted { error: result.err().as_ref() }.emit();
    }
}

/// Checks that usage and support are co-partitioned. A missing topic or unequal counts is
/// a setup error naming both topics and their counts.
pub(super) fn check_copartitioning<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    cfg: &Config,
) -> Result<usize, PipelineError> {
    let (u, s) = (&cfg.topics.usage, &cfg.topics.support);
    let counts = partition_counts(consumer, &[u, s], METADATA_TIMEOUT)?;
    match (counts[0], counts[1]) {
        (None, _) => Err(PipelineError::Setup(format!("input topic '{u}' (topics.usage) does not exist on {}", cfg.kafka.bootstrap_servers))),
        (_, None) => Err(PipelineError::Setup(format!("input topic '{s}' (topics.support) does not exist on {}", cfg.kafka.bootstrap_servers))),
        (Some(a), Some(b)) if a != b => Err(PipelineError::Setup(format!(
            "input topics are not co-partitioned: '{u}' has {a} partitions and '{s}' has {b}; they need the same partition count, both keyed by account_id"
        ))),
        (Some(a), _) => Ok(a),
    }
}

/// Reads the compacted account and team topics: all of them at start, then updates.
pub(super) struct DimsReader {
    consumer: BaseConsumer<LogContext>,
    accounts_topic: String,
    decoders: Decoders,
}

impl DimsReader {
    pub(super) fn start(
        cfg: &Config,
        dims: &mut Dimensions,
        sink: &KafkaSink,
        out: &mut RunSummary,
        registry: Option<Arc<Registry>>,
    ) -> Result<Self, PipelineError> {
        let consumer: BaseConsumer<LogContext> = client_config(cfg)
            .set("group.id", format!("{}-dims", cfg.kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .create_with_context(LogContext::default())?;
        let topics = [cfg.topics.accounts.as_str(), cfg.topics.teams.as_str()];
        let counts = partition_counts(&consumer, &topics, METADATA_TIMEOUT)?;
        let mut tpl = TopicPartitionList::new();
        let mut pending = BTreeSet::new();
        for (t, c) in topics.iter().zip(counts) {
            match c {
                Some(n) => {
                    for p in 0..n as i32 {
                        tpl.add_partition_offset(t, p, Offset::Beginning)?;
                        pending.insert((t.to_string(), p));
                    }
                }
                None => tracing::warn!(topic = t, "Dimension topic does not exist; running without its records."),
            }
        }
        consumer.assign(&tpl)?;
        let mut reader =
            Self { consumer, accounts_topic: cfg.topics.accounts.clone(), decoders: Decoders::new(cfg, registry) };
        let started = Instant::now();
        while !pending.is_empty() {
            if started.elapsed() > DIMS_LOAD_TIMEOUT {
                tracing::warn!(remaining = pending.len(), "Dimension topics not fully loaded in time; continuing.");
                break;
            }
            match reader.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let m = m.detach();
                    reader.apply(&m, dims, sink, out);
                }
                // The EOF error names the partition but not the topic: positions tell.
                Some(Err(KafkaError::PartitionEOF(_))) => reader.settle(&mut pending),
                Some(Err(e)) => tracing::warn!(error = %e, "Dimension consumer error."),
                None => reader.settle(&mut pending),
            }
        }
        let (a, t) = dims.len();
        tracing::info!(accounts = a, teams = t, "Dimension tables loaded.");
        Ok(reader)
    }

    /// Drops partitions whose position has reached their high watermark.
    fn settle(&self, pending: &mut BTreeSet<(String, i32)>) {
        let positions: HashMap<(String, i32), i64> = match self.consumer.position() {
            Ok(tpl) => tpl
                .elements()
                .iter()
                .filter_map(|e| e.offset().to_raw().map(|o| ((e.topic().to_string(), e.partition()), o)))
                .collect(),
            Err(_) => return,
        };
        pending.retain(|(t, p)| {
            let Ok((low, high)) = self.consumer.fetch_watermarks(t, *p, Duration::from_secs(5)) else {
                return true;
            };
            if high <= low {
                return false;
            }
            positions.get(&(t.clone(), *p)).is_none_or(|pos| *pos < high)
        });
    }

    /// Applies a record. Returns false when the schema registry could not be asked: the
    /// partition is then rewound to the record, to be read again later.
    fn apply(&mut self, m: &OwnedMessage, dims: &mut Dimensions, sink: &KafkaSink, out: &mut RunSummary) -> bool {
        let result = if m.topic() == self.accounts_topic {
            self.decoders.account(m.key(), m.payload()).map(|u| dims.apply_account(u))
        } else {
            self.decoders.team(m.key(), m.payload()).map(|u| dims.apply_team(u))
        };
        match result {
            Ok(()) => DimensionRecordApplied { topic: m.topic() }.emit(),
            Err(DecodeError::Rejected(e)) => dead_letter(sink, m, &e, out),
            Err(DecodeError::Registry(e)) => {
                tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e,
                    "Schema registry unavailable; the dimension record will be read again.");
                if let Err(e) =
                    self.consumer.seek(m.topic(), m.partition(), Offset::Offset(m.offset()), METADATA_TIMEOUT)
                {
                    tracing::warn!(error = %e, "Cannot rewind the dimension consumer.");
                }
                return false;
            }
        }
        true
    }

    /// Applies whatever updates have arrived, without waiting.
    pub(super) fn poll_updates(&mut self, dims: &mut Dimensions, sink: &KafkaSink, out: &mut RunSummary) {
        for _ in 0..10_000 {
            match self.consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => {
                    let m = m.detach();
                    if !self.apply(&m, dims, sink, out) {
                        break;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "Dimension consumer error."),
                None => break,
            }
        }
    }
}
