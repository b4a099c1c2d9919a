//! Roll-up at a tick: every team's raw state, read as of the tick, unioned into the
//! entities it counts for (team, group, business unit, division, account).

use std::collections::{BTreeMap, BTreeSet};

use super::{HashMap, HashSet};

use super::state::{AccountState, Feedback, TeamState, UserIds};
use super::EngineConfig;
use crate::dims::Dimensions;
use crate::health::EntityMetrics;
use crate::magic::nearest_rank;
use crate::model::{EntityRef, Level, TeamRecord};
use crate::time::DAY_MS;

/// Window boundaries at a tick, in buckets (and ms where answers are read from events).
pub(super) struct Windows {
    pub(super) tick: i64,
    pub(super) hi: u32,
    pub(super) d1: u32,
    pub(super) d7: u32,
    pub(super) d14: u32,
    pub(super) d28: u32,
    pub(super) d30: u32,
    pub(super) granularity_ms: i64,
}

impl Windows {
    pub(super) fn new(cfg: &EngineConfig, tick: i64) -> Self {
        let b = |ms: i64| cfg.bucket(tick - ms);
        Self {
            tick,
            hi: b(0),
            d1: b(DAY_MS),
            d7: b(7 * DAY_MS),
            d14: b(14 * DAY_MS),
            d28: b(28 * DAY_MS),
            d30: b(30 * DAY_MS),
            granularity_ms: cfg.granularity_ms,
        }
    }
}

const ACTIVE_1D: u8 = 1;
const ACTIVE_7D: u8 = 2;
const ACTIVE_28D: u8 = 4;
const ACTIVE_7D_EARLIER: u8 = 8;

/// One entity's inputs at a tick, unioned over its teams.
#[derive(Default)]
pub(super) struct Agg<'a> {
    /// (user number, the windows they were active in as bit flags), once per team the
    /// user is in: OR-ed together by user when the metrics are read.
    users: Vec<(u32, u8)>,
    features: BTreeSet<&'a str>,
    pub(super) open_tickets: [u64; 4],
    pub(super) escalations_7d: u64,
    ttp_now: Vec<i64>,
    ttp_earlier: Vec<i64>,
    champions: HashSet<&'a str>,
    active_champions: HashSet<&'a str>,
    /// promoters, detractors, NPS answers
    nps: [u64; 3],
    /// sum and count of CSAT answers
    csat: [u64; 2],
}

impl Agg<'_> {
    pub(super) fn metrics(&mut self, cfg: &EngineConfig, e: &EntityRef, dims: &Dimensions) -> EntityMetrics {
        let [d1, d7, d28, d7_earlier] = self.count_users();
        self.ttp_now.sort_unstable();
        self.ttp_earlier.sort_unstable();
        let [promoters, detractors, nps_n] = self.nps;
        let [csat_sum, csat_n] = self.csat;
        EntityMetrics {
            active_users_1d: d1,
            active_users_7d: d7,
            active_users_28d: d28,
            active_users_7d_earlier: d7_earlier,
            seats: seats_of(e, dims),
            key_features_used: self.features.len() as u64,
            key_features_total: cfg.key_features.len() as u64,
            open_tickets: self.open_tickets,
            escalations_7d: self.escalations_7d,
            ttp_changes: self.ttp_now.len() as u64,
            ttp_p50_ms: nearest_rank(&self.ttp_now, 50),
            ttp_p90_ms: nearest_rank(&self.ttp_now, 90),
            ttp_changes_earlier: self.ttp_earlier.len() as u64,
            ttp_p50_earlier_ms: nearest_rank(&self.ttp_earlier, 50),
            nps: (nps_n > 0).then(|| (promoters as f64 - detractors as f64) * 100.0 / nps_n as f64),
            nps_responses: nps_n,
            csat: (csat_n > 0).then(|| csat_sum as f64 / csat_n as f64),
            csat_responses: csat_n,
            champions: self.champions.len() as u64,
            active_champions: self.active_champions.len() as u64,
        }
    }

    /// Distinct users active in each window: 1d, 7d, 28d, the earlier 7d.
    fn count_users(&mut self) -> [u64; 4] {
        self.users.sort_unstable_by_key(|(n, _)| *n);
        let mut counts = [0u64; 4];
        for run in self.users.chunk_by(|a, b| a.0 == b.0) {
            let flags = run.iter().fold(0, |f, (_, g)| f | g);
            for (i, flag) in [ACTIVE_1D, ACTIVE_7D, ACTIVE_28D, ACTIVE_7D_EARLIER].into_iter().enumerate() {
                counts[i] += u64::from(flags & flag != 0);
            }
        }
        counts
    }

    fn add_feedback(&mut self, f: &Feedback, tick: i64) {
        for r in f.between(tick - 90 * DAY_MS, tick) {
            if r.nps {
                self.nps[2] += 1;
                if r.score >= 9 {
                    self.nps[0] += 1;
                } else if r.score <= 6 {
                    self.nps[1] += 1;
                }
            } else {
                self.csat[0] += u64::from(r.score);
                self.csat[1] += 1;
            }
        }
    }
}

/// Seats of an entity: the team's or account's record; for group, business unit and
/// division the sum over the teams that name it, when every one of them has seats.
fn seats_of(e: &EntityRef, dims: &Dimensions) -> Option<u64> {
    match e.level {
        Level::Team => dims.team(&e.account_id, &e.id).and_then(|t| t.seats),
        Level::Account => dims.account(&e.account_id).and_then(|a| a.seats),
        level => {
            let mut sum = 0u64;
            let mut any = false;
            for t in dims.teams_of(&e.account_id).filter(|t| names(t, level) == Some(e.id.as_str())) {
                sum = sum.saturating_add(t.seats?);
                any = true;
            }
            any.then_some(sum)
        }
    }
}

fn names(t: &TeamRecord, level: Level) -> Option<&str> {
    match level {
        Level::Group => t.group.as_deref(),
        Level::BusinessUnit => t.business_unit.as_deref(),
        Level::Division => t.division.as_deref(),
        _ => None,
    }
}

/// An entity of an account at a tick: its level and id, borrowed from the state or the
/// dimension tables.
pub(super) type Key<'a> = (Level, &'a str);

/// The entities a team's data counts for: itself, its ancestors named by its record, and
/// the account.
pub(super) fn lineage<'a>(account_id: &'a str, team_id: Option<&'a str>, dims: &'a Dimensions) -> Vec<Key<'a>> {
    let mut out = Vec::with_capacity(5);
    if let Some(team_id) = team_id {
        out.push((Level::Team, team_id));
        if let Some(rec) = dims.team(account_id, team_id) {
            for level in [Level::Group, Level::BusinessUnit, Level::Division] {
                if let Some(name) = names(rec, level) {
                    out.push((level, name));
                }
            }
        }
    }
    out.push((Level::Account, account_id));
    out
}

/// Distinct UTC days of buckets given in order.
pub(super) fn distinct_days(buckets: impl Iterator<Item = u32>, granularity_ms: i64) -> usize {
    let mut days = 0;
    let mut last = None;
    for b in buckets {
        let day = (i64::from(b) * granularity_ms).div_euclid(DAY_MS);
        if last != Some(day) {
            days += 1;
            last = Some(day);
        }
    }
    days
}

/// Every entity of the account with its inputs as of the tick.
pub(super) fn aggregate<'a>(
    w: &Windows,
    ttl_ms: i64,
    account_id: &'a str,
    acct: &'a AccountState,
    dims: &'a Dimensions,
) -> BTreeMap<Key<'a>, Agg<'a>> {
    let mut aggs: BTreeMap<Key<'a>, Agg<'a>> = BTreeMap::new();
    let account = aggs.entry((Level::Account, account_id)).or_default();
    account.escalations_7d += acct.account_support.escalations_in(w.d7, w.hi);
    account.add_feedback(&acct.account_feedback, w.tick);
    // Each team's lineage, computed once for its own data, its tickets and its changes.
    let mut lineages: HashMap<&'a str, Vec<Key<'a>>> =
        HashMap::with_capacity_and_hasher(acct.teams.len(), Default::default());
    for (team_id, team) in acct.teams.iter().filter(|(_, t)| t.first_seen < w.tick) {
        let keys = lineages.entry(&**team_id).or_insert_with(|| lineage(account_id, Some(team_id), dims));
        add_team(w, team, &acct.user_ids, keys, &mut aggs);
    }
    let account_only = [(Level::Account, account_id)];
    for ticket in acct.tickets.values() {
        if let Some((priority, team_id)) = ticket.open_at(w.tick) {
            let keys: &[Key<'a>] = match team_id {
                Some(t) => lineages.entry(t).or_insert_with(|| lineage(account_id, Some(t), dims)),
                None => &account_only,
            };
            for key in keys {
                if let Some(agg) = aggs.get_mut(key) {
                    agg.open_tickets[usize::from(priority.0.clamp(1, 4) - 1)] += 1;
                }
            }
        }
    }
    for change in acct.changes.values() {
        let Some((deployed, ttp, team)) = change.pair_as_of(w.tick, ttl_ms) else { continue };
        let earlier = if deployed >= w.tick - 28 * DAY_MS {
            false
        } else if deployed >= w.tick - 56 * DAY_MS {
            true
        } else {
            continue;
        };
        let keys = lineages.entry(team).or_insert_with(|| lineage(account_id, Some(team), dims));
        for key in keys.iter() {
            if let Some(agg) = aggs.get_mut(key) {
                if earlier {
                    agg.ttp_earlier.push(ttp);
                } else {
                    agg.ttp_now.push(ttp);
                }
            }
        }
    }
    aggs
}

fn add_team<'a>(
    w: &Windows,
    team: &'a TeamState,
    ids: &UserIds,
    keys: &[Key<'a>],
    aggs: &mut BTreeMap<Key<'a>, Agg<'a>>,
) {
    let mut flags_of: Vec<(u32, u8)> = Vec::with_capacity(team.users.len());
    for (n, set) in &team.users {
        let mut f = 0;
        if set.any_in(w.d1, w.hi) {
            f |= ACTIVE_1D;
        }
        if set.any_in(w.d7, w.hi) {
            f |= ACTIVE_7D;
        }
        if set.any_in(w.d28, w.hi) {
            f |= ACTIVE_28D;
        }
        if set.any_in(w.d14, w.d7) {
            f |= ACTIVE_7D_EARLIER;
        }
        if f != 0 {
            flags_of.push((*n, f));
        }
    }
    let features: Vec<&'a str> =
        team.features.iter().filter(|(_, s)| s.any_in(w.d28, w.hi)).map(|(f, _)| f.as_str()).collect();
    let escalations = team.support.escalations_in(w.d7, w.hi);
    let active = |u: &str| ids.get(u).and_then(|n| team.users.get(&n)).is_some_and(|s| s.any_in(w.d14, w.hi));
    let champions: Vec<(&'a str, bool)> = team.champions.keys().map(|u| (u.as_str(), active(u))).collect();
    for key in keys {
        let agg = aggs.entry(*key).or_default();
        agg.users.extend_from_slice(&flags_of);
        agg.features.extend(features.iter().copied());
        agg.escalations_7d += escalations;
        for (user, active) in &champions {
            agg.champions.insert(user);
            if *active {
                agg.active_champions.insert(user);
            }
        }
        agg.add_feedback(&team.feedback, w.tick);
    }
}
