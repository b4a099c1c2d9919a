//! One batch of `run`: the input partitions this instance owns, and what a polled batch
//! does to them (decode, the [driver](crate::driver), outputs and state changes into the
//! sink). Committing it is the loop's (see the module above).

use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::topic_partition_list::TopicPartitionList;

use super::source::{DimsReader, PipelineContext, RebalanceEvent};
use super::state::{StateError, StateStore};
use super::{PipelineError, RunSummary};
use crate::api::directory::Directory;
use crate::decode::{DecodeError, Decoders};
use crate::dims::Dimensions;
use crate::driver::{panic_message, Driver, PartitionViews, Sink, Taken};
use crate::engine::Outputs;
use crate::kafka::sink::{DeadLetter, KafkaSink, SinkError};
use crate::model::{EventInput, InputPartition, Partition, Reason, Rejection};
use crate::telemetry::{
    EventsReceived, LateEventRead, PartitionsOwned, RecordRejected, ScoresEmitted, StateMeasured,
    StoppedPartitionReleased,
};
use crate::time::WallClock;

/// Ticks one partition evaluates per batch: bounds a batch's duration (and, exactly-once,
/// its transaction's) while the pipeline catches up on a backlog.
const MAX_TICKS_PER_BATCH: usize = 24;

/// The input partitions this instance owns, and their state.
pub(super) struct Owned {
    /// The engines and watermarks, and the record path through them.
    pub(super) driver: Driver<InputPartition>,
    /// The input topics, usage then support.
    topics: [String; 2],
    pub(super) assigned: BTreeSet<InputPartition>,
    /// Next offset to commit per input partition.
    pub(super) offsets: HashMap<InputPartition, i64>,
    /// Decoders of the usage and support topics.
    decoders: Decoders,
    /// Of the stopped partitions, the ones the consumer has paused.
    paused: BTreeSet<Partition>,
    /// What the HTTP API answers from.
    directory: Arc<Directory>,
    /// Views made by the batch, published once it commits.
    pending_views: Vec<PartitionViews>,
}

impl Owned {
    pub(super) fn new(
        driver: Driver<InputPartition>,
        topics: [String; 2],
        decoders: Decoders,
        directory: Arc<Directory>,
    ) -> Self {
        Self {
            driver,
            topics,
            assigned: BTreeSet::new(),
            offsets: HashMap::new(),
            decoders,
            paused: BTreeSet::new(),
            directory,
            pending_views: Vec::new(),
        }
    }

    /// The batch committed: the API answers from its views now.
    pub(super) fn publish_views(&mut self) {
        for (p, as_of, views) in self.pending_views.drain(..) {
            self.directory.publish(p.0, as_of, views, false);
        }
    }

    /// The batch is being redone: its views are not published.
    pub(super) fn discard_views(&mut self) {
        self.pending_views.clear();
    }

    /// The API answers for partition `p` from its restored state.
    fn publish_restored(&mut self, p: Partition, dims: &Dimensions) {
        if let Some((p, as_of, views)) = self.driver.rebuild_views(p, dims) {
            self.directory.publish(p.0, as_of, views, true);
        }
    }

    /// The consumer stopped: this instance answers for nothing.
    pub(super) fn release_all(&mut self) {
        self.directory.clear();
    }

    /// The input topics, usage then support.
    pub(super) fn topics(&self) -> &[String; 2] {
        &self.topics
    }

    fn input_of(&self, topic: &str) -> Option<EventInput> {
        EventInput::ALL.into_iter().find(|i| self.topics[i.index()] == topic)
    }

    /// The committable offsets, as Kafka takes them.
    pub(super) fn offsets_tpl(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (at, off) in &self.offsets {
            let _ =
                tpl.add_partition_offset(&self.topics[at.input.index()], at.partition.0, rdkafka::Offset::Offset(*off));
        }
        tpl
    }

    /// Stops input partition `p` (see [`Driver::fail`]); its offsets are not committed
    /// past the last commit, and the consumer pauses it. A restart after a fix resumes it
    /// from the last commit with nothing lost.
    pub(super) fn fail(&mut self, p: Partition, what: &str, message: &str) -> String {
        let why = self.driver.fail(p, what, message);
        self.forget_offsets(p);
        why
    }

    fn forget_offsets(&mut self, p: Partition) {
        self.offsets.retain(|at, _| at.partition != p);
    }

    /// Pauses the stopped partitions not paused yet.
    pub(super) fn pause_failed(&mut self, consumer: &BaseConsumer<PipelineContext>) {
        let failed: Vec<Partition> = self.driver.failed().collect();
        for p in failed {
            if self.paused.contains(&p) {
                continue;
            }
            // Its accounts get a 503 until a restart restores it.
            self.directory.assigned(p.0);
            let mut tpl = TopicPartitionList::new();
            for t in &self.topics {
                tpl.add_partition(t, p.0);
            }
            match consumer.pause(&tpl) {
                Ok(()) => {
                    self.paused.insert(p);
                }
                Err(e) => {
                    tracing::warn!(partition = p.0, error = %e, "Cannot pause the stopped partition; its records are skipped.")
                }
            }
        }
    }

    /// Restores a partition's state from its changelog into the driver: `adopt` on an
    /// assignment, `replace` on a rewind. A changelog that cannot be read stops the
    /// partition alone.
    fn restore(
        &mut self,
        p: Partition,
        store: &StateStore,
        dims: &Dimensions,
        now: WallClock,
        adopt: bool,
    ) -> Result<(), StateError> {
        self.directory.assigned(p.0);
        match store.restore(p, self.driver.engine_cfg()) {
            Ok(engine) if adopt => {
                self.driver.adopt(p, engine, now);
                self.publish_restored(p, dims);
            }
            Ok(engine) => {
                self.driver.replace(p, engine);
                self.publish_restored(p, dims);
            }
            Err(StateError::Unreadable(why)) => {
                self.fail(p, "the restore of its state", &why);
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Every owned partition's state back from its changelog (a rewind to the last
    /// committed batch).
    pub(super) fn restore_all(&mut self, store: &StateStore, dims: &Dimensions) -> Result<(), StateError> {
        self.offsets.clear();
        self.pending_views.clear();
        for p in self.driver.partitions() {
            self.restore(p, store, dims, WallClock::now(), false)?;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        ev: RebalanceEvent,
        store: &StateStore,
        dims: &Dimensions,
        now: WallClock,
    ) -> Result<(), StateError> {
        let assigned = matches!(ev, RebalanceEvent::Assigned(_));
        match ev {
            RebalanceEvent::Assigned(parts) => {
                for (t, p) in parts {
                    let Some(input) = self.input_of(&t) else { continue };
                    let at = InputPartition { input, partition: Partition(p) };
                    self.assigned.insert(at);
                    if self.driver.is_failed(at.partition) {
                        continue;
                    }
                    self.driver.add_input(at, now);
                    if !self.driver.has_engine(at.partition) {
                        self.restore(at.partition, store, dims, now, true)?;
                    }
                }
            }
            RebalanceEvent::Revoked(parts) => {
                for (t, p) in parts {
                    let Some(input) = self.input_of(&t) else { continue };
                    let at = InputPartition { input, partition: Partition(p) };
                    self.assigned.remove(&at);
                    self.driver.remove_input(at);
                    self.offsets.remove(&at);
                    if !self.assigned.iter().any(|q| q.partition == at.partition) {
                        self.directory.revoked(at.partition.0);
                        self.pending_views.retain(|(p, ..)| *p != at.partition);
                        if self.driver.drop_partition(at.partition) {
                            self.paused.remove(&at.partition);
                            StoppedPartitionReleased { partition: at.partition }.emit();
                        }
                    }
                }
            }
        }
        PartitionsOwned { assigned, partitions: &self.assigned }.emit();
        Ok(())
    }

    /// Applies the rebalances the consumer's callbacks queued. Returns whether there were
    /// any: then what was polled before them is not this instance's to process.
    pub(super) fn drain_rebalances(
        &mut self,
        consumer: &BaseConsumer<PipelineContext>,
        store: &StateStore,
        dims: &Dimensions,
    ) -> Result<bool, StateError> {
        let events = match consumer.context().events.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => return Ok(false),
        };
        let any = !events.is_empty();
        for ev in events {
            self.apply(ev, store, dims, WallClock::now())?;
        }
        if any {
            // Offsets of records polled before the rebalance are not ours to commit.
            self.offsets.clear();
        }
        Ok(any)
    }

    /// Sets the state gauges.
    pub(super) fn record_state_metrics(&self) {
        let mut size = crate::engine::StateSize::default();
        let mut bands = std::collections::HashMap::new();
        for (_, e) in self.driver.engines() {
            let s = e.state_size();
            size.accounts += s.accounts;
            size.teams += s.teams;
            size.user_activity += s.user_activity;
            size.tickets += s.tickets;
            for (k, v) in e.band_counts() {
                *bands.entry(k).or_insert(0) += v;
            }
        }
        StateMeasured { size, bands: &bands }.emit();
    }
}

/// Writes a rejected input record to the dead-letter topic, with its reason.
pub(super) fn dead_letter<M: Message>(sink: &KafkaSink, m: &M, e: &Rejection, out: &mut RunSummary) {
    RecordRejected {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        reason: e.reason,
        detail: &e.detail,
    }
    .emit();
    out.dead_letters += 1;
    let r = DeadLetter {
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

/// The driver's sink in `run`: the Kafka sink, for records of type `M`.
struct BatchSink<'a, M> {
    sink: &'a KafkaSink,
    summary: &'a mut RunSummary,
    /// Whether anything was produced.
    produced: bool,
    record: PhantomData<fn(&M)>,
}

impl<M: Message> Sink for BatchSink<'_, M> {
    type Origin<'a> = M;
    type Error = SinkError;

    fn reject(&mut self, m: &M, why: &Rejection) -> Result<(), SinkError> {
        // Counted in the summary's dead letters, which tell the batch it produced.
        dead_letter(self.sink, m, why, self.summary);
        Ok(())
    }

    fn write(&mut self, out: &mut Outputs, trigger_ms: Option<i64>) -> Result<(), SinkError> {
        if out.alerts.is_empty() && out.scores.is_empty() {
            return Ok(());
        }
        self.produced = true;
        for a in out.alerts.drain(..) {
            self.sink.alert(&a, trigger_ms)?;
            self.summary.alerts += 1;
        }
        ScoresEmitted { count: out.scores.len() }.emit();
        for s in out.scores.drain(..) {
            self.sink.score(&s)?;
        }
        Ok(())
    }

    fn late(&mut self, m: &M) {
        LateEventRead { topic: m.topic() }.emit();
    }

    fn describe(&self, m: &M) -> String {
        format!("{} offset {}", m.topic(), m.offset())
    }

    fn appended_at(&self, m: &M) -> Option<i64> {
        m.timestamp().to_millis()
    }
}

/// Processes one polled batch: dimension updates, then each record of an owned, running
/// partition through the driver, then the ticks the watermark passed, then the state
/// changes. Outputs go into the batch's transaction (exactly-once) or the producer
/// (at-least-once). Returns whether anything was produced.
pub(super) fn process_batch<M: Message>(
    buffer: &[M],
    owned: &mut Owned,
    dims_reader: &mut DimsReader,
    dims: &mut Dimensions,
    sink: &KafkaSink,
    summary: &mut RunSummary,
) -> Result<bool, PipelineError> {
    // Dead letters of account and team records are outputs of the batch too.
    let dead_before = summary.dead_letters;
    dims_reader.poll_updates(dims, sink, summary);
    let transactional = sink.is_transactional();
    let mut out = BatchSink { sink, summary, produced: false, record: PhantomData };
    let mut received: [u64; 2] = [0, 0];
    let mut now = WallClock::now();
    for (i, m) in buffer.iter().enumerate() {
        let Some(input) = owned.input_of(m.topic()) else { continue };
        let at = InputPartition { input, partition: Partition(m.partition()) };
        if !owned.assigned.contains(&at) || owned.driver.is_failed(at.partition) {
            continue;
        }
        received[input.index()] += 1;
        // The wall clock, for idleness and emitted_at: read every 1,024 records, not each.
        if i % 1024 == 1023 {
            now = WallClock::now();
        }
        // A decoder that fails on a record (a defect) dead-letters that record alone.
        let decoders = &mut owned.decoders;
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match input {
            EventInput::Usage => decoders.usage(m.payload()),
            EventInput::Support => decoders.support(m.payload()),
        }))
        .unwrap_or_else(|panic| {
            Err(DecodeError::Rejected(Rejection::new(
                Reason::Undecodable,
                format!("the decoder failed on this record: {}", panic_message(&*panic)),
            )))
        });
        let ev = match decoded {
            Err(DecodeError::Registry(e)) => {
                return Err(PipelineError::Registry(format!(
                    "{e} (decoding {} partition {} offset {})",
                    m.topic(),
                    m.partition(),
                    m.offset()
                )))
            }
            Err(DecodeError::Rejected(e)) => {
                owned.offsets.insert(at, m.offset() + 1);
                owned.driver.reject(at, m, &e, now, &mut out)?;
                continue;
            }
            Ok(ev) => ev,
        };
        owned.offsets.insert(at, m.offset() + 1);
        if let Taken::Failed(why) = owned.driver.ingest(at, m, &ev, dims, now, &mut out)? {
            owned.forget_offsets(at.partition);
            if transactional {
                // The failed partition's outputs of this batch are aborted with it; redone
                // without them, the batch commits the other partitions' work.
                return Err(PipelineError::PartitionFailed(why));
            }
        }
    }
    for (input, count) in EventInput::ALL.into_iter().zip(received) {
        if count > 0 {
            EventsReceived { topic: &owned.topics[input.index()], count }.emit();
            out.summary.records += count;
        }
    }
    // Exactly-once, a partition that fails evaluating a tick ends the batch there: it is
    // aborted and redone without that partition.
    let advanced = owned.driver.advance(WallClock::now(), MAX_TICKS_PER_BATCH, dims, transactional, &mut out)?;
    let produced = out.produced || out.summary.dead_letters > dead_before;
    for (p, why) in advanced.failed {
        owned.forget_offsets(p);
        if transactional {
            return Err(PipelineError::PartitionFailed(why));
        }
    }
    let changed = owned.driver.take_changes(|p, k, v| sink.changelog(p.0, k, v))?;
    let views = owned.driver.take_views();
    owned.pending_views.extend(views);
    Ok(produced || changed)
}

/// How often the state-size and entities-by-band gauges are refreshed.
pub(super) const STATE_METRICS_EVERY: Duration = Duration::from_secs(1);
