//! The partition driver: what every command does with a decoded record, written once.
//! `run` (and `demo`, which runs it) and `replay` differ only in where records come from
//! and where outputs go: a [`Sink`].
//!
//! For a record, [`Driver::ingest`]: the engine of its input partition takes it in (a
//! late one too, counted by the sink); a too-late, future or over-limit event is
//! rejected to the sink with its reason; an accepted one moves its partition's watermark; an alert it fires at once (a support
//! escalation) goes out at once. Then [`Driver::advance`] evaluates, partition by
//! partition, the ticks the pipeline watermark has passed, and their outputs go out.
//!
//! A panic inside the engine (a defect) stops that partition alone ([`Driver::fail`]):
//! its state and its outputs of the moment are dropped, it no longer holds the watermark
//! back, and the caller learns why from [`Taken::Failed`] or [`Advanced::failed`].

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;

use crate::dims::Dimensions;
use crate::engine::{Engine, EngineConfig, Ingested, Outputs};
use crate::model::{Event, EventInput, InputPartition, Partition, Rejection};
use crate::telemetry::{
    AlertsEmitted, ChangesMeasured, EventLimited, PartitionStopped, TicksEvaluated, WatermarkAdvanced,
};
use crate::time::{Tick, WallClock};
use crate::window::WatermarkTracker;

/// Where a driver's outputs and rejected records go.
pub(crate) trait Sink {
    /// Where a record came from: enough to name it in a dead letter.
    type Origin<'a>;
    /// Why output failed.
    type Error;

    /// Writes a refused record with its reason.
    fn reject(&mut self, origin: &Self::Origin<'_>, why: &Rejection) -> Result<(), Self::Error>;

    /// Writes the alerts and score records of `out`, taking them out. The counters of
    /// `out` (ticks, evaluations, changes) are there to read; the driver resets them after.
    /// `trigger_ms` is the append time of the record whose ingestion fired the alerts, if
    /// that is what fired them.
    fn write(&mut self, out: &mut Outputs, trigger_ms: Option<i64>) -> Result<(), Self::Error>;

    /// Counts a late event (read after its tick was evaluated): applied, or also
    /// rejected as too late.
    fn late(&mut self, origin: &Self::Origin<'_>);

    /// The record, named for a log line and an error (for example, its topic and offset).
    fn describe(&self, origin: &Self::Origin<'_>) -> String;

    /// When the record was appended to its source, epoch ms, if the source says: the start
    /// of the event-to-alert latency of the alerts its ingestion fires.
    fn appended_at(&self, _origin: &Self::Origin<'_>) -> Option<i64> {
        None
    }
}

/// A partition's last evaluated tick and views of its accounts.
pub(crate) type PartitionViews = (Partition, Option<i64>, Vec<Arc<crate::engine::view::AccountView>>);

/// What became of an ingested record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Taken into state (on time or late).
    Accepted,
    /// Rejected to the sink: too late, future or over a limit.
    Rejected,
    /// Its partition had stopped before: the record was not looked at.
    Skipped,
    /// Processing it failed and stopped its partition; why.
    Failed(String),
}

/// What [`Driver::advance`] did.
#[derive(Debug, Default)]
pub(crate) struct Advanced {
    /// Partitions stopped by a failure while evaluating, and why.
    pub(crate) failed: Vec<(Partition, String)>,
}

/// The engines of the input partitions a command owns, their watermarks, and the record
/// path through them.
///
/// `K` keys the watermarks: `run` tracks each Kafka partition of each input
/// ([`InputPartition`]); `replay` merges its files into one stream, one [`Partition`].
pub(crate) struct Driver<K> {
    engine_cfg: Arc<EngineConfig>,
    engines: BTreeMap<Partition, Engine>,
    watermarks: WatermarkTracker<K>,
    key_of: fn(InputPartition) -> K,
    /// Input partitions stopped after processing failed, and why.
    failed: BTreeMap<Partition, String>,
    /// Whether the engines keep their changelog (`run` writes it; `replay` has none).
    changelog: bool,
    out: Outputs,
}

impl<K: Hash + Eq + Clone> Driver<K> {
    /// A driver with no partitions yet. An engine is created at a partition's first record
    /// unless one was [adopted](Driver::adopt) for it.
    pub(crate) fn new(
        engine_cfg: Arc<EngineConfig>,
        watermarks: WatermarkTracker<K>,
        key_of: fn(InputPartition) -> K,
        changelog: bool,
    ) -> Self {
        Self {
            engine_cfg,
            engines: BTreeMap::new(),
            watermarks,
            key_of,
            failed: BTreeMap::new(),
            changelog,
            out: Outputs::default(),
        }
    }

    /// The engine configuration.
    pub(crate) fn engine_cfg(&self) -> &Arc<EngineConfig> {
        &self.engine_cfg
    }

    /// The watermarks, for what a source knows about its partitions (idleness, catch-up).
    pub(crate) fn watermarks_mut(&mut self) -> &mut WatermarkTracker<K> {
        &mut self.watermarks
    }

    /// Starts tracking an input partition's watermark.
    pub(crate) fn add_input(&mut self, at: InputPartition, now: WallClock) {
        self.watermarks.add_partition((self.key_of)(at), now);
    }

    /// Stops tracking an input partition's watermark.
    pub(crate) fn remove_input(&mut self, at: InputPartition) {
        self.watermarks.remove_partition(&(self.key_of)(at));
    }

    /// Takes over a partition's engine (restored from its changelog); the watermarks of
    /// its inputs come back with its state.
    pub(crate) fn adopt(&mut self, p: Partition, engine: Engine, now: WallClock) {
        for (input, max) in EventInput::ALL.into_iter().zip(engine.input_max()) {
            if let Some(t) = max {
                let key = (self.key_of)(InputPartition { input, partition: p });
                self.watermarks.add_partition(key.clone(), now);
                self.watermarks.observe(&key, t, now);
            }
        }
        self.engines.insert(p, engine);
    }

    /// Replaces a partition's engine with one restored from its changelog (a rewind to
    /// the last committed batch). Its inputs' watermarks go back with it: the records of
    /// the aborted batch are read again, and the event times seen in it the first time
    /// must not evaluate ticks before they are.
    /// A partition that was idle stays idle (its idle clock is kept).
    pub(crate) fn replace(&mut self, p: Partition, engine: Engine) {
        for (input, max) in EventInput::ALL.into_iter().zip(engine.input_max()) {
            let key = (self.key_of)(InputPartition { input, partition: p });
            self.watermarks.reset_partition(&key, max);
        }
        self.engines.insert(p, engine);
    }

    /// Drops a partition (revoked): its engine, and its stop if it had stopped. Returns
    /// whether it had.
    pub(crate) fn drop_partition(&mut self, p: Partition) -> bool {
        self.engines.remove(&p);
        self.failed.remove(&p).is_some()
    }

    /// Whether a partition has an engine.
    pub(crate) fn has_engine(&self, p: Partition) -> bool {
        self.engines.contains_key(&p)
    }

    /// The partitions with an engine.
    pub(crate) fn partitions(&self) -> Vec<Partition> {
        self.engines.keys().copied().collect()
    }

    /// The engines, by partition.
    pub(crate) fn engines(&self) -> impl Iterator<Item = (&Partition, &Engine)> {
        self.engines.iter()
    }

    /// Whether a partition has stopped.
    pub(crate) fn is_failed(&self, p: Partition) -> bool {
        self.failed.contains_key(&p)
    }

    /// The stopped partitions.
    pub(crate) fn failed(&self) -> impl Iterator<Item = Partition> + '_ {
        self.failed.keys().copied()
    }

    /// The last tick evaluated by every partition: the earliest of theirs.
    pub(crate) fn last_evaluated(&self) -> Option<Tick> {
        self.engines.values().filter_map(Engine::last_evaluated).min()
    }

    /// Rejects a record that never reached the engine (it did not decode): its partition
    /// is alive all the same.
    pub(crate) fn reject<S: Sink>(
        &mut self,
        at: InputPartition,
        origin: &S::Origin<'_>,
        why: &Rejection,
        now: WallClock,
        sink: &mut S,
    ) -> Result<(), S::Error> {
        self.watermarks.touch(&(self.key_of)(at), now);
        sink.reject(origin, why)
    }

    /// Takes a decoded event through its partition's engine (see the module's doc).
    pub(crate) fn ingest<S: Sink>(
        &mut self,
        at: InputPartition,
        origin: &S::Origin<'_>,
        ev: &Event,
        dims: &Dimensions,
        now: WallClock,
        sink: &mut S,
    ) -> Result<Taken, S::Error> {
        let p = at.partition;
        if self.failed.contains_key(&p) {
            return Ok(Taken::Skipped);
        }
        let (cfg, changelog) = (&self.engine_cfg, self.changelog);
        let engine = self.engines.entry(p).or_insert_with(|| {
            let engine = Engine::new(Arc::clone(cfg));
            if changelog {
                engine
            } else {
                engine.without_changelog()
            }
        });
        let out = &mut self.out;
        let alerts_before = out.alerts.len();
        let ingested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fault_hook(ev);
            engine.ingest_at(ev, dims, now, out)
        }));
        let result = match ingested {
            Ok(result) => result,
            Err(panic) => {
                self.out.alerts.truncate(alerts_before);
                let what = sink.describe(origin);
                return Ok(Taken::Failed(self.fail(p, &what, &panic_message(&*panic))));
            }
        };
        let key = (self.key_of)(at);
        if result.is_late() {
            sink.late(origin);
        }
        let taken = match result.rejection(ev.event_time()) {
            None => {
                engine.note_input(at.input, ev.event_time());
                self.watermarks.observe(&key, ev.event_time(), now);
                Taken::Accepted
            }
            Some(why) => {
                self.watermarks.touch(&key, now);
                if let Ingested::Limit { level, key, cap } = result {
                    EventLimited { level, key, cap }.emit();
                }
                sink.reject(origin, &why)?;
                Taken::Rejected
            }
        };
        if !self.out.alerts.is_empty() {
            self.write(sink.appended_at(origin), sink)?;
        }
        Ok(taken)
    }

    /// Evaluates, partition by partition, the ticks the pipeline watermark has passed (at
    /// most `max_ticks` each), then writes every output held. With `stop_at_failure`, a
    /// partition that fails ends it there, nothing written: the caller discards the work
    /// (an exactly-once batch is aborted and redone).
    pub(crate) fn advance<S: Sink>(
        &mut self,
        now: WallClock,
        max_ticks: usize,
        dims: &Dimensions,
        stop_at_failure: bool,
        sink: &mut S,
    ) -> Result<Advanced, S::Error> {
        let mut done = Advanced::default();
        if let Some(wm) = self.watermarks.watermark(now) {
            WatermarkAdvanced { watermark: wm, now }.emit();
            for p in self.partitions() {
                self.advance_partition(p, wm, max_ticks, dims, now, &mut done);
                if stop_at_failure && !done.failed.is_empty() {
                    return Ok(done);
                }
            }
            TicksEvaluated { ticks: self.out.ticks, earliest_evaluated: self.last_evaluated() }.emit();
        }
        self.write(None, sink)?;
        Ok(done)
    }

    /// At the end of input (files): evaluates up to the end of the tick interval holding
    /// the latest event, then writes every output held.
    pub(crate) fn finish<S: Sink>(
        &mut self,
        now: WallClock,
        dims: &Dimensions,
        sink: &mut S,
    ) -> Result<Advanced, S::Error> {
        let mut done = Advanced::default();
        if let Some(max) = self.watermarks.max_event_time() {
            for p in self.partitions() {
                let Some(engine) = self.engines.get(&p) else { continue };
                let wm = engine.end_of_input_watermark(max);
                self.advance_partition(p, wm, usize::MAX, dims, now, &mut done);
            }
        }
        self.write(None, sink)?;
        Ok(done)
    }

    fn advance_partition(
        &mut self,
        p: Partition,
        wm: crate::time::EventTime,
        max_ticks: usize,
        dims: &Dimensions,
        now: WallClock,
        done: &mut Advanced,
    ) {
        let Some(engine) = self.engines.get_mut(&p) else { return };
        let out = &mut self.out;
        let lens = (out.alerts.len(), out.scores.len());
        let next = engine.last_evaluated();
        let advanced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.advance_at_most(wm, max_ticks, dims, now, out)
        }));
        if let Err(panic) = advanced {
            self.out.alerts.truncate(lens.0);
            self.out.scores.truncate(lens.1);
            let after = next.map_or_else(
                || "its first tick".to_string(),
                |t| format!("the tick after {}", crate::time::format_rfc3339(t.0)),
            );
            let why = self.fail(p, &after, &panic_message(&*panic));
            done.failed.push((p, why));
        }
    }

    /// Hands the state changes of every partition, since the last call, to `f`: the
    /// partition, the key, and the value (`None`: a tombstone). Returns whether there were
    /// any.
    pub(crate) fn take_changes<E>(
        &mut self,
        mut f: impl FnMut(Partition, &[u8], Option<&[u8]>) -> Result<(), E>,
    ) -> Result<bool, E> {
        let mut any = false;
        for (p, engine) in self.engines.iter_mut() {
            for (k, v) in engine.take_changes() {
                f(*p, &k, v.as_deref())?;
                any = true;
            }
        }
        Ok(any)
    }

    /// Each partition's last evaluated tick and the views its engine made since the last
    /// call (see [`crate::engine::view`]).
    pub(crate) fn take_views(&mut self) -> Vec<PartitionViews> {
        self.engines.iter_mut().map(|(p, e)| (*p, e.last_evaluated().map(|t| t.0), e.take_views())).collect()
    }

    /// Every account's view of partition `p`, made afresh from its state (after a
    /// restore); `None` when it has no engine.
    pub(crate) fn rebuild_views(&mut self, p: Partition, dims: &Dimensions) -> Option<PartitionViews> {
        let engine = self.engines.get_mut(&p)?;
        let views = engine.rebuild_views(dims);
        Some((p, engine.last_evaluated().map(|t| t.0), views))
    }

    /// Discards outputs held but not written (their batch is being redone).
    pub(crate) fn discard_outputs(&mut self) {
        self.out = Outputs::default();
    }

    /// Stops partition `p` after a failure while processing `what`: its state is dropped
    /// (a restart restores it from the changelog), it no longer holds the watermark back,
    /// and its later records are skipped. The others go on. Returns why, for the caller.
    pub(crate) fn fail(&mut self, p: Partition, what: &str, message: &str) -> String {
        let why = format!("input partition {p} stopped while processing {what}: {message}");
        PartitionStopped { partition: p, what, error: message, why: &why }.emit();
        self.engines.remove(&p);
        for input in EventInput::ALL {
            self.watermarks.remove_partition(&(self.key_of)(InputPartition { input, partition: p }));
        }
        self.failed.insert(p, why.clone());
        why
    }

    /// Writes the outputs held, with their telemetry, and resets the counters.
    fn write<S: Sink>(&mut self, trigger_ms: Option<i64>, sink: &mut S) -> Result<(), S::Error> {
        let out = &mut self.out;
        if !out.paired_ttp_ms.is_empty() || out.expired_changes > 0 {
            ChangesMeasured { paired_ttp_ms: &out.paired_ttp_ms, expired: out.expired_changes }.emit();
        }
        AlertsEmitted { alerts: &out.alerts }.emit();
        sink.write(out, trigger_ms)?;
        out.alerts.clear();
        out.scores.clear();
        out.paired_ttp_ms.clear();
        out.expired_changes = 0;
        out.ticks = 0;
        out.evaluations = 0;
        Ok(())
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-text payload".into())
}

/// A test-only fault hook: with `CS_PULSE_FAULT_PANIC_EVENT_ID` set, processing the event
/// with that id panics, as a defect would. The containment tests use it.
fn fault_hook(ev: &Event) {
    static ID: std::sync::LazyLock<Option<String>> =
        std::sync::LazyLock::new(|| std::env::var("CS_PULSE_FAULT_PANIC_EVENT_ID").ok().filter(|v| !v.is_empty()));
    if let Some(id) = ID.as_deref() {
        if ev.event_id() == id {
            panic!("fault injected by CS_PULSE_FAULT_PANIC_EVENT_ID at event {id}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{UsageEvent, UsageKind};
    use crate::time::{EventTime, DAY_MS};

    struct Nowhere;

    impl Sink for Nowhere {
        type Origin<'a> = ();
        type Error = ();
        fn reject(&mut self, _: &(), _: &Rejection) -> Result<(), ()> {
            Ok(())
        }
        fn write(&mut self, out: &mut Outputs, _: Option<i64>) -> Result<(), ()> {
            out.alerts.clear();
            out.scores.clear();
            Ok(())
        }
        fn late(&mut self, _: &()) {}
        fn describe(&self, _: &()) -> String {
            String::new()
        }
    }

    fn usage(id: &str, at: i64) -> Event {
        Event::Usage(UsageEvent {
            event_id: id.into(),
            occurred_at: at,
            account_id: "a".into(),
            team_id: "t".into(),
            user_id: Some("u".into()),
            event_type: "page_view".into(),
            kind: UsageKind::Other,
            feature: None,
            app_id: None,
            change_id: None,
            environment: None,
        })
    }

    /// A rewind to the last committed batch takes the watermark back with the state: the
    /// aborted batch's event times, read again, must not find their ticks evaluated.
    #[test]
    fn a_replaced_engine_takes_its_watermark_back() {
        let cfg = Arc::new(EngineConfig::from_config(&crate::config::Config::default()));
        let tracker = WatermarkTracker::new(3_600_000, i64::MAX);
        let mut d: Driver<InputPartition> = Driver::new(Arc::clone(&cfg), tracker, |at| at, true);
        let t0 = 20_000 * DAY_MS;
        let (now, dims, p) = (WallClock(t0 + 30 * DAY_MS), Dimensions::default(), Partition(0));
        let usage_at = InputPartition { input: EventInput::Usage, partition: p };
        d.add_input(usage_at, now);
        assert_eq!(d.ingest(usage_at, &(), &usage("1", t0), &dims, now, &mut Nowhere), Ok(Taken::Accepted));
        d.advance(now, usize::MAX, &dims, false, &mut Nowhere).unwrap();
        // the batch commits: its changelog is what a rewind restores
        let committed = d.engines.get_mut(&p).unwrap().take_changes();
        // the next batch reads ten days on, then aborts
        d.ingest(usage_at, &(), &usage("2", t0 + 10 * DAY_MS), &dims, now, &mut Nowhere).unwrap();
        assert_eq!(d.watermarks_mut().watermark(now), Some(EventTime(t0 + 10 * DAY_MS - 3_600_000)));
        let restored = Engine::restore(cfg, committed).unwrap();
        d.replace(p, restored);
        assert_eq!(d.watermarks_mut().watermark(now), Some(EventTime(t0 - 3_600_000)));
    }
}
