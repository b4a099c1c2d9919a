//! The engine: per-partition state, event-time ticks, evaluation, scoring and alert rules.
//!
//! Pure and synchronous. The caller passes in every time: the event times in the events,
//! the pipeline watermark to [`Engine::advance`], and the wall clock for `emitted_at`.
//! `replay`, `demo` and `run` drive it alike; only sources and sinks differ.
//!
//! State machine of an entity (team, group, business unit, division, account):
//! it is created by the first usage or support event that names it, evaluated at every
//! tick `T` after that event (`occurred_at < T`), and its band moves only through
//! [`crate::health::band_for`]. Everything evaluated at `T` reads only events with
//! `occurred_at < T`, even when later events have already arrived.

mod aggregate;
mod changelog;
mod rules;
mod state;
mod tickets;

use std::collections::BTreeMap;

/// Hash maps of the engine's state and evaluation: foldhash, several times faster than
/// SipHash on short ids, which the profile showed on every event and entity. (cs-pulse
/// hashes only its own state's keys; iteration order never reaches an output.) hashbrown's
/// own map, for `entry_ref`: an id is copied into the state only when it is new.
pub type HashMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;
/// See [`HashMap`].
pub type HashSet<K> = hashbrown::HashSet<K, foldhash::fast::RandomState>;
use std::sync::Arc;

use serde_json::json;

use crate::alert::{self, AlertBody, AlertContext};
use crate::config::{Config, HealthConfig};
use crate::dims::Dimensions;
use crate::health;
use crate::model::{
    Alert, AlertKind, Band, EntityRef, Event, HealthInfo, Level, ScoreRecord, Severity, SupportKind, UsageKind,
};
use crate::time::DAY_MS;

use aggregate::{aggregate, Windows};
use changelog::{Dirty, StateKey};
use state::{AccountState, EntityHealth, Id, Response};

/// How long per-user activity is kept behind the current tick: the longest window read.
const RETAIN_MS: i64 = 30 * DAY_MS;

/// The engine's view of the configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Tick interval, ms.
    pub interval_ms: i64,
    /// Bucket size of activity sets: the gcd of the interval and a day, so that every
    /// window boundary falls on a bucket boundary.
    pub granularity_ms: i64,
    /// Key features, in configured order.
    pub key_features: Vec<String>,
    /// The health model.
    pub health: HealthConfig,
    /// Warm-up, ms.
    pub warmup_ms: i64,
    /// How far apart the halves of a change may be and still pair, ms.
    pub pending_ttl_ms: i64,
    /// How far ahead of the wall clock an event may be, ms (see [`Engine::ingest_at`]).
    pub max_future_ms: i64,
    /// Caps on the state one partition holds.
    pub limits: Limits,
    /// Whether ticks at which no account can change or fire anything are skipped
    /// (default). `false` evaluates every one: the outputs must be the same, which tests
    /// check.
    pub skip_quiet: bool,
}

/// Caps on the state of one partition (see [`crate::config::LimitsConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Accounts in the partition.
    pub accounts: usize,
    /// Teams of one account.
    pub teams: usize,
    /// Teams of all accounts of the partition.
    pub partition_teams: usize,
    /// Users of one account with activity held.
    pub users: usize,
    /// Users with activity held, over all accounts of the partition.
    pub partition_users: usize,
    /// Tickets of one account.
    pub tickets: usize,
    /// Tickets of all accounts of the partition.
    pub partition_tickets: usize,
    /// Changes (and apps in the onboarding window) of one account.
    pub changes: usize,
    /// Changes of all accounts of the partition.
    pub partition_changes: usize,
}

impl Limits {
    fn from_config(l: &crate::config::LimitsConfig) -> Self {
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Self {
            accounts: n(l.max_accounts_per_partition),
            teams: n(l.max_teams_per_account),
            partition_teams: n(l.max_teams_per_partition),
            users: n(l.max_users_per_account),
            partition_users: n(l.max_users_per_partition),
            tickets: n(l.max_tickets_per_account),
            partition_tickets: n(l.max_tickets_per_partition),
            changes: n(l.max_changes_per_account),
            partition_changes: n(l.max_changes_per_partition),
        }
    }
}

/// Which cap an event would have broken: the `level` label of
/// `cs_pulse_limited_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitLevel {
    /// A new account beyond `limits.max_accounts_per_partition`.
    Account,
    /// A new team beyond `limits.max_teams_per_account`.
    Team,
    /// A new user beyond `limits.max_users_per_account`.
    User,
    /// A new ticket beyond `limits.max_tickets_per_account`.
    Ticket,
    /// A new change or app beyond `limits.max_changes_per_account`.
    Change,
}

impl LimitLevel {
    /// Every level, for metric pre-registration.
    pub const ALL: [LimitLevel; 5] =
        [LimitLevel::Account, LimitLevel::Team, LimitLevel::User, LimitLevel::Ticket, LimitLevel::Change];

    /// The stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitLevel::Account => "account",
            LimitLevel::Team => "team",
            LimitLevel::User => "user",
            LimitLevel::Ticket => "ticket",
            LimitLevel::Change => "change",
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl EngineConfig {
    /// Derives the engine's settings from the configuration.
    pub fn from_config(c: &Config) -> Self {
        let interval_ms = c.time.evaluation_interval_secs as i64 * 1000;
        Self {
            interval_ms,
            granularity_ms: gcd(interval_ms, DAY_MS),
            key_features: c.adoption.key_features.clone(),
            health: c.health.clone(),
            warmup_ms: c.health.warmup_secs as i64 * 1000,
            pending_ttl_ms: c.magic_number.pending_ttl_secs as i64 * 1000,
            max_future_ms: c.time.max_future_secs as i64 * 1000,
            limits: Limits::from_config(&c.limits),
            skip_quiet: true,
        }
    }

    /// The tick that closes the interval holding `t`.
    pub fn tick_of(&self, t: i64) -> i64 {
        t.div_euclid(self.interval_ms) * self.interval_ms + self.interval_ms
    }

    fn bucket(&self, t: i64) -> u32 {
        (t.max(0) / self.granularity_ms).min(i64::from(u32::MAX)) as u32
    }
}

/// What became of an ingested event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Taken into state.
    Accepted,
    /// Its tick was evaluated already: it must be dead-lettered and counted.
    Late {
        /// The event's own tick.
        tick: i64,
    },
    /// Further ahead of the wall clock than `time.max_future_secs`: dead-lettered with
    /// reason `future`; nothing changed, not the state and not the watermark.
    Future {
        /// The latest event time accepted: the wall clock plus `time.max_future_secs`
        /// (or the end of year 9999), epoch ms.
        latest: i64,
    },
    /// It would have created an entity beyond a cap of `[limits]`: dead-lettered with
    /// reason `limit`; nothing changed.
    Limit {
        /// The capped level.
        level: LimitLevel,
        /// The cap's configuration key.
        key: &'static str,
        /// Its value.
        cap: usize,
    },
}

impl Ingested {
    /// Whether the event was taken into state (and may move the watermark).
    pub fn is_accepted(&self) -> bool {
        matches!(self, Ingested::Accepted)
    }

    /// Why the event must be dead-lettered, with its detail; `None` when it was accepted.
    /// One wording for `run`, `demo` and `replay`.
    pub fn rejection(&self, occurred_at: i64) -> Option<crate::decode::DecodeError> {
        use crate::decode::{DecodeError, Reason};
        use crate::time::format_rfc3339;
        let (reason, detail) = match *self {
            Ingested::Accepted => return None,
            Ingested::Late { tick } => (
                Reason::Late,
                format!(
                    "occurred_at {} belongs to tick {} which was already evaluated",
                    format_rfc3339(occurred_at),
                    format_rfc3339(tick)
                ),
            ),
            Ingested::Future { latest } => (
                Reason::Future,
                format!(
                    "occurred_at {occurred_at} ({}) is after the latest time accepted now, {} (the wall clock plus time.max_future_secs); epoch milliseconds are expected, not microseconds",
                    format_rfc3339(occurred_at),
                    format_rfc3339(latest)
                ),
            ),
            Ingested::Limit { level, key, cap } => {
                (Reason::Limit, format!("it would create a new {} beyond {key} = {cap}", level.as_str()))
            }
        };
        Some(DecodeError { reason, detail })
    }
}

/// What the engine produced.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// Alerts, in the order they fired.
    pub alerts: Vec<Alert>,
    /// Score records that changed.
    pub scores: Vec<ScoreRecord>,
    /// Ticks evaluated.
    pub ticks: u64,
    /// Account evaluations done (an account at a tick): the engine's work, which stays
    /// bounded per event whatever the event times (ticks where nothing can change are
    /// skipped).
    pub evaluations: u64,
    /// Times to production of changes that paired, ms (for the histogram).
    pub paired_ttp_ms: Vec<i64>,
    /// Halves of changes that expired without a partner.
    pub expired_changes: u64,
}

impl Outputs {
    /// Whether nothing was produced.
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty() && self.scores.is_empty()
    }
}

/// Size of the engine's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSize {
    /// Accounts held.
    pub accounts: u64,
    /// Teams held.
    pub teams: u64,
    /// (team, user) activity sets held.
    pub user_activity: u64,
    /// Tickets held.
    pub tickets: u64,
}

/// Approximate heap bytes of an engine's state, by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateBytes {
    /// Accounts outside their teams: tickets, changes, entity health, answers.
    pub accounts: usize,
    /// Teams outside their users: features, escalations, champions, answers.
    pub teams: usize,
    /// Per-user activity sets, with their keys and hash table slots.
    pub user_activity: usize,
}

/// The state of one input partition (a co-partitioned usage/support pair) and the rules
/// that run over it.
#[derive(Debug)]
pub struct Engine {
    cfg: Arc<EngineConfig>,
    /// By account id; evaluated in id order, so that outputs are in a stable order.
    accounts: HashMap<Id, AccountState>,
    next_tick: Option<i64>,
    last_evaluated: Option<i64>,
    /// Pieces of state changed since the last [`Engine::take_changes`].
    dirty: Dirty,
    /// The last tick that pruned state.
    last_pruned: Option<i64>,
    /// The highest event time read from each input of this partition (usage, support):
    /// the partition's watermark survives a restart with its state.
    input_max: [Option<i64>; 2],
    meta_dirty: bool,
    /// The version of the dimension tables at the last evaluation: the accounts' quiet
    /// marks (see `AccountState::quiet`) hold only while the tables are unchanged.
    quiet_dims: Option<u64>,
    /// Teams held over all accounts, for `limits.max_teams_per_partition`.
    teams_total: usize,
    /// Users held over all accounts, for `limits.max_users_per_partition`.
    users_total: usize,
    /// Tickets held over all accounts, for `limits.max_tickets_per_partition`.
    tickets_total: usize,
    /// Changes held over all accounts, for `limits.max_changes_per_partition`.
    changes_total: usize,
}

/// The engine's own bookkeeping, written beside the accounts in the changelog.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
struct EngineMeta {
    next_tick: Option<i64>,
    last_evaluated: Option<i64>,
    #[serde(default)]
    input_max: [Option<i64>; 2],
}

/// Changelog key of the engine's bookkeeping.
pub const META_KEY: &[u8] = b"\0meta";

/// A state record that could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("state record {key}: {reason}")]
pub struct RestoreError {
    /// The record's key.
    pub key: String,
    /// What was wrong.
    pub reason: String,
}

impl Engine {
    /// An empty engine that keeps its changelog (see [`Engine::take_changes`]).
    pub fn new(cfg: Arc<EngineConfig>) -> Self {
        Self {
            cfg,
            accounts: HashMap::default(),
            next_tick: None,
            last_evaluated: None,
            dirty: Dirty { on: true, keys: HashSet::default() },
            last_pruned: None,
            input_max: [None, None],
            meta_dirty: false,
            quiet_dims: None,
            teams_total: 0,
            users_total: 0,
            tickets_total: 0,
            changes_total: 0,
        }
    }

    /// The engine without its changelog, for a caller that never reads it (`replay`):
    /// changed pieces are not remembered.
    pub fn without_changelog(mut self) -> Self {
        self.dirty = Dirty { on: false, keys: HashSet::default() };
        self
    }

    /// Records the event time of a record read from input `input` (0 usage, 1 support).
    pub fn note_input(&mut self, input: usize, event_time: i64) {
        if let Some(slot) = self.input_max.get_mut(input) {
            if slot.is_none_or(|m| event_time > m) {
                *slot = Some(event_time);
                self.meta_dirty = true;
            }
        }
    }

    /// The highest event time read from each input, as restored or noted.
    pub fn input_max(&self) -> [Option<i64>; 2] {
        self.input_max
    }

    /// The last tick evaluated.
    pub fn last_evaluated(&self) -> Option<i64> {
        self.last_evaluated
    }

    /// What the drivers (`run`, `demo`, `replay`) call: [`Engine::ingest`] after the
    /// event-time sanity rule. An event further than `time.max_future_secs` ahead of
    /// `now`, the process's wall clock, is refused as [`Ingested::Future`] and changes
    /// nothing. `now` is also the `emitted_at` of the alerts it fires.
    pub fn ingest_at(&mut self, ev: &Event, dims: &Dimensions, now: i64, out: &mut Outputs) -> Ingested {
        let latest = now.saturating_add(self.cfg.max_future_ms);
        if ev.occurred_at() > latest {
            return Ingested::Future { latest };
        }
        self.ingest(ev, dims, now, out)
    }

    /// The cap of `[limits]` the event would break by creating an entity, if any.
    fn over_limit(&self, ev: &Event, dims: &Dimensions) -> Option<Ingested> {
        use LimitLevel::{Account, Change, Team, Ticket, User};
        let l = &self.cfg.limits;
        let refuse = |level, key, cap| Some(Ingested::Limit { level, key, cap });
        let Some(acct) = self.accounts.get(ev.account_id()) else {
            if self.accounts.len() >= l.accounts {
                return refuse(Account, "limits.max_accounts_per_partition", l.accounts);
            }
            // A new account's first team and user fit every per-account cap >= 1.
            if self.teams_total >= l.partition_teams {
                return refuse(Team, "limits.max_teams_per_partition", l.partition_teams);
            }
            let user = matches!(ev, Event::Usage(u) if u.user_id.is_some());
            if user && self.users_total >= l.partition_users {
                return refuse(User, "limits.max_users_per_partition", l.partition_users);
            }
            let ticket = matches!(ev, Event::Support(s) if s.ticket_id.is_some() && s.kind.is_ticket());
            if ticket && self.tickets_total >= l.partition_tickets {
                return refuse(Ticket, "limits.max_tickets_per_partition", l.partition_tickets);
            }
            let change = matches!(ev, Event::Usage(u) if u.change_id.is_some()
                && (u.kind == UsageKind::ChangeCreated
                    || (u.kind == UsageKind::ChangeDeployed && u.environment.as_deref() == Some("production"))));
            if change && self.changes_total >= l.partition_changes {
                return refuse(Change, "limits.max_changes_per_partition", l.partition_changes);
            }
            return None;
        };
        let new_team = |team_id: &str| -> Option<Ingested> {
            if acct.teams.contains_key(team_id) {
                None
            } else if acct.teams.len() >= l.teams {
                refuse(Team, "limits.max_teams_per_account", l.teams)
            } else if self.teams_total >= l.partition_teams {
                refuse(Team, "limits.max_teams_per_partition", l.partition_teams)
            } else {
                None
            }
        };
        match ev {
            Event::Usage(u) => {
                if let Some(r) = new_team(&u.team_id) {
                    return Some(r);
                }
                if let Some(user) = &u.user_id {
                    if acct.user_ids.get(user).is_none() {
                        if acct.user_ids.len() >= l.users {
                            return refuse(User, "limits.max_users_per_account", l.users);
                        }
                        if self.users_total >= l.partition_users {
                            return refuse(User, "limits.max_users_per_partition", l.partition_users);
                        }
                    }
                }
                let production = u.environment.as_deref() == Some("production");
                if let Some(change) = &u.change_id {
                    let pairs =
                        u.kind == UsageKind::ChangeCreated || (u.kind == UsageKind::ChangeDeployed && production);
                    if pairs && !acct.changes.contains_key(change.as_str()) {
                        if acct.changes.len() >= l.changes {
                            return refuse(Change, "limits.max_changes_per_account", l.changes);
                        }
                        if self.changes_total >= l.partition_changes {
                            return refuse(Change, "limits.max_changes_per_partition", l.partition_changes);
                        }
                    }
                    if let (UsageKind::ChangeDeployed, true, Some(app)) = (&u.kind, production, &u.app_id) {
                        let cs = dims.account(&u.account_id).and_then(|a| a.contract_start);
                        let in_window = cs.is_none_or(|cs| u.occurred_at < cs.saturating_add(90 * DAY_MS));
                        if in_window && !acct.apps.contains_key(app) && acct.apps.len() >= l.changes {
                            return refuse(Change, "limits.max_changes_per_account", l.changes);
                        }
                    }
                }
                None
            }
            Event::Support(s) => {
                if let Some(r) = s.team_id.as_deref().and_then(new_team) {
                    return Some(r);
                }
                if let (Some(ticket), true) = (&s.ticket_id, s.kind.is_ticket()) {
                    if !acct.tickets.contains_key(ticket.as_str()) {
                        if acct.tickets.len() >= l.tickets {
                            return refuse(Ticket, "limits.max_tickets_per_account", l.tickets);
                        }
                        if self.tickets_total >= l.partition_tickets {
                            return refuse(Ticket, "limits.max_tickets_per_partition", l.partition_tickets);
                        }
                    }
                }
                None
            }
        }
    }

    /// Recounts the partition's teams and users, for the per-partition caps.
    fn count_entities(&mut self) {
        self.teams_total = self.accounts.values().map(|a| a.teams.len()).sum();
        self.users_total = self.accounts.values().map(|a| a.user_ids.len()).sum();
        self.tickets_total = self.accounts.values().map(|a| a.tickets.len()).sum();
        self.changes_total = self.accounts.values().map(|a| a.changes.len()).sum();
    }

    /// Takes an event into state. Fires `support_escalation` at once. Returns
    /// [`Ingested::Late`] (state untouched) when the event's tick has been evaluated, and
    /// [`Ingested::Limit`] (state untouched) when it would create an entity beyond a cap.
    pub fn ingest(&mut self, ev: &Event, dims: &Dimensions, emitted_at: i64, out: &mut Outputs) -> Ingested {
        let t = ev.occurred_at();
        if !(0..=crate::time::MAX_TIME_MS).contains(&t) {
            // The decoders refuse times before 1970; drivers refuse future ones first.
            return Ingested::Future { latest: crate::time::MAX_TIME_MS };
        }
        let own_tick = self.cfg.tick_of(t);
        if self.last_evaluated.is_some_and(|last| own_tick <= last) {
            return Ingested::Late { tick: own_tick };
        }
        if let Some(refused) = self.over_limit(ev, dims) {
            return refused;
        }
        if self.last_evaluated.is_none() {
            let first = Some(self.next_tick.map_or(own_tick, |n| n.min(own_tick)));
            // The first tick moved: the changelog's bookkeeping record says so.
            self.meta_dirty |= first != self.next_tick;
            self.next_tick = first;
        }
        let cfg = Arc::clone(&self.cfg);
        let bucket = cfg.bucket(t);
        let account_id = ev.account_id();
        let dirty = &mut self.dirty;
        let users_total = &mut self.users_total;
        let (acct, mut account_changed) = state::entry(&mut self.accounts, account_id, |id| AccountState::new(id, t));
        acct.quiet = None;
        let (teams_at_start, tickets_at_start, changes_at_start) =
            (acct.teams.len(), acct.tickets.len(), acct.changes.len());
        account_changed |= t < acct.first_seen;
        acct.first_seen = acct.first_seen.min(t);
        let aid = &acct.id;
        let team_key = |team: &state::TeamState| StateKey::Team(Arc::clone(aid), Arc::clone(&team.id));
        match ev {
            Event::Usage(u) => {
                let (team, team_changed) = state::team_mut(&mut acct.teams, &u.team_id, t);
                if team_changed {
                    dirty.mark(|| team_key(team));
                }
                if let Some(user) = &u.user_id {
                    let users_before = acct.user_ids.len();
                    let (n, set) = team.user_mut(&mut acct.user_ids, user);
                    *users_total += acct.user_ids.len() - users_before;
                    if set.insert(bucket) {
                        let user = acct.user_ids.name(n);
                        dirty.mark(|| StateKey::User(Arc::clone(aid), Arc::clone(&team.id), Arc::clone(user)));
                    }
                }
                if let Some(f) = u.feature.as_ref().filter(|f| cfg.key_features.contains(f)) {
                    if team.features.entry_ref(f.as_str()).or_default().insert(bucket) {
                        dirty.mark(|| StateKey::Feature(Arc::clone(aid), Arc::clone(&team.id), f.clone()));
                    }
                }
                let ttl = cfg.pending_ttl_ms;
                match (&u.kind, &u.change_id) {
                    (UsageKind::ChangeCreated, Some(change)) => {
                        let c = acct.changes.entry_ref(change.as_str()).or_default();
                        out.paired_ttp_ms.extend(c.record_created(t, &u.team_id, ttl));
                        dirty.mark(|| StateKey::Change(Arc::clone(aid), change.clone()));
                    }
                    (UsageKind::ChangeDeployed, Some(change)) if u.environment.as_deref() == Some("production") => {
                        let c = acct.changes.entry_ref(change.as_str()).or_default();
                        out.paired_ttp_ms.extend(c.record_deploy(t, ttl));
                        dirty.mark(|| StateKey::Change(Arc::clone(aid), change.clone()));
                        // Only the first 90 days of the contract matter for onboarding.
                        let cs = dims.account(&u.account_id).and_then(|a| a.contract_start);
                        if let (Some(app), true) = (&u.app_id, cs.is_none_or(|cs| t < cs.saturating_add(90 * DAY_MS))) {
                            account_changed |= acct.apps.entry(app.clone()).or_default().insert(t);
                        }
                    }
                    _ => {}
                }
            }
            Event::Support(s) => {
                let mut team = s.team_id.as_ref().map(|team_id| {
                    let (team, changed) = state::team_mut(&mut acct.teams, team_id, t);
                    if changed {
                        dirty.mark(|| team_key(team));
                    }
                    team
                });
                if s.kind == SupportKind::TicketEscalated {
                    let agg = match team.as_deref_mut() {
                        Some(team) => {
                            dirty.mark(|| team_key(team));
                            &mut team.support
                        }
                        None => {
                            account_changed = true;
                            &mut acct.account_support
                        }
                    };
                    agg.record_escalation(bucket, &s.event_id);
                }
                if let Some(ticket_id) = &s.ticket_id {
                    if s.kind.is_ticket() {
                        acct.tickets.entry_ref(ticket_id.as_str()).or_default().record(s);
                        dirty.mark(|| StateKey::Ticket(Arc::clone(aid), ticket_id.clone()));
                    }
                }
                if let (Some(score), true) =
                    (s.score, matches!(s.kind, SupportKind::NpsResponse | SupportKind::CsatResponse))
                {
                    let r = Response {
                        at: t,
                        event_id: s.event_id.clone(),
                        nps: s.kind == SupportKind::NpsResponse,
                        score,
                    };
                    match team {
                        Some(team) => {
                            dirty.mark(|| team_key(team));
                            team.feedback.record(r);
                        }
                        None => {
                            account_changed = true;
                            acct.account_feedback.record(r);
                        }
                    }
                }
                let p1_opened = s.kind == SupportKind::TicketOpened && s.priority.is_some_and(|p| p.0 == 1);
                if s.kind == SupportKind::TicketEscalated || p1_opened {
                    out.alerts.push(support_escalation(s, dims, emitted_at));
                }
            }
        }
        self.teams_total += acct.teams.len() - teams_at_start;
        self.tickets_total += acct.tickets.len() - tickets_at_start;
        self.changes_total += acct.changes.len() - changes_at_start;
        if account_changed {
            dirty.mark(|| StateKey::Account(Arc::clone(aid)));
        }
        Ingested::Accepted
    }

    /// Evaluates every tick `T <= watermark` not yet evaluated, one by one, in order.
    pub fn advance(&mut self, watermark: i64, dims: &Dimensions, emitted_at: i64, out: &mut Outputs) {
        self.advance_at_most(watermark, usize::MAX, dims, emitted_at, out);
    }

    /// Like [`Engine::advance`], but evaluates at most `max_ticks` ticks, so that one
    /// batch (and its transaction) stays short while a pipeline catches up; the rest
    /// follow in the next batches. Returns whether ticks remain.
    pub fn advance_at_most(
        &mut self,
        watermark: i64,
        max_ticks: usize,
        dims: &Dimensions,
        emitted_at: i64,
        out: &mut Outputs,
    ) -> bool {
        let mut budget = max_ticks;
        let interval = self.cfg.interval_ms;
        while let Some(t) = self.next_tick.filter(|&t| t <= watermark) {
            if budget == 0 {
                return true;
            }
            budget -= 1;
            if let Some(until) = self.quiet_until(t, dims) {
                // Nothing can happen before `until`: the ticks up to it (and up to the
                // watermark) are evaluated at once, with no output, as one by one they
                // would have been. Work stays bounded per event whatever the gaps between
                // event times.
                let last = (until - interval).min(watermark.div_euclid(interval) * interval).max(t);
                out.ticks += ((last - t) / interval + 1) as u64;
                self.meta_dirty = true;
                self.last_evaluated = Some(last);
                self.next_tick = Some(last + interval);
                continue;
            }
            self.evaluate(t, dims, emitted_at, out);
            self.meta_dirty = true;
            self.last_evaluated = Some(t);
            self.next_tick = Some(t + self.cfg.interval_ms);
            out.ticks += 1;
        }
        false
    }

    /// When no account can change or fire anything at tick `t`, the first tick at which
    /// one can: an account not evaluated yet starts at the tick after its first event, and
    /// a quiet account wakes at its next onboarding deadline. `None` when tick `t` must be
    /// evaluated.
    fn quiet_until(&self, t: i64, dims: &Dimensions) -> Option<i64> {
        if !self.cfg.skip_quiet || self.quiet_dims != Some(dims.version()) {
            return None;
        }
        let mut until = i64::MAX;
        for a in self.accounts.values() {
            if a.first_seen >= t {
                until = until.min(self.cfg.tick_of(a.first_seen));
            } else {
                until = until.min(a.quiet?);
            }
        }
        (until > t).then_some(until)
    }

    /// The watermark at the end of input: the end of the interval holding `max_event_time`.
    pub fn end_of_input_watermark(&self, max_event_time: i64) -> i64 {
        self.cfg.tick_of(max_event_time)
    }

    /// How much state is held.
    pub fn state_size(&self) -> StateSize {
        let mut s = StateSize { accounts: self.accounts.len() as u64, ..Default::default() };
        for a in self.accounts.values() {
            s.teams += a.teams.len() as u64;
            s.tickets += a.tickets.len() as u64;
            s.user_activity += a.teams.values().map(|t| t.users.len() as u64).sum::<u64>();
        }
        s
    }

    /// Approximate heap bytes of the state (see `state::heap`): teams' own state, users'
    /// activity, and the rest of the accounts'.
    pub fn state_bytes(&self) -> StateBytes {
        let mut b = StateBytes::default();
        for (id, a) in &self.accounts {
            b.accounts += id.len() + state::heap::account(a);
            b.user_activity += state::heap::user_ids(a);
            for (team_id, t) in &a.teams {
                let (own, users) = state::heap::team(t);
                b.teams += team_id.len() + own;
                b.user_activity += users;
            }
        }
        b
    }

    /// Entities by (level, band) at their last evaluation.
    pub fn band_counts(&self) -> std::collections::HashMap<(Level, Band), u64> {
        let mut m = std::collections::HashMap::new();
        for a in self.accounts.values() {
            for (level, _, h) in a.entities.iter() {
                if let Some((_, band)) = h.previous {
                    *m.entry((level, band)).or_insert(0) += 1;
                }
            }
        }
        m
    }

    fn evaluate(&mut self, tick: i64, dims: &Dimensions, emitted_at: i64, out: &mut Outputs) {
        let cfg = Arc::clone(&self.cfg);
        let w = Windows::new(&cfg, tick);
        let mut accounts: Vec<(&Id, &mut AccountState)> = self.accounts.iter_mut().collect();
        accounts.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let dims_unchanged = cfg.skip_quiet && self.quiet_dims == Some(dims.version());
        for (account_id, acct) in accounts {
            if acct.first_seen >= tick {
                continue;
            }
            // A quiet account evaluates to what it did last time, with no output.
            if dims_unchanged && acct.quiet.is_some_and(|wake| wake > tick) {
                continue;
            }
            out.evaluations += 1;
            let outputs_before = (out.alerts.len(), out.scores.len());
            let mut changed = false;
            let record = dims.account(account_id);
            let (weights, bands) = cfg.health.for_segment(record.and_then(|r| r.segment.as_deref()));
            // Rules with memory across ticks run first, on the mutable state.
            // Only the pieces whose bookkeeping changes are written to the changelog.
            // Pruning does not count: it only drops what no later tick reads.
            let dirty = &mut self.dirty;
            let mut inactive: HashMap<Id, Vec<String>> = HashMap::default();
            for team in acct.teams.values_mut().filter(|t| t.first_seen < tick) {
                let (users, champions_changed) = rules::update_champions(team, &acct.user_ids, &w);
                if champions_changed {
                    changed = true;
                    dirty.mark(|| StateKey::Team(Arc::clone(account_id), Arc::clone(&team.id)));
                }
                if !users.is_empty() {
                    inactive.insert(Arc::clone(&team.id), users);
                }
            }
            let milestones_before = acct.milestones_done;
            let onboarding = rules::onboarding(acct, record, tick, cfg.interval_ms);
            if acct.milestones_done != milestones_before {
                changed = true;
                dirty.mark(|| StateKey::Account(Arc::clone(account_id)));
            }
            let mut entities = std::mem::take(&mut acct.entities);
            let aggs = aggregate(&w, cfg.pending_ttl_ms, account_id, acct, dims);
            for ((level, id), mut agg) in aggs {
                let entity = EntityRef { level, id: id.to_string(), account_id: account_id.to_string() };
                let m = agg.metrics(&cfg, &entity, dims);
                let (h, created) = entities.get_or_insert(level, id, || EntityHealth::new(tick));
                let health_before = h.clone();
                let ctx = AlertContext { entity: &entity, at: tick, emitted_at, account: record };
                let scored = health::score(&m, &weights);
                // Only alerts and changed scores carry the components: built on demand.
                let components = || scored.as_ref().map(|s| s.component_map()).unwrap_or_default();
                let band_now = scored.as_ref().map(|s| health::band_for(h.previous.map(|p| p.1), s.score, &bands));
                let info = scored.as_ref().zip(band_now).map(|(s, band)| HealthInfo {
                    score: s.score,
                    band,
                    previous_score: h.previous.map(|p| p.0),
                    previous_band: h.previous.map(|p| p.1),
                });
                let mut fire = |kind: AlertKind, severity: Severity, reasons: Vec<String>, details| {
                    let body = AlertBody { health: info.clone(), components: components(), reasons, details };
                    out.alerts.push(alert::build(kind, severity, ctx, body));
                };

                if h.usage_drop_armed {
                    let (now, earlier) = (m.active_users_7d, m.active_users_7d_earlier);
                    if earlier >= 5 && 10 * now <= 7 * earlier {
                        h.usage_drop_armed = false;
                        let mut details = serde_json::Map::new();
                        details.insert("active_users_7d".into(), json!(now));
                        details.insert("active_users_7d_earlier".into(), json!(earlier));
                        details.insert("active_users_1d".into(), json!(m.active_users_1d));
                        details.insert("active_users_28d".into(), json!(m.active_users_28d));
                        fire(AlertKind::UsageDrop, Severity::Warning, alert::usage_drop_reasons(&m), details);
                    }
                } else if 10 * m.active_users_7d >= 9 * m.active_users_7d_earlier {
                    h.usage_drop_armed = true;
                }

                if let (Some(p50), Some(earlier)) = (m.ttp_p50_ms, m.ttp_p50_earlier_ms) {
                    if h.magic_armed {
                        if m.ttp_changes >= 5 && m.ttp_changes_earlier >= 5 && 2 * p50 >= 3 * earlier {
                            h.magic_armed = false;
                            let mut details = serde_json::Map::new();
                            details.insert("p50_ms".into(), json!(p50));
                            details.insert("p50_earlier_ms".into(), json!(earlier));
                            details.insert("p90_ms".into(), json!(m.ttp_p90_ms));
                            details.insert("changes".into(), json!(m.ttp_changes));
                            details.insert("changes_earlier".into(), json!(m.ttp_changes_earlier));
                            fire(AlertKind::MagicNumberRegressed, Severity::Warning, alert::magic_reasons(&m), details);
                        }
                    } else if 5 * p50 < 6 * earlier {
                        h.magic_armed = true;
                    }
                }

                if let Some(users) = inactive.get(entity.id.as_str()).filter(|_| entity.level == Level::Team) {
                    if let Some(team) = acct.teams.get(entity.id.as_str()) {
                        let (severity, reasons, details) = rules::champion_inactive(
                            &entity.id,
                            team,
                            &acct.user_ids,
                            users,
                            m.champions,
                            m.active_champions,
                            &w,
                        );
                        fire(AlertKind::ChampionInactive, severity, reasons, details);
                    }
                }

                if entity.level == Level::Account {
                    for o in &onboarding {
                        fire(o.kind, o.severity, o.reasons.clone(), o.details.clone());
                    }
                }

                let mut score_out = None;
                if let (Some(scored), Some(band)) = (scored.as_ref(), band_now) {
                    if let Some(prev) = h.previous {
                        if prev.1 != band && tick >= h.first_tick + cfg.warmup_ms {
                            let severity = match (prev.1, band) {
                                (_, Band::Red) => Severity::Critical,
                                (Band::Green, Band::Yellow) => Severity::Warning,
                                _ => Severity::Info,
                            };
                            let mut details = serde_json::Map::new();
                            details.insert("score".into(), json!(scored.score));
                            details.insert("previous_score".into(), json!(prev.0));
                            details.insert("active_users_7d".into(), json!(m.active_users_7d));
                            details.insert("active_users_28d".into(), json!(m.active_users_28d));
                            let reasons = alert::band_change_reasons(prev, (scored.score, band), scored, &m);
                            fire(AlertKind::HealthBandChanged, severity, reasons, details);
                        }
                    }
                    h.previous = Some((scored.score, band));
                    if h.written != Some((scored.score, band)) {
                        h.written = Some((scored.score, band));
                        score_out = Some((scored.score, band));
                    }
                }
                if created || *h != health_before {
                    changed = true;
                    dirty.mark(|| StateKey::Entity(Arc::clone(account_id), entity.level, entity.id.clone()));
                }
                if let Some((score, band)) = score_out {
                    out.scores.push(ScoreRecord { entity, at: tick, score, band, components: components() });
                }
            }
            acct.entities = entities;
            let unchanged = !changed && outputs_before == (out.alerts.len(), out.scores.len());
            acct.quiet = unchanged
                .then(|| state::quiet_until(acct, tick, &cfg))
                .flatten()
                .map(|wake| wake.min(rules::next_onboarding_tick(record, tick, cfg.interval_ms).unwrap_or(i64::MAX)));
        }
        self.quiet_dims = Some(dims.version());
        let all = self.last_pruned.is_none_or(|p| tick - p >= DAY_MS);
        if all {
            self.last_pruned = Some(tick);
        }
        self.prune(tick + cfg.interval_ms, all, out);
    }

    /// Drops what no future tick at or after `next` can read. Activity sets, the bulk of
    /// the state and read only through bounded windows, are pruned once a day of ticks
    /// (`all`); changes and tickets, whose presence decides how later events pair and
    /// count, at every tick.
    fn prune(&mut self, next: i64, all: bool, out: &mut Outputs) {
        let ttl = self.cfg.pending_ttl_ms;
        let interval = self.cfg.interval_ms;
        let keep_from = self.cfg.bucket(next - RETAIN_MS);
        let esc_from = self.cfg.bucket(next - 7 * DAY_MS);
        // Pieces that go entirely are written as tombstones; the rest shrinks unwritten.
        let dirty = &mut self.dirty;
        // Changes and tickets go at every tick, users once a day: recounted as they go.
        let (mut tickets, mut changes, mut users) = (0, 0, 0);
        for (account_id, a) in self.accounts.iter_mut() {
            for team in a.teams.values_mut() {
                if all {
                    let user_ids = &mut a.user_ids;
                    team.users.retain(|n, s| {
                        s.prune_before(keep_from);
                        if s.is_empty() {
                            let user = user_ids.name(*n);
                            dirty.mark(|| {
                                StateKey::User(Arc::clone(account_id), Arc::clone(&team.id), Arc::clone(user))
                            });
                            user_ids.release(*n);
                        }
                        !s.is_empty()
                    });
                    team.features.retain(|feature, s| {
                        s.prune_before(keep_from);
                        if s.is_empty() {
                            dirty.mark(|| {
                                StateKey::Feature(Arc::clone(account_id), Arc::clone(&team.id), feature.clone())
                            });
                        }
                        !s.is_empty()
                    });
                }
                team.support.prune(esc_from);
                team.feedback.prune_before(next - 90 * DAY_MS);
            }
            a.account_support.prune(esc_from);
            a.account_feedback.prune_before(next - 90 * DAY_MS);
            a.changes.retain(|change_id, c| match c.droppable(next, next - interval, ttl) {
                Some(expired) => {
                    out.expired_changes += u64::from(expired);
                    dirty.mark(|| StateKey::Change(Arc::clone(account_id), change_id.clone()));
                    false
                }
                None => true,
            });
            a.tickets.retain(|ticket_id, t| {
                // Only what no event still to come (at or after `next - interval`) can
                // reach: see `Ticket::record`.
                let expired = t.expired(next - interval - RETAIN_MS);
                if expired {
                    dirty.mark(|| StateKey::Ticket(Arc::clone(account_id), ticket_id.clone()));
                }
                !expired
            });
            tickets += a.tickets.len();
            changes += a.changes.len();
            users += a.user_ids.len();
        }
        (self.tickets_total, self.changes_total) = (tickets, changes);
        if all {
            self.users_total = users;
        }
    }
}

fn support_escalation(s: &crate::model::SupportEvent, dims: &Dimensions, emitted_at: i64) -> Alert {
    let entity = match &s.team_id {
        Some(t) => EntityRef { level: Level::Team, id: t.clone(), account_id: s.account_id.clone() },
        None => EntityRef { level: Level::Account, id: s.account_id.clone(), account_id: s.account_id.clone() },
    };
    let account = dims.account(&s.account_id);
    let ticket = s.ticket_id.as_deref().unwrap_or("?");
    let priority = s.priority.map(|p| p.to_string()).unwrap_or_else(|| "unknown priority".into());
    let who = match &s.team_id {
        Some(t) => format!("team {t} of account {}", s.account_id),
        None => format!("account {}", s.account_id),
    };
    let first = if s.kind == SupportKind::TicketEscalated {
        format!("Ticket {ticket} from {who} was escalated to {priority}.")
    } else {
        format!("{priority} ticket {ticket} opened by {who}.")
    };
    let mut reasons = vec![first];
    if let Some(days) =
        alert::renewal_in_days(account, s.occurred_at).filter(|_| alert::near_renewal(account, s.occurred_at))
    {
        reasons.push(format!("The account renews in {days} days."));
    }
    let mut details = serde_json::Map::new();
    details.insert("ticket_id".into(), json!(ticket));
    details.insert("priority".into(), json!(s.priority.map(|p| p.0)));
    details.insert("event_id".into(), json!(s.event_id));
    let ctx = AlertContext { entity: &entity, at: s.occurred_at, emitted_at, account };
    let id = alert::stable_id(&["support_escalation", &s.account_id, &s.event_id]);
    alert::build_with_id(
        id,
        AlertKind::SupportEscalation,
        Severity::Critical,
        ctx,
        AlertBody { health: None, components: BTreeMap::new(), reasons, details },
    )
}

#[cfg(test)]
mod tests;
