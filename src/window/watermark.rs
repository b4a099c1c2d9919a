//! Watermarks.
//!
//! Each input partition's watermark is its highest event time minus the allowed lateness.
//! The pipeline watermark is the minimum over the partitions that are not idle; a
//! partition is idle once it has delivered nothing for `idle_timeout` of wall-clock time.
//! The pipeline watermark never moves back while the assigned partitions stay the same;
//! when a partition joins (a takeover brings its state and its older unread events) the
//! minimum is taken afresh, so that its events are not judged against the others' time.

use std::collections::HashMap;
use std::hash::Hash;

use crate::time::{EventTime, WallClock};

/// One partition's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watermark {
    /// All events before this time are expected to have arrived.
    EventTime(EventTime),
    /// The partition has been silent for the idle timeout: it does not hold others back.
    Idle,
    /// The partition has not delivered an event yet and is not idle: it holds the
    /// pipeline watermark where it is.
    Pending,
}

#[derive(Debug, Clone)]
struct PartitionState {
    max_event_time: Option<i64>,
    last_activity_wall_ms: i64,
    /// The consumer has read everything the partition holds.
    caught_up: bool,
}

/// Tracks per-partition watermarks and derives the pipeline watermark.
///
/// ```
/// use cs_pulse::time::{EventTime as E, WallClock as W};
/// use cs_pulse::window::WatermarkTracker;
/// let mut wm = WatermarkTracker::new(1_000, 30_000);
/// wm.add_partition("usage-0", W(0));
/// wm.add_partition("support-0", W(0));
/// wm.observe(&"usage-0", E(10_000), W(1));
/// assert_eq!(wm.watermark(W(1)), None); // support-0 has said nothing yet
/// wm.observe(&"support-0", E(5_000), W(2));
/// assert_eq!(wm.watermark(W(2)), Some(E(4_000)));
/// // usage-0 goes quiet; after the idle timeout only support-0 counts
/// wm.observe(&"support-0", E(20_000), W(40_000));
/// assert_eq!(wm.watermark(W(40_000)), Some(E(19_000)));
/// ```
#[derive(Debug, Clone)]
pub struct WatermarkTracker<K> {
    lateness_ms: i64,
    idle_timeout_ms: i64,
    parts: HashMap<K, PartitionState>,
    current: Option<i64>,
    require_caught_up: bool,
}

impl<K: Hash + Eq + Clone> WatermarkTracker<K> {
    /// A tracker with no partitions.
    pub fn new(lateness_ms: i64, idle_timeout_ms: i64) -> Self {
        Self { lateness_ms, idle_timeout_ms, parts: HashMap::new(), current: None, require_caught_up: false }
    }

    /// Counts a partition as idle only once it is also caught up (see
    /// [`WatermarkTracker::set_caught_up`]): silence because the consumer has not fetched
    /// a partition yet, or fell behind on it, is not idleness, and treating it as such
    /// would make that partition's events late.
    pub fn require_caught_up(mut self) -> Self {
        self.require_caught_up = true;
        self
    }

    /// Records whether the consumer has read everything a partition holds.
    pub fn set_caught_up(&mut self, key: &K, caught_up: bool) {
        if let Some(p) = self.parts.get_mut(key) {
            p.caught_up = caught_up;
        }
    }

    /// Starts tracking a partition (on assignment). `now_wall_ms` starts its idle clock.
    pub fn add_partition(&mut self, key: K, now: WallClock) {
        let now_wall_ms = now.0;
        if let std::collections::hash_map::Entry::Vacant(e) = self.parts.entry(key) {
            e.insert(PartitionState { max_event_time: None, last_activity_wall_ms: now_wall_ms, caught_up: false });
            self.current = None;
        }
    }

    /// Stops tracking a partition (on revocation).
    pub fn remove_partition(&mut self, key: &K) {
        if self.parts.remove(key).is_some() {
            self.current = None;
        }
    }

    /// Sets a partition's highest event time back to `max` (its state was restored to an
    /// earlier point: a rewind), keeping its idle clock. The pipeline watermark is worked
    /// out again from the partitions as they now stand.
    pub fn reset_partition(&mut self, key: &K, max: Option<EventTime>) {
        if let Some(p) = self.parts.get_mut(key) {
            p.max_event_time = max.map(|t| t.0);
            self.current = None;
        }
    }

    /// Records an event time seen on a partition.
    pub fn observe(&mut self, key: &K, event_time: EventTime, now: WallClock) {
        let (event_time, now_wall_ms) = (event_time.0, now.0);
        if !self.parts.contains_key(key) {
            self.add_partition(key.clone(), now);
        }
        if let Some(p) = self.parts.get_mut(key) {
            p.max_event_time = Some(p.max_event_time.map_or(event_time, |m| m.max(event_time)));
            p.last_activity_wall_ms = now_wall_ms;
        }
    }

    /// Marks a partition as alive without an event (for example, it reached its end).
    pub fn touch(&mut self, key: &K, now: WallClock) {
        if let Some(p) = self.parts.get_mut(key) {
            p.last_activity_wall_ms = now.0;
        }
    }

    /// One partition's watermark at `now`.
    pub fn partition_watermark(&self, key: &K, now: WallClock) -> Option<Watermark> {
        self.parts.get(key).map(|p| self.state_of(p, now.0))
    }

    fn state_of(&self, p: &PartitionState, now_wall_ms: i64) -> Watermark {
        let silent = now_wall_ms - p.last_activity_wall_ms >= self.idle_timeout_ms;
        if silent && (p.caught_up || !self.require_caught_up) {
            Watermark::Idle
        } else {
            match p.max_event_time {
                Some(t) => Watermark::EventTime(EventTime(t.saturating_sub(self.lateness_ms))),
                None => Watermark::Pending,
            }
        }
    }

    /// The pipeline watermark: the minimum over non-idle partitions, never moving back
    /// while the partitions stay the same.
    /// `None` until every live partition has delivered an event.
    ///
    /// When every partition is idle, the minimum over the idle partitions that have
    /// delivered events counts: nothing is arriving anywhere, so the slowest partition's
    /// own watermark is safe, and holding back would leave the last ticks unevaluated.
    pub fn watermark(&mut self, now: WallClock) -> Option<EventTime> {
        let now_wall_ms = now.0;
        let mut live: Option<i64> = None;
        let mut idle: Option<i64> = None;
        for p in self.parts.values() {
            match self.state_of(p, now_wall_ms) {
                Watermark::Pending => return self.current.map(EventTime),
                Watermark::EventTime(EventTime(t)) => live = Some(live.map_or(t, |m| m.min(t))),
                Watermark::Idle => {
                    if let Some(t) = p.max_event_time {
                        let t = t.saturating_sub(self.lateness_ms);
                        idle = Some(idle.map_or(t, |m| m.min(t)));
                    }
                }
            }
        }
        if let Some(m) = live.or(idle) {
            self.current = Some(self.current.map_or(m, |c| c.max(m)));
        }
        self.current.map(EventTime)
    }

    /// The highest event time seen on any partition.
    pub fn max_event_time(&self) -> Option<EventTime> {
        self.parts.values().filter_map(|p| p.max_event_time).max().map(EventTime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{EventTime as E, WallClock as W};

    #[test]
    fn minimum_over_partitions_with_lateness() {
        let mut t = WatermarkTracker::new(100, 1_000);
        t.observe(&0, E(1_000), W(0));
        t.observe(&1, E(600), W(0));
        assert_eq!(t.watermark(W(0)), Some(E(500)));
        t.observe(&1, E(2_000), W(10));
        assert_eq!(t.watermark(W(10)), Some(E(900)));
    }

    #[test]
    fn a_reset_goes_back_with_the_state_and_keeps_the_idle_clock() {
        let mut t = WatermarkTracker::new(0, 1_000);
        t.observe(&0, E(5_000), W(0));
        t.observe(&1, E(9_000), W(1_500));
        assert_eq!(t.watermark(W(1_500)), Some(E(9_000)), "partition 0 is idle");
        t.reset_partition(&1, Some(E(7_000)));
        assert_eq!(t.watermark(W(1_500)), Some(E(7_000)), "back with the state; 0 is still idle");
        t.reset_partition(&1, None);
        assert_eq!(t.watermark(W(1_600)), None, "1 holds back until it delivers again");
    }

    #[test]
    fn never_moves_back() {
        let mut t = WatermarkTracker::new(0, 1_000);
        t.observe(&0, E(1_000), W(0));
        t.observe(&1, E(2_000), W(0));
        assert_eq!(t.watermark(W(0)), Some(E(1_000)));
        // partition 0 goes idle, so the minimum is partition 1's; then 0 speaks again
        // with older data
        t.observe(&1, E(2_000), W(1_400));
        assert_eq!(t.watermark(W(1_500)), Some(E(2_000)));
        t.observe(&0, E(1_200), W(1_600));
        assert_eq!(t.watermark(W(1_600)), Some(E(2_000)), "an idle partition's return does not lower it");
        // an older event on the same partition does not lower its own watermark either
        t.observe(&0, E(5), W(1_700));
        assert_eq!(t.partition_watermark(&0, W(1_700)), Some(Watermark::EventTime(E(1_200))));
    }

    #[test]
    fn a_joining_partition_is_judged_on_its_own_time() {
        // A takeover: the instance was far ahead on its own partitions when another's
        // partition, with older unread events, is assigned to it.
        let mut t = WatermarkTracker::new(0, 1_000);
        t.observe(&0, E(1_000), W(0));
        assert_eq!(t.watermark(W(0)), Some(E(1_000)));
        t.add_partition(1, W(1));
        assert_eq!(t.watermark(W(1)), None, "the new partition has said nothing yet");
        t.observe(&1, E(10), W(2));
        assert_eq!(t.watermark(W(2)), Some(E(10)), "the minimum over the assigned partitions");
        t.remove_partition(&1);
        assert_eq!(t.watermark(W(3)), Some(E(1_000)));
    }

    #[test]
    fn idle_partitions_stop_holding_back() {
        let mut t = WatermarkTracker::new(0, 1_000);
        t.add_partition(0, W(0));
        t.observe(&1, E(5_000), W(0));
        assert_eq!(t.watermark(W(500)), None);
        assert_eq!(t.partition_watermark(&0, W(1_000)), Some(Watermark::Idle));
        t.observe(&1, E(6_000), W(1_000));
        assert_eq!(t.watermark(W(1_000)), Some(E(6_000)));
        // once every partition is idle, those with events still count
        assert_eq!(t.watermark(W(10_000)), Some(E(6_000)));
        // a partition that wakes up with old data holds it no lower
        t.observe(&0, E(100), W(10_000));
        assert_eq!(t.watermark(W(10_000)), Some(E(6_000)));
    }

    #[test]
    fn all_idle_uses_the_slowest_partition_with_events() {
        let mut t = WatermarkTracker::new(10, 1_000);
        t.add_partition(0, W(0)); // never delivers
        t.observe(&1, E(500), W(0));
        t.observe(&2, E(300), W(0));
        // partition 0 holds everything back while it is pending
        assert_eq!(t.watermark(W(999)), None);
        // all idle at once: 0 has nothing, 1 and 2 count, the slower one wins
        assert_eq!(t.watermark(W(5_000)), Some(E(290)));
    }

    #[test]
    fn silence_is_idleness_only_when_caught_up() {
        let mut t = WatermarkTracker::new(0, 1_000).require_caught_up();
        t.observe(&0, E(5_000), W(0));
        t.observe(&1, E(100), W(0));
        // partition 1 is silent but the consumer has not read all of it: it holds
        assert_eq!(t.watermark(W(2_000)), Some(E(100)));
        t.observe(&0, E(6_000), W(2_000));
        t.set_caught_up(&1, true);
        assert_eq!(t.partition_watermark(&1, W(2_000)), Some(Watermark::Idle));
        assert_eq!(t.watermark(W(2_000)), Some(E(6_000)));
    }

    #[test]
    fn removed_partitions_do_not_count() {
        let mut t = WatermarkTracker::new(0, 1_000);
        t.observe(&0, E(100), W(0));
        t.observe(&1, E(900), W(0));
        t.remove_partition(&0);
        assert_eq!(t.watermark(W(1)), Some(E(900)));
        assert_eq!(t.max_event_time(), Some(E(900)));
    }
}
