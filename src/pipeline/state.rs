//! `run`'s state store: each input partition's engine state, kept in a compacted changelog
//! topic (written by the batch, in its transaction when exactly-once) and read back when
//! the partition is assigned or a batch is redone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::METADATA_TIMEOUT;
use crate::config::Config;
use crate::driver::panic_message;
use crate::engine::{Engine, EngineConfig};
use crate::kafka::admin::partition_counts;
use crate::kafka::{client_config, LogContext};
use crate::model::Partition;
use crate::telemetry::StateRestored;

/// Why state could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Kafka failed (exit 1; while recovering a batch, retried until the recovery's
    /// deadline first).
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Reading a partition's changelog did not finish in time (exit 1).
    #[error("restoring partition {partition} from '{topic}' took over 10 minutes")]
    Timeout {
        /// The partition.
        partition: i32,
        /// The changelog topic.
        topic: String,
    },
    /// The changelog holds a record this build cannot read into state: the partition
    /// stops, the others go on.
    #[error("{0}")]
    Unreadable(String),
    /// The changelog topic does not fit the inputs and cannot be made to (exit 2).
    #[error("{0}")]
    Setup(String),
}

impl StateError {
    /// The process exit code: 2 when only a configuration change helps, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            StateError::Setup(_) => 2,
            _ => 1,
        }
    }
}

/// Reads a partition's state back from the compacted changelog (read_committed).
pub struct StateStore {
    consumer: BaseConsumer<LogContext>,
    topic: String,
}

impl StateStore {
    /// A reader of `cfg`'s changelog topic.
    pub fn new(cfg: &Config) -> Result<Self, StateError> {
        let consumer: BaseConsumer<LogContext> = client_config(cfg)
            .set("group.id", format!("{}-restore", cfg.kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .create_with_context(LogContext::default())?;
        Ok(Self { consumer, topic: cfg.changelog_topic() })
    }

    /// Reads changelog partition `p` from its start to its current end and rebuilds the
    /// partition's engine from it.
    pub fn restore(&self, p: Partition, engine_cfg: &Arc<EngineConfig>) -> Result<Engine, StateError> {
        let Partition(p) = p;
        let started = Instant::now();
        let (low, high) = self.consumer.fetch_watermarks(&self.topic, p, METADATA_TIMEOUT)?;
        let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        if high > low {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.topic, p, Offset::Beginning)?;
            self.consumer.assign(&tpl)?;
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                match self.consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        records.push((m.key().unwrap_or_default().to_vec(), m.payload().map(<[u8]>::to_vec)));
                        if m.offset() + 1 >= high {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(partition = p, error = %e, "Changelog read error.")
                    }
                    None => {
                        // Compaction and transaction markers leave gaps: the position
                        // tells whether the end was reached.
                        let pos = self.position(p);
                        if pos.is_some_and(|o| o >= high) {
                            break;
                        }
                    }
                }
                if Instant::now() > deadline {
                    return Err(StateError::Timeout { partition: p, topic: self.topic.clone() });
                }
            }
            self.consumer.unassign()?;
        }
        let n = records.len();
        // A changelog this build cannot read (or a defect reading it) stops the partition
        // alone, as a failure processing its records would.
        let restored =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Engine::restore(Arc::clone(engine_cfg), records)));
        let engine = match restored {
            Ok(Ok(engine)) => engine,
            Ok(Err(e)) => return Err(StateError::Unreadable(format!("its changelog '{}': {e}", self.topic))),
            Err(panic) => {
                return Err(StateError::Unreadable(format!(
                    "its changelog '{}': {}",
                    self.topic,
                    panic_message(&*panic)
                )))
            }
        };
        StateRestored { partition: p, records: n, seconds: started.elapsed().as_secs_f64() }.emit();
        Ok(engine)
    }

    fn position(&self, p: i32) -> Option<i64> {
        // Plain data only: a live list from position() can hang the consumer's drop.
        let tpl = self.consumer.position().ok()?;
        let off = tpl.elements().iter().find(|e| e.partition() == p).and_then(|e| e.offset().to_raw());
        drop(tpl);
        off
    }
}

/// Makes sure the changelog exists, compacted, with the inputs' partition count.
pub(super) fn ensure_changelog<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    cfg: &Config,
    partitions: usize,
) -> Result<(), StateError> {
    let topic = cfg.changelog_topic();
    let count = partition_counts(consumer, &[&topic], METADATA_TIMEOUT)?[0];
    match count {
        Some(n) if n == partitions => Ok(()),
        Some(n) => Err(StateError::Setup(format!(
            "state changelog '{topic}' has {n} partitions but the input topics have {partitions}; they must match (delete the changelog to rebuild it, or set topics.changelog)"
        ))),
        None => {
            crate::kafka::admin::create_topic(cfg, &topic, partitions as i32, true)
                .map_err(|e| StateError::Setup(format!("state changelog '{topic}' does not exist and cannot be created: {e}")))?;
            tracing::info!(topic = %topic, partitions, "Created the state changelog.");
            Ok(())
        }
    }
}
