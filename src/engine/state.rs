//! The state an engine holds per account and team.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::sync::Arc;

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

/// An id held in state (account, team, user): shared by the maps that index by it and the
/// changelog keys that name it, so that marking a piece changed copies no string.
pub(super) type Id = Arc<str>;

/// An account's user ids, each held once and referred to by a number, so that per-team
/// activity and roll-ups key on a `u32` instead of hashing and comparing strings. A
/// number is freed for reuse when no team of the account holds activity of its user.
#[derive(Debug, Default)]
pub(super) struct UserIds {
    /// Numbers, found by the hash of their name.
    index: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// By number; "" where freed.
    names: Vec<Id>,
    holders: Vec<u32>,
    free: Vec<u32>,
}

impl UserIds {
    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    /// The user's number, if held.
    pub(super) fn get(&self, name: &str) -> Option<u32> {
        self.index.find(self.hash(name), |&n| *self.names[n as usize] == *name).copied()
    }

    /// The user's id. `n` must be a number this table gave out and has not freed.
    pub(super) fn name(&self, n: u32) -> &Id {
        &self.names[n as usize]
    }

    /// The user's number; numbered if new, with no holder yet: [`TeamState::user_mut`]
    /// adds one for each team that holds activity of the user.
    fn number(&mut self, name: &str) -> u32 {
        let hash = self.hash(name);
        let Self { index, hasher, names, holders, free } = self;
        if let Some(&n) = index.find(hash, |&n| *names[n as usize] == *name) {
            return n;
        }
        let id: Id = Arc::from(name);
        let n = match free.pop() {
            Some(n) => {
                names[n as usize] = id;
                n
            }
            None => {
                names.push(id);
                holders.push(0);
                (names.len() - 1) as u32
            }
        };
        index.insert_unique(hash, n, |&m| hasher.hash_one(&*names[m as usize]));
        n
    }

    /// One holder fewer; the number is freed with the last.
    pub(super) fn release(&mut self, n: u32) {
        let holders = &mut self.holders[n as usize];
        *holders = holders.saturating_sub(1);
        if *holders == 0 {
            let hash = self.hash(&self.names[n as usize]);
            if let Ok(entry) = self.index.find_entry(hash, |&m| m == n) {
                entry.remove();
            }
            self.names[n as usize] = Arc::from("");
            self.free.push(n);
        }
    }

    /// Numbers held.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    fn heap_bytes(&self) -> usize {
        // a slot of the index is a u32 and a control byte; an Arc<str> is two counts and
        // the text
        self.index.capacity() * 5
            + self.names.iter().map(|k| k.len() + 16).sum::<usize>()
            + self.names.capacity() * std::mem::size_of::<Id>()
            + (self.holders.capacity() + self.free.capacity()) * std::mem::size_of::<u32>()
    }
}

/// One team's raw activity. In the changelog its activity sets are records of their own,
/// and the rest is one record (see `changelog.rs`).
#[derive(Debug)]
pub(super) struct TeamState {
    pub(super) id: Id,
    /// Earliest event naming the team.
    pub(super) first_seen: i64,
    /// user number (see [`UserIds`]) -> buckets with usage.
    pub(super) users: HashMap<u32, ActivitySet>,
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

/// One survey answer, as ingested and as kept in the changelog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Response {
    pub(super) at: i64,
    pub(super) event_id: String,
    /// `true` for NPS (0-10), `false` for CSAT (1-5).
    pub(super) nps: bool,
    pub(super) score: u8,
}

/// What an answer says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Answer {
    /// `true` for NPS (0-10), `false` for CSAT (1-5).
    pub(super) nps: bool,
    pub(super) score: u8,
}

/// Survey answers by event time, deduplicated by (time, event id): a B-tree, so that
/// taking in n answers costs O(n log n) in any arrival order. In the changelog, a list of
/// [`Response`]s.
#[derive(Debug, Default)]
pub(super) struct Feedback {
    responses: BTreeMap<(i64, String), Answer>,
}

impl Serialize for Feedback {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Ref<'a> {
            at: i64,
            event_id: &'a str,
            nps: bool,
            score: u8,
        }
        s.collect_seq(self.responses.iter().map(|((at, id), a)| Ref {
            at: *at,
            event_id: id,
            nps: a.nps,
            score: a.score,
        }))
    }
}

impl<'de> Deserialize<'de> for Feedback {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<Response>::deserialize(d)?;
        let mut f = Feedback::default();
        for r in list {
            f.record(r);
        }
        Ok(f)
    }
}

impl Feedback {
    pub(super) fn record(&mut self, r: Response) {
        self.responses.entry((r.at, r.event_id)).or_insert(Answer { nps: r.nps, score: r.score });
    }

    /// Answers in `[lo, hi)`.
    pub(super) fn between(&self, lo: i64, hi: i64) -> impl Iterator<Item = &Answer> {
        let range =
            if lo < hi { (lo, String::new())..(hi, String::new()) } else { (lo, String::new())..(lo, String::new()) };
        self.responses.range(range).map(|(_, a)| a)
    }

    pub(super) fn prune_before(&mut self, lo: i64) {
        if self.responses.first_key_value().is_some_and(|((at, _), _)| *at < lo) {
            self.responses = self.responses.split_off(&(lo, String::new()));
        }
    }

    /// Heap bytes: B-tree entries and event ids.
    pub(super) fn heap_bytes(&self) -> usize {
        self.responses.len() * std::mem::size_of::<((i64, String), Answer)>()
            + self.responses.keys().map(|(_, id)| id.len()).sum::<usize>()
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
    /// Daily closes: a changelog record of its own (`h`), not part of this one.
    #[serde(skip)]
    pub(super) history: super::daily::ScoreHistory,
}

/// [`EntityHealth`] without its history: what its changelog record holds.
pub(super) type Bookkeeping = (i64, Option<(f64, Band)>, Option<(f64, Band)>, bool, bool);

impl EntityHealth {
    pub(super) fn new(first_tick: i64) -> Self {
        Self {
            first_tick,
            previous: None,
            written: None,
            usage_drop_armed: true,
            magic_armed: true,
            history: Default::default(),
        }
    }

    /// Everything but the history, to tell whether its changelog record changed.
    pub(super) fn bookkeeping(&self) -> Bookkeeping {
        (self.first_tick, self.previous, self.written, self.usage_drop_armed, self.magic_armed)
    }
}

/// Health bookkeeping of an account's entities, by level (in [`Level::ALL`] order) and id.
#[derive(Debug, Default)]
pub(super) struct Entities([HashMap<String, EntityHealth>; 5]);

impl Entities {
    fn level(level: Level) -> usize {
        Level::ALL.iter().position(|l| *l == level).unwrap_or(0)
    }

    pub(super) fn get(&self, level: Level, id: &str) -> Option<&EntityHealth> {
        self.0[Self::level(level)].get(id)
    }

    /// The entity's bookkeeping, created by `new` if absent; the flag says whether it was.
    pub(super) fn get_or_insert(
        &mut self,
        level: Level,
        id: &str,
        new: impl FnOnce() -> EntityHealth,
    ) -> (&mut EntityHealth, bool) {
        let map = &mut self.0[Self::level(level)];
        let created = !map.contains_key(id);
        (map.entry_ref(id).or_insert_with(new), created)
    }

    pub(super) fn get_mut(&mut self, level: Level, id: &str) -> Option<&mut EntityHealth> {
        self.0[Self::level(level)].get_mut(id)
    }

    /// Keeps only the entities for which `keep` holds.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&EntityHealth) -> bool) {
        self.0.iter_mut().for_each(|m| m.retain(|_, h| keep(h)));
    }

    pub(super) fn insert(&mut self, level: Level, id: String, h: EntityHealth) {
        self.0[Self::level(level)].insert(id, h);
    }

    pub(super) fn remove(&mut self, level: Level, id: &str) {
        self.0[Self::level(level)].remove(id);
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (Level, &String, &EntityHealth)> {
        Level::ALL.iter().zip(&self.0).flat_map(|(level, m)| m.iter().map(move |(id, h)| (*level, id, h)))
    }

    fn heap_bytes(&self) -> usize {
        self.0.iter().map(|m| heap::table(m) + m.keys().map(String::len).sum::<usize>()).sum()
    }
}

/// One account's state. In the changelog its teams, tickets, changes and entities are
/// records of their own, and the rest is one record (see `changelog.rs`).
#[derive(Debug)]
pub(super) struct AccountState {
    pub(super) id: Id,
    /// Earliest event naming the account.
    pub(super) first_seen: i64,
    pub(super) teams: HashMap<Id, TeamState>,
    /// The numbers the teams' user activity is keyed by.
    pub(super) user_ids: UserIds,
    /// Support events without a team.
    pub(super) account_support: SupportAgg,
    pub(super) tickets: HashMap<String, Ticket>,
    pub(super) entities: Entities,
    /// Survey answers without a team.
    pub(super) account_feedback: Feedback,
    /// Changes by change_id, while pairing and while in a time-to-production window.
    pub(super) changes: HashMap<String, Change>,
    /// Production deploy times per app_id, within the onboarding window.
    pub(super) apps: BTreeMap<String, BTreeSet<i64>>,
    /// Onboarding milestones already decided (bit 0: first app, bit 1: third app).
    pub(super) milestones_done: u8,
    /// What the focused alert policy remembers of the account.
    pub(super) focus: super::focus::FocusMemory,
    /// The latest alerts about it, as the JSON of the alert topic, oldest first (at most
    /// [`super::view::RECENT_ALERTS`]).
    pub(super) recent_alerts: std::collections::VecDeque<Arc<str>>,
    /// Its view as of its last evaluation, when the engine makes views.
    pub(super) view: Option<Arc<super::view::AccountView>>,
    /// Set by an evaluation that changed and produced nothing while the account held no
    /// data any later window reads (see [`holds_nothing_after`]): until the tick held
    /// here (its next onboarding deadline, or `i64::MAX`), each evaluation would do the
    /// same, so ticks before it may be skipped. Cleared by any event taken into the
    /// account; not kept in the changelog (a restored account is evaluated afresh).
    pub(super) quiet: Option<i64>,
}

/// When nothing the account holds can change an evaluation after `tick` before some later
/// tick: that tick, the first to see the earliest data held at or after `tick` (`i64::MAX`
/// when there is none). `None` when something can: activity, escalations or answers that
/// a window after `tick` still reads, a champion, or a change that is not wholly ahead.
/// Tickets and app deploys before `tick` fold the same way at every later tick.
pub(super) fn quiet_until(a: &AccountState, tick: i64, cfg: &super::EngineConfig) -> Option<i64> {
    use crate::time::DAY_MS;
    let now = cfg.bucket(tick);
    let g = cfg.granularity_ms;
    let mut first = i64::MAX;
    let mut note = |t: i64| first = first.min(t);
    let escalations = |s: &SupportAgg, note: &mut dyn FnMut(i64)| -> Option<()> {
        if s.escalations.range(cfg.bucket(tick - 8 * DAY_MS)..now).next().is_some() {
            return None;
        }
        if let Some((b, _)) = s.escalations.range(now..).next() {
            note(i64::from(*b) * g);
        }
        Some(())
    };
    let answers = |f: &Feedback, note: &mut dyn FnMut(i64)| -> Option<()> {
        if f.responses.range((tick - 91 * DAY_MS, String::new())..(tick, String::new())).next().is_some() {
            return None;
        }
        if let Some(((at, _), _)) = f.responses.range((tick, String::new())..).next() {
            note(*at);
        }
        Some(())
    };
    let recent = cfg.bucket(tick - 31 * DAY_MS);
    for t in a.teams.values() {
        if !t.champions.is_empty() {
            return None;
        }
        if t.first_seen >= tick {
            note(t.first_seen);
        }
        for set in t.users.values().chain(t.features.values()) {
            if set.any_in(recent, now) {
                return None;
            }
            if let Some(b) = set.iter_in(now, u32::MAX).next() {
                note(i64::from(b) * g);
            }
        }
        escalations(&t.support, &mut note)?;
        answers(&t.feedback, &mut note)?;
    }
    escalations(&a.account_support, &mut note)?;
    answers(&a.account_feedback, &mut note)?;
    // A change counts in windows by its production deploy (56 days back); a lone half
    // before the tick counts nowhere, and a partner still to come wakes the account.
    for c in a.changes.values() {
        let times = c.created.as_ref().map(|(t, _)| *t).into_iter().chain(c.deployed);
        for t in times.filter(|&t| t >= tick) {
            note(t);
        }
        if c.deployed.is_some_and(|d| d < tick && d >= tick - 57 * DAY_MS) {
            return None;
        }
    }
    for t in a.tickets.values() {
        if let Some(at) = t.first_at_or_after(tick) {
            note(at);
        }
    }
    for times in a.apps.values() {
        if let Some(at) = times.range(tick..).next() {
            note(*at);
        }
    }
    Some(if first == i64::MAX { i64::MAX } else { cfg.tick_of(first) })
}

impl AccountState {
    pub(super) fn new(id: Id, first_seen: i64) -> Self {
        Self {
            id,
            first_seen,
            teams: HashMap::default(),
            user_ids: UserIds::default(),
            account_support: SupportAgg::default(),
            tickets: HashMap::default(),
            entities: Entities::default(),
            account_feedback: Feedback::default(),
            changes: HashMap::default(),
            apps: BTreeMap::new(),
            milestones_done: 0,
            focus: Default::default(),
            recent_alerts: Default::default(),
            view: None,
            quiet: None,
        }
    }
}

/// The value under `key`, inserted with `new` if absent (the flag says so). The key is
/// copied only then; otherwise the map's own key is shared.
pub(super) fn entry<'m, V>(map: &'m mut HashMap<Id, V>, key: &str, new: impl FnOnce(Id) -> V) -> (&'m mut V, bool) {
    let (id, created) = match map.get_key_value(key) {
        Some((id, _)) => (Arc::clone(id), false),
        None => (Id::from(key), true),
    };
    (map.entry(Arc::clone(&id)).or_insert_with(|| new(id)), created)
}

/// The team's state, created at `t` if new; `first_seen` lowered to `t`. The flag says
/// whether the team's own record changed (created or `first_seen` lowered). A function
/// of the teams alone, so that callers may hold the account's other fields meanwhile.
pub(super) fn team_mut<'a>(teams: &'a mut HashMap<Id, TeamState>, team_id: &str, t: i64) -> (&'a mut TeamState, bool) {
    let (team, created) = entry(teams, team_id, |id| TeamState::new(id, t));
    let lowered = t < team.first_seen;
    team.first_seen = team.first_seen.min(t);
    (team, created || lowered)
}

impl TeamState {
    /// The user's number and activity in this team, created empty (one more holder of
    /// the number) if the team holds none yet.
    pub(super) fn user_mut(&mut self, ids: &mut UserIds, name: &str) -> (u32, &mut ActivitySet) {
        let n = ids.number(name);
        let set = self.users.entry(n).or_insert_with(|| {
            ids.holders[n as usize] += 1;
            ActivitySet::default()
        });
        (n, set)
    }

    pub(super) fn new(id: Id, first_seen: i64) -> Self {
        Self {
            id,
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
    use crate::window::ActivitySet;

    fn string(s: &str) -> usize {
        s.len()
    }

    pub(super) fn table<K, V>(m: &HashMap<K, V>) -> usize {
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
        f.heap_bytes()
    }

    /// The account's user ids (shared by its teams).
    pub(in crate::engine) fn user_ids(a: &AccountState) -> usize {
        a.user_ids.heap_bytes()
    }

    /// The team's own bytes and its users' activity bytes.
    pub(in crate::engine) fn team(t: &TeamState) -> (usize, usize) {
        let users = table(&t.users) + t.users.values().map(ActivitySet::heap_bytes).sum::<usize>();
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
            + a.entities.heap_bytes()
            + feedback(&a.account_feedback)
            + table(&a.changes)
            + a.changes.iter().map(|(k, c)| k.len() + c.created.as_ref().map_or(0, |(_, t)| t.len())).sum::<usize>()
            + btree(&a.apps)
            + a.apps.iter().map(|(k, v)| k.len() + v.len() * size_of::<i64>()).sum::<usize>()
            + a.recent_alerts.capacity() * size_of::<std::sync::Arc<str>>()
            + a.recent_alerts.iter().map(|j| j.len() + 16).sum::<usize>()
    }

    /// The daily score histories of the account's entities.
    pub(in crate::engine) fn histories(a: &AccountState) -> usize {
        a.entities.iter().map(|(_, _, h)| h.history.heap_bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::{TeamState, UserIds};

    #[test]
    fn user_numbers_are_freed_with_their_last_holder_and_reused() {
        let mut ids = UserIds::default();
        let mut t1 = TeamState::new("t1".into(), 0);
        let mut t2 = TeamState::new("t2".into(), 0);
        let a = t1.user_mut(&mut ids, "ada").0;
        assert_eq!(t1.user_mut(&mut ids, "ada").0, a, "the same team holds a user once");
        assert_eq!(t2.user_mut(&mut ids, "ada").0, a, "one number per user");
        let b = t1.user_mut(&mut ids, "bob").0;
        assert_ne!(a, b);
        assert_eq!((ids.get("ada"), ids.len()), (Some(a), 2));
        ids.release(a);
        assert_eq!(ids.get("ada"), Some(a), "a holder is left");
        ids.release(a);
        assert_eq!((ids.get("ada"), ids.len()), (None, 1));
        let c = t2.user_mut(&mut ids, "cy").0;
        assert_eq!(c, a, "a freed number is given out again");
        assert_eq!(&**ids.name(c), "cy");
        assert_eq!(&**ids.name(b), "bob");
    }
}
