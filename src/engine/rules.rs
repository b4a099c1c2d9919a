//! The alert rules evaluated at a tick, each with its named thresholds: usage drop, time
//! to production regressed, health band changed, champions inactive and onboarding
//! milestones; and the content of the alerts they fire. (`support_escalation` fires on
//! ingest, in the engine.)
//!
//! A rule with memory across ticks keeps it in the entity's state: `usage_drop` and
//! `magic_number_regressed` are armed at first, fire once and disarm, and re-arm only once
//! the measure has recovered (hysteresis, so that a value hovering at the threshold does
//! not fire every tick).

use serde_json::{json, Map, Value};

use super::aggregate::{distinct_days, Windows};
use super::state::{AccountState, Champion, TeamState, UserIds};
use crate::alert;
use crate::health::{EntityMetrics, Scored};
use crate::magic::human_duration;
use crate::model::{AccountRecord, AlertKind, Band, Severity};
use crate::time::{format_rfc3339, DAY_MS};

/// `usage_drop` looks only at entities with at least this many active users over the
/// earlier 7 days.
const USAGE_DROP_MIN_USERS: u64 = 5;
/// `usage_drop` fires when active users over the last 7 days are at most this share of the
/// 7 days before, as (numerator, denominator): a fall of 30 % or more.
const USAGE_DROP_FIRES_AT: (u64, u64) = (7, 10);
/// `usage_drop` re-arms once active users are back to at least this share: 90 %.
const USAGE_DROP_REARMS_AT: (u64, u64) = (9, 10);

/// `usage_drop`: active users over 7 days fell against the 7 days before. Updates the
/// rule's arming, and returns the alert's reasons and details when it fires.
pub(super) fn usage_drop(armed: &mut bool, m: &EntityMetrics) -> Option<(Vec<String>, Map<String, Value>)> {
    let (now, earlier) = (m.active_users_7d, m.active_users_7d_earlier);
    if !*armed {
        *armed = USAGE_DROP_REARMS_AT.1 * now >= USAGE_DROP_REARMS_AT.0 * earlier;
        return None;
    }
    if earlier < USAGE_DROP_MIN_USERS || USAGE_DROP_FIRES_AT.1 * now > USAGE_DROP_FIRES_AT.0 * earlier {
        return None;
    }
    *armed = false;
    let mut details = Map::new();
    details.insert("active_users_7d".into(), json!(now));
    details.insert("active_users_7d_earlier".into(), json!(earlier));
    details.insert("active_users_1d".into(), json!(m.active_users_1d));
    details.insert("active_users_28d".into(), json!(m.active_users_28d));
    Some((alert::usage_drop_reasons(m), details))
}

/// `magic_number_regressed` looks only at windows with at least this many changes paired,
/// now and earlier.
const MAGIC_MIN_CHANGES: u64 = 5;
/// It fires when the median time to production is at least this multiple of the earlier
/// one, as (numerator, denominator): 1.5 times.
const MAGIC_FIRES_AT: (i64, i64) = (3, 2);
/// It re-arms once the median is back under this multiple: 1.2 times.
const MAGIC_REARMS_BELOW: (i64, i64) = (6, 5);

/// `magic_number_regressed`: the median time to production grew against the earlier
/// window. Updates the rule's arming, and returns the alert's reasons and details when it
/// fires.
pub(super) fn magic_number_regressed(armed: &mut bool, m: &EntityMetrics) -> Option<(Vec<String>, Map<String, Value>)> {
    let (Some(p50), Some(earlier)) = (m.ttp_p50_ms, m.ttp_p50_earlier_ms) else { return None };
    if !*armed {
        *armed = MAGIC_REARMS_BELOW.1 * p50 < MAGIC_REARMS_BELOW.0 * earlier;
        return None;
    }
    let enough = m.ttp_changes >= MAGIC_MIN_CHANGES && m.ttp_changes_earlier >= MAGIC_MIN_CHANGES;
    if !enough || MAGIC_FIRES_AT.1 * p50 < MAGIC_FIRES_AT.0 * earlier {
        return None;
    }
    *armed = false;
    let mut details = Map::new();
    details.insert("p50_ms".into(), json!(p50));
    details.insert("p50_earlier_ms".into(), json!(earlier));
    details.insert("p90_ms".into(), json!(m.ttp_p90_ms));
    details.insert("changes".into(), json!(m.ttp_changes));
    details.insert("changes_earlier".into(), json!(m.ttp_changes_earlier));
    Some((alert::magic_reasons(m), details))
}

/// `health_band_changed`: the entity's band differs from the previous tick's (`previous`:
/// score and band then). Its severity: critical into red, warning from green to yellow,
/// info otherwise. The caller holds it back during warm-up.
pub(super) fn band_changed(
    previous: Option<(f64, Band)>,
    band: Band,
    scored: &Scored,
    m: &EntityMetrics,
) -> Option<(Severity, Vec<String>, Map<String, Value>)> {
    let prev = previous.filter(|p| p.1 != band)?;
    let severity = match (prev.1, band) {
        (_, Band::Red) => Severity::Critical,
        (Band::Green, Band::Yellow) => Severity::Warning,
        _ => Severity::Info,
    };
    let mut details = Map::new();
    details.insert("score".into(), json!(scored.score));
    details.insert("previous_score".into(), json!(prev.0));
    details.insert("active_users_7d".into(), json!(m.active_users_7d));
    details.insert("active_users_28d".into(), json!(m.active_users_28d));
    Some((severity, alert::band_change_reasons(prev, (scored.score, band), scored, m), details))
}

/// Updates a team's champions at the tick and returns the champions who reached 14 days
/// of inactivity at it (once per inactive spell).
///
/// A user becomes a champion when active on 10 or more distinct UTC days in
/// `[T-28d, T)`, and stays one until a tick with no activity in `[T-30d, T)`.
/// The second value says whether the team's champion bookkeeping changed.
pub(super) fn update_champions(team: &mut TeamState, ids: &UserIds, w: &Windows) -> (Vec<String>, bool) {
    let mut changed = false;
    for (n, set) in &team.users {
        // Ten distinct days need ten buckets at least: most users are ruled out cheaply.
        if set.count_in(w.d28, w.hi) >= 10
            && !team.champions.contains_key(&**ids.name(*n))
            && distinct_days(set.iter_in(w.d28, w.hi), w.granularity_ms) >= 10
        {
            team.champions.insert(ids.name(*n).to_string(), Champion::default());
            changed = true;
        }
    }
    let users = &team.users;
    let set_of = |u: &str| ids.get(u).and_then(|n| users.get(&n));
    let before = team.champions.len();
    team.champions.retain(|u, _| set_of(u).is_some_and(|s| s.any_in(w.d30, w.hi)));
    changed |= team.champions.len() != before;
    let mut newly_inactive = Vec::new();
    for (user, ch) in team.champions.iter_mut() {
        let active = set_of(user).is_some_and(|s| s.any_in(w.d14, w.hi));
        if active && ch.inactive_alerted {
            ch.inactive_alerted = false;
            changed = true;
        } else if !active && !ch.inactive_alerted {
            ch.inactive_alerted = true;
            changed = true;
            newly_inactive.push(user.clone());
        }
    }
    (newly_inactive, changed)
}

/// The last activity of a user in a team before the tick, epoch ms (bucket start).
pub(super) fn last_active(team: &TeamState, ids: &UserIds, user: &str, w: &Windows) -> Option<i64> {
    let set = ids.get(user).and_then(|n| team.users.get(&n))?;
    set.last_before(w.hi).map(|b| i64::from(b) * w.granularity_ms)
}

/// The content of a `champion_inactive` alert.
pub(super) fn champion_inactive(
    team_id: &str,
    team: &TeamState,
    ids: &UserIds,
    users: &[String],
    champions: u64,
    active: u64,
    w: &Windows,
) -> (Severity, Vec<String>, Map<String, Value>) {
    let mut reasons = Vec::new();
    for u in users {
        let last = last_active(team, ids, u, w)
            .map(|t| format_rfc3339(t)[..10].to_string())
            .unwrap_or_else(|| "unknown".into());
        reasons
            .push(format!("Champion {u} of team {team_id} has not used the product for 14 days (last active {last})."));
    }
    reasons.push(if active == 0 {
        format!("No active champion is left in team {team_id} ({champions} champions, none active in 14 days).")
    } else {
        format!("{active} of {champions} champions of team {team_id} are still active.")
    });
    let mut details = Map::new();
    details.insert("users".into(), json!(users.join(",")));
    details.insert("inactive_champions".into(), json!(users.len()));
    details.insert("champions".into(), json!(champions));
    details.insert("active_champions".into(), json!(active));
    let severity = if active == 0 { Severity::Critical } else { Severity::Warning };
    (severity, reasons, details)
}

/// The smallest tick at or after `t`.
fn tick_at_or_after(t: i64, interval_ms: i64) -> i64 {
    let floor = t.div_euclid(interval_ms) * interval_ms;
    if floor == t {
        t
    } else {
        floor.saturating_add(interval_ms)
    }
}

/// The first onboarding deadline tick after `tick` (contract_start + 60 and + 90 days),
/// at which `onboarding_at_risk` or `onboarding_missed` may fire.
pub(super) fn next_onboarding_tick(record: Option<&AccountRecord>, tick: i64, interval_ms: i64) -> Option<i64> {
    let cs = record.and_then(|r| r.contract_start)?;
    [60, 90].into_iter().map(|days| tick_at_or_after(cs.saturating_add(days * DAY_MS), interval_ms)).find(|&t| t > tick)
}

/// An onboarding alert to raise for the account.
pub(super) struct Onboarding {
    pub(super) kind: AlertKind,
    pub(super) severity: Severity,
    pub(super) reasons: Vec<String>,
    pub(super) details: Map<String, Value>,
}

/// Onboarding rules at the tick: `onboarding_at_risk` and `onboarding_missed` at the first
/// tick at or after contract_start + 60 and + 90 days with no app in production, and
/// `onboarding_milestone` at the first tick at which the first (and third) app is in
/// production, when that deploy was within the first 90 days.
pub(super) fn onboarding(
    acct: &mut AccountState,
    record: Option<&AccountRecord>,
    tick: i64,
    interval_ms: i64,
) -> Vec<Onboarding> {
    let Some(cs) = record.and_then(|r| r.contract_start) else { return Vec::new() };
    // Deploys before contract_start do not count (a trial or pilot before signing); at a
    // tick before contract_start none does.
    let mut firsts: Vec<(i64, &str)> = acct
        .apps
        .iter()
        .filter_map(|(app, times)| times.range(cs..tick.max(cs)).next().map(|d| (*d, app.as_str())))
        .collect();
    firsts.sort();
    let count = firsts.len();
    let start = || format_rfc3339(cs)[..10].to_string();
    let mut out = Vec::new();
    for (days, kind, severity) in
        [(60, AlertKind::OnboardingAtRisk, Severity::Warning), (90, AlertKind::OnboardingMissed, Severity::Critical)]
    {
        if count == 0 && tick == tick_at_or_after(cs.saturating_add(days * DAY_MS), interval_ms) {
            let mut details = Map::new();
            details.insert("days_since_contract_start".into(), json!(days));
            details.insert("apps_in_production".into(), json!(0));
            out.push(Onboarding {
                kind,
                severity,
                reasons: vec![
                    format!("{days} days after the contract started ({}) no application is in production.", start()),
                    "Customers that reach production in their first 90 days renew; book a technical onboarding session.".into(),
                ],
                details,
            });
        }
    }
    let mut reached = Vec::new();
    for (k, bit) in [(1usize, 1u8), (3, 2)] {
        if count >= k && acct.milestones_done & bit == 0 {
            acct.milestones_done |= bit;
            let (at, app) = firsts[k - 1];
            if at < cs.saturating_add(90 * DAY_MS) {
                reached.push((k, at, app.to_string()));
            }
        }
    }
    if !reached.is_empty() {
        let mut details = Map::new();
        details.insert("apps_in_production".into(), json!(count));
        details.insert(
            "milestones".into(),
            json!(reached.iter().map(|(k, _, _)| k.to_string()).collect::<Vec<_>>().join(",")),
        );
        let reasons = reached
            .iter()
            .map(|(k, at, app)| {
                let nth = if *k == 1 { "First" } else { "Third" };
                format!(
                    "{nth} application in production ({app}) {} after the contract started.",
                    human_duration(at - cs)
                )
            })
            .collect();
        out.push(Onboarding { kind: AlertKind::OnboardingMilestone, severity: Severity::Info, reasons, details });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_at_or_after() {
        assert_eq!(tick_at_or_after(3_600_000, 3_600_000), 3_600_000);
        assert_eq!(tick_at_or_after(3_600_001, 3_600_000), 7_200_000);
        assert_eq!(tick_at_or_after(0, 10), 0);
    }
}
