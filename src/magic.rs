//! The magic number: time to production. A change's `change_created` pairs with its first
//! `change_deployed` to `production`; the difference (0 when the clocks disagree) is its
//! time to production. Percentiles are exact, by nearest rank.

use serde::{Deserialize, Serialize};

use crate::time::DAY_MS;

/// The `p`-th percentile (1..=100) of sorted values by nearest rank: the value at rank
/// `ceil(p/100 * n)`.
///
/// ```text
/// use cs_pulse::magic::nearest_rank;
/// assert_eq!(nearest_rank(&[15, 20, 35, 40, 50], 50), Some(35));
/// assert_eq!(nearest_rank(&[15, 20, 35, 40, 50], 90), Some(50));
/// assert_eq!(nearest_rank(&[7], 90), Some(7));
/// assert_eq!(nearest_rank(&[], 50), None);
/// ```
pub(crate) fn nearest_rank(sorted: &[i64], p: u64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    let rank = (p * n).div_ceil(100).clamp(1, n);
    sorted.get(rank as usize - 1).copied()
}

/// DORA lead-time bucket of a median time to production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Dora {
    /// Under a day.
    Elite,
    /// Under a week.
    High,
    /// Under 30 days.
    Medium,
    /// 30 days or more.
    Low,
}

impl Dora {
    /// The bucket of a p50 in milliseconds.
    pub(crate) fn of(p50_ms: i64) -> Self {
        if p50_ms < DAY_MS {
            Dora::Elite
        } else if p50_ms < 7 * DAY_MS {
            Dora::High
        } else if p50_ms < 30 * DAY_MS {
            Dora::Medium
        } else {
            Dora::Low
        }
    }

    /// The `time_to_production` component score.
    pub(crate) fn score(self) -> f64 {
        match self {
            Dora::Elite => 100.0,
            Dora::High => 75.0,
            Dora::Medium => 50.0,
            Dora::Low => 25.0,
        }
    }

    /// Lower-case name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Dora::Elite => "elite",
            Dora::High => "high",
            Dora::Medium => "medium",
            Dora::Low => "low",
        }
    }
}

/// Human duration: hours under a day, days with one decimal otherwise.
///
/// ```text
/// assert_eq!(cs_pulse::magic::human_duration(5 * 3_600_000), "5.0 hours");
/// assert_eq!(cs_pulse::magic::human_duration(2 * 86_400_000 + 43_200_000), "2.5 days");
/// ```
pub(crate) fn human_duration(ms: i64) -> String {
    if ms < DAY_MS {
        format!("{:.1} hours", ms as f64 / 3_600_000.0)
    } else {
        format!("{:.1} days", ms as f64 / DAY_MS as f64)
    }
}

/// The two halves of one change, as far as they have arrived.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Change {
    /// Earliest `change_created`: time and team.
    pub(crate) created: Option<(i64, String)>,
    /// Earliest production deploy.
    pub(crate) deployed: Option<i64>,
}

impl Change {
    /// Records a `change_created`. Returns the time to production when this completes
    /// a pair within `ttl_ms`.
    pub(crate) fn record_created(&mut self, at: i64, team: &str, ttl_ms: i64) -> Option<i64> {
        let was = self.paired(ttl_ms);
        // An unmatched half expires `ttl_ms` after its time: a later one replaces it,
        // whether or not the expired one is still held (pruning is only bookkeeping).
        let expired = !was && self.created.as_ref().is_some_and(|(c, _)| at.saturating_sub(*c) > ttl_ms);
        if expired || self.created.as_ref().is_none_or(|(c, _)| at < *c) {
            self.created = Some((at, team.to_string()));
        }
        self.newly_paired(was, ttl_ms)
    }

    /// Records a production deploy; only the first counts. Returns the time to production
    /// when this completes a pair within `ttl_ms`.
    pub(crate) fn record_deploy(&mut self, at: i64, ttl_ms: i64) -> Option<i64> {
        let was = self.paired(ttl_ms);
        let expired = !was && self.deployed.is_some_and(|d| at.saturating_sub(d) > ttl_ms);
        if expired || self.deployed.is_none_or(|d| at < d) {
            self.deployed = Some(at);
        }
        self.newly_paired(was, ttl_ms)
    }

    fn newly_paired(&self, was: bool, ttl_ms: i64) -> Option<i64> {
        if was {
            return None;
        }
        self.pair(ttl_ms).map(|(_, ttp, _)| ttp)
    }

    fn paired(&self, ttl_ms: i64) -> bool {
        self.pair(ttl_ms).is_some()
    }

    /// `(deployed_at, time_to_production, team)` when both halves are known and at most
    /// `ttl_ms` apart.
    pub(crate) fn pair(&self, ttl_ms: i64) -> Option<(i64, i64, &str)> {
        let ((c, team), d) = (self.created.as_ref()?, self.deployed?);
        ((d - c).abs() <= ttl_ms).then(|| (d, (d - c).max(0), team.as_str()))
    }

    /// The pair as of `tick`: both halves before it.
    pub(crate) fn pair_as_of(&self, tick: i64, ttl_ms: i64) -> Option<(i64, i64, &str)> {
        let (c, _) = self.created.as_ref()?;
        let d = self.deployed?;
        if *c >= tick || d >= tick {
            return None;
        }
        self.pair(ttl_ms)
    }

    /// Whether this change can be dropped before `tick`: a pair whose deploy left every
    /// window (56 days), or halves that no partner can reach any more (every event still
    /// to come is at or after `earliest_next`, and a partner must be within the TTL). The
    /// second value says whether it expired unmatched.
    pub(crate) fn droppable(&self, tick: i64, earliest_next: i64, ttl_ms: i64) -> Option<bool> {
        if let Some((d, _, _)) = self.pair(ttl_ms) {
            return (d < tick - 56 * DAY_MS).then_some(false);
        }
        let latest = self.created.as_ref().map(|(c, _)| *c).max(self.deployed)?;
        (earliest_next - latest > ttl_ms).then_some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const TTL: i64 = 90 * DAY_MS;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(nearest_rank(&v, 50), Some(5));
        assert_eq!(nearest_rank(&v, 90), Some(9));
        assert_eq!(nearest_rank(&v[..4], 50), Some(2));
        assert_eq!(nearest_rank(&v[..4], 90), Some(4));
        assert_eq!(nearest_rank(&v[..2], 50), Some(1));
    }

    #[test]
    fn dora_buckets() {
        assert_eq!(Dora::of(DAY_MS - 1), Dora::Elite);
        assert_eq!(Dora::of(DAY_MS), Dora::High);
        assert_eq!(Dora::of(7 * DAY_MS), Dora::Medium);
        assert_eq!(Dora::of(30 * DAY_MS), Dora::Low);
        assert_eq!(Dora::High.score(), 75.0);
    }

    #[test]
    fn either_half_first_and_first_deploy_wins() {
        let mut c = Change::default();
        assert_eq!(c.record_deploy(10 * H, TTL), None);
        assert_eq!(c.record_created(4 * H, "t", TTL), Some(6 * H));
        // a repeated production deploy changes nothing
        assert_eq!(c.record_deploy(20 * H, TTL), None);
        assert_eq!(c.pair(TTL), Some((10 * H, 6 * H, "t")));
        // an earlier one (arriving late) is the first
        c.record_deploy(8 * H, TTL);
        assert_eq!(c.pair(TTL), Some((8 * H, 4 * H, "t")));
    }

    #[test]
    fn clock_skew_counts_as_zero() {
        let mut c = Change::default();
        c.record_created(10 * H, "t", TTL);
        c.record_deploy(9 * H, TTL);
        assert_eq!(c.pair(TTL).map(|p| p.1), Some(0));
    }

    #[test]
    fn halves_too_far_apart_do_not_pair_and_expire() {
        let mut c = Change::default();
        c.record_created(0, "t", TTL);
        assert_eq!(c.record_deploy(TTL + 1, TTL), None);
        assert_eq!(c.pair(TTL), None);
        assert_eq!(c.droppable(2 * TTL, 2 * TTL, TTL), None);
        assert_eq!(c.droppable(2 * TTL + 2, 2 * TTL + 2, TTL), Some(true));
        let mut lone = Change::default();
        lone.record_created(0, "t", TTL);
        assert_eq!(lone.droppable(TTL, TTL, TTL), None);
        assert_eq!(lone.droppable(TTL + 1, TTL + 1, TTL), Some(true));
    }

    #[test]
    fn as_of_needs_both_halves_before_the_tick() {
        let mut c = Change::default();
        c.record_created(5 * H, "t", TTL);
        c.record_deploy(10 * H, TTL);
        assert_eq!(c.pair_as_of(10 * H, TTL), None);
        assert!(c.pair_as_of(10 * H + 1, TTL).is_some());
        assert_eq!(c.droppable(10 * H + 56 * DAY_MS + 1, 10 * H + 56 * DAY_MS + 1, TTL), Some(false));
    }

    #[test]
    fn an_expired_half_is_replaced_by_a_later_one_whether_or_not_it_was_pruned() {
        let mut c = Change::default();
        assert_eq!(c.record_created(0, "t", TTL), None);
        // a second change_created long after the first expired: it is the created half now
        assert_eq!(c.record_created(TTL + 5 * H, "t2", TTL), None);
        assert_eq!(c.record_deploy(TTL + 8 * H, TTL), Some(3 * H));
        assert_eq!(c.pair(TTL), Some((TTL + 8 * H, 3 * H, "t2")));
        // a lone deploy expires the same way
        let mut d = Change::default();
        d.record_deploy(0, TTL);
        d.record_deploy(TTL + 10 * H, TTL);
        assert_eq!(d.record_created(TTL + 9 * H, "t", TTL), Some(H));
        // no partner can reach a half once every event to come is over the TTL away
        let lone = Change { created: Some((0, "t".into())), deployed: None };
        assert_eq!(lone.droppable(TTL + 2 * H, TTL, TTL), None);
        assert_eq!(lone.droppable(TTL + 2 * H, TTL + 1, TTL), Some(true));
    }
}

#[cfg(test)]
mod examples {
    //! The examples of the docs above, run.

    #[test]
    fn nearest_rank() {
        use crate::magic::nearest_rank;
        assert_eq!(nearest_rank(&[15, 20, 35, 40, 50], 50), Some(35));
        assert_eq!(nearest_rank(&[15, 20, 35, 40, 50], 90), Some(50));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn human_duration() {
        assert_eq!(crate::magic::human_duration(5 * 3_600_000), "5.0 hours");
        assert_eq!(crate::magic::human_duration(2 * 86_400_000 + 43_200_000), "2.5 days");
    }
}

#[cfg(test)]
mod order {
    use super::Change;

    fn fold(halves: &[(bool, i64)], ttl: i64) -> Option<(i64, i64)> {
        let mut c = Change::default();
        for &(created, at) in halves {
            if created {
                c.record_created(at, "t", ttl);
            } else {
                c.record_deploy(at, ttl);
            }
        }
        c.pair(ttl).map(|(d, ttp, _)| (d, ttp))
    }

    fn permutations(v: &[(bool, i64)]) -> Vec<Vec<(bool, i64)>> {
        if v.len() <= 1 {
            return vec![v.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..v.len() {
            let mut rest = v.to_vec();
            let x = rest.remove(i);
            for mut p in permutations(&rest) {
                p.insert(0, x);
                out.push(p);
            }
        }
        out
    }

    /// One created half and one production deploy, or two halves of one side, on a
    /// small grid of times: every arrival order pairs as the event-time order does. (With
    /// more halves of one change, more than the TTL apart, the one held of each side can
    /// depend on arrival order: one half per side is all a change keeps.)
    #[test]
    fn the_pair_does_not_depend_on_arrival_order() {
        let ttl = 2;
        let mut bad = Vec::new();
        let grid = 0..6i64;
        for (nc, nd) in [(0, 1), (1, 0), (1, 1), (2, 0), (0, 2)] {
            let mut sets: Vec<Vec<(bool, i64)>> = vec![vec![]];
            for side in std::iter::repeat_n(true, nc).chain(std::iter::repeat_n(false, nd)) {
                sets = sets
                    .into_iter()
                    .flat_map(|s| grid.clone().map(move |t| [s.clone(), vec![(side, t)]].concat()))
                    .collect();
            }
            for set in sets {
                let mut sorted = set.clone();
                sorted.sort_by_key(|&(_, t)| t);
                let want = fold(&sorted, ttl);
                for p in permutations(&set) {
                    let got = fold(&p, ttl);
                    if got != want {
                        bad.push((p, got, want));
                    }
                }
            }
        }
        assert!(bad.is_empty(), "{} orders differ, e.g. {:?}", bad.len(), &bad[..bad.len().min(5)]);
    }
}
