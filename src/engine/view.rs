//! What the HTTP API shows of an account: each entity's score, band, components, the
//! metrics behind them and its daily history, the org chart, and the latest alerts.
//!
//! An engine built with [`EngineConfig::views`] makes an [`AccountView`] each time it
//! evaluates an account (and again when an alert fires between ticks), from exactly what
//! the evaluation read; a quiet account's view stays as it was, as its scores do. Views
//! are immutable and shared ([`Arc`]): the pipeline hands those of a committed batch to the
//! API, which reads them without ever waiting for the pipeline. After a restore,
//! [`Engine::rebuild_views`] makes every account's view from the restored state.
//!
//! [`EngineConfig::views`]: super::EngineConfig::views

use std::sync::Arc;

use super::aggregate::{aggregate, lineage, Windows};
use super::daily::ScoreHistory;
use super::state::AccountState;
use super::{Engine, EngineConfig};
use crate::dims::Dimensions;
use crate::health::{self, EntityMetrics};
use crate::model::{AccountRecord, Band, EntityRef, Level};

/// Alerts kept per account for its page.
pub const RECENT_ALERTS: usize = 10;

/// One component of a score.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentView {
    /// Its name, as in the configuration.
    pub name: &'static str,
    /// 0-100, one decimal.
    pub score: f64,
    /// Its weight.
    pub weight: f64,
}

/// One entity as of its account's last evaluation.
#[derive(Debug, Clone)]
pub struct EntityView {
    /// Its level.
    pub level: Level,
    /// Its id (a name for groups, business units and divisions).
    pub id: String,
    /// Score and band of its last scored evaluation (as the scores topic keeps them).
    pub health: Option<(f64, Band)>,
    /// The components present.
    pub components: Vec<ComponentView>,
    /// The numbers behind them.
    pub(crate) metrics: EntityMetrics,
    /// Its daily closes.
    pub history: ScoreHistory,
}

/// A team's place in the org chart: group, business unit and division, each when set.
pub type Lineage = [Option<String>; 3];

/// An account as of its last evaluation.
#[derive(Debug, Clone)]
pub struct AccountView {
    /// The account.
    pub account_id: String,
    /// The tick it was evaluated at.
    pub evaluated_at: i64,
    /// Its account record then (name, segment, contract and renewal dates).
    pub record: Option<AccountRecord>,
    /// Every entity, in (level, id) order: teams, groups, business units, divisions and the
    /// account itself.
    pub entities: Arc<[EntityView]>,
    /// Each team's place in the org chart, by team id.
    pub teams: Arc<[(String, Lineage)]>,
    /// The latest alerts about it (the JSON of the alert topic), oldest first.
    pub alerts: Vec<Arc<str>>,
}

impl AccountView {
    /// The account's own entity.
    pub fn account(&self) -> Option<&EntityView> {
        self.entity(Level::Account, &self.account_id)
    }

    /// One entity, if the account has it.
    pub fn entity(&self, level: Level, id: &str) -> Option<&EntityView> {
        self.entities
            .binary_search_by(|e| (e.level, e.id.as_str()).cmp(&(level, id)))
            .ok()
            .and_then(|i| self.entities.get(i))
    }
}

/// A team's lineage as the dimension tables give it.
pub(super) fn lineage_of(account_id: &str, team_id: &str, dims: &Dimensions) -> Lineage {
    let mut out: Lineage = [None, None, None];
    for (level, id) in lineage(account_id, Some(team_id), dims) {
        let slot = match level {
            Level::Group => 0,
            Level::BusinessUnit => 1,
            Level::Division => 2,
            _ => continue,
        };
        out[slot] = Some(id.to_string());
    }
    out
}

/// An account's view from its entities just evaluated.
pub(super) fn account_view(
    account_id: &str,
    acct: &AccountState,
    tick: i64,
    entities: Vec<EntityView>,
    dims: &Dimensions,
) -> AccountView {
    let mut teams: Vec<(String, Lineage)> = entities
        .iter()
        .filter(|e| e.level == Level::Team)
        .map(|e| (e.id.clone(), lineage_of(account_id, &e.id, dims)))
        .collect();
    teams.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    AccountView {
        account_id: account_id.to_string(),
        evaluated_at: tick,
        record: dims.account(account_id).cloned(),
        entities: entities.into(),
        teams: teams.into(),
        alerts: acct.recent_alerts.iter().cloned().collect(),
    }
}

impl Engine {
    /// The views made since the last call (see the module's doc): each account's latest.
    pub fn take_views(&mut self) -> Vec<Arc<AccountView>> {
        std::mem::take(&mut self.views_made).into_values().collect()
    }

    /// Makes every account's view from the state as it is (after a restore), as of the
    /// last evaluated tick: scores and bands are those evaluated then; the metrics and
    /// components are read again from the state, so they include late events applied since.
    /// Returns them all; none before the first tick.
    pub fn rebuild_views(&mut self, dims: &Dimensions) -> Vec<Arc<AccountView>> {
        let Some(tick) = self.last_evaluated else { return Vec::new() };
        let cfg = Arc::clone(&self.cfg);
        let mut out = Vec::with_capacity(self.accounts.len());
        let mut ids: Vec<_> = self.accounts.keys().cloned().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(acct) = self.accounts.get_mut(&id) else { continue };
            if acct.first_seen >= tick {
                continue;
            }
            let view = Arc::new(account_view_now(&cfg, &id, acct, tick, dims));
            acct.view = Some(Arc::clone(&view));
            out.push(view);
        }
        self.views_made.clear();
        out
    }
}

/// An account's view at `tick`, read again from its state: the metrics and components as
/// the state gives them now, the scores and bands of the last evaluation.
pub(super) fn account_view_now(
    cfg: &EngineConfig,
    id: &str,
    acct: &AccountState,
    tick: i64,
    dims: &Dimensions,
) -> AccountView {
    let w = Windows::new(cfg, tick);
    let record = dims.account(id);
    let (weights, _) = cfg.health.for_segment(record.and_then(|r| r.segment.as_deref()));
    let mut entities = Vec::new();
    for ((level, eid), mut agg) in aggregate(&w, cfg.pending_ttl_ms, id, acct, dims) {
        let entity = EntityRef { level, id: eid.to_string(), account_id: id.to_string() };
        let m = agg.metrics(cfg, &entity, dims);
        let scored = health::score(&m, &weights);
        let Some(h) = acct.entities.get(level, eid) else { continue };
        entities.push(entity_view(level, eid, h.previous, scored.as_ref(), m, &h.history));
    }
    account_view(id, acct, tick, entities, dims)
}

/// One entity's view.
pub(super) fn entity_view(
    level: Level,
    id: &str,
    health: Option<(f64, Band)>,
    scored: Option<&health::Scored>,
    metrics: EntityMetrics,
    history: &ScoreHistory,
) -> EntityView {
    let components = scored
        .map(|s| {
            s.components
                .iter()
                .map(|c| ComponentView { name: c.name, score: health::round1(c.score), weight: c.weight })
                .collect()
        })
        .unwrap_or_default();
    EntityView { level, id: id.to_string(), health, components, metrics, history: history.clone() }
}
