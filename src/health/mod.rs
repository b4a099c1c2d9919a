//! The explainable health model: component scores, the weighted score and bands with
//! hysteresis.

use std::collections::BTreeMap;

use crate::config::{Bands, Weights};
use crate::model::Band;

/// The numbers of one entity at one tick that the model reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EntityMetrics {
    /// Distinct users active in `[T-1d, T)`.
    pub(crate) active_users_1d: u64,
    /// Distinct users active in `[T-7d, T)`.
    pub(crate) active_users_7d: u64,
    /// Distinct users active in `[T-28d, T)`.
    pub(crate) active_users_28d: u64,
    /// Distinct users active in `[T-14d, T-7d)`: the week before.
    pub(crate) active_users_7d_earlier: u64,
    /// Seats, when known for the entity.
    pub(crate) seats: Option<u64>,
    /// Key features used in 28 days.
    pub(crate) key_features_used: u64,
    /// Number of configured key features.
    pub(crate) key_features_total: u64,
    /// Open tickets at T by priority P1..P4.
    pub(crate) open_tickets: [u64; 4],
    /// `ticket_escalated` events in `[T-7d, T)`.
    pub(crate) escalations_7d: u64,
    /// Changes whose production deploy is in `[T-28d, T)`.
    pub(crate) ttp_changes: u64,
    /// Their p50 time to production, ms (nearest rank).
    pub(crate) ttp_p50_ms: Option<i64>,
    /// Their p90 time to production, ms (nearest rank).
    pub(crate) ttp_p90_ms: Option<i64>,
    /// Changes whose production deploy is in `[T-56d, T-28d)`.
    pub(crate) ttp_changes_earlier: u64,
    /// Their p50, ms.
    pub(crate) ttp_p50_earlier_ms: Option<i64>,
    /// NPS over 90 days: % promoters minus % detractors.
    pub(crate) nps: Option<f64>,
    /// NPS answers in 90 days.
    pub(crate) nps_responses: u64,
    /// Mean CSAT over 90 days.
    pub(crate) csat: Option<f64>,
    /// CSAT answers in 90 days.
    pub(crate) csat_responses: u64,
    /// Champions now.
    pub(crate) champions: u64,
    /// Champions active in `[T-14d, T)`.
    pub(crate) active_champions: u64,
}

impl EntityMetrics {
    /// `active_users_28d / seats`, when seats are known and positive.
    pub(crate) fn utilization(&self) -> Option<f64> {
        self.seats.filter(|&s| s > 0).map(|s| self.active_users_28d as f64 / s as f64)
    }

    /// `active_users_7d(T) / active_users_7d(T-7d)`, when the earlier week is not 0.
    pub(crate) fn trend(&self) -> Option<f64> {
        (self.active_users_7d_earlier > 0).then(|| self.active_users_7d as f64 / self.active_users_7d_earlier as f64)
    }

    /// The `time_to_production` component: the DORA bucket of the p50.
    pub(crate) fn dora(&self) -> Option<crate::magic::Dora> {
        self.ttp_p50_ms.filter(|_| self.ttp_changes > 0).map(crate::magic::Dora::of)
    }

    /// The `sentiment` component: the mean of `(NPS+100)/2` and `25*(CSAT-1)`, those
    /// present.
    pub(crate) fn sentiment(&self) -> Option<f64> {
        let parts: Vec<f64> =
            [self.nps.map(|n| (n + 100.0) / 2.0), self.csat.map(|c| 25.0 * (c - 1.0))].into_iter().flatten().collect();
        (!parts.is_empty()).then(|| parts.iter().sum::<f64>() / parts.len() as f64)
    }

    /// Share of champions still active, when there are champions.
    pub(crate) fn champion_share(&self) -> Option<f64> {
        (self.champions > 0).then(|| self.active_champions as f64 / self.champions as f64)
    }

    /// Share of key features used, when any are configured.
    pub(crate) fn breadth(&self) -> Option<f64> {
        (self.key_features_total > 0).then(|| self.key_features_used as f64 / self.key_features_total as f64)
    }
}

/// One component's contribution.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Component {
    /// Component name as in the config and alert JSON.
    pub(crate) name: &'static str,
    /// 0-100.
    pub(crate) score: f64,
    /// Its weight (> 0).
    pub(crate) weight: f64,
}

/// A scored entity.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scored {
    /// Weighted mean, rounded half up to one decimal.
    pub(crate) score: f64,
    /// The components present, in the model's order.
    pub(crate) components: Vec<Component>,
}

impl Scored {
    /// `{name: score}` for the alert and score records, each rounded to one decimal.
    pub(crate) fn component_map(&self) -> BTreeMap<String, f64> {
        self.components.iter().map(|c| (c.name.to_string(), round1(c.score))).collect()
    }
}

/// Rounds half up to one decimal. A tiny epsilon keeps values like 62.45, which binary
/// floating point holds as 62.4499.., rounding the way a person computes them.
///
/// ```text
/// assert_eq!(cs_pulse::health::round1(62.45), 62.5);
/// assert_eq!(cs_pulse::health::round1(93.75), 93.8);
/// assert_eq!(cs_pulse::health::round1(12.34), 12.3);
/// ```
pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0 + 0.5 + 1e-7).floor() / 10.0
}

/// Support component: `max(0, 100 - 30*P1 - 10*P2 - 3*P3 - 15*escalations_7d)`.
pub(crate) fn support_score(m: &EntityMetrics) -> f64 {
    let [p1, p2, p3, _] = m.open_tickets;
    let penalty = [(30, p1), (10, p2), (3, p3), (15, m.escalations_7d)]
        .into_iter()
        .fold(0u64, |acc, (w, n)| acc.saturating_add(n.saturating_mul(w)));
    100f64 - (penalty.min(100)) as f64
}

/// Trend component: 100 at or above 1, 0 at or below 0.5, linear between.
pub(crate) fn trend_score(trend: f64) -> f64 {
    if trend >= 1.0 {
        100.0
    } else if trend <= 0.5 {
        0.0
    } else {
        (trend - 0.5) * 200.0
    }
}

/// Computes the components that have data and a weight above 0, and the weighted score.
/// Returns `None` when no component is present.
///
/// ```text
/// use cs_pulse::{config::Weights, health::{score, EntityMetrics}};
/// let m = EntityMetrics { active_users_28d: 3, seats: Some(4), ..Default::default() };
/// let s = score(&m, &Weights::default()).unwrap();
/// // utilization 0.75 -> 93.75 (weight 25); support 100 (weight 20)
/// assert_eq!(s.score, 96.5);
/// ```
pub(crate) fn score(m: &EntityMetrics, w: &Weights) -> Option<Scored> {
    let mut components = Vec::with_capacity(7);
    let mut push = |name: &'static str, weight: f64, value: Option<f64>| {
        if let Some(score) = value.filter(|_| weight > 0.0) {
            components.push(Component { name, score, weight });
        }
    };
    push("utilization", w.utilization, m.utilization().map(|u| (100.0 * u / 0.8).min(100.0)));
    push("breadth", w.breadth, m.breadth().map(|b| 100.0 * b));
    push("trend", w.trend, m.trend().map(trend_score));
    push("time_to_production", w.time_to_production, m.dora().map(|d| d.score()));
    push("support", w.support, Some(support_score(m)));
    push("sentiment", w.sentiment, m.sentiment());
    push("champions", w.champions, m.champion_share().map(|c| 100.0 * c));
    let total: f64 = components.iter().map(|c| c.weight).sum();
    if components.is_empty() || total <= 0.0 {
        return None;
    }
    let raw = components.iter().map(|c| c.weight * c.score).sum::<f64>() / total;
    Some(Scored { score: round1(raw), components })
}

/// The band of a score, with hysteresis against the previous band.
///
/// A first score takes its band directly. Afterwards the band changes only when the score
/// has moved past a boundary by the hysteresis margin: with the defaults, green falls to
/// yellow below 65 and to red below 35; yellow rises to green at 75 and falls to red below
/// 35; red rises to yellow at 45 and to green at 75.
///
/// ```text
/// use cs_pulse::{config::Bands, health::band_for, model::Band};
/// let b = Bands::default();
/// assert_eq!(band_for(None, 69.9, &b), Band::Yellow);
/// assert_eq!(band_for(Some(Band::Green), 65.0, &b), Band::Green);
/// assert_eq!(band_for(Some(Band::Green), 64.9, &b), Band::Yellow);
/// assert_eq!(band_for(Some(Band::Red), 74.9, &b), Band::Yellow);
/// ```
pub(crate) fn band_for(previous: Option<Band>, score: f64, b: &Bands) -> Band {
    // Compare in tenths so that 65.0 is exactly 650 and never 649.999.
    let s = (score * 10.0).round() as i64;
    let t = |x: f64| (x * 10.0).round() as i64;
    let (g, y, h) = (t(b.green), t(b.yellow), t(b.hysteresis));
    match previous {
        None => {
            if s >= g {
                Band::Green
            } else if s >= y {
                Band::Yellow
            } else {
                Band::Red
            }
        }
        Some(Band::Green) => {
            if s < y - h {
                Band::Red
            } else if s < g - h {
                Band::Yellow
            } else {
                Band::Green
            }
        }
        Some(Band::Yellow) => {
            if s < y - h {
                Band::Red
            } else if s >= g + h {
                Band::Green
            } else {
                Band::Yellow
            }
        }
        Some(Band::Red) => {
            if s >= g + h {
                Band::Green
            } else if s >= y + h {
                Band::Yellow
            } else {
                Band::Red
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_but(name: &str) -> Weights {
        let mut w = Weights {
            utilization: 0.0,
            breadth: 0.0,
            trend: 0.0,
            time_to_production: 0.0,
            support: 0.0,
            sentiment: 0.0,
            champions: 0.0,
        };
        match name {
            "utilization" => w.utilization = 1.0,
            "breadth" => w.breadth = 1.0,
            "trend" => w.trend = 1.0,
            _ => w.support = 1.0,
        }
        w
    }

    #[test]
    fn utilization_component() {
        let w = all_but("utilization");
        let m = |a, seats| EntityMetrics { active_users_28d: a, seats, ..Default::default() };
        assert_eq!(score(&m(4, Some(10)), &w).unwrap().score, 50.0);
        assert_eq!(score(&m(9, Some(10)), &w).unwrap().score, 100.0);
        assert_eq!(score(&m(0, Some(10)), &w).unwrap().score, 0.0);
        // no seats, or 0 seats: left out, and then nothing is left
        assert!(score(&m(4, None), &w).is_none());
        assert!(score(&m(4, Some(0)), &w).is_none());
    }

    #[test]
    fn breadth_component() {
        let w = all_but("breadth");
        let m = EntityMetrics { key_features_used: 1, key_features_total: 4, ..Default::default() };
        assert_eq!(score(&m, &w).unwrap().score, 25.0);
        let none = EntityMetrics::default();
        assert!(score(&none, &w).is_none());
    }

    #[test]
    fn trend_component() {
        assert_eq!(trend_score(1.2), 100.0);
        assert_eq!(trend_score(1.0), 100.0);
        assert_eq!(trend_score(0.75), 50.0);
        assert_eq!(trend_score(0.5), 0.0);
        assert_eq!(trend_score(0.1), 0.0);
        let w = all_but("trend");
        let m = EntityMetrics { active_users_7d: 6, active_users_7d_earlier: 10, ..Default::default() };
        assert_eq!(score(&m, &w).unwrap().score, 20.0);
        // earlier week 0: trend left out
        let m = EntityMetrics { active_users_7d: 6, ..Default::default() };
        assert_eq!(m.trend(), None);
    }

    #[test]
    fn time_to_production_component() {
        let mut w = all_but("support");
        w.support = 0.0;
        w.time_to_production = 1.0;
        let m = |p50: i64, n| EntityMetrics { ttp_p50_ms: Some(p50), ttp_changes: n, ..Default::default() };
        assert_eq!(score(&m(3_600_000, 3), &w).map(|s| s.score), Some(100.0));
        assert_eq!(score(&m(2 * 86_400_000, 3), &w).map(|s| s.score), Some(75.0));
        assert_eq!(score(&m(8 * 86_400_000, 3), &w).map(|s| s.score), Some(50.0));
        assert_eq!(score(&m(40 * 86_400_000, 3), &w).map(|s| s.score), Some(25.0));
        assert!(score(&m(1, 0), &w).is_none(), "no deploy in the window: left out");
    }

    #[test]
    fn sentiment_component() {
        let m = EntityMetrics { nps: Some(20.0), csat: Some(4.0), ..Default::default() };
        // (20+100)/2 = 60 and 25*(4-1) = 75: mean 67.5
        assert_eq!(m.sentiment(), Some(67.5));
        let only_csat = EntityMetrics { csat: Some(5.0), ..Default::default() };
        assert_eq!(only_csat.sentiment(), Some(100.0));
        assert_eq!(EntityMetrics::default().sentiment(), None);
    }

    #[test]
    fn champions_component() {
        let m = EntityMetrics { champions: 3, active_champions: 2, ..Default::default() };
        assert_eq!(m.champion_share().map(|s| (s * 1000.0).round()), Some(667.0));
        assert_eq!(EntityMetrics::default().champion_share(), None);
    }

    #[test]
    fn support_component() {
        let mut m = EntityMetrics::default();
        assert_eq!(support_score(&m), 100.0);
        m.open_tickets = [1, 1, 1, 7];
        m.escalations_7d = 1;
        assert_eq!(support_score(&m), 100.0 - 30.0 - 10.0 - 3.0 - 15.0);
        m.open_tickets = [4, 0, 0, 0];
        assert_eq!(support_score(&m), 0.0);
    }

    #[test]
    fn weights_renormalise_over_present_components() {
        // utilization 50 (w 25), trend absent, support 100 (w 20): (1250+2000)/45
        let m = EntityMetrics { active_users_28d: 4, seats: Some(10), ..Default::default() };
        let s = score(&m, &Weights::default()).unwrap();
        assert_eq!(s.score, 72.2);
        assert_eq!(s.components.len(), 2);
        let names: Vec<_> = s.component_map().into_keys().collect();
        assert_eq!(names, ["support", "utilization"]);
    }

    #[test]
    fn rounding_half_up() {
        assert_eq!(round1(0.05), 0.1);
        assert_eq!(round1(64.95), 65.0);
        assert_eq!(round1(64.94), 64.9);
        assert_eq!(round1(100.0), 100.0);
        assert_eq!(round1(0.0), 0.0);
    }

    #[test]
    fn hysteresis_every_boundary() {
        let b = Bands::default();
        let g = Some(Band::Green);
        let y = Some(Band::Yellow);
        let r = Some(Band::Red);
        assert_eq!(band_for(None, 70.0, &b), Band::Green);
        assert_eq!(band_for(None, 40.0, &b), Band::Yellow);
        assert_eq!(band_for(None, 39.9, &b), Band::Red);
        assert_eq!(band_for(g, 65.0, &b), Band::Green);
        assert_eq!(band_for(g, 64.9, &b), Band::Yellow);
        assert_eq!(band_for(g, 35.0, &b), Band::Yellow);
        assert_eq!(band_for(g, 34.9, &b), Band::Red);
        assert_eq!(band_for(y, 74.9, &b), Band::Yellow);
        assert_eq!(band_for(y, 75.0, &b), Band::Green);
        assert_eq!(band_for(y, 35.0, &b), Band::Yellow);
        assert_eq!(band_for(y, 34.9, &b), Band::Red);
        assert_eq!(band_for(r, 44.9, &b), Band::Red);
        assert_eq!(band_for(r, 45.0, &b), Band::Yellow);
        assert_eq!(band_for(r, 74.9, &b), Band::Yellow);
        assert_eq!(band_for(r, 75.0, &b), Band::Green);
    }
}

#[cfg(test)]
mod examples {
    //! The examples of the docs above, run.

    #[test]
    fn round1() {
        assert_eq!(crate::health::round1(62.45), 62.5);
        assert_eq!(crate::health::round1(93.75), 93.8);
        assert_eq!(crate::health::round1(12.34), 12.3);
    }

    #[test]
    fn score() {
        use crate::{
            config::Weights,
            health::{score, EntityMetrics},
        };
        let m = EntityMetrics { active_users_28d: 3, seats: Some(4), ..Default::default() };
        let s = score(&m, &Weights::default()).unwrap();
        // utilization 0.75 -> 93.75 (weight 25); support 100 (weight 20)
        assert_eq!(s.score, 96.5);
    }

    #[test]
    fn band_for() {
        use crate::{config::Bands, health::band_for, model::Band};
        let b = Bands::default();
        assert_eq!(band_for(None, 69.9, &b), Band::Yellow);
        assert_eq!(band_for(Some(Band::Green), 65.0, &b), Band::Green);
        assert_eq!(band_for(Some(Band::Green), 64.9, &b), Band::Yellow);
        assert_eq!(band_for(Some(Band::Red), 74.9, &b), Band::Yellow);
    }
}
