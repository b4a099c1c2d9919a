//! The numbers of a backtest: how well signals (alerts, entries into red, scores) told
//! churn apart from staying, computed from what a replay wrote and what customers did.
//!
//! Pure functions over plain records, so that each number can be checked by hand:
//! - [`auc`]: the ROC AUC of a score, ties counted half;
//! - [`precision_recall`]: of signals against churn within a horizon after each signal;
//! - [`lead_times_days`] and [`median`]: days from the first signal before a churn to it;
//! - [`per_account_month`]: signal volume per account per month.

use std::collections::BTreeMap;

use crate::model::Outcome;
use crate::time::DAY_MS;

/// Days in a month, for volumes: a Gregorian year's average.
pub const DAYS_PER_MONTH: f64 = 365.2425 / 12.0;

/// The ROC AUC of a health score at telling churned accounts (`churned`: their scores) from
/// accounts that stayed (`stayed`): the probability that a churned account scored lower
/// (riskier) than one that stayed, a tie counting half (the Mann-Whitney U statistic over
/// the number of pairs). 1.0: every churned account scored below every one that stayed;
/// 0.5: no better than chance. `None` when either side is empty, or a score is not a number.
pub fn auc(churned: &[f64], stayed: &[f64]) -> Option<f64> {
    if churned.is_empty() || stayed.is_empty() || churned.iter().chain(stayed).any(|s| s.is_nan()) {
        return None;
    }
    // Every score with its side, sorted; ranks over ties are shared.
    let mut all: Vec<(f64, bool)> =
        churned.iter().map(|s| (*s, true)).chain(stayed.iter().map(|s| (*s, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Pairs where the churned account scored lower, ties half: for each group of equal
    // scores, its churned accounts beat every stayed account above the group and tie with
    // the stayed accounts in it.
    let mut stayed_below = 0.0_f64;
    let mut wins = 0.0_f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let group = &all[i..j];
        let c = group.iter().filter(|(_, churned)| *churned).count() as f64;
        let s = group.len() as f64 - c;
        // The churned ones here lose to every stayed one below, tie with those here.
        wins -= c * stayed_below;
        wins -= c * s / 2.0;
        stayed_below += s;
        i = j;
    }
    let (n_churned, n_stayed) = (churned.len() as f64, stayed.len() as f64);
    // Each churned account beats every stayed account, minus the losses and half ties.
    wins += n_churned * n_stayed;
    Some(wins / (n_churned * n_stayed))
}

/// The median, the mean of the middle two for an even count; `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

/// A signal about an account: an alert, or an entry into a band.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The account.
    pub account_id: String,
    /// When, epoch ms.
    pub at: i64,
}

/// Signals against churn.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct PrecisionRecall {
    /// Signals counted: all but those after their account's churn.
    pub signals: u64,
    /// Of those, signals whose account churned within the horizon after them.
    pub signals_before_churn: u64,
    /// `signals_before_churn / signals`; `None` without signals.
    pub precision: Option<f64>,
    /// Accounts that churned.
    pub churned: u64,
    /// Of those, accounts with a signal within the horizon before their churn.
    pub churned_with_signal: u64,
    /// `churned_with_signal / churned`; `None` without churn.
    pub recall: Option<f64>,
}

/// The churn time of each account that churned (its first churn).
pub fn churn_times<'a>(outcomes: impl IntoIterator<Item = (&'a str, i64, Outcome)>) -> BTreeMap<String, i64> {
    let mut churns: BTreeMap<String, i64> = BTreeMap::new();
    for (account, at, outcome) in outcomes {
        if outcome == Outcome::Churned {
            let t = churns.entry(account.to_string()).or_insert(at);
            *t = (*t).min(at);
        }
    }
    churns
}

/// Whether a signal at `signal_at` comes at most `horizon_ms` before a churn at `churn_at`
/// (the churn not before the signal).
fn warns(signal_at: i64, churn_at: i64, horizon_ms: i64) -> bool {
    churn_at >= signal_at && churn_at.saturating_sub(signal_at) <= horizon_ms
}

/// Each account's signal times, sorted.
fn times_by_account(signals: &[Signal]) -> BTreeMap<&str, Vec<i64>> {
    let mut by: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for s in signals {
        by.entry(s.account_id.as_str()).or_default().push(s.at);
    }
    for v in by.values_mut() {
        v.sort_unstable();
    }
    by
}

/// The first of `times` (sorted) within `horizon_ms` before `churn_at`.
fn first_warning(times: &[i64], churn_at: i64, horizon_ms: i64) -> Option<i64> {
    let from = times.partition_point(|t| *t < churn_at.saturating_sub(horizon_ms));
    times.get(from).copied().filter(|t| warns(*t, churn_at, horizon_ms))
}

/// Precision and recall of `signals` against churn within `horizon_ms` after a signal.
///
/// Precision is over signals: the share followed by their account's churn within the
/// horizon. A signal after its account churned is left out (the account is gone; a
/// history may go on past its churn). Recall is over the churned accounts in `churns`: the
/// share with at least one signal within the horizon before their churn. O(S log S).
pub fn precision_recall(signals: &[Signal], churns: &BTreeMap<String, i64>, horizon_ms: i64) -> PrecisionRecall {
    let after_churn = |s: &Signal| churns.get(&s.account_id).is_some_and(|c| s.at > *c);
    let counted: Vec<&Signal> = signals.iter().filter(|s| !after_churn(s)).collect();
    let n = counted.len() as u64;
    let hits = counted.iter().filter(|s| churns.get(&s.account_id).is_some_and(|c| warns(s.at, *c, horizon_ms))).count()
        as u64;
    let by = times_by_account(signals);
    let churned = churns.len() as u64;
    let warned = churns
        .iter()
        .filter(|(account, churn_at)| {
            by.get(account.as_str()).is_some_and(|t| first_warning(t, **churn_at, horizon_ms).is_some())
        })
        .count() as u64;
    PrecisionRecall {
        signals: n,
        signals_before_churn: hits,
        precision: (n > 0).then(|| hits as f64 / n as f64),
        churned,
        churned_with_signal: warned,
        recall: (churned > 0).then(|| warned as f64 / churned as f64),
    }
}

/// For each churned account with a signal within `horizon_ms` before its churn: the days
/// from the first such signal to the churn. (Within the horizon: a lead time is never
/// longer than it.)
pub fn lead_times_days(signals: &[Signal], churns: &BTreeMap<String, i64>, horizon_ms: i64) -> Vec<f64> {
    let by = times_by_account(signals);
    churns
        .iter()
        .filter_map(|(account, churn_at)| {
            let first = first_warning(by.get(account.as_str())?, *churn_at, horizon_ms)?;
            Some(churn_at.saturating_sub(first) as f64 / DAY_MS as f64)
        })
        .collect()
}

/// Of some outcomes, those with a signal in a window ahead of them.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Flagged {
    /// Outcomes whose window the history covers.
    pub outcomes: u64,
    /// Of those, outcomes whose account had a signal in the window.
    pub flagged: u64,
    /// `flagged / outcomes`; `None` without outcomes.
    pub share: Option<f64>,
}

/// Of `outcomes` (account, time), the share with a signal of their account in
/// `[at - from_ms, at - to_ms]` (`from_ms >= to_ms`): was the account flagged early enough
/// to act, and not so early that the flag says nothing? O((S + O) log S).
pub fn flagged_ahead(signals: &[Signal], outcomes: &[(&str, i64)], from_ms: i64, to_ms: i64) -> Flagged {
    let by = times_by_account(signals);
    let flagged = outcomes
        .iter()
        .filter(|(account, at)| {
            let (lo, hi) = (at.saturating_sub(from_ms), at.saturating_sub(to_ms));
            by.get(account).is_some_and(|t| t.get(t.partition_point(|x| *x < lo)).is_some_and(|x| *x <= hi))
        })
        .count() as u64;
    let n = outcomes.len() as u64;
    Flagged { outcomes: n, flagged, share: (n > 0).then(|| flagged as f64 / n as f64) }
}

/// The `q`-quantile (0..=1) of `values` by nearest rank; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// `count` signals over `accounts` accounts watched for `span_ms`, per account per month.
/// `None` without accounts or time.
pub fn per_account_month(count: u64, accounts: u64, span_ms: i64) -> Option<f64> {
    let months = span_ms as f64 / DAY_MS as f64 / DAYS_PER_MONTH;
    (accounts > 0 && months > 0.0).then(|| count as f64 / accounts as f64 / months)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn auc_by_hand_with_ties() {
        // churned scores 10, 40, 60; stayed 40, 70, 90, 60.
        // Pairs (churned, stayed): 3 x 4 = 12.
        // 10 beats all four stayed: 4.
        // 40 ties 40 (0.5), beats 70, 90, 60: 3.5.
        // 60 loses to 40, ties 60 (0.5), beats 70, 90: 2.5.
        // U = 10, AUC = 10/12.
        assert!(close(auc(&[10.0, 40.0, 60.0], &[40.0, 70.0, 90.0, 60.0]), 10.0 / 12.0));
        // perfect, inverse, all tied
        assert!(close(auc(&[1.0, 2.0], &[3.0, 4.0]), 1.0));
        assert!(close(auc(&[3.0, 4.0], &[1.0, 2.0]), 0.0));
        assert!(close(auc(&[5.0, 5.0], &[5.0]), 0.5));
        assert_eq!(auc(&[], &[1.0]), None);
        assert_eq!(auc(&[1.0], &[]), None);
        assert_eq!(auc(&[f64::NAN], &[1.0]), None);
    }

    #[test]
    fn median_by_hand() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(&[4.0, 1.0, 10.0, 2.0]), Some(3.0));
    }

    fn signal(account: &str, day: i64) -> Signal {
        Signal { account_id: account.into(), at: day * DAY_MS }
    }

    #[test]
    fn precision_recall_and_lead_times_by_hand() {
        // a churns on day 100, b on day 400, c and d stay (c renews, d has no outcome).
        let churns = churn_times([
            ("a", 100 * DAY_MS, Outcome::Churned),
            ("b", 400 * DAY_MS, Outcome::Churned),
            ("c", 300 * DAY_MS, Outcome::Renewed),
            ("a", 500 * DAY_MS, Outcome::Churned), // a later churn of a: the first counts
        ]);
        assert_eq!(churns.len(), 2);
        let horizon = 180 * DAY_MS;
        let signals = [
            signal("a", 10),  // 90 days before a's churn: warns
            signal("a", 40),  // 60 days before: warns
            signal("a", 150), // after the churn: left out
            signal("b", 100), // 300 days before b's churn: beyond the horizon
            signal("c", 50),  // c stays
        ];
        let pr = precision_recall(&signals, &churns, horizon);
        assert_eq!((pr.signals, pr.signals_before_churn), (4, 2));
        assert!(close(pr.precision, 2.0 / 4.0));
        assert_eq!((pr.churned, pr.churned_with_signal), (2, 1));
        assert!(close(pr.recall, 0.5));
        // a's first warning signal is day 10: 90 days of lead; b has none in the horizon.
        assert_eq!(lead_times_days(&signals, &churns, horizon), vec![90.0]);
        // exactly at the horizon still warns
        assert_eq!(precision_recall(&[signal("b", 220)], &churns, horizon).signals_before_churn, 1);
        assert_eq!(precision_recall(&[], &churns, horizon).precision, None);
        assert_eq!(precision_recall(&signals, &BTreeMap::new(), horizon).recall, None);
    }

    #[test]
    fn flagged_ahead_by_hand() {
        // a: signals on days 10 and 130; b: day 139; c: day 161; d: none.
        let signals = [signal("a", 10), signal("a", 130), signal("b", 139), signal("c", 161)];
        let d = DAY_MS;
        // Outcomes on day 200: the window is days 20 to 140, both ends in.
        let outcomes = [("a", 200 * d), ("b", 200 * d), ("c", 200 * d), ("d", 200 * d)];
        let f = flagged_ahead(&signals, &outcomes, 180 * d, 60 * d);
        assert_eq!((f.outcomes, f.flagged), (4, 2));
        assert_eq!(f.share, Some(0.5));
        // The window's ends count: b's signal at day 140 exactly, a's at day 20 exactly.
        let edge = [signal("b", 140), signal("a", 20)];
        assert_eq!(flagged_ahead(&edge, &outcomes, 180 * d, 60 * d).flagged, 2);
        let past = [signal("b", 141), signal("a", 19)];
        assert_eq!(flagged_ahead(&past, &outcomes, 180 * d, 60 * d).flagged, 0);
        assert_eq!(flagged_ahead(&signals, &[], 180 * d, 60 * d).share, None);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(quantile(&v, 0.9), Some(9.0));
        assert_eq!(quantile(&v, 0.5), Some(5.0));
        assert_eq!(quantile(&v, 1.0), Some(10.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.9), None);
    }

    #[test]
    fn volume_by_hand() {
        // 24 alerts over 4 accounts for a year: half an alert per account per month.
        let year = (365.2425 * DAY_MS as f64) as i64;
        assert!((per_account_month(24, 4, year).unwrap_or(0.0) - 0.5).abs() < 1e-6);
        assert_eq!(per_account_month(3, 0, year), None);
        assert_eq!(per_account_month(3, 2, 0), None);
    }

    mod props {
        use super::super::{auc, lead_times_days, precision_recall, Signal};
        use crate::time::DAY_MS;
        use std::collections::BTreeMap;

        proptest! {
            /// The sorted, per-account search gives what scanning every signal gives.
            #[test]
            fn recall_and_lead_times_equal_a_full_scan(
                signals in prop::collection::vec((0u8..5, 0i64..400), 0..60),
                churns in prop::collection::btree_map(0u8..5, 0i64..400, 0..5),
                horizon in 1i64..200,
            ) {
                let signals: Vec<Signal> =
                    signals.iter().map(|(a, d)| Signal { account_id: format!("a{a}"), at: d * DAY_MS }).collect();
                let churns: BTreeMap<String, i64> = churns.iter().map(|(a, d)| (format!("a{a}"), d * DAY_MS)).collect();
                let h = horizon * DAY_MS;
                let warns = |s: &Signal, c: i64| c >= s.at && c - s.at <= h;
                let warned = churns.iter().filter(|(a, c)| signals.iter().any(|s| &s.account_id == *a && warns(s, **c))).count();
                prop_assert_eq!(precision_recall(&signals, &churns, h).churned_with_signal, warned as u64);
                let leads: Vec<f64> = churns.iter().filter_map(|(a, c)| {
                    signals.iter().filter(|s| &s.account_id == a && warns(s, *c)).map(|s| s.at).min()
                        .map(|f| (c - f) as f64 / DAY_MS as f64)
                }).collect();
                prop_assert_eq!(lead_times_days(&signals, &churns, h), leads);
            }
        }
        use proptest::prelude::*;

        /// The AUC by its definition: every pair compared.
        fn auc_by_pairs(churned: &[f64], stayed: &[f64]) -> f64 {
            let mut u = 0.0;
            for c in churned {
                for s in stayed {
                    u += if c < s {
                        1.0
                    } else if c == s {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
            u / (churned.len() * stayed.len()) as f64
        }

        proptest! {
            #[test]
            fn auc_equals_the_pairwise_definition_and_mirrors(
                churned in prop::collection::vec(0u8..20, 1..30),
                stayed in prop::collection::vec(0u8..20, 1..30),
            ) {
                let c: Vec<f64> = churned.iter().map(|x| f64::from(*x)).collect();
                let s: Vec<f64> = stayed.iter().map(|x| f64::from(*x)).collect();
                let a = auc(&c, &s).unwrap_or(f64::NAN);
                prop_assert!((a - auc_by_pairs(&c, &s)).abs() < 1e-9, "{a} vs pairs");
                let b = auc(&s, &c).unwrap_or(f64::NAN);
                prop_assert!((a + b - 1.0).abs() < 1e-9, "swapping the sides mirrors: {a} + {b}");
            }
        }
    }
}
