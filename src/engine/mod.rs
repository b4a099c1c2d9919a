//! The engine: per-partition state, event-time ticks, evaluation, scoring and alert rules.
//!
//! Pure and synchronous. The caller passes in every time: the event times in the events,
//! the pipeline watermark to [`Engine::advance`], and the wall clock for `emitted_at`.
//! `replay`, `demo` and `run` drive it alike; only sources and sinks differ.
//!
//! State machine of an entity (team, group, business unit, division, account):
//! it is created by the first usage or support event that names it, evaluated at every
//! tick `T` after that event (`occurred_at < T`), and its band moves only through
//! `health::band_for`. Everything evaluated at `T` reads only events with
//! `occurred_at < T`, even when later events have already arrived.

mod aggregate;
mod changelog;
pub mod daily;
mod evaluate;
mod focus;
mod ingest;
mod rules;
mod state;
mod tickets;
pub mod view;

use std::sync::Arc;

use crate::config::{Config, HealthConfig};
use crate::dims::Dimensions;
use crate::hash::{HashMap, HashSet};
use crate::model::{Alert, Band, EventInput, Level, ScoreRecord};
use crate::time::{EventTime, Tick, WallClock, DAY_MS};

use changelog::Dirty;
use state::{AccountState, Id};

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
    /// How much older than the last evaluated tick a late event may be and still be
    /// applied, ms (see [`Engine::ingest`]).
    pub max_lateness_ms: i64,
    /// Caps on the state one partition holds.
    pub limits: Limits,
    /// Which alerts are written: every rule's (`All`), or one grouped alert per account
    /// and tick of the conditions that foretell churn (`Focused`; see [`focus`]).
    pub policy: crate::config::AlertPolicy,
    /// Whether ticks at which no account can change or fire anything are skipped
    /// (default). `false` evaluates every one: the outputs must be the same, which tests
    /// check.
    pub skip_quiet: bool,
    /// Whether evaluations make the views the HTTP API shows (see [`view`]): `run` and
    /// `demo` do; `replay` and `backtest` do not.
    pub views: bool,
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
            max_lateness_ms: c.time.max_lateness_secs as i64 * 1000,
            limits: Limits::from_config(&c.limits),
            policy: c.alerts.policy,
            skip_quiet: true,
            views: false,
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
    /// Taken into state, on time.
    Accepted,
    /// Taken into state, late: its own tick was evaluated already. It counts from the
    /// next tick evaluated; outputs already written stay as they are.
    Late {
        /// The event's own tick.
        tick: Tick,
    },
    /// More than `time.max_lateness_secs` older than the last evaluated tick:
    /// dead-lettered with reason `too_late`; nothing changed.
    TooLate {
        /// The last evaluated tick.
        last: Tick,
        /// The oldest event time still applied: the last tick minus the maximum lateness.
        oldest: EventTime,
    },
    /// Further ahead of the wall clock than `time.max_future_secs`: dead-lettered with
    /// reason `future`; nothing changed, not the state and not the watermark.
    Future {
        /// The latest event time accepted: the wall clock plus `time.max_future_secs`
        /// (or the end of year 9999).
        latest: EventTime,
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
    /// Whether the event was taken into state, on time or late (and may move the
    /// watermark).
    pub fn is_accepted(&self) -> bool {
        matches!(self, Ingested::Accepted | Ingested::Late { .. })
    }

    /// Whether the event was late: applied ([`Ingested::Late`]) or refused
    /// ([`Ingested::TooLate`]). `cs_pulse_late_events_total` counts both.
    pub fn is_late(&self) -> bool {
        matches!(self, Ingested::Late { .. } | Ingested::TooLate { .. })
    }

    /// Why the event must be dead-lettered, with its detail; `None` when it was accepted.
    /// One wording for `run`, `demo` and `replay`.
    pub fn rejection(&self, occurred_at: EventTime) -> Option<crate::model::Rejection> {
        let occurred_at = occurred_at.0;
        use crate::model::{Reason, Rejection};
        use crate::time::format_rfc3339;
        let (reason, detail) = match *self {
            Ingested::Accepted | Ingested::Late { .. } => return None,
            Ingested::TooLate { last, oldest } => (
                Reason::TooLate,
                format!(
                    "occurred_at {} is more than time.max_lateness_secs before the last evaluated tick {}: the oldest time still applied is {}",
                    format_rfc3339(occurred_at),
                    format_rfc3339(last.0),
                    format_rfc3339(oldest.0)
                ),
            ),
            Ingested::Future { latest } => (
                Reason::Future,
                format!(
                    "occurred_at {occurred_at} ({}) is after the latest time accepted now, {} (the wall clock plus time.max_future_secs); epoch milliseconds are expected, not microseconds",
                    format_rfc3339(occurred_at),
                    format_rfc3339(latest.0)
                ),
            ),
            Ingested::Limit { level, key, cap } => {
                (Reason::Limit, format!("it would create a new {} beyond {key} = {cap}", level.as_str()))
            }
        };
        Some(Rejection { reason, detail })
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
    /// The entities' daily score histories.
    pub histories: usize,
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
    /// Views made since the last [`Engine::take_views`], when the engine makes them: the
    /// latest of each account (a batch that evaluates many ticks keeps only the last).
    views_made: HashMap<Id, Arc<view::AccountView>>,
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
            views_made: HashMap::default(),
        }
    }

    /// The engine without its changelog, for a caller that never reads it (`replay`):
    /// changed pieces are not remembered.
    pub fn without_changelog(mut self) -> Self {
        self.dirty = Dirty { on: false, keys: HashSet::default() };
        self
    }

    /// Records the event time of a record read from `input`.
    pub fn note_input(&mut self, input: EventInput, event_time: EventTime) {
        let event_time = event_time.0;
        if let Some(slot) = self.input_max.get_mut(input.index()) {
            if slot.is_none_or(|m| event_time > m) {
                *slot = Some(event_time);
                self.meta_dirty = true;
            }
        }
    }

    /// The highest event time read from each input, as restored or noted.
    pub fn input_max(&self) -> [Option<EventTime>; 2] {
        self.input_max.map(|t| t.map(EventTime))
    }

    /// The last tick evaluated.
    pub fn last_evaluated(&self) -> Option<Tick> {
        self.last_evaluated.map(Tick)
    }

    /// Evaluates every tick `T <= watermark` not yet evaluated, one by one, in order.
    pub fn advance(&mut self, watermark: EventTime, dims: &Dimensions, emitted_at: WallClock, out: &mut Outputs) {
        self.advance_at_most(watermark, usize::MAX, dims, emitted_at, out);
    }

    /// Like [`Engine::advance`], but evaluates at most `max_ticks` ticks, so that one
    /// batch (and its transaction) stays short while a pipeline catches up; the rest
    /// follow in the next batches. Returns whether ticks remain.
    pub fn advance_at_most(
        &mut self,
        watermark: EventTime,
        max_ticks: usize,
        dims: &Dimensions,
        emitted_at: WallClock,
        out: &mut Outputs,
    ) -> bool {
        let (watermark, emitted_at) = (watermark.0, emitted_at.0);
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
            let last = budget == 0 || t + interval > watermark;
            self.evaluate(t, dims, emitted_at, out, last);
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
    pub fn end_of_input_watermark(&self, max_event_time: EventTime) -> EventTime {
        EventTime(self.cfg.tick_of(max_event_time.0))
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
            b.histories += state::heap::histories(a);
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
}

#[cfg(test)]
mod tests;
