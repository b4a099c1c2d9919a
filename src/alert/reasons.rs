//! Human sentences that explain an alert with the numbers that drove it.

use crate::health::{EntityMetrics, Scored};
use crate::magic::human_duration;
use crate::model::Band;

fn pct_change(now: u64, earlier: u64) -> f64 {
    if earlier == 0 {
        0.0
    } else {
        (now as f64 - earlier as f64) * 100.0 / earlier as f64
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One sentence explaining a component's score from the metrics behind it.
pub(crate) fn explain_component(name: &str, score: f64, m: &EntityMetrics) -> String {
    match name {
        "utilization" => format!(
            "Seat utilization is {:.0}%: {} of {} seats active in the last 28 days (utilization score {score:.1}).",
            m.utilization().unwrap_or(0.0) * 100.0,
            m.active_users_28d,
            m.seats.unwrap_or(0),
        ),
        "breadth" => format!(
            "{} of {} key features used in the last 28 days (breadth score {score:.1}).",
            m.key_features_used, m.key_features_total
        ),
        "trend" => format!(
            "Weekly active users went from {} to {} ({:+.0}% week over week; trend score {score:.1}).",
            m.active_users_7d_earlier,
            m.active_users_7d,
            pct_change(m.active_users_7d, m.active_users_7d_earlier)
        ),
        "support" => {
            let [p1, p2, p3, _] = m.open_tickets;
            format!(
                "Open tickets: {p1} P1, {p2} P2, {p3} P3; {} in the last 7 days (support score {score:.1}).",
                plural(m.escalations_7d, "escalation", "escalations"),
            )
        }
        "time_to_production" => format!(
            "p50 time to production is {} ({}), p90 {}, over {} in the last 28 days (time-to-production score {score:.1}).",
            m.ttp_p50_ms.map(human_duration).unwrap_or_default(),
            m.dora().map(|d| d.as_str()).unwrap_or("none"),
            m.ttp_p90_ms.map(human_duration).unwrap_or_default(),
            plural(m.ttp_changes, "change", "changes"),
        ),
        "sentiment" => {
            let mut parts = Vec::new();
            if let Some(nps) = m.nps {
                parts.push(format!("NPS {nps:+.0} from {}", plural(m.nps_responses, "answer", "answers")));
            }
            if let Some(csat) = m.csat {
                parts.push(format!("mean CSAT {csat:.1} from {}", plural(m.csat_responses, "answer", "answers")));
            }
            format!("{} in the last 90 days (sentiment score {score:.1}).", parts.join(" and "))
        }
        "champions" => format!(
            "{} of {} active in the last 14 days (champions score {score:.1}).",
            m.active_champions,
            plural(m.champions, "champion", "champions"),
        ),
        other => format!("{other} scored {score:.1}."),
    }
}

/// Reasons of a `health_band_changed` alert: the move itself, then the components that
/// cost the most points (weight times shortfall), largest first.
pub(crate) fn band_change_reasons(
    previous: (f64, Band),
    now: (f64, Band),
    scored: &Scored,
    m: &EntityMetrics,
) -> Vec<String> {
    let verb = if now.0 < previous.0 { "fell" } else { "rose" };
    let mut out = vec![format!(
        "Health score {verb} from {:.1} ({}) to {:.1} ({}).",
        previous.0,
        previous.1.as_str(),
        now.0,
        now.1.as_str()
    )];
    let mut ranked: Vec<_> = scored.components.iter().filter(|c| c.score < 100.0).collect();
    ranked.sort_by(|a, b| {
        let cost = |c: &crate::health::Component| c.weight * (100.0 - c.score);
        cost(b).total_cmp(&cost(a)).then(a.name.cmp(b.name))
    });
    out.extend(ranked.iter().map(|c| explain_component(c.name, c.score, m)));
    if ranked.is_empty() {
        out.push("Every component scores 100.".to_string());
    }
    out
}

/// Reasons of a `magic_number_regressed` alert.
pub(crate) fn magic_reasons(m: &EntityMetrics) -> Vec<String> {
    let (p50, earlier) = (m.ttp_p50_ms.unwrap_or(0), m.ttp_p50_earlier_ms.unwrap_or(0));
    vec![
        format!(
            "p50 time to production rose from {} to {} over 28 days ({}).",
            human_duration(earlier),
            human_duration(p50),
            plural(m.ttp_changes, "change", "changes")
        ),
        format!(
            "p90 is now {}; by its p50 the DORA lead time is {}; the 28 days before had {}.",
            m.ttp_p90_ms.map(human_duration).unwrap_or_default(),
            m.dora().map(|d| d.as_str()).unwrap_or("unknown"),
            plural(m.ttp_changes_earlier, "change", "changes")
        ),
    ]
}

/// Reasons of a `usage_drop` alert.
pub(crate) fn usage_drop_reasons(m: &EntityMetrics) -> Vec<String> {
    let lost = m.active_users_7d_earlier.saturating_sub(m.active_users_7d);
    vec![
        format!(
            "Weekly active users fell from {} to {} ({:+.0}%): {} fewer than the week before.",
            m.active_users_7d_earlier,
            m.active_users_7d,
            pct_change(m.active_users_7d, m.active_users_7d_earlier),
            plural(lost, "person", "people"),
        ),
        format!(
            "{} active in the last day and {} in the last 28 days{}.",
            plural(m.active_users_1d, "user", "users"),
            m.active_users_28d,
            m.seats.map(|s| format!(" out of {s} seats")).unwrap_or_default()
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Component;

    #[test]
    fn band_change_ranks_by_points_lost() {
        let m = EntityMetrics {
            active_users_28d: 2,
            seats: Some(20),
            active_users_7d: 2,
            active_users_7d_earlier: 10,
            open_tickets: [2, 0, 1, 0],
            ..Default::default()
        };
        let scored = Scored {
            score: 20.0,
            components: vec![
                Component { name: "utilization", score: 12.5, weight: 25.0 },
                Component { name: "trend", score: 0.0, weight: 15.0 },
                Component { name: "support", score: 37.0, weight: 20.0 },
            ],
        };
        let r = band_change_reasons((72.0, Band::Green), (20.0, Band::Red), &scored, &m);
        assert_eq!(r[0], "Health score fell from 72.0 (green) to 20.0 (red).");
        assert!(r[1].starts_with("Seat utilization is 10%: 2 of 20 seats"), "{}", r[1]);
        // utilization costs 25*87.5, trend 15*100, support 20*63 points
        assert!(r[2].contains("from 10 to 2 (-80%"), "{}", r[2]);
        assert!(r[3].starts_with("Open tickets: 2 P1, 0 P2, 1 P3; 0 escalations"), "{}", r[3]);
    }

    #[test]
    fn magic_reasons_name_both_medians() {
        let m = EntityMetrics {
            ttp_p50_ms: Some(6 * 86_400_000 + 34_560_000),
            ttp_p50_earlier_ms: Some(2 * 86_400_000 + 8_640_000),
            ttp_p90_ms: Some(9 * 86_400_000),
            ttp_changes: 31,
            ttp_changes_earlier: 12,
            ..Default::default()
        };
        let r = magic_reasons(&m);
        assert_eq!(r[0], "p50 time to production rose from 2.1 days to 6.4 days over 28 days (31 changes).");
        assert_eq!(
            r[1],
            "p90 is now 9.0 days; by its p50 the DORA lead time is high; the 28 days before had 12 changes."
        );
    }

    #[test]
    fn usage_drop_names_numbers() {
        let m = EntityMetrics {
            active_users_7d: 6,
            active_users_7d_earlier: 10,
            active_users_1d: 1,
            active_users_28d: 12,
            ..Default::default()
        };
        let r = usage_drop_reasons(&m);
        assert_eq!(r[0], "Weekly active users fell from 10 to 6 (-40%): 4 people fewer than the week before.");
        assert_eq!(r[1], "1 user active in the last day and 12 in the last 28 days.");
    }
}
