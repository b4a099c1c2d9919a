//! `cs-pulse run`: the Kafka pipeline around the engine.
//!
//! One loop, on a dedicated thread: librdkafka's `poll` is blocking, and a plain loop
//! consumes in batches with no per-message `.await` (the async overhead costs most of the
//! client's throughput). Each batch:
//!
//! 1. applies account and team record updates;
//! 2. polls input records for up to `processing.commit_interval_ms`, decoding each and
//!    ingesting it into the engine of its partition (invalid or late records go to the
//!    dead-letter topic; `support_escalation` alerts are produced at once);
//! 3. moves the pipeline watermark and evaluates the ticks it passed;
//! 4. waits until Kafka acknowledged every output, then commits the input offsets
//!    (last processed + 1). So an input offset is committed only after the outputs it
//!    caused are durable: at-least-once.
//!
//! State is owned per co-partitioned input partition: partition N of the usage and the
//! support topic feed engine N, and the range assignor gives both to the same member.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

use crate::avro::registry::Registry;
use crate::avro::AvroError;
use crate::config::Config;
use crate::decode::{DecodeError, Decoders};
use crate::dims::Dimensions;
use crate::engine::{Engine, EngineConfig, Ingested, Outputs};
use crate::kafka::{client_config, partition_counts, KafkaSink, LogContext, Rejection};
use crate::telemetry::{self, metrics, AlertsEmitted, ChangesMeasured, EventLimited, EventsReceived, RecordRejected};
use crate::window::WatermarkTracker;

const METADATA_TIMEOUT: Duration = Duration::from_secs(15);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
const DIMS_LOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Ticks one partition evaluates per batch: bounds a batch's duration (and, exactly-once,
/// its transaction's) while the pipeline catches up on a backlog.
const MAX_TICKS_PER_BATCH: usize = 24;
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
    Connect(#[from] crate::kafka::ConnectError),
}

impl PipelineError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            PipelineError::Setup(_) => 2,
            PipelineError::Connect(e) => e.exit_code(),
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

enum RebalanceEvent {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// Consumer context: queues rebalance events for the loop, exports lag from statistics,
/// and counts commit results.
struct PipelineContext {
    events: Mutex<Vec<RebalanceEvent>>,
    input_topics: [String; 2],
    /// (topic index, partition) -> the consumer has read all the partition holds, from
    /// the latest statistics.
    caught_up: Mutex<HashMap<(usize, i32), bool>>,
    /// Records between the position and the end, summed over the partitions being
    /// fetched, from the latest statistics.
    backlog: AtomicI64,
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
        let m = metrics();
        let mut caught_up = Vec::new();
        let mut backlog = 0;
        for (ti, topic) in self.input_topics.iter().enumerate() {
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
                    m.consumer_lag.with_label_values(&[topic, &p.to_string()]).set(lag);
                    if ps.fetch_state == "active" {
                        backlog += lag;
                    }
                }
                // Before the first record of this session the position is the committed
                // offset.
                let position = if ps.app_offset >= 0 { ps.app_offset } else { ps.committed_offset };
                let done = hi >= 0 && (hi == ps.lo_offset || position >= hi);
                caught_up.push(((ti, *p), done));
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
                metrics().rebalances_total.with_label_values(&["assign"]).inc();
                RebalanceEvent::Assigned(tpl_elements(tpl))
            }
            Rebalance::Revoke(tpl) => {
                metrics().rebalances_total.with_label_values(&["revoke"]).inc();
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
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics().commits_total.with_label_values(&[outcome]).inc();
        if let Err(e) = result {
            tracing::warn!(error = %e, "Offset commit failed; the records will be read again.");
        }
    }
}

/// Checks that usage and support are co-partitioned. A missing topic or unequal counts is
/// a setup error naming both topics and their counts.
pub fn check_copartitioning<C: ConsumerContext>(
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
struct DimsReader {
    consumer: BaseConsumer<LogContext>,
    accounts_topic: String,
    decoders: Decoders,
}

impl DimsReader {
    fn start(
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
            Ok(()) => metrics().dimension_records_total.with_label_values(&[m.topic()]).inc(),
            Err(AvroError::Record(e)) => reject(sink, m, &e, out),
            Err(AvroError::Registry(e)) => {
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
    fn poll_updates(&mut self, dims: &mut Dimensions, sink: &KafkaSink, out: &mut RunSummary) {
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

/// Reads a partition's state back from the compacted changelog (read_committed).
pub struct StateStore {
    consumer: BaseConsumer<LogContext>,
    topic: String,
}

impl StateStore {
    /// A reader of `cfg`'s changelog topic.
    pub fn new(cfg: &Config) -> Result<Self, PipelineError> {
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
    pub fn restore(&self, p: i32, engine_cfg: &Arc<EngineConfig>) -> Result<Engine, PipelineError> {
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
                    return Err(PipelineError::Setup(format!(
                        "restoring partition {p} from '{}' took over 10 minutes",
                        self.topic
                    )));
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
            Ok(Err(e)) => return Err(PipelineError::PartitionFailed(format!("its changelog '{}': {e}", self.topic))),
            Err(panic) => {
                return Err(PipelineError::PartitionFailed(format!(
                    "its changelog '{}': {}",
                    self.topic,
                    panic_message(&*panic)
                )))
            }
        };
        let secs = started.elapsed().as_secs_f64();
        metrics().restore_duration_seconds.observe(secs);
        tracing::info!(partition = p, records = n, seconds = secs, "State restored.");
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
fn ensure_changelog<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    cfg: &Config,
    partitions: usize,
) -> Result<(), PipelineError> {
    let topic = cfg.changelog_topic();
    let count = partition_counts(consumer, &[&topic], METADATA_TIMEOUT)?[0];
    match count {
        Some(n) if n == partitions => Ok(()),
        Some(n) => Err(PipelineError::Setup(format!(
            "state changelog '{topic}' has {n} partitions but the input topics have {partitions}; they must match (delete the changelog to rebuild it, or set topics.changelog)"
        ))),
        None => {
            crate::loadgen::create_topic(cfg, &topic, partitions as i32, true)
                .map_err(|e| PipelineError::Setup(format!("state changelog '{topic}' does not exist and cannot be created: {e}")))?;
            tracing::info!(topic = %topic, partitions, "Created the state changelog.");
            Ok(())
        }
    }
}

fn reject<M: Message>(sink: &KafkaSink, m: &M, e: &DecodeError, out: &mut RunSummary) {
    RecordRejected {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        reason: e.reason,
        detail: &e.detail,
    }
    .emit();
    out.dead_letters += 1;
    let r = Rejection {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key(),
        payload: m.payload(),
        headers: m.headers().map(|h| {
            h.iter().fold(OwnedHeaders::new(), |acc, hdr| acc.insert(Header { key: hdr.key, value: hdr.value }))
        }),
        reason: e.reason(),
        detail: &e.detail,
    };
    if let Err(err) = sink.dead_letter(r) {
        // Not acknowledged now means the batch's flush fails and nothing is committed.
        tracing::error!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %err, "Cannot produce dead letter.");
    }
}

/// The per-partition state this instance owns.
struct Owned {
    engine_cfg: Arc<EngineConfig>,
    engines: BTreeMap<i32, Engine>,
    assigned: BTreeSet<(usize, i32)>,
    watermarks: WatermarkTracker<(usize, i32)>,
    /// Next offset to commit per (topic index, partition).
    offsets: HashMap<(usize, i32), i64>,
    /// Decoders of the usage and support topics.
    decoders: Decoders,
    /// Input partitions stopped after processing failed, and why; paused until revoked.
    failed: BTreeMap<i32, String>,
    /// Of those, the ones the consumer has paused.
    paused: BTreeSet<i32>,
}

/// The message of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-text payload".into())
}

/// A test-only fault hook: with `CS_PULSE_FAULT_PANIC_EVENT_ID` set, processing the event
/// with that id panics, as a defect would. The containment tests use it.
fn fault_hook(ev: &crate::model::Event) {
    static ID: std::sync::LazyLock<Option<String>> =
        std::sync::LazyLock::new(|| std::env::var("CS_PULSE_FAULT_PANIC_EVENT_ID").ok().filter(|v| !v.is_empty()));
    if let Some(id) = ID.as_deref() {
        if ev.event_id() == id {
            panic!("fault injected by CS_PULSE_FAULT_PANIC_EVENT_ID at event {id}");
        }
    }
}

impl Owned {
    /// Stops input partition `p` after a failure while processing `what`: its state is
    /// dropped (a restart restores it from the changelog), its offsets are not committed
    /// past the last commit, it no longer holds the watermark back, and the consumer
    /// pauses it. The other partitions go on. A restart after a fix resumes it from the
    /// last commit with nothing lost.
    fn fail(&mut self, p: i32, what: &str, message: &str) -> String {
        let why = format!("input partition {p} stopped while processing {what}: {message}");
        tracing::error!(
            partition = p,
            what,
            error = message,
            "Processing failed; the input partition is stopped until a restart, the others go on."
        );
        metrics().partition_failures_total.inc();
        self.engines.remove(&p);
        for ti in 0..2 {
            self.offsets.remove(&(ti, p));
            self.watermarks.remove_partition(&(ti, p));
        }
        telemetry::set_partition_failed(p, Some(why.clone()));
        self.failed.insert(p, why.clone());
        why
    }

    /// Pauses the failed partitions not paused yet.
    fn pause_failed(&mut self, consumer: &BaseConsumer<PipelineContext>, topics: &[String; 2]) {
        for p in self.failed.keys().copied().collect::<Vec<_>>() {
            if self.paused.contains(&p) {
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            for t in topics {
                tpl.add_partition(t, p);
            }
            match consumer.pause(&tpl) {
                Ok(()) => {
                    self.paused.insert(p);
                }
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "Cannot pause the stopped partition; its records are skipped.")
                }
            }
        }
    }

    fn apply(
        &mut self,
        ev: RebalanceEvent,
        topics: &[String; 2],
        store: &StateStore,
        now: i64,
    ) -> Result<(), PipelineError> {
        let idx = |t: &str| topics.iter().position(|x| x == t);
        match ev {
            RebalanceEvent::Assigned(parts) => {
                for (t, p) in parts {
                    if let Some(i) = idx(&t) {
                        self.assigned.insert((i, p));
                        if self.failed.contains_key(&p) {
                            continue;
                        }
                        self.watermarks.add_partition((i, p), now);
                        if !self.engines.contains_key(&p) {
                            let engine = match store.restore(p, &self.engine_cfg) {
                                Ok(engine) => engine,
                                Err(PipelineError::PartitionFailed(why)) => {
                                    self.fail(p, "the restore of its state", &why);
                                    continue;
                                }
                                Err(e) => return Err(e),
                            };
                            // The partitions' watermarks come back with their state.
                            for (input, max) in engine.input_max().into_iter().enumerate() {
                                if let Some(t) = max {
                                    self.watermarks.add_partition((input, p), now);
                                    self.watermarks.observe(&(input, p), t, now);
                                }
                            }
                            self.engines.insert(p, engine);
                        }
                    }
                }
                tracing::info!(partitions = ?self.assigned, "Partitions assigned.");
            }
            RebalanceEvent::Revoked(parts) => {
                for (t, p) in parts {
                    if let Some(i) = idx(&t) {
                        self.assigned.remove(&(i, p));
                        self.watermarks.remove_partition(&(i, p));
                        self.offsets.remove(&(i, p));
                        if !self.assigned.iter().any(|(_, q)| *q == p) {
                            self.engines.remove(&p);
                            if self.failed.remove(&p).is_some() {
                                self.paused.remove(&p);
                                telemetry::set_partition_failed(p, None);
                            }
                        }
                    }
                }
                tracing::info!(partitions = ?self.assigned, "Partitions revoked.");
            }
        }
        metrics().assigned_partitions.set(self.assigned.len() as i64);
        Ok(())
    }
}

fn drain_rebalances(
    consumer: &BaseConsumer<PipelineContext>,
    owned: &mut Owned,
    topics: &[String; 2],
    store: &StateStore,
) -> Result<bool, PipelineError> {
    let events = match consumer.context().events.lock() {
        Ok(mut q) => std::mem::take(&mut *q),
        Err(_) => return Ok(false),
    };
    let any = !events.is_empty();
    for ev in events {
        owned.apply(ev, topics, store, crate::time::now_ms())?;
    }
    if any {
        // Offsets of records polled before the rebalance are not ours to commit.
        owned.offsets.clear();
    }
    Ok(any)
}

fn write_outputs(
    sink: &KafkaSink,
    out: &mut Outputs,
    trigger_ms: Option<i64>,
    summary: &mut RunSummary,
) -> Result<(), PipelineError> {
    if !out.paired_ttp_ms.is_empty() || out.expired_changes > 0 {
        ChangesMeasured { paired_ttp_ms: &out.paired_ttp_ms, expired: out.expired_changes }.emit();
        out.paired_ttp_ms.clear();
        out.expired_changes = 0;
    }
    if out.alerts.is_empty() && out.scores.is_empty() {
        return Ok(());
    }
    AlertsEmitted { alerts: &out.alerts }.emit();
    for a in out.alerts.drain(..) {
        sink.alert(&a, trigger_ms)?;
        summary.alerts += 1;
    }
    metrics().scores_total.inc_by(out.scores.len() as u64);
    for s in out.scores.drain(..) {
        sink.score(&s)?;
    }
    Ok(())
}

/// Runs the pipeline until `shutdown` is set: finishes the batch, commits, leaves the
/// group and returns.
///
/// A consumer that fails for good (see [`PipelineError::ConsumerFailed`]) is replaced, as
/// a restarted process would be: a new consumer and producer, state restored from the
/// changelog, input read from the committed offsets.
pub fn run(cfg: &Config, shutdown: &AtomicBool) -> Result<RunSummary, PipelineError> {
    crate::kafka::check_connection(cfg)?;
    let registry = schema_registry(cfg)?;
    let mut summary = RunSummary::default();
    let mut failed_in_a_row = 0u32;
    loop {
        let batches_before = summary.batches;
        match run_consumer(cfg, shutdown, &mut summary, registry.clone()) {
            Err(PipelineError::ConsumerFailed(e)) if !shutdown.load(Ordering::SeqCst) => {
                failed_in_a_row = if summary.batches > batches_before { 1 } else { failed_in_a_row + 1 };
                if failed_in_a_row > MAX_CONSUMER_RESTARTS {
                    return Err(PipelineError::ConsumerFailed(format!(
                        "{failed_in_a_row} consumers in a row failed before committing a batch; last: {e}"
                    )));
                }
                metrics().consumer_restarts_total.inc();
                tracing::warn!(error = %e, attempt = failed_in_a_row, "Consumer failed; starting a new one from the committed state.");
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
) -> Result<(), PipelineError> {
    let topics = [cfg.topics.usage.clone(), cfg.topics.support.clone()];
    let ctx = PipelineContext {
        events: Mutex::new(Vec::new()),
        input_topics: topics.clone(),
        caught_up: Mutex::new(HashMap::new()),
        backlog: AtomicI64::new(0),
    };
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
    if let Some(id) = &cfg.processing.instance_id {
        // Static membership: a restarted instance takes its partitions back at once.
        consumer_cfg.set("group.instance.id", id);
    }
    let consumer: BaseConsumer<PipelineContext> = consumer_cfg.create_with_context(ctx)?;
    let partitions = check_copartitioning(&consumer, cfg)?;
    ensure_changelog(&consumer, cfg, partitions)?;
    let store = StateStore::new(cfg)?;
    let avro_out = avro_output(cfg, registry.as_deref())?;
    let mut sink = KafkaSink::new(cfg, avro_out.clone())?;
    let mut dims = Dimensions::default();
    let mut dims_reader = DimsReader::start(cfg, &mut dims, &sink, summary, registry.clone())?;
    consumer.subscribe(&[&topics[0], &topics[1]])?;
    tracing::info!(partitions, group = %cfg.kafka.group_id, "Consuming.");
    telemetry::set_ready(true);

    let engine_cfg = Arc::new(EngineConfig::from_config(cfg));
    let mut owned = Owned {
        engine_cfg,
        engines: BTreeMap::new(),
        assigned: BTreeSet::new(),
        watermarks: WatermarkTracker::new(
            cfg.time.allowed_lateness_secs as i64 * 1000,
            cfg.time.idle_timeout_secs as i64 * 1000,
        )
        .require_caught_up(),
        offsets: HashMap::new(),
        decoders: Decoders::new(cfg, registry),
        failed: BTreeMap::new(),
        paused: BTreeSet::new(),
    };
    let interval = Duration::from_millis(cfg.processing.commit_interval_ms);
    let mut out = Outputs::default();
    let mut buffer = Vec::with_capacity(cfg.processing.max_batch_records.min(65_536));
    let mut recoveries = 0u32;
    let mut last_state_metrics = Instant::now() - STATE_METRICS_EVERY;
    let result = 'batches: loop {
        if shutdown.load(Ordering::SeqCst) {
            break Ok(());
        }
        let started = Instant::now();
        // 1. Poll a batch. Nothing is processed while polling, and no transaction is
        // open: a rebalance here (its callbacks run inside poll) finds the previous batch
        // committed, and what was polled before it is read again from the committed
        // offsets by whoever owns the partition now. The messages are librdkafka's own,
        // borrowed: nothing is copied per record. While a backlog is worked off, batches
        // run longer than the commit interval (up to max_batch_records): fewer
        // transactions for the same records, when latency is queueing anyway.
        let window = if consumer.context().backlog.load(Ordering::Relaxed) > cfg.processing.max_batch_records as i64 {
            interval.max(CATCH_UP_WINDOW)
        } else {
            interval
        };
        buffer.clear();
        while buffer.len() < cfg.processing.max_batch_records && !shutdown.load(Ordering::SeqCst) {
            let remaining = window.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                break;
            }
            let msg = consumer.poll(remaining);
            if drain_rebalances(&consumer, &mut owned, &topics, &store)? {
                buffer.clear();
            }
            match msg {
                None => {}
                Some(Err(e)) => {
                    if let Some(failure) = consumer_failure(&consumer) {
                        break 'batches Err(failure);
                    }
                    tracing::warn!(error = %e, "Consumer error.");
                }
                Some(Ok(m)) => buffer.push(m),
            }
        }
        if drain_rebalances(&consumer, &mut owned, &topics, &store)? {
            buffer.clear();
        }
        if let Ok(map) = consumer.context().caught_up.lock() {
            for (key, done) in map.iter() {
                owned.watermarks.set_caught_up(key, *done);
            }
        }
        // 2. Process it: dimension updates, records, ticks; outputs and state changes go
        // into the batch's transaction (exactly-once) or the producer (at-least-once).
        let batch = process_batch(&buffer, &mut owned, &topics, &mut dims_reader, &mut dims, &sink, &mut out, summary);
        let outcome = match batch {
            Ok(false) if buffer.is_empty() && owned.offsets.is_empty() => {
                sink.poll();
                continue;
            }
            // 3. Commit: outputs, state and input offsets together.
            Ok(_) => commit_batch(&consumer, &sink, &mut owned, &topics),
            Err(PipelineError::Kafka(e)) if sink.is_transactional() => {
                Err(CommitFailure::Retry(format!("producing failed: {e}")))
            }
            Err(PipelineError::Registry(e)) if sink.is_transactional() => Err(CommitFailure::Retry(e)),
            // The failed partition's outputs of this batch are aborted with it; redone
            // without them, the batch commits the other partitions' work.
            Err(PipelineError::PartitionFailed(e)) => Err(CommitFailure::Retry(e)),
            Err(e) => Err(CommitFailure::Fatal(e)),
        };
        owned.pause_failed(&consumer, &topics);
        match outcome {
            Ok(()) => recoveries = 0,
            Err(CommitFailure::Retry(e)) => {
                recoveries += 1;
                tracing::warn!(error = %e, attempt = recoveries, "Transaction aborted; rewinding to the last committed batch.");
                metrics().transactions_total.with_label_values(&["aborted"]).inc();
                if recoveries > MAX_RECOVERIES {
                    break Err(PipelineError::Delivery(format!(
                        "{recoveries} transactions in a row failed; last: {e}"
                    )));
                }
                out = Outputs::default();
                if let Err(e) = recover(cfg, &consumer, &mut sink, &mut owned, &topics, &store, shutdown) {
                    break Err(e);
                }
                owned.pause_failed(&consumer, &topics);
                continue;
            }
            Err(CommitFailure::Fatal(e)) => break Err(e),
        }
        summary.batches += 1;
        // Counting state walks every entity: once a second is plenty for a scrape.
        if last_state_metrics.elapsed() >= STATE_METRICS_EVERY {
            record_state_metrics(&owned);
            last_state_metrics = Instant::now();
        }
        metrics().batch_duration_seconds.observe(started.elapsed().as_secs_f64());
    };
    telemetry::set_ready(false);
    consumer.unsubscribe();
    result
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

/// Processes one polled batch. Returns whether anything was produced.
#[allow(clippy::too_many_arguments)]
fn process_batch<M: Message>(
    buffer: &[M],
    owned: &mut Owned,
    topics: &[String; 2],
    dims_reader: &mut DimsReader,
    dims: &mut Dimensions,
    sink: &KafkaSink,
    out: &mut Outputs,
    summary: &mut RunSummary,
) -> Result<bool, PipelineError> {
    let dead_before = summary.dead_letters;
    dims_reader.poll_updates(dims, sink, summary);
    let mut received: [u64; 2] = [0, 0];
    let mut produced = false;
    let mut now = crate::time::now_ms();
    for (i, m) in buffer.iter().enumerate() {
        let Some(ti) = topics.iter().position(|t| t == m.topic()) else { continue };
        let p = m.partition();
        if !owned.assigned.contains(&(ti, p)) || owned.failed.contains_key(&p) {
            continue;
        }
        received[ti] += 1;
        // The wall clock, for idleness and emitted_at: read every 1,024 records, not each.
        if i % 1024 == 1023 {
            now = crate::time::now_ms();
        }
        // A decoder that fails on a record (a defect) dead-letters that record alone.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if ti == 0 {
                owned.decoders.usage(m.payload())
            } else {
                owned.decoders.support(m.payload())
            }
        }))
        .unwrap_or_else(|panic| {
            Err(AvroError::Record(DecodeError {
                reason: crate::decode::Reason::Undecodable,
                detail: format!("the decoder failed on this record: {}", panic_message(&*panic)),
            }))
        });
        let decoded = match decoded {
            Err(AvroError::Registry(e)) => {
                return Err(PipelineError::Registry(format!(
                    "{e} (decoding {} partition {p} offset {})",
                    m.topic(),
                    m.offset()
                )))
            }
            Err(AvroError::Record(e)) => Err(e),
            Ok(ev) => Ok(ev),
        };
        owned.offsets.insert((ti, p), m.offset() + 1);
        match decoded {
            Err(e) => {
                owned.watermarks.touch(&(ti, p), now);
                reject(sink, m, &e, summary);
            }
            Ok(ev) => {
                let engine = owned.engines.entry(p).or_insert_with(|| Engine::new(Arc::clone(&owned.engine_cfg)));
                let outputs_before = out.alerts.len();
                let ingested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    fault_hook(&ev);
                    engine.ingest_at(&ev, dims, now, out)
                }));
                let result = match ingested {
                    Ok(result) => result,
                    Err(panic) => {
                        out.alerts.truncate(outputs_before);
                        let what = format!("{} offset {}", m.topic(), m.offset());
                        let why = owned.fail(p, &what, &panic_message(&*panic));
                        if sink.is_transactional() {
                            return Err(PipelineError::PartitionFailed(why));
                        }
                        continue;
                    }
                };
                match result.rejection(ev.occurred_at()) {
                    None => {
                        engine.note_input(ti, ev.occurred_at());
                        owned.watermarks.observe(&(ti, p), ev.occurred_at(), now)
                    }
                    Some(e) => {
                        owned.watermarks.touch(&(ti, p), now);
                        if let Ingested::Limit { level, key, cap } = result {
                            EventLimited { level, key, cap }.emit();
                        }
                        reject(sink, m, &e, summary);
                    }
                }
                if !out.alerts.is_empty() {
                    produced = true;
                    write_outputs(sink, out, m.timestamp().to_millis(), summary)?;
                }
            }
        }
    }
    for (i, count) in received.iter().enumerate() {
        if *count > 0 {
            EventsReceived { topic: &topics[i], count: *count }.emit();
            summary.records += *count;
        }
    }
    let now = crate::time::now_ms();
    if let Some(wm) = owned.watermarks.watermark(now) {
        let m = metrics();
        m.watermark_timestamp_seconds.set(wm as f64 / 1000.0);
        m.watermark_delay_seconds.set((now - wm) as f64 / 1000.0);
        let before = out.ticks;
        let partitions: Vec<i32> = owned.engines.keys().copied().collect();
        for p in partitions {
            let Some(engine) = owned.engines.get_mut(&p) else { continue };
            let lens = (out.alerts.len(), out.scores.len());
            let next = engine.last_evaluated();
            let advanced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                engine.advance_at_most(wm, MAX_TICKS_PER_BATCH, dims, now, out)
            }));
            if let Err(panic) = advanced {
                out.alerts.truncate(lens.0);
                out.scores.truncate(lens.1);
                let after = next.map_or_else(
                    || "its first tick".to_string(),
                    |t| format!("the tick after {}", crate::time::format_rfc3339(t)),
                );
                let why = owned.fail(p, &after, &panic_message(&*panic));
                if sink.is_transactional() {
                    return Err(PipelineError::PartitionFailed(why));
                }
            }
        }
        m.ticks_evaluated_total.inc_by(out.ticks - before);
        if let Some(t) = owned.engines.values().filter_map(Engine::last_evaluated).min() {
            m.evaluated_tick_timestamp_seconds.set(t as f64 / 1000.0);
        }
    }
    produced |= !out.is_empty();
    write_outputs(sink, out, None, summary)?;
    for (p, engine) in owned.engines.iter_mut() {
        for (k, v) in engine.take_changes() {
            sink.changelog(*p, &k, v.as_deref())?;
            produced = true;
        }
    }
    Ok(produced || summary.dead_letters > dead_before)
}

/// Why a batch did not commit.
enum CommitFailure {
    /// The transaction was aborted: rewind and process the batch again.
    Retry(String),
    /// Stop the pipeline.
    Fatal(PipelineError),
}

fn offsets_tpl(owned: &Owned, topics: &[String; 2]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for ((ti, p), off) in &owned.offsets {
        let _ = tpl.add_partition_offset(&topics[*ti], *p, Offset::Offset(*off));
    }
    tpl
}

fn commit_batch(
    consumer: &BaseConsumer<PipelineContext>,
    sink: &KafkaSink,
    owned: &mut Owned,
    topics: &[String; 2],
) -> Result<(), CommitFailure> {
    let tpl = offsets_tpl(owned, topics);
    if sink.is_transactional() {
        let Some(group) = consumer.group_metadata() else {
            return Err(CommitFailure::Retry("no consumer group metadata yet".into()));
        };
        match sink.commit_txn(&tpl, &group) {
            Ok(()) => {
                metrics().transactions_total.with_label_values(&["committed"]).inc();
                owned.offsets.clear();
                Ok(())
            }
            // Abortable, fenced after a rebalance, or fatal for this producer: nothing of
            // the batch is visible to read_committed consumers; the caller aborts or
            // replaces the producer and rewinds.
            Err(e) => Err(CommitFailure::Retry(e.to_string())),
        }
    } else {
        if let Err(e) = sink.flush(FLUSH_TIMEOUT) {
            return Err(CommitFailure::Fatal(PipelineError::Delivery(format!("{e}; input offsets not committed"))));
        }
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                metrics().commits_total.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "Offset commit failed; the records will be read again.");
            }
        }
        owned.offsets.clear();
        Ok(())
    }
}

/// Gets back to a consistent point after a failed transaction: aborts it, or replaces a
/// fenced or failed producer (a new one also aborts what the old one left open), then
/// rewinds. While the cluster is unreachable (a broker restart) it keeps trying, up to
/// `RECOVERY_DEADLINE`, without operator action.
fn recover(
    cfg: &Config,
    consumer: &BaseConsumer<PipelineContext>,
    sink: &mut KafkaSink,
    owned: &mut Owned,
    topics: &[String; 2],
    store: &StateStore,
    shutdown: &AtomicBool,
) -> Result<(), PipelineError> {
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    let mut replace = sink.abort_txn().is_err() || sink.is_fatal();
    loop {
        let attempt = (|| -> Result<(), PipelineError> {
            if replace {
                *sink = KafkaSink::new(cfg, sink.avro_output())?;
            }
            rewind(consumer, owned, topics, store)
        })();
        let e = match attempt {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        // A failed consumer cannot rewind: `run` replaces it.
        if let Some(failure) = consumer_failure(consumer) {
            return Err(failure);
        }
        if Instant::now() >= deadline || shutdown.load(Ordering::SeqCst) {
            return Err(e);
        }
        tracing::warn!(error = %e, "Recovery failed; retrying.");
        replace = true;
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Back to the last committed batch: every owned partition's state is restored from the
/// changelog (read_committed) and its input re-read from the committed offsets.
fn rewind(
    consumer: &BaseConsumer<PipelineContext>,
    owned: &mut Owned,
    topics: &[String; 2],
    store: &StateStore,
) -> Result<(), PipelineError> {
    owned.offsets.clear();
    let partitions: Vec<i32> = owned.engines.keys().copied().collect();
    for p in partitions {
        match store.restore(p, &owned.engine_cfg) {
            Ok(engine) => {
                owned.engines.insert(p, engine);
            }
            Err(PipelineError::PartitionFailed(why)) => {
                owned.fail(p, "the restore of its state", &why);
            }
            Err(e) => return Err(e),
        }
    }
    let mut tpl = TopicPartitionList::new();
    for (ti, p) in &owned.assigned {
        tpl.add_partition(&topics[*ti], *p);
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

/// How often the state-size and entities-by-band gauges are refreshed.
const STATE_METRICS_EVERY: Duration = Duration::from_secs(1);

fn record_state_metrics(owned: &Owned) {
    let m = metrics();
    let mut size = crate::engine::StateSize::default();
    let mut bands = HashMap::new();
    for e in owned.engines.values() {
        let s = e.state_size();
        size.accounts += s.accounts;
        size.teams += s.teams;
        size.user_activity += s.user_activity;
        size.tickets += s.tickets;
        for (k, v) in e.band_counts() {
            *bands.entry(k).or_insert(0) += v;
        }
    }
    for (kind, v) in [
        ("accounts", size.accounts),
        ("teams", size.teams),
        ("user_activity", size.user_activity),
        ("tickets", size.tickets),
    ] {
        m.state_entries.with_label_values(&[kind]).set(v as i64);
    }
    m.set_entities(&bands);
}
