//! A realistic history to backtest on (`gen --history`): each account has a hidden health
//! that drifts, takes shocks and recovers; it shows only through noisy events (who uses
//! the product and how often, tickets, survey answers, how fast changes reach production),
//! and churn is drawn at each renewal from it. Everyday noise on top: weekly cycles,
//! holidays, user turnover, over-provisioned seats, and product-wide incidents that hit
//! every account at once. Nothing here is scripted per account; the storylines of
//! [`crate::generator`] stay the demo's.
//!
//! Deterministic by seed, like the generator: the same seed and sizes give the same
//! records and outcomes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::generator::{GenRecord, Rng, Scale};
use crate::model::{Input, Outcome, OutcomeRecord};
use crate::time::{DAY_MS, HOUR_MS};

const FEATURES: [&str; 6] = ["dashboards", "alerts", "deploys", "api", "settings", "search"];
const SEGMENTS: [&str; 3] = ["enterprise", "mid_market", "smb"];

impl Rng {
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal (a sum of uniforms), mean 0 and standard deviation `sd`.
    pub fn normal(&mut self, sd: f64) -> f64 {
        ((0..4).map(|_| self.unit()).sum::<f64>() - 2.0) * sd * 1.732
    }
}

#[derive(Debug, Clone)]
struct User {
    id: String,
    /// How much this user uses the product when all is well, 0..1.
    engagement: f64,
}

#[derive(Debug, Clone)]
struct Team {
    id: String,
    group: String,
    seats: u64,
    users: Vec<User>,
    next_user: u64,
    app: String,
}

#[derive(Debug, Clone)]
struct Account {
    id: String,
    segment: &'static str,
    contract_start_day: i64,
    /// The hidden health, 0..1, and where it drifts back to.
    health: f64,
    baseline: f64,
    /// Health of the last 90 days, for the renewal draw.
    recent: Vec<f64>,
    teams: Vec<Team>,
    /// Open tickets: id, priority, the day it is resolved, its team.
    open: Vec<(String, u8, i64, String)>,
    churned: bool,
}

/// The realistic history.
#[derive(Debug, Clone)]
pub struct History {
    rng: Rng,
    start_ms: i64,
    accounts: Vec<Account>,
    /// Days of product-wide incidents.
    incidents: Vec<i64>,
    seq: u64,
    /// Production deploys due on a later day.
    pending: BTreeMap<i64, Vec<GenRecord>>,
    outcomes: Vec<OutcomeRecord>,
}

/// Whether `day` (0 = a Monday) is a holiday: the last week of December to New Year, and
/// two weeks in August at half strength (see [`History::day`]).
fn holiday(start_ms: i64, day: i64) -> f64 {
    let date = crate::time::format_rfc3339(start_ms + day * DAY_MS);
    let (month, dom) = (&date[5..7], date[8..10].parse::<u32>().unwrap_or(1));
    match month {
        "12" if dom >= 24 => 0.25,
        "01" if dom == 1 => 0.25,
        "08" if (5..19).contains(&dom) => 0.6,
        _ => 1.0,
    }
}

impl History {
    /// `scale.accounts` accounts of up to `scale.teams_per_account` teams, about
    /// `scale.users_per_team` users each, over a simulation whose day 0 is `start_ms`.
    /// Contracts started within the year before day 0 (renewals fall in the first year)
    /// or, for one account in eight, during the first 200 days (new customers).
    pub fn new(seed: u64, start_ms: i64, scale: Scale, days: i64) -> Self {
        let mut rng = Rng::new(seed ^ 0x6869_7374_6f72_7921);
        let mut accounts = Vec::new();
        for a in 0..scale.accounts {
            let id = format!("acct-{a:06}");
            let n_teams = 1 + rng.below(scale.teams_per_account.max(1));
            let new_customer = rng.chance(0.125);
            let contract_start_day = if new_customer { rng.below(200) as i64 } else { -(rng.below(365) as i64) - 1 };
            let baseline = (0.45 + 0.45 * rng.unit()).min(0.95);
            let teams = (0..n_teams)
                .map(|t| {
                    let n_users = 2 + rng.below(scale.users_per_team.max(1) * 2);
                    let users = (0..n_users)
                        .map(|u| User { id: format!("{id}-t{t}-u{u}"), engagement: 0.4 + 0.6 * rng.unit() })
                        .collect();
                    // over-provisioned: seats bought for more people than use the product
                    let seats = (n_users as f64 * (1.0 + 1.5 * rng.unit())).ceil() as u64;
                    Team {
                        id: format!("{id}-t{t}"),
                        group: format!("g{}", t % 2),
                        seats,
                        users,
                        next_user: n_users,
                        app: format!("{id}-app{t}"),
                    }
                })
                .collect();
            accounts.push(Account {
                id,
                segment: SEGMENTS[rng.below(3) as usize],
                contract_start_day,
                health: baseline,
                baseline,
                recent: Vec::new(),
                teams,
                open: Vec::new(),
                churned: false,
            });
        }
        // about one product-wide incident a month, a day long
        let incidents = (0..days.max(0)).filter(|_| rng.chance(1.0 / 30.0)).collect();
        Self { rng, start_ms, accounts, incidents, seq: 0, pending: BTreeMap::new(), outcomes: Vec::new() }
    }

    /// Day 0 of the simulation, epoch ms.
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    /// What the accounts did at their renewals within the first `days` days.
    pub fn outcomes(&self, days: i64) -> Vec<OutcomeRecord> {
        let end = self.start_ms + days * DAY_MS;
        self.outcomes.iter().filter(|o| o.at < end).cloned().collect()
    }

    /// Account and team records.
    pub fn dimension_records(&self) -> Vec<GenRecord> {
        let mut out = Vec::new();
        for a in &self.accounts {
            let seats: u64 = a.teams.iter().map(|t| t.seats).sum();
            let start = self.start_ms + a.contract_start_day * DAY_MS;
            let record = json!({
                "account_id": a.id, "name": a.id, "segment": a.segment, "seats": seats,
                "contract_start": start, "renewal_date": start + 365 * DAY_MS,
            });
            out.push(GenRecord {
                input: Input::Accounts,
                at: 0,
                key: a.id.clone(),
                payload: record.to_string().into_bytes(),
            });
            for t in &a.teams {
                let record = json!({
                    "team_id": t.id, "account_id": a.id, "name": t.id, "group": t.group,
                    "business_unit": "bu0", "seats": t.seats,
                });
                out.push(GenRecord {
                    input: Input::Teams,
                    at: 0,
                    key: t.id.clone(),
                    payload: record.to_string().into_bytes(),
                });
            }
        }
        out
    }

    /// One usage and one support event per account at `at`, so that every input
    /// partition's event time reaches it.
    pub fn closing_records(&mut self, at: i64) -> Vec<GenRecord> {
        let targets: Vec<(String, String)> =
            self.accounts.iter().map(|a| (a.id.clone(), a.teams[0].id.clone())).collect();
        let mut out = Vec::new();
        for (acct, team) in targets {
            out.push(self.event(Input::Usage, at, &acct, json!({"team_id": team, "type": "heartbeat"})));
            out.push(self.event(Input::Support, at, &acct, json!({"kind": "csat_response", "score": 4})));
        }
        out
    }

    fn event(&mut self, input: Input, at: i64, account: &str, fields: Value) -> GenRecord {
        self.seq += 1;
        let prefix = if input == Input::Usage { "hu" } else { "hs" };
        let mut v = json!({"event_id": format!("{prefix}-{}", self.seq), "occurred_at": at, "account_id": account});
        if let (Value::Object(o), Value::Object(f)) = (&mut v, fields) {
            o.extend(f);
        }
        GenRecord { input, at, key: account.to_string(), payload: v.to_string().into_bytes() }
    }

    /// A time within the working hours of `day` (08:00 to 19:00 UTC).
    fn working_time(&mut self, day: i64) -> i64 {
        self.start_ms + day * DAY_MS + 8 * HOUR_MS + self.rng.below(11 * HOUR_MS as u64) as i64
    }

    /// Every input event of simulated `day`, in event-time order.
    pub fn day(&mut self, day: i64) -> Vec<GenRecord> {
        let mut out = self.pending.remove(&day).unwrap_or_default();
        // a deploy due after its account churned never happens
        let gone: std::collections::BTreeSet<&str> =
            self.accounts.iter().filter(|a| a.churned).map(|a| a.id.as_str()).collect();
        out.retain(|r| !gone.contains(r.key.as_str()));
        let weekday = day.rem_euclid(7) < 5;
        let calendar = holiday(self.start_ms, day) * if weekday { 1.0 } else { 0.1 };
        let incident = self.incidents.binary_search(&day).is_ok();
        let mut accounts = std::mem::take(&mut self.accounts);
        for a in accounts.iter_mut().filter(|a| !a.churned && day >= a.contract_start_day) {
            self.account_day(a, day, calendar, incident, &mut out);
        }
        self.accounts = accounts;
        out.sort_by_key(|r| r.at);
        out
    }

    fn account_day(&mut self, a: &mut Account, day: i64, calendar: f64, incident: bool, out: &mut Vec<GenRecord>) {
        // the hidden health: drifts back to its baseline, wanders, takes shocks
        let shock = if self.rng.chance(1.0 / 150.0) {
            -(0.2 + 0.35 * self.rng.unit())
        } else if self.rng.chance(1.0 / 300.0) {
            0.15
        } else {
            0.0
        };
        a.health = (a.health + 0.02 * (a.baseline - a.health) + self.rng.normal(0.02) + shock).clamp(0.02, 0.99);
        a.recent.push(a.health);
        if a.recent.len() > 90 {
            a.recent.remove(0);
        }
        let h = a.health;
        let use_factor = calendar * (0.25 + 0.75 * h) * if incident { 0.6 } else { 1.0 };
        for ti in 0..a.teams.len() {
            // turnover: a user leaves now and then, and is replaced by a new one
            let n = a.teams[ti].users.len();
            for ui in 0..n {
                if self.rng.chance(1.0 / 300.0) {
                    let t = &mut a.teams[ti];
                    let no = t.next_user;
                    t.next_user += 1;
                    t.users[ui] = User { id: format!("{}-u{no}", t.id), engagement: 0.4 + 0.6 * self.rng.unit() };
                }
            }
            let (team_id, app) = (a.teams[ti].id.clone(), a.teams[ti].app.clone());
            for ui in 0..n {
                let u = a.teams[ti].users[ui].clone();
                if !self.rng.chance(0.85 * u.engagement * use_factor) {
                    continue;
                }
                for _ in 0..1 + self.rng.below(3) {
                    let at = self.working_time(day);
                    let feature = FEATURES[self.rng.below(if h > 0.5 { 6 } else { 3 }) as usize];
                    let fields =
                        json!({"team_id": team_id, "user_id": u.id, "type": "feature_used", "feature": feature});
                    out.push(self.event(Input::Usage, at, &a.id, fields));
                }
            }
            // changes: more and faster when healthy
            if self.rng.chance(calendar.min(1.0) * (0.2 + 0.5 * h)) {
                let change = format!("{team_id}-c{}", self.seq);
                let created = self.working_time(day);
                out.push(self.event(
                    Input::Usage,
                    created,
                    &a.id,
                    json!({"team_id": team_id, "type": "change_created", "change_id": change}),
                ));
                let hours = (2.0 + 60.0 * (1.0 - h) * self.rng.unit() * self.rng.unit() * 4.0) as i64;
                let deployed = created + hours * HOUR_MS;
                let fields = json!({"team_id": team_id, "type": "change_deployed", "change_id": change,
                    "environment": "production", "app_id": app});
                let record = self.event(Input::Usage, deployed, &a.id, fields);
                let due = (deployed - self.start_ms).div_euclid(DAY_MS);
                if due == day {
                    out.push(record);
                } else {
                    self.pending.entry(due).or_default().push(record);
                }
            }
        }
        self.support_day(a, day, calendar, incident, out);
        let since = day - a.contract_start_day;
        if since > 0 && since % 365 == 0 {
            self.renewal(a, day);
        }
    }

    fn support_day(&mut self, a: &mut Account, day: i64, calendar: f64, incident: bool, out: &mut Vec<GenRecord>) {
        let h = a.health;
        // resolutions due today
        let due: Vec<(String, u8, i64, String)> = a.open.iter().filter(|t| t.2 <= day).cloned().collect();
        a.open.retain(|t| t.2 > day);
        for (ticket, _, _, team) in due {
            let at = self.working_time(day);
            out.push(self.event(
                Input::Support,
                at,
                &a.id,
                json!({"team_id": team, "kind": "ticket_resolved", "ticket_id": ticket}),
            ));
            if self.rng.chance(0.4) {
                let score = (1.0 + 4.0 * (h + self.rng.normal(0.2))).round().clamp(1.0, 5.0) as u8;
                out.push(self.event(
                    Input::Support,
                    at + 60_000,
                    &a.id,
                    json!({"kind": "csat_response", "score": score}),
                ));
            }
        }
        let rate = a.teams.len() as f64 * 0.04 * (0.3 + 2.0 * (1.0 - h)) * calendar.max(0.3)
            + if incident { 0.35 } else { 0.0 };
        if self.rng.chance(rate.min(0.95)) {
            let team = a.teams[self.rng.below(a.teams.len() as u64) as usize].id.clone();
            let ticket = format!("{}-k{}", a.id, self.seq);
            let p1 = if incident { 0.15 } else { 0.02 + 0.12 * (1.0 - h) };
            let priority = if self.rng.chance(p1) {
                1
            } else if self.rng.chance(0.35) {
                2
            } else {
                3
            };
            let at = self.working_time(day);
            out.push(self.event(
                Input::Support,
                at,
                &a.id,
                json!({"team_id": team, "kind": "ticket_opened", "ticket_id": ticket, "priority": format!("P{priority}")}),
            ));
            if priority > 1 && self.rng.chance(0.05 + 0.25 * (1.0 - h)) {
                let fields = json!({"team_id": team, "kind": "ticket_escalated", "ticket_id": ticket,
                    "priority": format!("P{}", priority - 1)});
                out.push(self.event(Input::Support, at + HOUR_MS, &a.id, fields));
            }
            let days_open = 1 + self.rng.below(3 + (12.0 * (1.0 - h)) as u64) as i64;
            a.open.push((ticket, priority, day + days_open, team));
        }
        // an NPS answer now and then
        if self.rng.chance(1.0 / 25.0) {
            let score = (10.0 * (h + self.rng.normal(0.18))).round().clamp(0.0, 10.0) as u8;
            let at = self.working_time(day);
            out.push(self.event(Input::Support, at, &a.id, json!({"kind": "nps_response", "score": score})));
        }
    }

    /// The renewal draw: churn is likelier the worse the account's health was over the
    /// last 90 days; a healthy one may expand, a weak one contract.
    fn renewal(&mut self, a: &mut Account, day: i64) {
        let h = a.recent.iter().sum::<f64>() / a.recent.len().max(1) as f64;
        let churn = 1.0 / (1.0 + (14.0 * (h - 0.42)).exp());
        let outcome = if self.rng.chance(churn) {
            Outcome::Churned
        } else if self.rng.chance((h - 0.6).max(0.0) * 1.5) {
            Outcome::Expanded
        } else if self.rng.chance((0.6 - h).max(0.0) * 1.5) {
            Outcome::Contracted
        } else {
            Outcome::Renewed
        };
        self.outcomes.push(OutcomeRecord { account_id: a.id.clone(), at: self.start_ms + day * DAY_MS, outcome });
        a.churned = outcome == Outcome::Churned;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(seed: u64) -> (History, Vec<GenRecord>) {
        let scale = Scale { accounts: 60, teams_per_account: 3, users_per_team: 5 };
        let mut h = History::new(seed, crate::generator::DEFAULT_START_MS, scale, 400);
        let mut all = h.dimension_records();
        for d in 0..400 {
            let day = h.day(d);
            assert!(day.windows(2).all(|w| w[0].at <= w[1].at), "day {d} in time order");
            all.extend(day);
        }
        (h, all)
    }

    #[test]
    fn deterministic_by_seed_and_churn_drawn_at_renewals() {
        let (a, ra) = history(3);
        let (b, rb) = history(3);
        assert_eq!(ra, rb);
        assert_eq!(a.outcomes(400), b.outcomes(400));
        let (c, _) = history(4);
        assert_ne!(a.outcomes(400), c.outcomes(400));
        let o = a.outcomes(400);
        let churned = o.iter().filter(|o| o.outcome == Outcome::Churned).count();
        assert!(o.len() >= 40, "about one renewal per account in the first year: {}", o.len());
        assert!(churned > 0 && churned * 2 < o.len(), "some churn, not most: {churned} of {}", o.len());
    }

    #[test]
    fn weekends_are_quiet_and_churned_accounts_go_silent() {
        let (h, records) = history(5);
        let day_of = |r: &GenRecord| (r.at - h.start_ms).div_euclid(DAY_MS);
        let usage: Vec<&GenRecord> = records.iter().filter(|r| r.input == Input::Usage).collect();
        let weekend = usage.iter().filter(|r| day_of(r).rem_euclid(7) >= 5).count();
        assert!(weekend * 10 < usage.len(), "{weekend} of {} on weekends", usage.len());
        for o in h.outcomes(400).iter().filter(|o| o.outcome == Outcome::Churned) {
            let key = o.account_id.as_str();
            assert!(!records.iter().any(|r| r.key == key && r.at > o.at + DAY_MS), "{key} after its churn");
        }
    }
}
