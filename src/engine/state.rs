//! The state an engine holds per account and team.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::tickets::Ticket;
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

/// One team's raw activity.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct TeamState {
    /// Earliest event naming the team.
    pub(super) first_seen: i64,
    /// user_id -> buckets with usage.
    pub(super) users: HashMap<String, ActivitySet>,
    /// key feature -> buckets with use.
    pub(super) features: HashMap<String, ActivitySet>,
    pub(super) support: SupportAgg,
}

/// Health bookkeeping of one entity across ticks.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct EntityHealth {
    /// The first tick it was evaluated at (warm-up runs from here).
    pub(super) first_tick: i64,
    /// Score and band at the previous tick.
    pub(super) previous: Option<(f64, Band)>,
    /// The last score record written.
    pub(super) written: Option<(f64, Band)>,
    /// `usage_drop` may fire (armed at first, disarmed after firing until it re-arms).
    pub(super) usage_drop_armed: bool,
}

impl EntityHealth {
    pub(super) fn new(first_tick: i64) -> Self {
        Self { first_tick, previous: None, written: None, usage_drop_armed: true }
    }
}

/// One account's state.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct AccountState {
    /// Earliest event naming the account.
    pub(super) first_seen: i64,
    pub(super) teams: BTreeMap<String, TeamState>,
    /// Support events without a team.
    pub(super) account_support: SupportAgg,
    pub(super) tickets: HashMap<String, Ticket>,
    #[serde(with = "as_pairs")]
    pub(super) entities: HashMap<(Level, String), EntityHealth>,
}

impl AccountState {
    pub(super) fn new(first_seen: i64) -> Self {
        Self {
            first_seen,
            teams: BTreeMap::new(),
            account_support: SupportAgg::default(),
            tickets: HashMap::new(),
            entities: HashMap::new(),
        }
    }

    /// The team's state, created at `t` if new; `first_seen` lowered to `t`.
    pub(super) fn team_mut(&mut self, team_id: &str, t: i64) -> &mut TeamState {
        let team = self.teams.entry(team_id.to_string()).or_insert_with(|| TeamState {
            first_seen: t,
            users: HashMap::new(),
            features: HashMap::new(),
            support: SupportAgg::default(),
        });
        team.first_seen = team.first_seen.min(t);
        team
    }
}

/// Serializes a map with non-string keys as a list of pairs (JSON objects need string
/// keys).
mod as_pairs {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer, K: Serialize, V: Serialize>(
        m: &HashMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub(super) fn deserialize<'de, D, K, V>(d: D) -> Result<HashMap<K, V>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}
