//! `cs-pulse run`: the Kafka pipeline around the engine.
//!
//! One loop, on a dedicated thread: librdkafka's `poll` is blocking, and a plain loop
//! consumes in batches with no per-message `.await` (the async overhead costs most of the
//! client's throughput). Each batch:
//!
//! 1. polls input records for up to `processing.commit_interval_ms` (rebalances are
//!    applied as they come, restoring the state of assigned partitions);
//! 2. applies account and team record updates, then takes each record through the
//!    driver (`src/driver.rs`): decoded, ingested into the engine of its partition
//!    (invalid, late, future and over-limit records go to the dead-letter topic;
//!    `support_escalation` alerts are produced at once); then the pipeline watermark
//!    moves and the ticks it passed are evaluated; state changes go to the changelog;
//! 3. commits. Exactly-once (`processing.guarantee`, the default): the batch's outputs,
//!    state changes and input offsets in one Kafka transaction, so a read_committed
//!    reader sees all of a batch or none of it. At-least-once: waits until Kafka
//!    acknowledged every output, then commits the input offsets, so an offset is
//!    committed only after the outputs it caused are durable.
//!
//! State is owned per co-partitioned input partition: partition N of the usage and the
//! support topic feed engine N, and the range assignor gives both to the same member.
//!
//! The parts: `source` (the consumer's context, the dimension reader), [`state`] (the
//! changelog store and restore), `batch` (the owned partitions and one batch's work), and
//! here the loop: the consumer's `Lifecycle`, commit and recovery.

mod batch;
pub(crate) mod source;
pub mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::api::directory::Directory;
use crate::avro::registry::Registry;
use crate::config::Config;
use crate::decode::Decoders;
use crate::dims::Dimensions;
use crate::driver::Driver;
use crate::engine::EngineConfig;
use crate::kafka::client_config;
use crate::kafka::sink::{KafkaSink, SinkError};
use crate::telemetry::{self, BatchCommitted, ConsumerReplaced, InputTopics, TransactionEnded};
use crate::window::WatermarkTracker;
use batch::{process_batch, Owned, STATE_METRICS_EVERY};
use source::{check_copartitioning, DimsReader, PipelineContext};
pub use state::{StateError, StateStore};

const METADATA_TIMEOUT: Duration = Duration::from_secs(15);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a batch may poll while the consumer works off a backlog larger than a batch.
const CATCH_UP_WINDOW: Duration = Duration::from_secs(1);
/// Transactions recovered in a row before `run` gives up.
const MAX_RECOVERIES: u32 = 10;
/// How long one recovery keeps retrying while the cluster is unreachable.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(300);
/// Consumers in a row that may fail fatally, none committing a batch, before `run` gives
/// up.
const MAX_CONSUMER_RESTARTS: u32 = 5;

/// Why `run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The topics or configuration do not allow running (exit 2).
    #[error("{0}")]
    Setup(String),
    /// Kafka failed (exit 1).
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Outputs were not acknowledged (exit 1): offsets were not committed, so a restart
    /// reprocesses them.
    #[error("{0}")]
    Delivery(String),
    /// The schema registry could not be asked for a writer schema (exit 1 when retries
    /// run out): the batch is retried, its records are not the problem.
    #[error("schema registry: {0}")]
    Registry(String),
    /// The consumer failed for good: a static member (`processing.instance_id`) fenced
    /// after the broker forgot it, or by another instance with the same id. `run` starts
    /// a new consumer from the committed state; exit 1 once that keeps failing.
    #[error("consumer failed: {0}")]
    ConsumerFailed(String),
    /// Processing an input partition's record or tick failed (a defect): the partition is
    /// stopped and the batch, exactly-once, is aborted and redone without it.
    #[error("{0}")]
    PartitionFailed(String),
    /// The brokers could not be reached (exit 1), or refused the credentials or the TLS
    /// handshake (exit 2), at start.
    #[error("{0}")]
    Connect(#[from] crate::kafka::connect::ConnectError),
    /// Producing outputs failed (exit 1; exactly-once, the batch is redone first).
    #[error("{0}")]
    Sink(#[from] SinkError),
    /// The state store failed (exit 1; 2 when the changelog topic does not fit).
    #[error("state: {0}")]
    State(#[from] StateError),
}

impl PipelineError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            PipelineError::Setup(_) => 2,
            PipelineError::Connect(e) => e.exit_code(),
            PipelineError::State(e) => e.exit_code(),
            _ => 1,
        }
    }
}

/// What a run did, for the caller's summary.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Input records read.
    pub records: u64,
    /// Alerts produced.
    pub alerts: u64,
    /// Records dead-lettered.
    pub dead_letters: u64,
    /// Batches committed.
    pub batches: u64,
}

/// Runs the pipeline until `shutdown` is set: finishes the batch, commits, leaves the
/// group and returns.
///
/// A consumer that fails for good (see [`PipelineError::ConsumerFailed`]) is replaced, as
/// a restarted process would be: a new consumer and producer, state restored from the
/// changelog, input read from the committed offsets.
pub fn run(cfg: &Config, shutdown: &AtomicBool) -> Result<RunSummary, PipelineError> {
    run_serving(cfg, shutdown, &Arc::new(Directory::default()))
}

/// [`run`], publishing the views of the accounts it owns to `directory` for the HTTP API
/// (see [`crate::api`]).
pub fn run_serving(
    cfg: &Config,
    shutdown: &AtomicBool,
    directory: &Arc<Directory>,
) -> Result<RunSummary, PipelineError> {
    crate::kafka::connect::check_connection(cfg)?;
    let registry = schema_registry(cfg)?;
    let mut summary = RunSummary::default();
    let mut failed_in_a_row = 0u32;
    loop {
        let batches_before = summary.batches;
        let result = run_consumer(cfg, shutdown, &mut summary, registry.clone(), directory);
        match result {
            Err(PipelineError::ConsumerFailed(e)) if !shutdown.load(Ordering::SeqCst) => {
                failed_in_a_row = if summary.batches > batches_before { 1 } else { failed_in_a_row + 1 };
                if failed_in_a_row > MAX_CONSUMER_RESTARTS {
                    return Err(PipelineError::ConsumerFailed(format!(
                        "{failed_in_a_row} consumers in a row failed before committing a batch; last: {e}"
                    )));
                }
                ConsumerReplaced { error: &e, attempt: failed_in_a_row }.emit();
                std::thread::sleep(Duration::from_secs(1));
            }
            other => {
                tracing::info!(
                    records = summary.records,
                    alerts = summary.alerts,
                    dead_letters = summary.dead_letters,
                    "Pipeline stopped."
                );
                return other.map(|()| summary);
            }
        }
    }
}

/// The lifecycle of one consumer, from subscribing to leaving the group:
///
/// ```text
///            batch committed, or nothing to do
///            ┌────────┐
///            ▼        │
///   start ─► Consuming ─── shutdown, or a fatal error ───────────► Done
///            │     ▲
///  a batch's │     │ rewound to the last committed batch
/// transaction│     │
///    aborted ▼     │
///           Recovering ─── too many in a row, or cannot rewind ──► Done
/// ```
///
/// `Consuming` polls a batch, processes it and commits it. A batch that cannot commit
/// moves to `Recovering`: a partition stopped by a failure, and, exactly-once, an
/// aborted transaction or producing error or the schema registry unavailable (at-least-once
/// these end the consumer). `Recovering` aborts the transaction (or replaces the
/// producer), restores every owned partition's state from the changelog and seeks back
/// to the committed offsets; the batch is then read again. `Done` carries how the consumer ended; a
/// consumer that failed for good is replaced by [`run`].
enum Lifecycle {
    /// Polling, processing and committing batches. `recoveries`: batches recovered in a
    /// row since the last commit.
    Consuming {
        /// Batches recovered in a row since the last commit.
        recoveries: u32,
    },
    /// Getting back to the last committed batch after one failed.
    Recovering {
        /// Recoveries in a row, this one included.
        attempt: u32,
        /// Why the batch failed.
        why: String,
    },
    /// Stopped: cleanly, or with why.
    Done(Result<(), PipelineError>),
}

/// Why a batch did not commit.
enum CommitFailure {
    /// The transaction was aborted: rewind and process the batch again.
    Retry(String),
    /// Stop the pipeline.
    Fatal(PipelineError),
}

/// What one consumer's batches work on, besides the consumer and its polled records.
struct Batches<'a> {
    cfg: &'a Config,
    shutdown: &'a AtomicBool,
    summary: &'a mut RunSummary,
    store: StateStore,
    sink: KafkaSink,
    dims: Dimensions,
    dims_reader: DimsReader,
    owned: Owned,
}

/// Whether the consumer failed for good, and why.
fn consumer_failure(consumer: &BaseConsumer<PipelineContext>) -> Option<PipelineError> {
    consumer.client().fatal_error().map(|(code, reason)| PipelineError::ConsumerFailed(format!("{reason} ({code:?})")))
}

/// One consumer's run: from subscribing to shutdown or to an error.
fn run_consumer(
    cfg: &Config,
    shutdown: &AtomicBool,
    summary: &mut RunSummary,
    registry: Option<Arc<Registry>>,
    directory: &Arc<Directory>,
) -> Result<(), PipelineError> {
    let topics = [cfg.topics.usage.clone(), cfg.topics.support.clone()];
    InputTopics { topics: &topics }.emit();
    let mut consumer_cfg = client_config(cfg);
    consumer_cfg
        .set("group.id", &cfg.kafka.group_id)
        .set("partition.assignment.strategy", "range")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", "1000")
        // When its prefetch queue is full, librdkafka pauses fetching for this long
        // (default 1 s): a batch drains the queue far sooner, and then waited for the
        // rest of the second. Measured: 5 million records in 38 s with the default,
        // 20.5 s with 10 ms.
        .set("fetch.queue.backoff.ms", "10");
    if let Some(url) = cfg.api.advertised(&cfg.metrics.bind) {
        // Other instances find this one's API by describing the group (see `api::peers`).
        consumer_cfg.set("client.id", format!("{}{url}", crate::api::peers::CLIENT_ID_PREFIX));
    }
    if let Some(id) = &cfg.processing.instance_id {
        // Static membership: a restarted instance takes its partitions back at once.
        consumer_cfg.set("group.instance.id", id);
    }
    let consumer: BaseConsumer<PipelineContext> =
        consumer_cfg.create_with_context(PipelineContext::new(topics.clone()))?;
    let partitions = check_copartitioning(&consumer, cfg)?;
    directory.set_partitions(i32::try_from(partitions).unwrap_or(i32::MAX));
    state::ensure_changelog(&consumer, cfg, partitions)?;
    let store = StateStore::new(cfg)?;
    let avro_out = avro_output(cfg, registry.as_deref())?;
    let sink = KafkaSink::new(cfg, avro_out)?;
    let mut dims = Dimensions::default();
    let dims_reader = DimsReader::start(cfg, &mut dims, &sink, summary, registry.clone())?;
    consumer.subscribe(&[&topics[0], &topics[1]])?;
    tracing::info!(partitions, group = %cfg.kafka.group_id, "Consuming.");
    telemetry::set_ready(true);

    let watermarks =
        WatermarkTracker::new(cfg.time.allowed_lateness_secs as i64 * 1000, cfg.time.idle_timeout_secs as i64 * 1000)
            .require_caught_up();
    let engine_cfg = EngineConfig { views: true, ..EngineConfig::from_config(cfg) };
    let driver = Driver::new(Arc::new(engine_cfg), watermarks, |at| at, true);
    let owned = Owned::new(driver, topics, Decoders::new(cfg, registry), Arc::clone(directory));
    let mut batches = Batches { cfg, shutdown, summary, store, sink, dims, dims_reader, owned };
    let mut buffer = Vec::with_capacity(cfg.processing.max_batch_records.min(65_536));
    let mut last_state_metrics = Instant::now() - STATE_METRICS_EVERY;
    let mut state = Lifecycle::Consuming { recoveries: 0 };
    let result = loop {
        state = match state {
            Lifecycle::Consuming { recoveries } => {
                if shutdown.load(Ordering::SeqCst) {
                    Lifecycle::Done(Ok(()))
                } else {
                    let started = Instant::now();
                    match batches.batch(&consumer, &mut buffer) {
                        Ok(false) => Lifecycle::Consuming { recoveries },
                        Ok(true) => {
                            batches.summary.batches += 1;
                            // Counting state walks every entity: once a second is plenty
                            // for a scrape.
                            if last_state_metrics.elapsed() >= STATE_METRICS_EVERY {
                                batches.owned.record_state_metrics();
                                last_state_metrics = Instant::now();
                            }
                            BatchCommitted { seconds: started.elapsed().as_secs_f64() }.emit();
                            Lifecycle::Consuming { recoveries: 0 }
                        }
                        Err(CommitFailure::Retry(why)) => Lifecycle::Recovering { attempt: recoveries + 1, why },
                        Err(CommitFailure::Fatal(e)) => Lifecycle::Done(Err(e)),
                    }
                }
            }
            Lifecycle::Recovering { attempt, why } => {
                TransactionEnded { aborted: Some(&why), attempt }.emit();
                if attempt > MAX_RECOVERIES {
                    Lifecycle::Done(Err(PipelineError::Delivery(format!(
                        "{attempt} transactions in a row failed; last: {why}"
                    ))))
                } else {
                    match batches.recover(&consumer) {
                        Ok(()) => Lifecycle::Consuming { recoveries: attempt },
                        Err(e) => Lifecycle::Done(Err(e)),
                    }
                }
            }
            Lifecycle::Done(result) => break result,
        };
    };
    telemetry::set_ready(false);
    batches.owned.release_all();
    consumer.unsubscribe();
    result
}

impl Batches<'_> {
    /// Polls, processes and commits one batch. Returns whether it committed one (false:
    /// there was nothing to do).
    fn batch<'c>(
        &mut self,
        consumer: &'c BaseConsumer<PipelineContext>,
        buffer: &mut Vec<rdkafka::message::BorrowedMessage<'c>>,
    ) -> Result<bool, CommitFailure> {
        let (cfg, shutdown) = (self.cfg, self.shutdown);
        let started = Instant::now();
        // 1. Poll a batch. Nothing is processed while polling, and no transaction is
        // open: a rebalance here (its callbacks run inside poll) finds the previous batch
        // committed, and what was polled before it is read again from the committed
        // offsets by whoever owns the partition now. The messages are librdkafka's own,
        // borrowed: nothing is copied per record. While a backlog is worked off, batches
        // run longer than the commit interval (up to max_batch_records): fewer
        // transactions for the same records, when latency is queueing anyway.
        let interval = Duration::from_millis(cfg.processing.commit_interval_ms);
        let window = if consumer.context().backlog.load(Ordering::Relaxed) > cfg.processing.max_batch_records as i64 {
            interval.max(CATCH_UP_WINDOW)
        } else {
            interval
        };
        let fatal = |e: StateError| CommitFailure::Fatal(e.into());
        buffer.clear();
        while buffer.len() < cfg.processing.max_batch_records && !shutdown.load(Ordering::SeqCst) {
            let remaining = window.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                break;
            }
            let msg = consumer.poll(remaining);
            if self.owned.drain_rebalances(consumer, &self.store, &self.dims).map_err(fatal)? {
                buffer.clear();
            }
            match msg {
                None => {}
                Some(Err(e)) => {
                    if let Some(failure) = consumer_failure(consumer) {
                        return Err(CommitFailure::Fatal(failure));
                    }
                    tracing::warn!(error = %e, "Consumer error.");
                }
                Some(Ok(m)) => buffer.push(m),
            }
        }
        if self.owned.drain_rebalances(consumer, &self.store, &self.dims).map_err(fatal)? {
            buffer.clear();
        }
        if let Ok(map) = consumer.context().caught_up.lock() {
            for (key, done) in map.iter() {
                self.owned.driver.watermarks_mut().set_caught_up(key, *done);
            }
        }
        // 2. Process it: dimension updates, records, ticks; outputs and state changes go
        // into the batch's transaction (exactly-once) or the producer (at-least-once).
        let batch =
            process_batch(buffer, &mut self.owned, &mut self.dims_reader, &mut self.dims, &self.sink, self.summary);
        let transactional = self.sink.is_transactional();
        let outcome = match batch {
            Ok(false) if buffer.is_empty() && self.owned.offsets.is_empty() => {
                self.sink.poll();
                self.owned.publish_views();
                return Ok(false);
            }
            // 3. Commit: outputs, state and input offsets together; the API answers from
            // the batch's views once it has.
            Ok(_) => self.commit(consumer).inspect(|()| self.owned.publish_views()),
            // Producing failed: the transaction is aborted and the batch redone. (An output
            // that cannot be encoded, `SinkError::Encode`, is a defect no retry can mend:
            // fatal below, naming the record.)
            Err(PipelineError::Sink(SinkError::Kafka(e)) | PipelineError::Kafka(e)) if transactional => {
                Err(CommitFailure::Retry(format!("producing failed: {e}")))
            }
            Err(PipelineError::Registry(e)) if transactional => Err(CommitFailure::Retry(e)),
            // The failed partition's outputs of this batch are aborted with it; redone
            // without them, the batch commits the other partitions' work.
            Err(PipelineError::PartitionFailed(e)) => Err(CommitFailure::Retry(e)),
            Err(e) => Err(CommitFailure::Fatal(e)),
        };
        self.owned.pause_failed(consumer);
        outcome.map(|()| true)
    }

    /// Commits the batch: exactly-once, its transaction with the input offsets;
    /// at-least-once, the input offsets once every output is acknowledged.
    fn commit(&mut self, consumer: &BaseConsumer<PipelineContext>) -> Result<(), CommitFailure> {
        let tpl = self.owned.offsets_tpl();
        if self.sink.is_transactional() {
            let Some(group) = consumer.group_metadata() else {
                return Err(CommitFailure::Retry("no consumer group metadata yet".into()));
            };
            match self.sink.commit_txn(&tpl, &group) {
                Ok(()) => {
                    TransactionEnded { aborted: None, attempt: 0 }.emit();
                    self.owned.offsets.clear();
                    Ok(())
                }
                // Abortable, fenced after a rebalance, or fatal for this producer: nothing
                // of the batch is visible to read_committed consumers; recovery aborts or
                // replaces the producer and rewinds.
                Err(e) => Err(CommitFailure::Retry(e.to_string())),
            }
        } else {
            if let Err(e) = self.sink.flush(FLUSH_TIMEOUT) {
                return Err(CommitFailure::Fatal(PipelineError::Delivery(format!("{e}; input offsets not committed"))));
            }
            if tpl.count() > 0 {
                if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                    telemetry::OffsetsCommitted { error: Some(&e) }.emit();
                }
            }
            self.owned.offsets.clear();
            Ok(())
        }
    }

    /// Gets back to a consistent point after a failed batch: aborts its transaction, or
    /// replaces a fenced or failed producer (a new one also aborts what the old one left
    /// open), then rewinds. While the cluster is unreachable (a broker restart) it keeps
    /// trying, up to `RECOVERY_DEADLINE`, without operator action.
    fn recover(&mut self, consumer: &BaseConsumer<PipelineContext>) -> Result<(), PipelineError> {
        self.owned.driver.discard_outputs();
        self.owned.discard_views();
        let deadline = Instant::now() + RECOVERY_DEADLINE;
        let mut replace = self.sink.abort_txn().is_err() || self.sink.is_fatal();
        loop {
            let attempt = (|| -> Result<(), PipelineError> {
                if replace {
                    self.sink = KafkaSink::new(self.cfg, self.sink.avro_output())?;
                }
                self.rewind(consumer)
            })();
            let e = match attempt {
                Ok(()) => {
                    self.owned.pause_failed(consumer);
                    return Ok(());
                }
                Err(e) => e,
            };
            // A failed consumer cannot rewind: `run` replaces it.
            if let Some(failure) = consumer_failure(consumer) {
                return Err(failure);
            }
            if Instant::now() >= deadline || self.shutdown.load(Ordering::SeqCst) {
                return Err(e);
            }
            tracing::warn!(error = %e, "Recovery failed; retrying.");
            replace = true;
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Back to the last committed batch: every owned partition's state is restored from
    /// the changelog (read_committed) and its input re-read from the committed offsets.
    fn rewind(&mut self, consumer: &BaseConsumer<PipelineContext>) -> Result<(), PipelineError> {
        self.owned.restore_all(&self.store, &self.dims)?;
        let mut tpl = TopicPartitionList::new();
        for at in &self.owned.assigned {
            tpl.add_partition(&self.owned.topics()[at.input.index()], at.partition.0);
        }
        // Plain data only: a live list from committed() can hang the consumer's drop.
        let committed: Vec<(String, i32, Offset)> = consumer
            .committed_offsets(tpl, METADATA_TIMEOUT)?
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition(), e.offset()))
            .collect();
        for (topic, p, off) in committed {
            let off = if matches!(off, Offset::Invalid) { Offset::Beginning } else { off };
            consumer.seek(&topic, p, off, METADATA_TIMEOUT)?;
        }
        Ok(())
    }
}

/// The schema registry, when Avro input or output needs one, checked at start: reachable
/// (exit 1 when not), trusted and logged into (exit 2 when not).
fn schema_registry(cfg: &Config) -> Result<Option<Arc<Registry>>, PipelineError> {
    use crate::avro::registry::RegistryError;
    let needed = cfg.input.formats().contains(&crate::config::Format::Avro)
        || cfg.output.format == crate::config::OutputFormat::Avro;
    if !needed || cfg.schema_registry.url.trim().is_empty() {
        return Ok(None);
    }
    let checked = Registry::from_config(&cfg.schema_registry).and_then(|r| r.check().map(|()| r));
    match checked {
        Ok(r) => Ok(Some(Arc::new(r))),
        Err(RegistryError::Unavailable(e)) => Err(PipelineError::Registry(e)),
        Err(RegistryError::Refused(e) | RegistryError::NotFound(e)) => Err(PipelineError::Setup(e)),
    }
}

/// With `output.format = "avro"`, registers the output schemas (or finds their ids).
fn avro_output(
    cfg: &Config,
    registry: Option<&Registry>,
) -> Result<Option<Arc<crate::avro::output::AvroOutput>>, PipelineError> {
    if cfg.output.format != crate::config::OutputFormat::Avro {
        return Ok(None);
    }
    let Some(registry) = registry else {
        return Err(PipelineError::Setup("avro output needs schema_registry.url".into()));
    };
    crate::avro::output::AvroOutput::register(registry, &cfg.topics.alerts, &cfg.topics.scores)
        .map(|o| Some(Arc::new(o)))
        .map_err(|e| PipelineError::Registry(format!("registering the output schemas: {e}")))
}
