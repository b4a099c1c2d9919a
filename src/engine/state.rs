//! The state an engine holds per account and team.

use std::collections::{BTreeMap, BTreeSet};

use super::HashMap;

use serde::{Deserialize, Serialize};

use super::tickets::Ticket;
use crate::magic::Change;
use crate::model::{Band, Level};
use crate::window::ActivitySet;

/// Escalations per bucket, for one team or for an account's team-less events. Kept as
/// event ids so that a record delivered twice counts once.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct SupportAgg {
    pub(super) escalations: BTreeMap<u32, BTreeSet<String>>,
}

impl SupportAgg {
    pub(super) fn escalations_in(&self, lo: u32, hi: u32) -> u64 {
        if lo >= hi {
            return 0;
        }
        self.escalations.range(lo..hi).map(|(_, ids)| ids.len() as u64).sum()
    }

    pub(super) fn record_escalation(&mut self, bucket: u32, event_id: &str) {
        self.escalations.entry(bucket).or_default().insert(event_id.to_string());
    }

    pub(super) fn prune(&mut self, lo: u32) {
        self.escalations = self.escalations.split_off(&lo);
    }
}

/// One team's raw activity. In the changelog its activity sets are records of their own,
/// and the rest is one record (see `changelog.rs`).
#[derive(Debug)]
pub(super) struct TeamState {
    /// Earliest event naming the team.
    pub(super) first_seen: i64,
    /// user_id -> buckets with usage.
    pub(super) users: HashMap<String, ActivitySet>,
    /// key feature -> buckets with use.
    pub(super) features: HashMap<String, ActivitySet>,
    pub(super) support: SupportAgg,
    /// Current champions: user -> spell bookkeeping.
    pub(super) champions: BTreeMap<String, Champion>,
    /// NPS and CSAT answers naming the team.
    pub(super) feedback: Feedback,
}

/// A champion of a team: active on 10 or more distinct days in 28, until 30 days without
/// activity.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Champion {
    /// `champion_inactive` fired in the current inactive spell.
    pub(super) inactive_alerted: bool,
}

/// One survey answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Response {
    pub(super) at: i64,
    pub(super) event_id: String,
    /// `true` for NPS (0-10), `false` for CSAT (1-5).
    pub(super) nps: bool,
    pub(super) score: u8,
}

/// Survey answers in event-time order, deduplicated by event id.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Feedback {
    pub(super) responses: Vec<Response>,
}

impl Feedback {
    pub(super) fn record(&mut self, r: Response) {
        if self.responses.iter().any(|x| x.event_id == r.event_id && x.at == r.at) {
            return;
        }
        let pos = self.responses.partition_point(|x| (x.at, &x.event_id) <= (r.at, &r.event_id));
        self.responses.insert(pos, r);
    }

    /// Answers in `[lo, hi)`.
    pub(super) fn between(&self, lo: i64, hi: i64) -> impl Iterator<Item = &Response> {
        self.responses.iter().skip_while(move |r| r.at < lo).take_while(move |r| r.at < hi)
    }

    pub(super) fn prune_before(&mut self, lo: i64) {
        let i = self.responses.partition_point(|r| r.at < lo);
        self.responses.drain(..i);
    }
}

/// Health bookkeeping of one entity across ticks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct EntityHealth {
    /// The first tick it was evaluated at (warm-up runs from here).
    pub(super) first_tick: i64,
    /// Score and band at the previous tick.
    pub(super) previous: Option<(f64, Band)>,
    /// The last score record written.
    pub(super) written: Option<(f64, Band)>,
    /// `usage_drop` may fire (armed at first, disarmed after firing until it re-arms).
    pub(super) usage_drop_armed: bool,
    /// `magic_number_regressed` may fire (same arming rule).
    pub(super) magic_armed: bool,
}

impl EntityHealth {
    pub(super) fn new(first_tick: i64) -> Self {
        Self { first_tick, previous: None, written: None, usage_drop_armed: true, magic_armed: true }
    }
}

/// One account's state. In the changelog its teams, tickets, changes and entities are
/// records of their own, and the rest is one record (see `changelog.rs`).
#[derive(Debug)]
pub(super) struct AccountState {
    /// Earliest event naming the account.
    pub(super) first_seen: i64,
    pub(super) teams: HashMap<String, TeamState>,
    /// Support events without a team.
    pub(super) account_support: SupportAgg,
    pub(super) tickets: HashMap<String, Ticket>,
    pub(super) entities: HashMap<(Level, String), EntityHealth>,
    /// Survey answers without a team.
    pub(super) account_feedback: Feedback,
    /// Changes by change_id, while pairing and while in a time-to-production window.
    pub(super) changes: HashMap<String, Change>,
    /// Production deploy times per app_id, within the onboarding window.
    pub(super) apps: BTreeMap<String, BTreeSet<i64>>,
    /// Onboarding milestones already decided (bit 0: first app, bit 1: third app).
    pub(super) milestones_done: u8,
}

impl AccountState {
    pub(super) fn new(first_seen: i64) -> Self {
        Self {
            first_seen,
            teams: HashMap::default(),
            account_support: SupportAgg::default(),
            tickets: HashMap::default(),
            entities: HashMap::default(),
            account_feedback: Feedback::default(),
            changes: HashMap::default(),
            apps: BTreeMap::new(),
            milestones_done: 0,
        }
    }

    /// The team's state, created at `t` if new; `first_seen` lowered to `t`. The flag
    /// says whether the team's own record changed (created or `first_seen` lowered).
    pub(super) fn team_mut(&mut self, team_id: &str, t: i64) -> (&mut TeamState, bool) {
        let created = !self.teams.contains_key(team_id);
        let team = self.teams.entry(team_id.to_string()).or_insert_with(|| TeamState::new(t));
        let lowered = t < team.first_seen;
        team.first_seen = team.first_seen.min(t);
        (team, created || lowered)
    }
}

impl TeamState {
    pub(super) fn new(first_seen: i64) -> Self {
        Self {
            first_seen,
            users: HashMap::default(),
            features: HashMap::default(),
            support: SupportAgg::default(),
            champions: BTreeMap::new(),
            feedback: Feedback::default(),
        }
    }
}

/// Approximate heap bytes of state: capacities of strings, vectors and hash tables (one
/// control byte per slot), and B-tree entries at their size. Allocator overhead is left
/// out.
pub(super) mod heap {
    use std::collections::BTreeMap;
    use std::mem::size_of;

    use super::{AccountState, Feedback, SupportAgg, TeamState};
    use crate::engine::HashMap;

    fn string(s: &str) -> usize {
        s.len()
    }

    fn table<K, V>(m: &HashMap<K, V>) -> usize {
        m.capacity() * (size_of::<(K, V)>() + 1)
    }

    fn btree<K, V>(m: &BTreeMap<K, V>) -> usize {
        m.len() * size_of::<(K, V)>()
    }

    fn support(s: &SupportAgg) -> usize {
        btree(&s.escalations)
            + s.escalations
                .values()
                .map(|ids| ids.len() * size_of::<String>() + ids.iter().map(|i| i.len()).sum::<usize>())
                .sum::<usize>()
    }

    fn feedback(f: &Feedback) -> usize {
        f.responses.capacity() * size_of::<super::Response>()
            + f.responses.iter().map(|r| r.event_id.len()).sum::<usize>()
    }

    /// The team's own bytes and its users' activity bytes.
    pub(in crate::engine) fn team(t: &TeamState) -> (usize, usize) {
        let users = table(&t.users) + t.users.iter().map(|(u, s)| string(u) + s.heap_bytes()).sum::<usize>();
        let own = table(&t.features)
            + t.features.iter().map(|(f, s)| string(f) + s.heap_bytes()).sum::<usize>()
            + support(&t.support)
            + btree(&t.champions)
            + t.champions.keys().map(|u| u.len()).sum::<usize>()
            + feedback(&t.feedback);
        (own, users)
    }

    /// The account's bytes outside its teams.
    pub(in crate::engine) fn account(a: &AccountState) -> usize {
        size_of::<AccountState>()
            + table(&a.teams)
            + support(&a.account_support)
            + table(&a.tickets)
            + a.tickets.iter().map(|(k, t)| k.len() + t.heap_bytes()).sum::<usize>()
            + table(&a.entities)
            + a.entities.keys().map(|(_, id)| id.len()).sum::<usize>()
            + feedback(&a.account_feedback)
            + table(&a.changes)
            + a.changes.iter().map(|(k, c)| k.len() + c.created.as_ref().map_or(0, |(_, t)| t.len())).sum::<usize>()
            + btree(&a.apps)
            + a.apps.iter().map(|(k, v)| k.len() + v.len() * size_of::<i64>()).sum::<usize>()
    }
}
