//! A deterministic synthetic customer base with scripted storylines, for `demo` and load
//! generation.
//!
//! Five companies with org charts, seats and contracts; their developers use the product
//! on working days. Storylines:
//! - **globex**: the data team's champion leaves on day 15, most of the team stops two
//!   days later, and the few who stay file P1 tickets: usage drops, the team goes red.
//! - **initech**: P1 tickets pile up from day 12 until they are resolved on day 30: the
//!   account goes yellow, then recovers.
//! - **acme**: the payments team grows from 6 to 24 active developers: yellow to green.
//! - **hooli**: renews on day 50; half its platform team stops on day 20: the usage drop
//!   is raised to critical because renewal is near.
//! - **umbrella**: a small customer onboarding steadily.

use serde_json::{json, Value};

use crate::time::{DAY_MS, HOUR_MS};

/// 2026-01-05T00:00:00Z, a Monday: day 0 of the simulation.
pub const DEFAULT_START_MS: i64 = 1_767_571_200_000;

/// The key features the demo's health model scores `breadth` on.
pub const KEY_FEATURES: [&str; 4] = ["dashboards", "alerts", "deploys", "api"];
const OTHER_FEATURES: [&str; 2] = ["settings", "search"];

/// Which input a generated record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Usage events.
    Usage,
    /// Support events.
    Support,
    /// Account records.
    Accounts,
    /// Team records.
    Teams,
}

/// One generated record.
#[derive(Debug, Clone, PartialEq)]
pub struct GenRecord {
    /// Destination.
    pub input: Input,
    /// Event time (or 0 for dimension records).
    pub at: i64,
    /// Message key.
    pub key: String,
    /// Message bytes.
    pub payload: Vec<u8>,
}

/// SplitMix64: small, fast, and the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[derive(Debug, Clone)]
struct Team {
    id: String,
    name: String,
    group: Option<&'static str>,
    business_unit: Option<&'static str>,
    division: Option<&'static str>,
    seats: u64,
    /// How many users exist (ids `{team}-u{n}`).
    users: u64,
}

#[derive(Debug, Clone)]
struct Company {
    id: &'static str,
    name: &'static str,
    segment: &'static str,
    contract_start_day: i64,
    renewal_day: i64,
    teams: Vec<Team>,
}

fn team(
    acct: &str,
    slug: &str,
    group: Option<&'static str>,
    bu: Option<&'static str>,
    div: Option<&'static str>,
    seats: u64,
    users: u64,
) -> Team {
    Team {
        id: format!("{acct}-{slug}"),
        name: slug.replace('-', " "),
        group,
        business_unit: bu,
        division: div,
        seats,
        users,
    }
}

fn companies() -> Vec<Company> {
    vec![
        Company {
            id: "acme",
            name: "Acme Corp",
            segment: "enterprise",
            contract_start_day: -200,
            renewal_day: 300,
            teams: vec![
                team(
                    "acme",
                    "payments",
                    Some("commerce"),
                    Some("product"),
                    Some("engineering"),
                    30,
                    24,
                ),
                team(
                    "acme",
                    "checkout",
                    Some("commerce"),
                    Some("product"),
                    Some("engineering"),
                    12,
                    10,
                ),
                team(
                    "acme",
                    "infra",
                    Some("platform"),
                    Some("core"),
                    Some("engineering"),
                    10,
                    9,
                ),
                team(
                    "acme",
                    "devex",
                    Some("platform"),
                    Some("core"),
                    Some("engineering"),
                    8,
                    7,
                ),
            ],
        },
        Company {
            id: "globex",
            name: "Globex",
            segment: "enterprise",
            contract_start_day: -300,
            renewal_day: 200,
            teams: vec![
                team(
                    "globex",
                    "data",
                    Some("analytics"),
                    Some("insights"),
                    None,
                    30,
                    12,
                ),
                team(
                    "globex",
                    "ml",
                    Some("analytics"),
                    Some("insights"),
                    None,
                    10,
                    8,
                ),
                team("globex", "web", Some("digital"), None, None, 10, 8),
            ],
        },
        Company {
            id: "initech",
            name: "Initech",
            segment: "mid_market",
            contract_start_day: -150,
            renewal_day: 400,
            teams: vec![
                team("initech", "tps", Some("reports"), None, None, 16, 12),
                team("initech", "billing", Some("reports"), None, None, 12, 9),
            ],
        },
        Company {
            id: "hooli",
            name: "Hooli",
            segment: "enterprise",
            contract_start_day: -315,
            renewal_day: 50,
            teams: vec![
                team("hooli", "platform", Some("core"), None, None, 14, 12),
                team("hooli", "search", Some("core"), None, None, 10, 8),
            ],
        },
        Company {
            id: "umbrella",
            name: "Umbrella",
            segment: "smb",
            contract_start_day: -5,
            renewal_day: 360,
            teams: vec![team("umbrella", "app", None, None, None, 6, 5)],
        },
    ]
}

/// The synthetic customer base.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    start_ms: i64,
    companies: Vec<Company>,
    seq: u64,
    /// Emit a few malformed records per week, to show dead-lettering.
    pub with_garbage: bool,
}

impl Generator {
    /// A generator whose day 0 starts at `start_ms`.
    pub fn new(seed: u64, start_ms: i64) -> Self {
        Self {
            rng: Rng::new(seed),
            start_ms,
            companies: companies(),
            seq: 0,
            with_garbage: true,
        }
    }

    /// Account and team records.
    pub fn dimension_records(&self) -> Vec<GenRecord> {
        let mut out = Vec::new();
        for c in &self.companies {
            let seats: u64 = c.teams.iter().map(|t| t.seats).sum::<u64>() + 5;
            let acct = json!({
                "account_id": c.id,
                "name": c.name,
                "segment": c.segment,
                "seats": seats,
                "contract_start": self.start_ms + c.contract_start_day * DAY_MS,
                "renewal_date": self.start_ms + c.renewal_day * DAY_MS,
            });
            out.push(GenRecord {
                input: Input::Accounts,
                at: 0,
                key: c.id.into(),
                payload: acct.to_string().into_bytes(),
            });
            for t in &c.teams {
                let rec = json!({
                    "team_id": t.id,
                    "account_id": c.id,
                    "name": t.name,
                    "group": t.group,
                    "business_unit": t.business_unit,
                    "division": t.division,
                    "seats": t.seats,
                });
                out.push(GenRecord {
                    input: Input::Teams,
                    at: 0,
                    key: t.id.clone(),
                    payload: rec.to_string().into_bytes(),
                });
            }
        }
        out
    }

    /// Whether user `u` of a team is active on `day`, per the storylines.
    fn active(&mut self, company: &str, team: &Team, u: u64, day: i64) -> bool {
        let weekday = day.rem_euclid(7) < 5;
        let base = if weekday { 0.8 } else { 0.08 };
        match (company, team.id.as_str()) {
            // the champion (u0) is active every working day until leaving on day 15
            ("globex", "globex-data") if u == 0 => day < 15 && weekday,
            ("globex", "globex-data") if day >= 17 => u <= 2 && self.rng.chance(base),
            // the payments team grows from 6 to 24 developers over days 0..20
            ("acme", "acme-payments") => {
                let staffed = (6 + (day.max(0) * 18 / 20)).min(team.users as i64) as u64;
                u < staffed && self.rng.chance(base)
            }
            // half of hooli's platform team stops on day 20
            ("hooli", "hooli-platform") if day >= 20 => u % 2 == 0 && self.rng.chance(base),
            _ => self.rng.chance(base),
        }
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{}", self.seq)
    }

    fn usage(
        &mut self,
        at: i64,
        acct: &str,
        team: &str,
        user: Option<&str>,
        kind: &str,
        extra: Value,
    ) -> GenRecord {
        let mut v = json!({
            "event_id": self.next_id("u"),
            "occurred_at": at,
            "account_id": acct,
            "team_id": team,
            "type": kind,
        });
        if let Some(u) = user {
            v["user_id"] = json!(u);
        }
        if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
            o.extend(e);
        }
        GenRecord {
            input: Input::Usage,
            at,
            key: acct.into(),
            payload: v.to_string().into_bytes(),
        }
    }

    fn support(
        &mut self,
        at: i64,
        acct: &str,
        team: Option<&str>,
        kind: &str,
        extra: Value,
    ) -> GenRecord {
        let mut v = json!({
            "event_id": self.next_id("s"),
            "occurred_at": at,
            "account_id": acct,
            "kind": kind,
        });
        if let Some(t) = team {
            v["team_id"] = json!(t);
        }
        if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
            o.extend(e);
        }
        GenRecord {
            input: Input::Support,
            at,
            key: acct.into(),
            payload: v.to_string().into_bytes(),
        }
    }

    /// Every input event of simulated `day`, in event-time order.
    pub fn day(&mut self, day: i64) -> Vec<GenRecord> {
        let day_start = self.start_ms + day * DAY_MS;
        let mut out = Vec::new();
        let companies = self.companies.clone();
        for c in &companies {
            for t in &c.teams {
                let mut active_users = Vec::new();
                for u in 0..t.users {
                    if !self.active(c.id, t, u, day) {
                        continue;
                    }
                    active_users.push(u);
                    let user = format!("{}-u{u}", t.id);
                    let n = 2 + self.rng.below(3);
                    for _ in 0..n {
                        let at = day_start
                            + (8 + self.rng.below(10) as i64) * HOUR_MS
                            + self.rng.below(HOUR_MS as u64) as i64;
                        let feature = if self.rng.chance(0.8) {
                            // users favour the first features; the stayers of globex-data
                            // use only dashboards
                            let k = if c.id == "globex" && t.id == "globex-data" && day >= 17 {
                                1
                            } else {
                                4
                            };
                            KEY_FEATURES[self.rng.below(k) as usize]
                        } else {
                            OTHER_FEATURES[self.rng.below(2) as usize]
                        };
                        let ev = self.usage(
                            at,
                            c.id,
                            &t.id,
                            Some(&user),
                            "feature_used",
                            json!({ "feature": feature }),
                        );
                        out.push(ev);
                    }
                }
                // a CI deploy now and then: a system event without a user
                if !active_users.is_empty() && self.rng.chance(0.5) {
                    let at = day_start + 12 * HOUR_MS + self.rng.below(6 * HOUR_MS as u64) as i64;
                    let change = self.next_id("chg");
                    let created_at = at - (1 + self.rng.below(48) as i64) * HOUR_MS;
                    let pick = self.rng.below(active_users.len() as u64) as usize;
                    let creator = format!("{}-u{}", t.id, active_users[pick]);
                    out.push(self.usage(
                        created_at.max(day_start),
                        c.id,
                        &t.id,
                        Some(&creator),
                        "change_created",
                        json!({ "change_id": change }),
                    ));
                    out.push(self.usage(at, c.id, &t.id, None, "change_deployed", json!({
                        "change_id": change, "environment": "production", "app_id": format!("{}-app", t.id)
                    })));
                }
            }
        }
        self.storyline_tickets(day, day_start, &mut out);
        if self.with_garbage && day.rem_euclid(7) == 3 {
            let at = day_start + 9 * HOUR_MS;
            out.push(GenRecord {
                input: Input::Usage,
                at,
                key: "acme".into(),
                payload: b"{\"event_id\": \"broken".to_vec(),
            });
            let missing = json!({ "event_id": self.next_id("s"), "occurred_at": at, "account_id": "initech", "kind": "ticket_opened" });
            out.push(GenRecord {
                input: Input::Support,
                at,
                key: "initech".into(),
                payload: missing.to_string().into_bytes(),
            });
        }
        out.sort_by_key(|r| r.at);
        out
    }

    fn storyline_tickets(&mut self, day: i64, day_start: i64, out: &mut Vec<GenRecord>) {
        let at = |h: i64| day_start + h * HOUR_MS;
        let opened = |p: &str, id: &str| json!({ "ticket_id": id, "priority": p });
        let plain = |id: &str| json!({ "ticket_id": id });
        match day {
            12 => {
                let e = self.support(
                    at(10),
                    "initech",
                    Some("initech-tps"),
                    "ticket_opened",
                    opened("P1", "INI-1"),
                );
                out.push(e);
            }
            13 => {
                let e = self.support(
                    at(11),
                    "initech",
                    None,
                    "ticket_opened",
                    opened("P1", "INI-2"),
                );
                out.push(e);
                let e = self.support(
                    at(15),
                    "initech",
                    Some("initech-billing"),
                    "ticket_opened",
                    opened("P2", "INI-3"),
                );
                out.push(e);
            }
            14 => {
                let e = self.support(
                    at(9),
                    "initech",
                    Some("initech-billing"),
                    "ticket_escalated",
                    opened("P1", "INI-3"),
                );
                out.push(e);
            }
            18 => {
                let e = self.support(
                    at(10),
                    "globex",
                    Some("globex-data"),
                    "ticket_opened",
                    opened("P1", "GLX-1"),
                );
                out.push(e);
                let e = self.support(
                    at(14),
                    "globex",
                    Some("globex-data"),
                    "ticket_opened",
                    opened("P2", "GLX-2"),
                );
                out.push(e);
            }
            20 => {
                let e = self.support(
                    at(10),
                    "globex",
                    Some("globex-data"),
                    "ticket_escalated",
                    opened("P1", "GLX-2"),
                );
                out.push(e);
                let e = self.support(
                    at(16),
                    "globex",
                    Some("globex-data"),
                    "ticket_opened",
                    opened("P1", "GLX-3"),
                );
                out.push(e);
            }
            30 => {
                for id in ["INI-1", "INI-2", "INI-3"] {
                    let e = self.support(at(12), "initech", None, "ticket_resolved", plain(id));
                    out.push(e);
                }
            }
            _ => {}
        }
        // everyday low-priority tickets that get resolved
        if day.rem_euclid(7) == 1 {
            let id = self.next_id("ACM");
            let e = self.support(
                at(9),
                "acme",
                Some("acme-infra"),
                "ticket_opened",
                opened("P3", &id),
            );
            out.push(e);
            let e = self.support(
                at(17),
                "acme",
                Some("acme-infra"),
                "ticket_resolved",
                plain(&id),
            );
            out.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events() {
        let mut a = Generator::new(7, DEFAULT_START_MS);
        let mut b = Generator::new(7, DEFAULT_START_MS);
        assert_eq!(a.day(3), b.day(3));
        let mut c = Generator::new(8, DEFAULT_START_MS);
        assert_ne!(a.day(4), c.day(4));
    }

    #[test]
    fn events_decode_except_the_planted_garbage() {
        let mut g = Generator::new(1, DEFAULT_START_MS);
        let mut bad = 0;
        for d in 0..7 {
            for r in g.day(d) {
                let res = match r.input {
                    Input::Usage => crate::decode::json::decode_usage(Some(&r.payload)).map(|_| ()),
                    Input::Support => {
                        crate::decode::json::decode_support(Some(&r.payload)).map(|_| ())
                    }
                    _ => Ok(()),
                };
                if res.is_err() {
                    bad += 1;
                }
            }
        }
        assert_eq!(bad, 2);
        for r in g.dimension_records() {
            let ok = match r.input {
                Input::Accounts => {
                    crate::decode::json::decode_account(None, Some(&r.payload)).is_ok()
                }
                _ => crate::decode::json::decode_team(None, Some(&r.payload)).is_ok(),
            };
            assert!(ok, "{}", String::from_utf8_lossy(&r.payload));
        }
    }

    #[test]
    fn globex_champion_leaves() {
        let mut g = Generator::new(1, DEFAULT_START_MS);
        let champion = |recs: &[GenRecord]| {
            recs.iter()
                .any(|r| String::from_utf8_lossy(&r.payload).contains("\"globex-data-u0\""))
        };
        assert!(champion(&g.day(14)));
        assert!(!champion(&g.day(16)));
    }
}
