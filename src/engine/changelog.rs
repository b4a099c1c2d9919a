//! The engine's state as records of a compacted changelog topic.
//!
//! State is cut into pieces that change independently, one record each, so that an input
//! event rewrites only what it touched: a usage event in an hour its user was already
//! active in writes nothing, and one in a new hour writes that user's activity (a few
//! bytes). Ticks write only the entities whose bookkeeping moved.
//!
//! A key is a tag byte and the key's parts. Every part but the last is prefixed with its
//! length (LEB128); the last runs to the end of the key.
//!
//! | tag | parts | value |
//! |---|---|---|
//! | `a` | account | first_seen, team-less escalations and answers, production deploys per app, onboarding milestones |
//! | `t` | account, team | first_seen, escalations, champions, answers |
//! | `u` | account, team, user | buckets the user was active in |
//! | `f` | account, team, key feature | buckets the feature was used in |
//! | `c` | account, change | the change's two halves |
//! | `k` | account, ticket | the ticket's events |
//! | `e` | account, level, entity | health bookkeeping across ticks |
//! | `p` | account | what the focused alert policy remembers (falls, cool-downs) |
//! | `h` | account, level, entity | daily score history (see `daily.rs`) |
//! | `r` | account | the latest alerts, for the account's page |
//!
//! plus [`META_KEY`] for the engine's own bookkeeping. A value is a format byte
//! ([`FORMAT`]) followed by the postcard encoding of the piece; a piece that is gone is
//! written as a tombstone (no value). Activity sets shrink as ticks prune them without a
//! record being written: [`Engine::restore`] prunes again as of the restored tick, which
//! gives the same state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::daily::ScoreHistory;
use super::state::{AccountState, Champion, EntityHealth, Feedback, Id, SupportAgg, TeamState};
use super::{Engine, EngineConfig, EngineMeta, Outputs, RestoreError, META_KEY};
use crate::model::Level;

/// The value encoding's version, the first byte of every value.
pub(super) const FORMAT: u8 = 1;

/// Which piece of an engine's state a changelog record holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum StateKey {
    Account(Id),
    Team(Id, Id),
    User(Id, Id, Id),
    Feature(Id, Id, String),
    Change(Id, String),
    Ticket(Id, String),
    Entity(Id, Level, String),
    /// What the focused alert policy remembers of an account.
    Focus(Id),
    /// An entity's daily score history.
    History(Id, Level, String),
    /// An account's latest alerts.
    Recent(Id),
}

/// The pieces of state changed since the changelog was last read, when it is kept.
#[derive(Debug)]
pub(super) struct Dirty {
    pub(super) on: bool,
    pub(super) keys: super::HashSet<StateKey>,
}

impl Dirty {
    /// Marks the piece `key` names (built only when the changelog is kept).
    pub(super) fn mark(&mut self, key: impl FnOnce() -> StateKey) {
        if self.on {
            self.keys.insert(key());
        }
    }
}

type AccountCore = (i64, SupportAgg, Feedback, BTreeMap<String, BTreeSet<i64>>, u8);
type TeamCore = (i64, SupportAgg, BTreeMap<String, Champion>, Feedback);

fn push_part(k: &mut Vec<u8>, part: &str) {
    let mut n = part.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            k.push(byte);
            break;
        }
        k.push(byte | 0x80);
    }
    k.extend_from_slice(part.as_bytes());
}

/// Reads the parts of a key after its tag.
struct KeyReader<'a> {
    rest: &'a [u8],
}

impl<'a> KeyReader<'a> {
    fn part(&mut self) -> Result<String, String> {
        let mut n: usize = 0;
        let mut shift = 0;
        loop {
            let (&byte, rest) = self.rest.split_first().ok_or("key ends inside a part's length")?;
            self.rest = rest;
            n |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 28 {
                return Err("a part's length is too long".into());
            }
        }
        if n > self.rest.len() {
            return Err("a part runs past the end of the key".into());
        }
        let (part, rest) = self.rest.split_at(n);
        self.rest = rest;
        text(part)
    }

    fn last(self) -> Result<String, String> {
        text(self.rest)
    }

    fn level(&mut self) -> Result<Level, String> {
        let (&byte, rest) = self.rest.split_first().ok_or("key ends before its level")?;
        self.rest = rest;
        Level::ALL.get(usize::from(byte)).copied().ok_or_else(|| format!("unknown level {byte}"))
    }
}

fn text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "an id in the key is not UTF-8".to_string())
}

impl StateKey {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(48);
        match self {
            StateKey::Account(a) | StateKey::Focus(a) | StateKey::Recent(a) => {
                k.push(match self {
                    StateKey::Account(_) => b'a',
                    StateKey::Focus(_) => b'p',
                    _ => b'r',
                });
                k.extend_from_slice(a.as_bytes());
            }
            StateKey::Team(a, t) => {
                k.push(b't');
                push_part(&mut k, a);
                k.extend_from_slice(t.as_bytes());
            }
            StateKey::User(a, t, x) => {
                k.push(b'u');
                push_part(&mut k, a);
                push_part(&mut k, t);
                k.extend_from_slice(x.as_bytes());
            }
            StateKey::Feature(a, t, x) => {
                k.push(b'f');
                push_part(&mut k, a);
                push_part(&mut k, t);
                k.extend_from_slice(x.as_bytes());
            }
            StateKey::Change(a, x) | StateKey::Ticket(a, x) => {
                k.push(if matches!(self, StateKey::Change(..)) { b'c' } else { b'k' });
                push_part(&mut k, a);
                k.extend_from_slice(x.as_bytes());
            }
            StateKey::Entity(a, level, id) | StateKey::History(a, level, id) => {
                k.push(if matches!(self, StateKey::Entity(..)) { b'e' } else { b'h' });
                push_part(&mut k, a);
                k.push(Level::ALL.iter().position(|l| l == level).unwrap_or(0) as u8);
                k.extend_from_slice(id.as_bytes());
            }
        }
        k
    }

    pub(super) fn decode(key: &[u8]) -> Result<Self, String> {
        let (&tag, rest) = key.split_first().ok_or("empty key")?;
        let mut r = KeyReader { rest };
        Ok(match tag {
            b'a' => StateKey::Account(r.last()?.into()),
            b'p' => StateKey::Focus(r.last()?.into()),
            b't' => StateKey::Team(r.part()?.into(), r.last()?.into()),
            b'u' => StateKey::User(r.part()?.into(), r.part()?.into(), r.last()?.into()),
            b'f' => StateKey::Feature(r.part()?.into(), r.part()?.into(), r.last()?),
            b'c' => StateKey::Change(r.part()?.into(), r.last()?),
            b'k' => StateKey::Ticket(r.part()?.into(), r.last()?),
            b'e' => StateKey::Entity(r.part()?.into(), r.level()?, r.last()?),
            b'h' => StateKey::History(r.part()?.into(), r.level()?, r.last()?),
            b'r' => StateKey::Recent(r.last()?.into()),
            _ => return Err("unknown key".into()),
        })
    }

    fn account(&self) -> &str {
        match self {
            StateKey::Account(a)
            | StateKey::Focus(a)
            | StateKey::Recent(a)
            | StateKey::History(a, ..)
            | StateKey::Team(a, _)
            | StateKey::User(a, ..)
            | StateKey::Feature(a, ..)
            | StateKey::Change(a, _)
            | StateKey::Ticket(a, _)
            | StateKey::Entity(a, ..) => a,
        }
    }
}

fn encode<T: Serialize + ?Sized>(v: &T) -> Option<Vec<u8>> {
    postcard::to_extend(v, vec![FORMAT]).ok()
}

fn decode<T: DeserializeOwned>(v: &[u8]) -> Result<T, String> {
    match v.split_first() {
        Some((&FORMAT, body)) => postcard::from_bytes(body).map_err(|e| format!("undecodable value: {e}")),
        Some((other, _)) => Err(format!(
            "value format {other} is not {FORMAT}: the changelog was written by another cs-pulse version; delete it and reset the group's input offsets to the earliest to rebuild the state from the inputs"
        )),
        None => Err("empty value".into()),
    }
}

impl Engine {
    /// The state changed since the last call, as compacted changelog records: one per
    /// changed piece of state (see this module's table), a tombstone (`None`) for each
    /// piece that is gone, and the engine's bookkeeping ([`META_KEY`]) when it moved.
    /// Empty when nothing changed.
    pub fn take_changes(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let keys = std::mem::take(&mut self.dirty.keys);
        let mut out = Vec::with_capacity(keys.len() + 1);
        // Any order: records of different keys are independent.
        for key in keys {
            let value = self.value_of(&key);
            out.push((key.encode(), value));
        }
        if self.meta_dirty {
            self.meta_dirty = false;
            let meta = EngineMeta {
                next_tick: self.next_tick,
                last_evaluated: self.last_evaluated,
                input_max: self.input_max,
            };
            out.push((META_KEY.to_vec(), encode(&meta)));
        }
        out
    }

    fn value_of(&self, key: &StateKey) -> Option<Vec<u8>> {
        let acct = self.accounts.get(key.account())?;
        match key {
            StateKey::Account(_) => encode(&(
                acct.first_seen,
                &acct.account_support,
                &acct.account_feedback,
                &acct.apps,
                acct.milestones_done,
            )),
            StateKey::Team(_, t) => {
                let team = acct.teams.get(&**t)?;
                encode(&(team.first_seen, &team.support, &team.champions, &team.feedback))
            }
            StateKey::User(_, t, u) => encode(acct.teams.get(&**t)?.users.get(&acct.user_ids.get(u)?)?),
            StateKey::Feature(_, t, f) => encode(acct.teams.get(&**t)?.features.get(f)?),
            StateKey::Change(_, c) => encode(acct.changes.get(c)?),
            StateKey::Ticket(_, k) => encode(acct.tickets.get(k)?),
            StateKey::Entity(_, level, id) => encode(acct.entities.get(*level, id)?),
            StateKey::Focus(_) => encode(&acct.focus),
            StateKey::History(_, level, id) => encode(acct.entities.get(*level, id)?.history.points()),
            StateKey::Recent(_) => encode(&acct.recent_alerts.iter().map(|a| &**a).collect::<Vec<&str>>()),
        }
    }

    /// Rebuilds an engine from its changelog records, oldest first (later records of a
    /// key replace earlier ones; a record with no value deletes its key).
    pub fn restore(
        cfg: Arc<EngineConfig>,
        records: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<Self, RestoreError> {
        let mut engine = Engine::new(cfg);
        for (key, value) in records {
            let err = |reason: String| RestoreError { key: key.escape_ascii().to_string(), reason };
            if key == META_KEY {
                let Some(v) = value else { continue };
                let meta: EngineMeta = decode(&v).map_err(err)?;
                engine.next_tick = meta.next_tick;
                engine.last_evaluated = meta.last_evaluated;
                engine.input_max = meta.input_max;
                continue;
            }
            let state_key = StateKey::decode(&key).map_err(err)?;
            engine.apply(state_key, value.as_deref()).map_err(err)?;
        }
        // What the last tick pruned without writing a record goes now.
        if let (Some(next), Some(_)) = (engine.next_tick, engine.last_evaluated) {
            engine.prune(next, true, &mut Outputs::default());
            engine.last_pruned = engine.last_evaluated;
        }
        // A history whose entity's own record never came is dropped with its placeholder.
        for acct in engine.accounts.values_mut() {
            acct.entities.retain(|h| h.first_tick != i64::MAX);
        }
        engine.dirty.keys.clear();
        engine.meta_dirty = false;
        engine.count_entities();
        Ok(engine)
    }

    fn apply(&mut self, key: StateKey, value: Option<&[u8]>) -> Result<(), String> {
        let Some(v) = value else {
            self.forget(key);
            return Ok(());
        };
        // Records of an account's pieces may precede its own record: placeholders are
        // filled in when it comes.
        let account_id = key.account();
        let acct = super::state::entry(&mut self.accounts, account_id, |id| AccountState::new(id, i64::MAX)).0;
        let placeholder = |t: &Id| TeamState::new(Arc::clone(t), i64::MAX);
        match key {
            StateKey::Account(_) => {
                let (first_seen, support, feedback, apps, milestones): AccountCore = decode(v)?;
                acct.first_seen = first_seen;
                acct.account_support = support;
                acct.account_feedback = feedback;
                acct.apps = apps;
                acct.milestones_done = milestones;
            }
            StateKey::Team(_, t) => {
                let (first_seen, support, champions, feedback): TeamCore = decode(v)?;
                let team = acct.teams.entry(Arc::clone(&t)).or_insert_with(|| placeholder(&t));
                team.first_seen = first_seen;
                team.support = support;
                team.champions = champions;
                team.feedback = feedback;
            }
            StateKey::User(_, t, u) => {
                let set = decode(v)?;
                let team = acct.teams.entry(Arc::clone(&t)).or_insert_with(|| placeholder(&t));
                *team.user_mut(&mut acct.user_ids, &u).1 = set;
            }
            StateKey::Feature(_, t, f) => {
                acct.teams.entry(Arc::clone(&t)).or_insert_with(|| placeholder(&t)).features.insert(f, decode(v)?);
            }
            StateKey::Change(_, c) => {
                acct.changes.insert(c, decode(v)?);
            }
            StateKey::Ticket(_, k) => {
                acct.tickets.insert(k, decode(v)?);
            }
            StateKey::Entity(_, level, id) => {
                let mut h: EntityHealth = decode(v)?;
                // Its history may have come first.
                if let Some(before) = acct.entities.get(level, &id) {
                    h.history = before.history.clone();
                }
                acct.entities.insert(level, id, h);
            }
            StateKey::Focus(_) => acct.focus = decode(v)?,
            StateKey::History(_, level, id) => {
                let history = ScoreHistory::from_points(decode(v)?);
                let (h, _) = acct.entities.get_or_insert(level, &id, || EntityHealth::new(i64::MAX));
                h.history = history;
            }
            StateKey::Recent(_) => {
                let alerts: Vec<String> = decode(v)?;
                let skip = alerts.len().saturating_sub(super::view::RECENT_ALERTS);
                acct.recent_alerts = alerts.into_iter().skip(skip).map(Arc::from).collect();
            }
        }
        Ok(())
    }

    fn forget(&mut self, key: StateKey) {
        if let StateKey::Account(a) = &key {
            self.accounts.remove(&**a);
            return;
        }
        let Some(acct) = self.accounts.get_mut(key.account()) else { return };
        match key {
            StateKey::Account(_) => {}
            StateKey::Team(_, t) => {
                if let Some(team) = acct.teams.remove(&*t) {
                    for n in team.users.keys() {
                        acct.user_ids.release(*n);
                    }
                }
            }
            StateKey::User(_, t, u) => {
                let n = acct.user_ids.get(&u);
                if let (Some(team), Some(n)) = (acct.teams.get_mut(&*t), n) {
                    if team.users.remove(&n).is_some() {
                        acct.user_ids.release(n);
                    }
                }
            }
            StateKey::Feature(_, t, f) => {
                if let Some(team) = acct.teams.get_mut(&*t) {
                    team.features.remove(&f);
                }
            }
            StateKey::Change(_, c) => {
                acct.changes.remove(&c);
            }
            StateKey::Ticket(_, k) => {
                acct.tickets.remove(&k);
            }
            StateKey::Entity(_, level, id) => {
                acct.entities.remove(level, &id);
            }
            StateKey::Focus(_) => acct.focus = Default::default(),
            StateKey::History(_, level, id) => {
                if let Some(h) = acct.entities.get_mut(level, &id) {
                    h.history = Default::default();
                }
            }
            StateKey::Recent(_) => acct.recent_alerts.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_whatever_the_ids_hold() {
        let long = "x".repeat(300);
        for key in [
            StateKey::Account("acme".into()),
            StateKey::Account("".into()),
            StateKey::Team("a/b".into(), "t\u{0}1".into()),
            StateKey::User(long.as_str().into(), "team".into(), "u\u{1f}é".into()),
            StateKey::Feature("acme".into(), long.as_str().into(), "deploys".into()),
            StateKey::Change("acme".into(), "chg-1".into()),
            StateKey::Ticket("acme".into(), "T-9".into()),
            StateKey::Entity("acme".into(), Level::BusinessUnit, "Platform".into()),
            StateKey::History("acme".into(), Level::Team, "t/1".into()),
            StateKey::Recent("acme".into()),
        ] {
            let bytes = key.encode();
            assert_eq!(StateKey::decode(&bytes), Ok(key), "{}", bytes.escape_ascii());
        }
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert_eq!(StateKey::decode(b""), Err("empty key".into()));
        assert_eq!(StateKey::decode(b"zzz"), Err("unknown key".into()));
        assert_eq!(StateKey::decode(b"t\x09acme"), Err("a part runs past the end of the key".into()));
        assert_eq!(StateKey::decode(b"e\x04acme\x09x"), Err("unknown level 9".into()));
        assert_eq!(StateKey::decode(b"a\xff"), Err("an id in the key is not UTF-8".into()));
    }

    #[test]
    fn values_carry_their_format() {
        let v = encode(&(5i64, "x")).unwrap();
        assert_eq!(v[0], FORMAT);
        assert_eq!(decode::<(i64, String)>(&v), Ok((5, "x".to_string())));
        let json = br#"{"first_seen":1}"#;
        assert!(decode::<(i64, String)>(json).unwrap_err().contains("another cs-pulse version"));
    }
}
