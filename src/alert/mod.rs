//! Alerts: deterministic ids, lifecycle stage and renewal raise, and the human reasons.

mod reasons;

pub(crate) use reasons::{band_change_reasons, magic_reasons, usage_drop_reasons};

use std::collections::BTreeMap;

use crate::model::{AccountRecord, Alert, AlertKind, EntityRef, HealthInfo, Severity, Stage};
use crate::time::DAY_MS;

const NINETY_DAYS_MS: i64 = 90 * DAY_MS;

/// A deterministic 128-bit id (FNV-1a over the parts, two seeds), as 32 hex digits.
///
/// ```text
/// use cs_pulse::alert::stable_id;
/// assert_eq!(stable_id(&["usage_drop", "team", "t1", "5"]), stable_id(&["usage_drop", "team", "t1", "5"]));
/// assert_ne!(stable_id(&["ab", "c"]), stable_id(&["a", "bc"]));
/// ```
pub(crate) fn stable_id(parts: &[&str]) -> String {
    let mut hi: u64 = 0xcbf2_9ce4_8422_2325;
    let mut lo: u64 = 0x8422_2325_cbf2_9ce4;
    for p in parts {
        for &byte in p.as_bytes().iter().chain(std::iter::once(&0x1f)) {
            hi = (hi ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
            lo = (lo ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(5);
        }
    }
    format!("{hi:016x}{lo:016x}")
}

/// Whether `t` is within 90 days before the renewal date: `0 <= renewal - t <= 90d`.
pub(crate) fn near_renewal(account: Option<&AccountRecord>, t: i64) -> bool {
    account.and_then(|a| a.renewal_date).is_some_and(|r| (0..=NINETY_DAYS_MS).contains(&r.saturating_sub(t)))
}

/// The account's stage at `t`: renewal near the renewal date, onboarding in the first 90
/// days of the contract (and before it), adoption otherwise.
pub(crate) fn stage_at(account: Option<&AccountRecord>, t: i64) -> Stage {
    if near_renewal(account, t) {
        Stage::Renewal
    } else if account.and_then(|a| a.contract_start).is_some_and(|cs| t < cs.saturating_add(NINETY_DAYS_MS)) {
        Stage::Onboarding
    } else {
        Stage::Adoption
    }
}

/// Whole days from `t` to the renewal date, when it is not past.
pub(crate) fn renewal_in_days(account: Option<&AccountRecord>, t: i64) -> Option<i64> {
    account.and_then(|a| a.renewal_date).filter(|&r| r >= t).map(|r| r.saturating_sub(t) / DAY_MS)
}

/// Everything an alert needs besides its kind-specific content.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AlertContext<'a> {
    /// Who it is about.
    pub(crate) entity: &'a EntityRef,
    /// The tick or the event time.
    pub(crate) at: i64,
    /// Wall clock now.
    pub(crate) emitted_at: i64,
    /// The account's record, for stage and renewal.
    pub(crate) account: Option<&'a AccountRecord>,
}

/// The kind-specific content of an alert.
#[derive(Debug, Clone, Default)]
pub(crate) struct AlertBody {
    /// Score now and before, when the alert is about health.
    pub(crate) health: Option<HealthInfo>,
    /// Component scores.
    pub(crate) components: BTreeMap<String, f64>,
    /// Sentences, most important first.
    pub(crate) reasons: Vec<String>,
    /// Kind-specific numbers.
    pub(crate) details: serde_json::Map<String, serde_json::Value>,
}

/// Builds an alert: id from kind, level, entity and `at`; severity raised near renewal.
pub(crate) fn build(kind: AlertKind, base: Severity, ctx: AlertContext<'_>, body: AlertBody) -> Alert {
    let at = ctx.at.to_string();
    let id = stable_id(&[kind.as_str(), ctx.entity.level.as_str(), &ctx.entity.account_id, &ctx.entity.id, &at]);
    build_with_id(id, kind, base, ctx, body)
}

/// Builds an alert with a given id (support_escalation derives it from the event id).
pub(crate) fn build_with_id(
    alert_id: String,
    kind: AlertKind,
    base: Severity,
    ctx: AlertContext<'_>,
    body: AlertBody,
) -> Alert {
    let severity = if near_renewal(ctx.account, ctx.at) { base.raised() } else { base };
    Alert {
        alert_id,
        kind,
        severity,
        entity: ctx.entity.clone(),
        at: ctx.at,
        emitted_at: ctx.emitted_at,
        stage: stage_at(ctx.account, ctx.at),
        health: body.health,
        components: body.components,
        reasons: body.reasons,
        renewal_in_days: renewal_in_days(ctx.account, ctx.at),
        details: body.details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Level;

    fn acct(cs: Option<i64>, r: Option<i64>) -> AccountRecord {
        AccountRecord { account_id: "a".into(), contract_start: cs, renewal_date: r, ..Default::default() }
    }

    #[test]
    fn stages() {
        let a = acct(Some(100 * DAY_MS), Some(400 * DAY_MS));
        assert_eq!(stage_at(Some(&a), 0), Stage::Onboarding);
        assert_eq!(stage_at(Some(&a), 189 * DAY_MS), Stage::Onboarding);
        assert_eq!(stage_at(Some(&a), 190 * DAY_MS), Stage::Adoption);
        assert_eq!(stage_at(Some(&a), 309 * DAY_MS), Stage::Adoption);
        assert_eq!(stage_at(Some(&a), 310 * DAY_MS), Stage::Renewal);
        assert_eq!(stage_at(Some(&a), 400 * DAY_MS), Stage::Renewal);
        assert_eq!(stage_at(Some(&a), 401 * DAY_MS), Stage::Adoption);
        assert_eq!(stage_at(None, 0), Stage::Adoption);
        // renewal takes precedence over onboarding
        let short = acct(Some(0), Some(30 * DAY_MS));
        assert_eq!(stage_at(Some(&short), DAY_MS), Stage::Renewal);
    }

    #[test]
    fn renewal_days_and_raise() {
        let a = acct(None, Some(10 * DAY_MS));
        assert_eq!(renewal_in_days(Some(&a), 0), Some(10));
        assert_eq!(renewal_in_days(Some(&a), DAY_MS / 2), Some(9));
        assert_eq!(renewal_in_days(Some(&a), 11 * DAY_MS), None);
        let e = EntityRef { level: Level::Team, id: "t".into(), account_id: "a".into() };
        let ctx = AlertContext { entity: &e, at: 0, emitted_at: 1, account: Some(&a) };
        let alert = build(AlertKind::UsageDrop, Severity::Warning, ctx, AlertBody::default());
        assert_eq!(alert.severity, Severity::Critical);
        assert_eq!(alert.renewal_in_days, Some(10));
        let far = acct(None, Some(200 * DAY_MS));
        let ctx = AlertContext { account: Some(&far), ..ctx };
        assert_eq!(build(AlertKind::UsageDrop, Severity::Info, ctx, AlertBody::default()).severity, Severity::Info);
        let near = AlertContext { account: Some(&a), ..ctx };
        assert_eq!(build(AlertKind::UsageDrop, Severity::Info, near, AlertBody::default()).severity, Severity::Warning);
        assert_eq!(Severity::Critical.raised(), Severity::Critical);
    }

    #[test]
    fn alert_ids_are_deterministic_and_distinct() {
        let e = EntityRef { level: Level::Team, id: "t".into(), account_id: "a".into() };
        let ctx = AlertContext { entity: &e, at: 5, emitted_at: 1, account: None };
        let a1 = build(AlertKind::UsageDrop, Severity::Warning, ctx, AlertBody::default());
        let a2 = build(
            AlertKind::UsageDrop,
            Severity::Warning,
            AlertContext { emitted_at: 99, ..ctx },
            AlertBody::default(),
        );
        let a3 = build(AlertKind::UsageDrop, Severity::Warning, AlertContext { at: 6, ..ctx }, AlertBody::default());
        assert_eq!(a1.alert_id, a2.alert_id);
        assert_ne!(a1.alert_id, a3.alert_id);
        assert_eq!(a1.alert_id.len(), 32);
    }
}

#[cfg(test)]
mod examples {
    //! The examples of the docs above, run.

    #[test]
    fn stable_id() {
        use crate::alert::stable_id;
        assert_eq!(stable_id(&["usage_drop", "team", "t1", "5"]), stable_id(&["usage_drop", "team", "t1", "5"]));
        assert_ne!(stable_id(&["ab", "c"]), stable_id(&["a", "bc"]));
    }
}
