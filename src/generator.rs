//! A deterministic synthetic customer base with scripted storylines, for `demo`, `gen`,
//! the benchmarks and the tests.
//!
//! Long because the storylines, the org charts and the day-by-day event rules they drive
//! read best together: splitting them would scatter one scenario over several files.
//!
//! Five companies with org charts, seats and contracts; their developers use the product
//! on working days. Storylines:
//! - **globex**: the data team's champion leaves on day 15, most of the team stops two
//!   days later, the few who stay file P1 tickets and dwindle to one: usage drops,
//!   champions go inactive, the team goes yellow, then red.
//! - **initech**: P1 tickets pile up from day 12 until they are resolved on day 30: the
//!   account goes yellow, then recovers.
//! - **acme**: the payments team grows from 6 to 24 active developers: yellow to green.
//! - **hooli**: renews on day 50; half its platform team stops on day 20: the usage drop
//!   is raised to critical because renewal is near.
//! - **umbrella**: signed 40 days before day 0 and has put nothing in production:
//!   onboarding at risk on day 20, missed on day 50.
//! - **wayne**: signed on day 0; its first app reaches production on day 4, the third on
//!   day 15: onboarding milestones.
//! - Deploys: acme's checkout team speeds up from 2-5 days to a few hours on day 25;
//!   globex's web team slows down from hours to 3-7 days on day 30 (the magic number
//!   regresses).

use serde_json::{json, Value};

use crate::model::Input;
use crate::time::{DAY_MS, HOUR_MS};

/// 2026-01-05T00:00:00Z, a Monday: day 0 of the simulation.
pub const DEFAULT_START_MS: i64 = 1_767_571_200_000;

/// Day 0 of a simulation of `days` days that ends by `now_ms`: [`DEFAULT_START_MS`], or
/// whole weeks before it when that history would reach into the future (cs-pulse refuses
/// events ahead of the wall clock as `future`). Weeks keep day 0 a Monday.
///
/// ```
/// use cs_pulse::generator::{start_for, DEFAULT_START_MS};
/// assert_eq!(start_for(60, DEFAULT_START_MS + 61 * 86_400_000), DEFAULT_START_MS);
/// let start = start_for(400, DEFAULT_START_MS + 100 * 86_400_000);
/// assert!(start + 400 * 86_400_000 <= DEFAULT_START_MS + 100 * 86_400_000);
/// assert_eq!((DEFAULT_START_MS - start) % (7 * 86_400_000), 0);
/// ```
pub fn start_for(days: i64, now_ms: i64) -> i64 {
    const WEEK_MS: i64 = 7 * DAY_MS;
    let end = DEFAULT_START_MS.saturating_add(days.saturating_mul(DAY_MS));
    if end <= now_ms {
        DEFAULT_START_MS
    } else {
        DEFAULT_START_MS - ((end - now_ms) / WEEK_MS + 1) * WEEK_MS
    }
}

/// The key features the demo's health model scores `breadth` on.
pub const KEY_FEATURES: [&str; 4] = ["dashboards", "alerts", "deploys", "api"];
const OTHER_FEATURES: [&str; 2] = ["settings", "search"];

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

/// What happens to a company during the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Story {
    /// Nothing remarkable.
    Steady,
    /// Team 0's champion (user 0) leaves on day 15; from day 17 only users 1 and 2 stay,
    /// use one feature, and file P1 tickets.
    Collapse,
    /// P1 tickets pile up from day 12 and are resolved on day 30.
    Tickets,
    /// Team 0 grows from 6 active developers to all of its users over days 0..20.
    Growth,
    /// Half of team 0 stops on day 20; the renewal is near.
    RenewalDrop,
    /// Signed 40 days ago; nothing in production.
    Stalled,
    /// Signed on day 0; teams reach production on days 4, 9 and 15.
    NewCustomer,
}

#[derive(Debug, Clone)]
struct Company {
    id: String,
    name: String,
    segment: &'static str,
    contract_start_day: i64,
    renewal_day: i64,
    story: Story,
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

#[allow(clippy::too_many_arguments)]
fn company(
    id: &str,
    name: &str,
    segment: &'static str,
    contract_start_day: i64,
    renewal_day: i64,
    story: Story,
    teams: Vec<Team>,
) -> Company {
    Company { id: id.into(), name: name.into(), segment, contract_start_day, renewal_day, story, teams }
}

/// The five companies of the demo.
fn storyline_companies() -> Vec<Company> {
    let (eng, product, core) = (Some("engineering"), Some("product"), Some("core"));
    vec![
        company(
            "acme",
            "Acme Corp",
            "enterprise",
            -200,
            300,
            Story::Growth,
            vec![
                team("acme", "payments", Some("commerce"), product, eng, 30, 24),
                team("acme", "checkout", Some("checkout"), None, eng, 12, 10),
                team("acme", "infra", Some("platform"), core, eng, 10, 9),
                team("acme", "devex", Some("platform"), core, eng, 8, 7),
            ],
        ),
        company(
            "globex",
            "Globex",
            "enterprise",
            -300,
            200,
            Story::Collapse,
            vec![
                team("globex", "data", Some("analytics"), Some("insights"), None, 40, 12),
                team("globex", "ml", Some("analytics"), Some("insights"), None, 10, 8),
                team("globex", "web", Some("digital"), None, None, 10, 8),
            ],
        ),
        company(
            "initech",
            "Initech",
            "mid_market",
            -150,
            400,
            Story::Tickets,
            vec![
                team("initech", "tps", Some("reports"), None, None, 16, 12),
                team("initech", "billing", Some("reports"), None, None, 12, 9),
            ],
        ),
        company(
            "hooli",
            "Hooli",
            "enterprise",
            -315,
            50,
            Story::RenewalDrop,
            vec![team("hooli", "platform", core, None, None, 14, 12), team("hooli", "search", core, None, None, 10, 8)],
        ),
        company(
            "umbrella",
            "Umbrella",
            "smb",
            -40,
            360,
            Story::Stalled,
            vec![team("umbrella", "app", None, None, None, 6, 5)],
        ),
        company(
            "wayne",
            "Wayne Enterprises",
            "mid_market",
            0,
            365,
            Story::NewCustomer,
            vec![
                team("wayne", "r-and-d", Some("labs"), None, None, 8, 6),
                team("wayne", "security", Some("labs"), None, None, 6, 5),
                team("wayne", "logistics", Some("ops"), None, None, 6, 5),
            ],
        ),
    ]
}

/// The range of hours from change_created to production deploy for team `ti` on `day`,
/// or `None` when the team deploys nothing that day.
fn lead_time_hours(story: Story, ti: usize, day: i64) -> Option<(i64, i64)> {
    match (story, ti) {
        (Story::Stalled, _) => None,
        (Story::NewCustomer, _) if day < [4, 9, 15].get(ti).copied().unwrap_or(20) => None,
        (Story::Growth, 1) if day < 25 => Some((48, 120)),
        (Story::Growth, 1) => Some((1, 4)),
        (Story::Collapse, 2) if day < 30 => Some((2, 6)),
        (Story::Collapse, 2) => Some((72, 168)),
        _ => Some((5, 7)),
    }
}

/// The shape of a synthetic customer base for load generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Number of accounts.
    pub accounts: u64,
    /// Teams per account.
    pub teams_per_account: u64,
    /// Users per team.
    pub users_per_team: u64,
}

const GROUP_NAMES: [&str; 8] = ["g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7"];
const BU_NAMES: [&str; 4] = ["bu0", "bu1", "bu2", "bu3"];
const DIVISION_NAMES: [&str; 2] = ["div0", "div1"];

/// `scale.accounts` synthetic companies, cycling through the storylines.
fn synthetic_companies(scale: Scale, rng: &mut Rng) -> Vec<Company> {
    const STORIES: [Story; 8] = [
        Story::Steady,
        Story::Steady,
        Story::Collapse,
        Story::Tickets,
        Story::Growth,
        Story::RenewalDrop,
        Story::Stalled,
        Story::NewCustomer,
    ];
    (0..scale.accounts)
        .map(|i| {
            let id = format!("acct-{i:06}");
            let story = STORIES[(i % 8) as usize];
            let teams = (0..scale.teams_per_account.max(1))
                .map(|t| {
                    let users = scale.users_per_team.max(1);
                    Team {
                        id: format!("{id}-t{t:03}"),
                        name: format!("team {t}"),
                        group: Some(GROUP_NAMES[(t / 4 % 8) as usize]),
                        business_unit: (scale.teams_per_account > 8).then_some(BU_NAMES[(t / 16 % 4) as usize]),
                        division: (scale.teams_per_account > 32).then_some(DIVISION_NAMES[(t / 64 % 2) as usize]),
                        seats: users + rng.below(users / 2 + 1),
                        users,
                    }
                })
                .collect();
            let (start, renewal) = match story {
                Story::Stalled => (-40, 360),
                Story::NewCustomer => (0, 360),
                Story::RenewalDrop => (-315, 50),
                _ => (-200 - rng.below(300) as i64, 120 + rng.below(300) as i64),
            };
            let segment = ["enterprise", "mid_market", "smb"][(i % 3) as usize];
            Company {
                name: format!("Account {i}"),
                id,
                segment,
                contract_start_day: start,
                renewal_day: renewal,
                story,
                teams,
            }
        })
        .collect()
}

/// The chance that an account on `story` leaves at a renewal on `day` of the simulation:
/// low before its trouble starts, high while it lasts, and lower again once it is over.
fn churn_risk(story: Story, day: i64) -> f64 {
    match story {
        Story::Steady => 0.04,
        Story::Growth => 0.02,
        Story::NewCustomer => 0.06,
        Story::Tickets if (12..75).contains(&day) => 0.35,
        Story::Collapse | Story::RenewalDrop if day >= 15 => 0.6,
        Story::Stalled if day >= 20 => 0.7,
        _ => 0.05,
    }
}

/// The synthetic customer base.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    /// Seeds the outcomes, apart from the records: asking for outcomes changes no record.
    outcome_seed: u64,
    start_ms: i64,
    companies: Vec<Company>,
    seq: u64,
    /// Production deploys scheduled for a later day.
    pending: Vec<GenRecord>,
    /// Emit a few malformed records per week, to show dead-lettering.
    pub with_garbage: bool,
}

impl Generator {
    /// The demo's five companies, whose day 0 starts at `start_ms`.
    pub fn new(seed: u64, start_ms: i64) -> Self {
        Self {
            rng: Rng::new(seed),
            outcome_seed: seed,
            start_ms,
            companies: storyline_companies(),
            seq: 0,
            pending: Vec::new(),
            with_garbage: true,
        }
    }

    /// A synthetic customer base of any size, for load generation.
    pub fn scaled(seed: u64, start_ms: i64, scale: Scale) -> Self {
        let mut rng = Rng::new(seed);
        let companies = synthetic_companies(scale, &mut rng);
        Self { rng, outcome_seed: seed, start_ms, companies, seq: 0, pending: Vec::new(), with_garbage: false }
    }

    /// Day 0 of the simulation, epoch ms.
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    /// What the accounts did at each renewal within the first `days` days (a contract term
    /// is a year from its renewal date), for `backtest`. Churn is drawn at each renewal
    /// with a chance that follows the account's storyline at that point of its history
    /// (see `churn_risk`); an account that churned has no later outcome. One that stays
    /// expands or contracts by chance, more likely as its history suggests. Deterministic
    /// by seed, and drawn apart from the records.
    pub fn outcomes(&self, days: i64) -> Vec<crate::model::OutcomeRecord> {
        use crate::model::{Outcome, OutcomeRecord};
        let mut rng = Rng::new(self.outcome_seed ^ 0x6f75_7463_6f6d_6573);
        let mut out = Vec::new();
        for c in &self.companies {
            let mut day = c.renewal_day;
            while day < 0 {
                day += 365;
            }
            while day < days {
                let troubled = matches!(c.story, Story::Collapse | Story::RenewalDrop | Story::Tickets);
                let outcome = if rng.chance(churn_risk(c.story, day)) {
                    Outcome::Churned
                } else if rng.chance(if c.story == Story::Growth { 0.6 } else { 0.15 }) {
                    Outcome::Expanded
                } else if rng.chance(if troubled { 0.4 } else { 0.1 }) {
                    Outcome::Contracted
                } else {
                    Outcome::Renewed
                };
                out.push(OutcomeRecord { account_id: c.id.clone(), at: self.start_ms + day * DAY_MS, outcome });
                if outcome == Outcome::Churned {
                    break;
                }
                day += 365;
            }
        }
        out.sort_by(|a, b| (a.at, &a.account_id).cmp(&(b.at, &b.account_id)));
        out
    }

    /// One usage and one support event per account at `at` (a system event and a CSAT
    /// answer), so that every input partition's event time reaches `at`.
    pub fn closing_records(&mut self, at: i64) -> Vec<GenRecord> {
        let mut out = Vec::new();
        let targets: Vec<(String, String)> =
            self.companies.iter().map(|c| (c.id.clone(), c.teams[0].id.clone())).collect();
        for (acct, team) in targets {
            out.push(self.usage(at, &acct, &team, None, "heartbeat", json!({})));
            out.push(self.support(at, &acct, None, "csat_response", json!({ "score": 4 })));
        }
        out
    }

    /// The dimension tables the account and team records make (for benchmarks and tests
    /// that drive the engine without Kafka).
    pub fn dimensions(&self) -> crate::dims::Dimensions {
        let mut dims = crate::dims::Dimensions::default();
        for r in self.dimension_records() {
            match r.input {
                Input::Accounts => {
                    if let Ok(a) = crate::decode::json::decode_account(None, Some(&r.payload)) {
                        dims.apply_account(a);
                    }
                }
                _ => {
                    if let Ok(t) = crate::decode::json::decode_team(None, Some(&r.payload)) {
                        dims.apply_team(t);
                    }
                }
            }
        }
        dims
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
                key: c.id.clone(),
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

    /// Whether user `u` of team number `ti` is active on `day`, per the storylines.
    fn active(&mut self, story: Story, ti: usize, users: u64, u: u64, day: i64) -> bool {
        let weekday = day.rem_euclid(7) < 5;
        let base = if weekday { 0.8 } else { 0.08 };
        match story {
            // the champion (u0) is active every working day until leaving on day 15
            Story::Collapse if ti == 0 && u == 0 => day < 15 && weekday,
            Story::Collapse if ti == 0 && day >= 24 => u == 1 && self.rng.chance(base),
            Story::Collapse if ti == 0 && day >= 17 => u <= 3 && self.rng.chance(base),
            Story::Growth if ti == 0 => {
                let staffed = (6 + (day.max(0) * 18 / 20)).min(users as i64) as u64;
                u < staffed && self.rng.chance(base)
            }
            Story::RenewalDrop if ti == 0 && day >= 20 => u % 2 == 0 && self.rng.chance(base),
            _ => self.rng.chance(base),
        }
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{}", self.seq)
    }

    fn usage(&mut self, at: i64, acct: &str, team: &str, user: Option<&str>, kind: &str, extra: Value) -> GenRecord {
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
        GenRecord { input: Input::Usage, at, key: acct.into(), payload: v.to_string().into_bytes() }
    }

    fn support(&mut self, at: i64, acct: &str, team: Option<&str>, kind: &str, extra: Value) -> GenRecord {
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
        GenRecord { input: Input::Support, at, key: acct.into(), payload: v.to_string().into_bytes() }
    }

    /// Every input event of simulated `day`, in event-time order.
    pub fn day(&mut self, day: i64) -> Vec<GenRecord> {
        let day_start = self.start_ms + day * DAY_MS;
        let mut out = Vec::new();
        let companies = std::mem::take(&mut self.companies);
        for c in &companies {
            for (ti, t) in c.teams.iter().enumerate() {
                let mut active_users = Vec::new();
                for u in 0..t.users {
                    if !self.active(c.story, ti, t.users, u, day) {
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
                            let k = match (c.story, ti) {
                                (Story::Collapse, 0) if day >= 17 => 1,
                                (Story::Collapse, 0) => 2,
                                _ => 4,
                            };
                            KEY_FEATURES[self.rng.below(k) as usize]
                        } else {
                            OTHER_FEATURES[self.rng.below(2) as usize]
                        };
                        let ev =
                            self.usage(at, &c.id, &t.id, Some(&user), "feature_used", json!({ "feature": feature }));
                        out.push(ev);
                    }
                }
                // a change now and then; its production deploy (a CI system event
                // without a user) follows after the team's current lead time
                if let Some((lo, hi)) = lead_time_hours(c.story, ti, day) {
                    if !active_users.is_empty() && self.rng.chance(0.5) {
                        let at = day_start + 12 * HOUR_MS + self.rng.below(6 * HOUR_MS as u64) as i64;
                        let change = self.next_id("chg");
                        let pick = self.rng.below(active_users.len() as u64) as usize;
                        let creator = format!("{}-u{}", t.id, active_users[pick]);
                        out.push(self.usage(
                            at,
                            &c.id,
                            &t.id,
                            Some(&creator),
                            "change_created",
                            json!({ "change_id": change }),
                        ));
                        let lead = (lo + self.rng.below((hi - lo + 1) as u64) as i64) * HOUR_MS;
                        let deploy = self.usage(
                            at + lead,
                            &c.id,
                            &t.id,
                            None,
                            "change_deployed",
                            json!({ "change_id": change, "environment": "production", "app_id": format!("{}-app", t.id) }),
                        );
                        self.pending.push(deploy);
                    }
                }
            }
        }
        let day_end = day_start + DAY_MS;
        let (due, later): (Vec<GenRecord>, Vec<GenRecord>) =
            std::mem::take(&mut self.pending).into_iter().partition(|r| r.at < day_end);
        self.pending = later;
        out.extend(due);
        for c in &companies {
            self.storyline_tickets(c, day, day_start, &mut out);
        }
        self.companies = companies;
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

    fn storyline_tickets(&mut self, c: &Company, day: i64, day_start: i64, out: &mut Vec<GenRecord>) {
        let at = |h: i64| day_start + h * HOUR_MS;
        let opened = |p: &str, id: &str| json!({ "ticket_id": id, "priority": p });
        let plain = |id: &str| json!({ "ticket_id": id });
        let acct = c.id.as_str();
        let t0 = c.teams[0].id.as_str();
        let t1 = c.teams.get(1).map_or(t0, |t| t.id.as_str());
        let tid = |n: u32| format!("{}-{n}", acct.to_uppercase());
        let mut push = |g: &mut Self, h: i64, team: Option<&str>, kind: &str, extra: Value| {
            out.push(g.support(at(h), acct, team, kind, extra));
        };
        match (c.story, day) {
            (Story::Tickets, 12) => push(self, 10, Some(t0), "ticket_opened", opened("P1", &tid(1))),
            (Story::Tickets, 13) => {
                push(self, 11, None, "ticket_opened", opened("P1", &tid(2)));
                push(self, 15, Some(t1), "ticket_opened", opened("P2", &tid(3)));
            }
            (Story::Tickets, 14) => push(self, 9, Some(t1), "ticket_escalated", opened("P1", &tid(3))),
            (Story::Tickets, 30) => {
                for n in 1..=3 {
                    push(self, 12, None, "ticket_resolved", plain(&tid(n)));
                }
            }
            (Story::Collapse, 18) => {
                push(self, 10, Some(t0), "ticket_opened", opened("P1", &tid(1)));
                push(self, 14, Some(t0), "ticket_opened", opened("P2", &tid(2)));
            }
            (Story::Collapse, 20) => {
                push(self, 10, Some(t0), "ticket_escalated", opened("P1", &tid(2)));
                push(self, 16, Some(t0), "ticket_opened", opened("P1", &tid(3)));
            }
            _ => {}
        }
        // everyday low-priority tickets that get resolved
        if c.story == Story::Growth && day.rem_euclid(7) == 1 {
            let id = tid(100 + day as u32);
            let team = c.teams.get(2).map_or(t0, |t| t.id.as_str());
            push(self, 9, Some(team), "ticket_opened", opened("P3", &id));
            push(self, 17, Some(team), "ticket_resolved", plain(&id));
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
                    Input::Support => crate::decode::json::decode_support(Some(&r.payload)).map(|_| ()),
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
                Input::Accounts => crate::decode::json::decode_account(None, Some(&r.payload)).is_ok(),
                _ => crate::decode::json::decode_team(None, Some(&r.payload)).is_ok(),
            };
            assert!(ok, "{}", String::from_utf8_lossy(&r.payload));
        }
    }

    #[test]
    fn globex_champion_leaves() {
        let mut g = Generator::new(1, DEFAULT_START_MS);
        let champion = |recs: &[GenRecord]| {
            recs.iter().any(|r| String::from_utf8_lossy(&r.payload).contains("\"globex-data-u0\""))
        };
        assert!(champion(&g.day(14)));
        assert!(!champion(&g.day(16)));
    }

    #[test]
    fn outcomes_follow_the_storylines_by_chance() {
        use crate::model::Outcome;
        let scale = Scale { accounts: 800, teams_per_account: 1, users_per_team: 2 };
        let g = Generator::scaled(7, DEFAULT_START_MS, scale);
        let outcomes = g.outcomes(400);
        assert_eq!(outcomes, Generator::scaled(7, DEFAULT_START_MS, scale).outcomes(400), "deterministic");
        assert_ne!(outcomes, Generator::scaled(8, DEFAULT_START_MS, scale).outcomes(400), "by seed");
        // Every account renews within 400 days (renewals fall on days 50..420, or every
        // 365 days from a past one), once or twice, and nothing follows a churn.
        let mut by_account: std::collections::BTreeMap<&str, Vec<Outcome>> = Default::default();
        for o in &outcomes {
            assert!(o.at >= DEFAULT_START_MS && o.at < DEFAULT_START_MS + 400 * DAY_MS, "{o:?}");
            by_account.entry(&o.account_id).or_default().push(o.outcome);
        }
        assert!(by_account.len() >= 700, "{} accounts with an outcome", by_account.len());
        for (a, v) in &by_account {
            assert!(!v[..v.len() - 1].contains(&Outcome::Churned), "{a} has an outcome after churning: {v:?}");
        }
        // Churn follows the storylines: collapsing accounts (every 8th from 2) churn far
        // more often than steady ones (every 8th from 0), but not every time.
        let churn_rate = |story_index: u64| {
            let ids: Vec<String> = (0..800).filter(|i| i % 8 == story_index).map(|i| format!("acct-{i:06}")).collect();
            let churned = ids
                .iter()
                .filter(|id| by_account.get(id.as_str()).is_some_and(|v| v.contains(&Outcome::Churned)))
                .count();
            churned as f64 / ids.len() as f64
        };
        let (steady, collapse) = (churn_rate(0), churn_rate(2));
        assert!(steady < 0.2 && collapse > 0.3 && collapse < 1.0, "steady {steady}, collapse {collapse}");
        let kinds: std::collections::BTreeSet<Outcome> = outcomes.iter().map(|o| o.outcome).collect();
        assert_eq!(kinds.len(), 4, "every outcome occurs: {kinds:?}");
    }
}
