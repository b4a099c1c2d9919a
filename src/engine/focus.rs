//! The focused alert policy (`[alerts] policy = "focused"`, the default): the alerts a
//! customer-success team acts on.
//!
//! Every rule of the alert table still runs, on every entity, with its memory (arming,
//! once per spell, warm-up), exactly as under `"all"`; what it fires at a tick is a
//! *trigger*. The policy writes at most one alert per account and tick, and only for the
//! conditions that foretold churn when `backtest` replayed a year of history (the figures
//! are in the README):
//!
//! | condition | when | severity | again after |
//! |---|---|---|---|
//! | `red` | any entity of the account enters red | critical | every entry |
//! | `decline` | the account falls from green into yellow and its active users fall (a `usage_drop` from at least [`MIN_USERS`] users) within [`CORROBORATION_DAYS`] of each other | critical | [`COOL_DOWN_DAYS`] after a critical decline |
//! | `renewal_risk` | the account falls from green into yellow within 90 days of its renewal (uncorroborated) | critical | [`COOL_DOWN_DAYS`] after a critical decline |
//! | `renewal_usage` | the account's active users fall (from [`MIN_USERS`] or more) within 90 days of its renewal (uncorroborated) | warning | [`COOL_DOWN_DAYS`] |
//! | `onboarding` | no app in production 90 days after contract start | warning | once |
//!
//! A fall into yellow or in usage outside these is not alerted: on its own it foretold
//! churn no better than chance.
//!
//! Severities are the ones the backtest earned, not raised near renewal.
//! `support_escalation` is not grouped: it is raised on ingest, one per P1 or escalation,
//! as a warning (it told churned accounts from retained ones no better than chance).
//!
//! The alert's lead trigger (its most important condition's) gives it its kind, entity,
//! health, components and id, so the id is the one `"all"` gives that trigger. Every
//! trigger is listed in `details` (`triggers`, `trigger_N`, `trigger_N_severity`, and the
//! others' details as `trigger_N_<key>`) and in `reasons`: with the conditions, the other
//! entities of the account whose band fell or whose usage fell at the same tick, so that
//! one cause that shows on a team, its group, business unit, division and account makes one
//! alert, not five. A condition that persists does not alert again: each rule fires on a
//! change, and the others are held back for [`COOL_DOWN_DAYS`] after they alerted. Improvements (a band rising, a milestone) are not alerts: the scores topic
//! carries them.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::alert::stable_id;
use crate::model::{Alert, AlertKind, Band, Level, Severity, Stage};
use crate::time::{format_rfc3339, DAY_MS};

/// A usage drop counts towards `decline` only from at least this many active users over
/// the earlier 7 days (a team of 5 dropping to 3 is noise).
pub(super) const MIN_USERS: u64 = 10;
/// The fall into yellow and the fall in usage corroborate each other within this many
/// days.
pub(super) const CORROBORATION_DAYS: i64 = 14;
/// `decline`, `renewal_risk` and `renewal_usage` do not alert again for this many days
/// after they alerted.
pub(super) const COOL_DOWN_DAYS: i64 = 30;
/// The severity of `support_escalation`: it told churned accounts from retained ones no
/// better than chance, so it is not critical for the risk topic (support works the ticket).
pub(super) const SUPPORT_ESCALATION: Severity = Severity::Warning;
/// How many triggers one alert lists in its `details`, the lead included; `triggers` gives
/// the full count (an account with hundreds of teams cannot grow an alert without bound).
pub(super) const MAX_LISTED: usize = 20;

/// What the focused policy remembers of an account between ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FocusMemory {
    /// The last tick at which the account fell from green into yellow.
    into_yellow: Option<i64>,
    /// The last tick at which the account's active users fell (from [`MIN_USERS`] or more).
    usage_fell: Option<i64>,
    /// The last tick a critical decline (`decline` or `renewal_risk`) alerted.
    decline_alerted: Option<i64>,
    /// The last tick `renewal_usage` alerted.
    usage_alerted: Option<i64>,
}

/// A condition of the policy, most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Condition {
    Red,
    Decline,
    RenewalRisk,
    RenewalUsage,
    Onboarding,
}

impl Condition {
    fn severity(self) -> Severity {
        match self {
            Condition::Red | Condition::Decline | Condition::RenewalRisk => Severity::Critical,
            Condition::RenewalUsage | Condition::Onboarding => Severity::Warning,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Condition::Red => "red",
            Condition::Decline => "decline",
            Condition::RenewalRisk => "renewal_risk",
            Condition::RenewalUsage => "renewal_usage",
            Condition::Onboarding => "onboarding",
        }
    }
}

fn band_fell(a: &Alert) -> bool {
    a.kind == AlertKind::HealthBandChanged
        && a.health.as_ref().is_some_and(|h| h.previous_band.is_some_and(|p| rank(h.band) < rank(p)))
}

fn rank(b: Band) -> u8 {
    match b {
        Band::Red => 0,
        Band::Yellow => 1,
        Band::Green => 2,
    }
}

fn into_red(a: &Alert) -> bool {
    band_fell(a) && a.health.as_ref().is_some_and(|h| h.band == Band::Red)
}

fn account_into_yellow(a: &Alert) -> bool {
    a.entity.level == Level::Account
        && band_fell(a)
        && a.health.as_ref().is_some_and(|h| h.band == Band::Yellow && h.previous_band == Some(Band::Green))
}

fn account_usage_fell(a: &Alert) -> bool {
    a.entity.level == Level::Account
        && a.kind == AlertKind::UsageDrop
        && a.details.get("active_users_7d_earlier").and_then(Value::as_u64).is_some_and(|n| n >= MIN_USERS)
}

/// A trigger listed as context when an alert is written anyway: a fall in band or usage,
/// or an inactive champion, of any entity of the account.
fn context(a: &Alert) -> bool {
    band_fell(a) || matches!(a.kind, AlertKind::UsageDrop | AlertKind::ChampionInactive)
}

fn level_rank(l: Level) -> u8 {
    match l {
        Level::Account => 0,
        Level::Division => 1,
        Level::BusinessUnit => 2,
        Level::Group => 3,
        Level::Team => 4,
    }
}

/// Whether `then` is within `days` before `tick` (or at it).
fn within(then: Option<i64>, tick: i64, days: i64) -> bool {
    then.is_some_and(|t| t <= tick && tick - t <= days * DAY_MS)
}

/// Whether a condition that alerted at `then` is still cooling down at `tick`.
fn cooling(then: Option<i64>, tick: i64) -> bool {
    then.is_some_and(|t| t <= tick && tick - t < COOL_DOWN_DAYS * DAY_MS)
}

/// The one alert for an account at `tick`, from the triggers its entities fired there (in
/// the order the rules ran), updating the account's memory; `None` when no condition of
/// the policy holds.
pub(super) fn group(mut triggers: Vec<Alert>, memory: &mut FocusMemory, tick: i64) -> Option<Alert> {
    if triggers.is_empty() {
        return None;
    }
    // The same order however the rules ran: level (account first), kind, id.
    triggers.sort_by(|a, b| {
        (level_rank(a.entity.level), a.kind.as_str(), &a.entity.id).cmp(&(
            level_rank(b.entity.level),
            b.kind.as_str(),
            &b.entity.id,
        ))
    });
    let yellow_now = triggers.iter().position(account_into_yellow);
    let usage_now = triggers.iter().position(account_usage_fell);
    if yellow_now.is_some() {
        memory.into_yellow = Some(tick);
    }
    if usage_now.is_some() {
        memory.usage_fell = Some(tick);
    }
    // Each condition that holds, with the triggers that make it, lead first.
    let mut held: Vec<(Condition, Vec<usize>)> = Vec::new();
    let reds: Vec<usize> = (0..triggers.len()).filter(|&i| into_red(&triggers[i])).collect();
    if !reds.is_empty() {
        held.push((Condition::Red, reds));
    }
    let corroborated = (yellow_now.is_some() && within(memory.usage_fell, tick, CORROBORATION_DAYS))
        || (usage_now.is_some() && within(memory.into_yellow, tick, CORROBORATION_DAYS));
    let near_renewal = |i: &usize| triggers[*i].stage == Stage::Renewal;
    if corroborated {
        if !cooling(memory.decline_alerted, tick) {
            memory.decline_alerted = Some(tick);
            held.push((Condition::Decline, yellow_now.into_iter().chain(usage_now).collect()));
        }
    } else if let Some(y) = yellow_now.filter(near_renewal) {
        if !cooling(memory.decline_alerted, tick) {
            memory.decline_alerted = Some(tick);
            held.push((Condition::RenewalRisk, vec![y]));
        }
    } else if let Some(u) = usage_now.filter(near_renewal) {
        if !cooling(memory.usage_alerted, tick) {
            memory.usage_alerted = Some(tick);
            held.push((Condition::RenewalUsage, vec![u]));
        }
    }
    let onboarding: Vec<usize> =
        (0..triggers.len()).filter(|&i| triggers[i].kind == AlertKind::OnboardingMissed).collect();
    if !onboarding.is_empty() {
        held.push((Condition::Onboarding, onboarding));
    }
    let (lead_condition, _) = *held.first()?;
    let severity = lead_condition.severity();

    // Listed: each condition's triggers, then the rest of the account's falls at this tick
    // (linear in the triggers: a product-wide incident may fell thousands of teams at once).
    let mut listed_already = vec![false; triggers.len()];
    let mut order: Vec<(usize, Option<Condition>)> = Vec::new();
    for (c, idx) in &held {
        for &i in idx {
            if !std::mem::replace(&mut listed_already[i], true) {
                order.push((i, Some(*c)));
            }
        }
    }
    for (i, a) in triggers.iter().enumerate() {
        if context(a) && !std::mem::replace(&mut listed_already[i], true) {
            order.push((i, None));
        }
    }
    let total = order.len();
    let mut slots: Vec<Option<Alert>> = triggers.into_iter().map(Some).collect();
    let mut listed: Vec<(Alert, Option<Condition>)> =
        order.into_iter().filter_map(|(i, c)| slots[i].take().map(|a| (a, c))).collect();
    let (mut lead, _) = listed.remove(0);
    let rest = listed;

    // The id is the lead trigger's, as under "all": kind, level, account, entity, tick.
    lead.alert_id = stable_id(&[
        lead.kind.as_str(),
        lead.entity.level.as_str(),
        &lead.entity.account_id,
        &lead.entity.id,
        &lead.at.to_string(),
    ]);
    lead.severity = severity;
    let mut details = std::mem::take(&mut lead.details);
    details.insert("policy".into(), json!("focused"));
    details.insert("conditions".into(), json!(held.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(",")));
    details.insert("triggers".into(), json!(total));
    let name = |n: usize, a: &Alert, c: Option<Condition>, details: &mut Map<String, Value>| {
        let p = format!("trigger_{n}");
        details.insert(p.clone(), json!(format!("{} {} {}", a.kind.as_str(), a.entity.level.as_str(), a.entity.id)));
        let s = c.map_or("context", |c| c.severity().as_str());
        details.insert(format!("{p}_severity"), json!(s));
    };
    name(1, &lead, Some(lead_condition), &mut details);
    let who = |a: &Alert| format!("{} {}", a.entity.level.as_str(), a.entity.id);
    let mut reasons: Vec<String> = Vec::new();
    if lead_condition == Condition::Decline {
        reasons.push(decline_reason(memory, tick));
    }
    let lead_who = who(&lead);
    reasons.extend(std::mem::take(&mut lead.reasons).into_iter().map(|r| format!("{lead_who}: {r}")));
    for (i, (a, c)) in rest.iter().enumerate().take(MAX_LISTED - 1) {
        let n = i + 2;
        name(n, a, *c, &mut details);
        for (k, v) in &a.details {
            details.insert(format!("trigger_{n}_{k}"), v.clone());
        }
        let who = who(a);
        reasons.extend(a.reasons.iter().map(|r| format!("{who}: {r}")));
    }
    if total > MAX_LISTED {
        reasons.push(format!("{} more triggers at this tick are not listed.", total - MAX_LISTED));
    }
    lead.details = details;
    lead.reasons = reasons;
    Some(lead)
}

/// The first reason of a `decline` alert: the two signs and when each came.
fn decline_reason(memory: &FocusMemory, tick: i64) -> String {
    let day = |t: Option<i64>| t.map(|t| format_rfc3339(t)[..10].to_string()).unwrap_or_default();
    let (y, u) = (memory.into_yellow, memory.usage_fell);
    if y == Some(tick) && u == Some(tick) {
        "The account's health fell into yellow and its active users fell by 30 % or more at the same time: two independent signs of decline.".into()
    } else if y == Some(tick) {
        format!(
            "The account's health fell into yellow {} after its active users fell by 30 % or more ({}): two independent signs of decline.",
            days_between(u, tick),
            day(u)
        )
    } else {
        format!(
            "The account's active users fell by 30 % or more {} after its health fell into yellow ({}): two independent signs of decline.",
            days_between(y, tick),
            day(y)
        )
    }
}

fn days_between(then: Option<i64>, tick: i64) -> String {
    let d = then.map_or(0, |t| (tick - t) / DAY_MS);
    if d == 1 {
        "1 day".into()
    } else {
        format!("{d} days")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EntityRef, HealthInfo};
    use proptest::prelude::*;

    const T: i64 = 400 * DAY_MS;

    fn trigger(kind: AlertKind, level: Level, id: &str, bands: Option<(Band, Band)>, stage: Stage) -> Alert {
        let mut details = Map::new();
        details.insert("n".into(), json!(id.len()));
        Alert {
            alert_id: String::new(),
            kind,
            severity: Severity::Warning,
            entity: EntityRef { level, id: id.into(), account_id: "acct".into() },
            at: T,
            emitted_at: 0,
            stage,
            health: bands.map(|(before, now)| HealthInfo {
                score: 50.0,
                band: now,
                previous_score: Some(70.0),
                previous_band: Some(before),
            }),
            components: Default::default(),
            reasons: vec![format!("{} of {id} at 1", kind.as_str())],
            renewal_in_days: None,
            details,
        }
    }

    fn usage_fell(level: Level, id: &str, earlier: u64, stage: Stage) -> Alert {
        let mut a = trigger(AlertKind::UsageDrop, level, id, None, stage);
        a.details.insert("active_users_7d_earlier".into(), json!(earlier));
        a
    }

    fn into_yellow(level: Level, id: &str, stage: Stage) -> Alert {
        trigger(AlertKind::HealthBandChanged, level, id, Some((Band::Green, Band::Yellow)), stage)
    }

    #[test]
    fn a_fall_in_usage_near_renewal_is_a_warning_once_per_cool_down() -> Result<(), &'static str> {
        let mut m = FocusMemory::default();
        let a = group(vec![usage_fell(Level::Account, "acct", 12, Stage::Renewal)], &mut m, T).ok_or("no alert")?;
        assert_eq!((a.kind, a.severity), (AlertKind::UsageDrop, Severity::Warning));
        assert_eq!(a.details["conditions"], "renewal_usage");
        // its id is the trigger's under "all"
        let all = stable_id(&["usage_drop", "account", "acct", "acct", &T.to_string()]);
        assert_eq!(a.alert_id, all);
        // 29 days later: held back; 30 days later: alerted again
        let later = |days: i64| {
            let mut t = usage_fell(Level::Account, "acct", 12, Stage::Renewal);
            t.at = T + days * DAY_MS;
            t
        };
        assert!(group(vec![later(29)], &mut m, T + 29 * DAY_MS).is_none());
        assert!(group(vec![later(30)], &mut m, T + 30 * DAY_MS).is_some());
        // away from renewal, or from fewer than MIN_USERS users: not a condition
        let mut fresh = FocusMemory::default();
        assert!(group(vec![usage_fell(Level::Account, "acct", 12, Stage::Adoption)], &mut fresh, T).is_none());
        let mut fresh = FocusMemory::default();
        let small = usage_fell(Level::Account, "acct", MIN_USERS - 1, Stage::Renewal);
        assert!(group(vec![small], &mut fresh, T).is_none());
        // a team's fall in usage is context only
        let mut fresh = FocusMemory::default();
        assert!(group(vec![usage_fell(Level::Team, "t", 40, Stage::Renewal)], &mut fresh, T).is_none());
        Ok(())
    }

    #[test]
    fn corroboration_counts_14_days_back_and_no_more() {
        for (days, expected) in [(14, Some("decline")), (15, None)] {
            let mut m = FocusMemory::default();
            assert!(group(vec![usage_fell(Level::Account, "acct", 10, Stage::Adoption)], &mut m, T).is_none());
            let t = T + days * DAY_MS;
            let mut y = into_yellow(Level::Account, "acct", Stage::Adoption);
            y.at = t;
            let got = group(vec![y], &mut m, t);
            assert_eq!(got.as_ref().and_then(|a| a.details["conditions"].as_str()), expected, "{days} days");
        }
    }

    #[test]
    fn hundreds_of_teams_entering_red_make_one_alert_listing_twenty() -> Result<(), &'static str> {
        let mut triggers: Vec<Alert> = (0..300)
            .map(|i| {
                trigger(
                    AlertKind::HealthBandChanged,
                    Level::Team,
                    &format!("t{i:03}"),
                    Some((Band::Yellow, Band::Red)),
                    Stage::Adoption,
                )
            })
            .collect();
        triggers.push(trigger(AlertKind::ChampionInactive, Level::Team, "t000", None, Stage::Adoption));
        let a = group(triggers, &mut FocusMemory::default(), T).ok_or("no alert")?;
        assert_eq!((a.kind, a.severity), (AlertKind::HealthBandChanged, Severity::Critical));
        assert_eq!(a.entity.id, "t000");
        assert_eq!(a.details["triggers"], 301);
        assert!(a.details.contains_key("trigger_20") && !a.details.contains_key("trigger_21"));
        assert_eq!(a.details["trigger_20_severity"], "critical");
        assert!(a.reasons.last().is_some_and(|r| r.starts_with("281 more triggers")), "{:?}", a.reasons.last());
        assert!(a.reasons.len() <= 21 + 1);
        Ok(())
    }

    #[test]
    fn improvements_and_other_rules_alone_are_not_alerts() {
        let mut m = FocusMemory::default();
        let up = trigger(
            AlertKind::HealthBandChanged,
            Level::Account,
            "acct",
            Some((Band::Red, Band::Green)),
            Stage::Renewal,
        );
        let milestone = trigger(AlertKind::OnboardingMilestone, Level::Account, "acct", None, Stage::Onboarding);
        let magic = trigger(AlertKind::MagicNumberRegressed, Level::Account, "acct", None, Stage::Renewal);
        let champion = trigger(AlertKind::ChampionInactive, Level::Team, "t", None, Stage::Renewal);
        assert!(group(vec![up, milestone, magic, champion], &mut m, T).is_none());
        assert_eq!(m, FocusMemory::default());
    }

    fn arb_trigger() -> impl Strategy<Value = Alert> {
        let kinds = prop_oneof![
            Just(AlertKind::HealthBandChanged),
            Just(AlertKind::UsageDrop),
            Just(AlertKind::ChampionInactive),
            Just(AlertKind::MagicNumberRegressed),
            Just(AlertKind::OnboardingMissed),
            Just(AlertKind::OnboardingMilestone),
        ];
        let bands = prop_oneof![Just(Band::Red), Just(Band::Yellow), Just(Band::Green)];
        let levels = prop_oneof![Just(Level::Team), Just(Level::Group), Just(Level::Account)];
        let stages = prop_oneof![Just(Stage::Adoption), Just(Stage::Renewal)];
        (kinds, levels, 0..4u8, bands.clone(), bands, stages, 0..30u64).prop_map(|(k, l, id, b0, b1, s, users)| {
            let id = if l == Level::Account { "acct".to_string() } else { format!("e{id}") };
            let bands = (k == AlertKind::HealthBandChanged && b0 != b1).then_some((b0, b1));
            let mut a = trigger(
                if k == AlertKind::HealthBandChanged && bands.is_none() { AlertKind::UsageDrop } else { k },
                l,
                &id,
                bands,
                s,
            );
            a.details.insert("active_users_7d_earlier".into(), json!(users));
            a
        })
    }

    proptest! {
        /// However the rules ran, the account gets the same alert (or none), and the same
        /// memory: the policy reads its triggers as a set. (A rule fires at most once per
        /// entity and tick, so no two triggers share kind and entity.)
        #[test]
        fn the_order_of_triggers_does_not_matter(
            mut triggers in proptest::collection::vec(arb_trigger(), 0..12),
            seed in any::<u64>(),
            before in proptest::option::of(0..40i64),
        ) {
            let mut seen = std::collections::BTreeSet::new();
            triggers.retain(|a| seen.insert((a.kind.as_str(), a.entity.level.as_str(), a.entity.id.clone())));
            let memory = FocusMemory { usage_fell: before.map(|d| T - d * DAY_MS), ..Default::default() };
            let mut shuffled = triggers.clone();
            let n = shuffled.len();
            let mut s = seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let (mut m1, mut m2) = (memory, memory);
            let a = group(triggers, &mut m1, T);
            let b = group(shuffled, &mut m2, T);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(m1, m2);
            if let Some(a) = a {
                prop_assert!(a.details["triggers"].as_u64().is_some_and(|t| t >= 1));
                prop_assert_eq!(a.alert_id.len(), 32);
                prop_assert!(a.severity != Severity::Info);
            }
        }
    }
}
