//! An entity's daily score history: the score and band at the close of each UTC day, for
//! the last [`HISTORY_DAYS`] days.
//!
//! Kept as change points: a day is stored only when its close differs from the day
//! before, and read back by carrying the last close forward. So a day on which the entity
//! was not evaluated (its account was quiet: nothing could change) reads the same as a day
//! on which it was, and the history is the same however the ticks were evaluated. At most
//! one point per day within the window, plus the one before it that the window's first
//! days carry forward: 8 bytes each.
//!
//! A tick `T` closes the interval before it, so it belongs to the day holding `T - 1 ms`:
//! the midnight tick is the close of the day that ends there.

use serde::{Deserialize, Serialize};

use crate::model::Band;
use crate::time::DAY_MS;

/// Days of history kept and shown, the day of the last tick included.
pub const HISTORY_DAYS: i64 = 90;

/// One day's close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayClose {
    /// Days since 1970-01-01 (UTC).
    pub day: i32,
    /// The score in tenths (0..=1000): scores have one decimal.
    pub tenths: u16,
    /// The band.
    pub band: Band,
}

impl DayClose {
    /// The score, 0-100 with one decimal.
    pub fn score(&self) -> f64 {
        f64::from(self.tenths) / 10.0
    }
}

/// The UTC day a tick closes (see the module's doc).
pub fn day_of_tick(tick: i64) -> i32 {
    (tick.saturating_sub(1)).div_euclid(DAY_MS).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// An entity's daily closes, as change points in day order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScoreHistory(Vec<DayClose>);

impl ScoreHistory {
    /// The history of stored points, as written to and read from the changelog; points
    /// out of order are dropped, so that any record reads as a valid history.
    pub(super) fn from_points(mut points: Vec<DayClose>) -> Self {
        let mut last: Option<i32> = None;
        points.retain(|p| {
            let keep = last.is_none_or(|d| p.day > d);
            if keep {
                last = Some(p.day);
            }
            keep
        });
        points.shrink_to_fit();
        Self(points)
    }

    /// The stored change points.
    pub fn points(&self) -> &[DayClose] {
        &self.0
    }

    /// Records the score and band evaluated at `tick`, and forgets what the window no
    /// longer needs. Returns whether the stored points changed. A tick older than the
    /// last point's day changes nothing (ticks only move forward).
    pub(super) fn record(&mut self, tick: i64, score: f64, band: Band) -> bool {
        let day = day_of_tick(tick);
        let tenths = (score * 10.0).round().clamp(0.0, 1000.0) as u16;
        let close = DayClose { day, tenths, band };
        let same = |a: &DayClose, b: &DayClose| a.tenths == b.tenths && a.band == b.band;
        let before = self.0.len();
        let mut changed = false;
        match self.0.last_mut() {
            Some(last) if last.day > day => return false,
            Some(last) if last.day == day => {
                if !same(last, &close) {
                    *last = close;
                    changed = true;
                    // A close equal to the day before's is carried forward, not stored.
                    let n = self.0.len();
                    if n >= 2 && same(&self.0[n - 2], &close) {
                        self.0.pop();
                    }
                }
            }
            Some(last) if same(last, &close) => {}
            _ => {
                self.0.push(close);
                changed = true;
            }
        }
        // The first day shown carries the last point before it forward: older ones go.
        let first = day.saturating_sub(HISTORY_DAYS as i32 - 1);
        let drop = self.0.iter().skip(1).take_while(|p| p.day <= first).count();
        if drop > 0 {
            self.0.drain(..drop);
        }
        changed || self.0.len() != before
    }

    /// The close of each of the [`HISTORY_DAYS`] days up to the day of `as_of` (a tick),
    /// oldest first: `None` before the first score.
    pub fn daily(&self, as_of: i64) -> Vec<(i32, Option<DayClose>)> {
        let last = day_of_tick(as_of);
        let first = last.saturating_sub(HISTORY_DAYS as i32 - 1);
        let mut out = Vec::with_capacity(HISTORY_DAYS as usize);
        let mut points = self.0.iter().peekable();
        let mut current: Option<DayClose> = None;
        for day in first..=last {
            while let Some(p) = points.next_if(|p| p.day <= day) {
                current = Some(*p);
            }
            out.push((day, current));
        }
        out
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<DayClose>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: i64 = DAY_MS;
    const H: i64 = 3_600_000;

    fn score_at(h: &ScoreHistory, as_of: i64, day: i32) -> Option<(f64, Band)> {
        h.daily(as_of).into_iter().find(|(d, _)| *d == day).and_then(|(_, c)| c).map(|c| (c.score(), c.band))
    }

    #[test]
    fn a_day_holds_its_last_close_and_equal_days_are_carried_forward() {
        let mut h = ScoreHistory::default();
        let t0 = 20_000 * D;
        assert!(h.record(t0 + H, 80.0, Band::Green));
        assert!(h.record(t0 + 2 * H, 60.0, Band::Yellow));
        // the midnight tick closes day 20000
        assert!(h.record(t0 + D, 61.5, Band::Yellow));
        assert_eq!(h.points().len(), 1);
        assert_eq!(score_at(&h, t0 + D, 20_000), Some((61.5, Band::Yellow)));
        // the next days close the same: nothing stored, read as carried forward
        assert!(!h.record(t0 + 2 * D, 61.5, Band::Yellow));
        assert!(!h.record(t0 + 3 * D, 61.5, Band::Yellow));
        assert_eq!(h.points().len(), 1);
        assert_eq!(score_at(&h, t0 + 3 * D, 20_002), Some((61.5, Band::Yellow)));
        // a day that moves and moves back within the day stores nothing for it
        assert!(h.record(t0 + 3 * D + H, 40.0, Band::Yellow));
        assert_eq!(h.points().len(), 2);
        assert!(h.record(t0 + 4 * D, 61.5, Band::Yellow));
        assert_eq!(h.points().len(), 1);
        // a tick behind the last day changes nothing
        assert!(!h.record(t0, 10.0, Band::Red));
    }

    #[test]
    fn the_window_is_ninety_days_and_before_the_first_score_is_none() {
        let mut h = ScoreHistory::default();
        let t0 = 20_000 * D;
        h.record(t0 + D, 50.0, Band::Yellow);
        let daily = h.daily(t0 + D);
        assert_eq!(daily.len(), 90);
        assert_eq!(daily.last().map(|(d, _)| *d), Some(20_000));
        assert!(daily[..89].iter().all(|(_, c)| c.is_none()));
        for i in 1..200 {
            h.record(t0 + (1 + i) * D, (i % 100) as f64, Band::Red);
        }
        assert!(h.points().len() <= 91, "{}", h.points().len());
        let daily = h.daily(t0 + 200 * D);
        assert!(daily.iter().all(|(_, c)| c.is_some()));
        assert_eq!(daily[0].1.map(|c| c.score()), Some(10.0));
    }

    proptest! {
        /// Recording every tick or only the ticks where the score changed (what a quiet
        /// account skips) gives the same history, and the window reads what was recorded.
        #[test]
        fn skipping_unchanged_ticks_gives_the_same_history(
            steps in proptest::collection::vec((1i64..30, 0u16..=1000, 0usize..3), 1..200)
        ) {
            let bands = [Band::Green, Band::Yellow, Band::Red];
            let (mut every, mut changes) = (ScoreHistory::default(), ScoreHistory::default());
            let mut t = 20_000 * D;
            let mut last = None;
            let mut closes = std::collections::BTreeMap::new();
            for (gap_hours, tenths, b) in steps {
                // a score that stays for gap_hours hourly ticks
                for k in 0..gap_hours {
                    let tick = t + (k + 1) * H;
                    let (score, band) = (f64::from(tenths) / 10.0, bands[b]);
                    every.record(tick, score, band);
                    if last != Some((tenths, b)) {
                        changes.record(tick, score, band);
                        last = Some((tenths, b));
                    }
                    closes.insert(day_of_tick(tick), (tenths, bands[b]));
                }
                t += gap_hours * H;
            }
            prop_assert_eq!(every.daily(t), changes.daily(t));
            for (day, c) in every.daily(t) {
                // every day from the first close on reads the last close up to it
                let expected = closes.range(..=day).next_back().map(|(_, v)| *v);
                prop_assert_eq!(c.map(|c| (c.tenths, c.band)), expected);
            }
            prop_assert!(every.points().len() <= 91);
        }
    }
}
