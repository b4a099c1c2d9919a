//! A tick's evaluation: every account's entities rolled up, scored and run through the
//! alert rules, in account id order; then what no later tick can read is pruned.

use std::collections::VecDeque;
use std::sync::Arc;

use super::aggregate::{aggregate, Windows};
use super::changelog::StateKey;
use super::state::{self, AccountState, EntityHealth, Id};
use super::{focus, rules, view, Engine, Outputs, RETAIN_MS};
use crate::alert::{self, AlertBody, AlertContext};
use crate::config::AlertPolicy;
use crate::dims::Dimensions;
use crate::hash::HashMap;
use crate::health;
use crate::model::{AlertKind, EntityRef, HealthInfo, Level, ScoreRecord, Severity};
use crate::time::DAY_MS;

impl Engine {
    /// Evaluates tick `tick`. `last`: no later tick is evaluated before the outputs go out
    /// (the views the HTTP API shows are made then, see [`view`]).
    pub(super) fn evaluate(&mut self, tick: i64, dims: &Dimensions, emitted_at: i64, out: &mut Outputs, last: bool) {
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
            // What the rules fire; the policy decides what of it is written.
            let mut fired: Vec<crate::model::Alert> = Vec::new();
            let mut views = Vec::new();
            let mut entities = std::mem::take(&mut acct.entities);
            let aggs = aggregate(&w, cfg.pending_ttl_ms, account_id, acct, dims);
            for ((level, id), mut agg) in aggs {
                let entity = EntityRef { level, id: id.to_string(), account_id: account_id.to_string() };
                let m = agg.metrics(&cfg, &entity, dims);
                let (h, created) = entities.get_or_insert(level, id, || EntityHealth::new(tick));
                let health_before = h.bookkeeping();
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
                    fired.push(alert::build(kind, severity, ctx, body));
                };

                if let Some((reasons, details)) = rules::usage_drop(&mut h.usage_drop_armed, &m) {
                    fire(AlertKind::UsageDrop, Severity::Warning, reasons, details);
                }
                if let Some((reasons, details)) = rules::magic_number_regressed(&mut h.magic_armed, &m) {
                    fire(AlertKind::MagicNumberRegressed, Severity::Warning, reasons, details);
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
                    let warmed_up = tick >= h.first_tick + cfg.warmup_ms;
                    if let Some((severity, reasons, details)) =
                        warmed_up.then(|| rules::band_changed(h.previous, band, scored, &m)).flatten()
                    {
                        fire(AlertKind::HealthBandChanged, severity, reasons, details);
                    }
                    h.previous = Some((scored.score, band));
                    if h.history.record(tick, scored.score, band) {
                        changed = true;
                        dirty.mark(|| StateKey::History(Arc::clone(account_id), entity.level, entity.id.clone()));
                    }
                    if h.written != Some((scored.score, band)) {
                        h.written = Some((scored.score, band));
                        score_out = Some((scored.score, band));
                    }
                }
                if created || h.bookkeeping() != health_before {
                    changed = true;
                    dirty.mark(|| StateKey::Entity(Arc::clone(account_id), entity.level, entity.id.clone()));
                }
                if cfg.views && last {
                    views.push(view::entity_view(level, id, h.previous, scored.as_ref(), m, &h.history));
                }
                if let Some((score, band)) = score_out {
                    out.scores.push(ScoreRecord { entity, at: tick, score, band, components: components() });
                }
            }
            acct.entities = entities;
            // A rule that fired changed its memory, whatever the policy writes.
            changed |= !fired.is_empty();
            match cfg.policy {
                AlertPolicy::All => out.alerts.append(&mut fired),
                AlertPolicy::Focused => {
                    let before = acct.focus;
                    out.alerts.extend(focus::group(fired, &mut acct.focus, tick));
                    if acct.focus != before {
                        dirty.mark(|| StateKey::Focus(Arc::clone(account_id)));
                    }
                }
            }
            if remember_alerts(&mut acct.recent_alerts, &out.alerts[outputs_before.0..]) {
                dirty.mark(|| StateKey::Recent(Arc::clone(account_id)));
            }
            let unchanged = !changed && outputs_before == (out.alerts.len(), out.scores.len());
            acct.quiet = unchanged
                .then(|| state::quiet_until(acct, tick, &cfg))
                .flatten()
                .map(|wake| wake.min(rules::next_onboarding_tick(record, tick, cfg.interval_ms).unwrap_or(i64::MAX)));
            // A view at the last tick of the call, and at the tick an account goes quiet:
            // the ticks it skips would show the same.
            if cfg.views && (last || acct.quiet.is_some()) {
                let v = if last {
                    view::account_view(account_id, acct, tick, views, dims)
                } else {
                    view::account_view_now(&cfg, account_id, acct, tick, dims)
                };
                let v = Arc::new(v);
                acct.view = Some(Arc::clone(&v));
                self.views_made.insert(Arc::clone(account_id), v);
            }
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
    /// count, at every tick, and only once no event still to come, however late, can
    /// reach them. (A late event older than a window creates what it names, which
    /// the next prune drops again.)
    pub(super) fn prune(&mut self, next: i64, all: bool, out: &mut Outputs) {
        let ttl = self.cfg.pending_ttl_ms;
        // Every event still to come is at or after this: older ones are too late once
        // the tick before `next` is evaluated.
        let earliest_next = (next - self.cfg.interval_ms).saturating_sub(self.cfg.max_lateness_ms);
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
            a.changes.retain(|change_id, c| match c.droppable(next, earliest_next, ttl) {
                Some(expired) => {
                    out.expired_changes += u64::from(expired);
                    dirty.mark(|| StateKey::Change(Arc::clone(account_id), change_id.clone()));
                    false
                }
                None => true,
            });
            a.tickets.retain(|ticket_id, t| {
                // Only what no event still to come (at or after `earliest_next`) can
                // reach: see `Ticket::open_at`.
                let expired = t.expired(earliest_next - RETAIN_MS);
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

/// Keeps `alerts` (about the account) among its latest, as the JSON of the alert topic.
/// Returns whether any was.
pub(super) fn remember_alerts(recent: &mut VecDeque<Arc<str>>, alerts: &[crate::model::Alert]) -> bool {
    for a in alerts {
        let Ok(json) = serde_json::to_string(a) else { continue };
        if recent.len() >= view::RECENT_ALERTS {
            recent.pop_front();
        }
        recent.push_back(json.into());
    }
    !alerts.is_empty()
}
