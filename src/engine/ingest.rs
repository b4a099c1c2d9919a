//! Taking an event into state: the future and limit rules, the tick it belongs to, and
//! what it adds to its account, teams, users, tickets and changes. A support escalation
//! fires its alert here, at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::changelog::StateKey;
use super::state::{self, AccountState, Response};
use super::view::AccountView;
use super::{Engine, Ingested, LimitLevel, Outputs};
use crate::alert::{self, AlertBody, AlertContext};
use crate::dims::Dimensions;
use crate::model::{Alert, AlertKind, EntityRef, Event, Level, Severity, SupportKind, UsageKind};
use crate::time::{EventTime, Tick, WallClock, DAY_MS};

impl Engine {
    /// What the drivers (`run`, `demo`, `replay`) call: [`Engine::ingest`] after the
    /// event-time sanity rule. An event further than `time.max_future_secs` ahead of
    /// `now`, the process's wall clock, is refused as [`Ingested::Future`] and changes
    /// nothing. `now` is also the `emitted_at` of the alerts it fires.
    pub fn ingest_at(&mut self, ev: &Event, dims: &Dimensions, now: WallClock, out: &mut Outputs) -> Ingested {
        let latest = now.0.saturating_add(self.cfg.max_future_ms);
        if ev.occurred_at() > latest {
            return Ingested::Future { latest: EventTime(latest) };
        }
        self.ingest(ev, dims, now, out)
    }

    /// The cap of `[limits]` the event would break by creating an entity, if any.
    pub(super) fn over_limit(&self, ev: &Event, dims: &Dimensions) -> Option<Ingested> {
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
    pub(super) fn count_entities(&mut self) {
        self.teams_total = self.accounts.values().map(|a| a.teams.len()).sum();
        self.users_total = self.accounts.values().map(|a| a.user_ids.len()).sum();
        self.tickets_total = self.accounts.values().map(|a| a.tickets.len()).sum();
        self.changes_total = self.accounts.values().map(|a| a.changes.len()).sum();
    }

    /// Takes an event into state. Fires `support_escalation` at once (a late one too, at
    /// its `occurred_at`). Returns [`Ingested::Late`] when the event's own tick has been
    /// evaluated: it is applied all the same and counts from the next tick evaluated (the
    /// windows place it by its `occurred_at`, a ticket folds its events in `occurred_at`
    /// order). Returns [`Ingested::TooLate`] (state untouched) when it is more than
    /// `time.max_lateness_secs` older than the last evaluated tick, and
    /// [`Ingested::Limit`] (state untouched) when it would create an entity beyond a cap.
    pub fn ingest(&mut self, ev: &Event, dims: &Dimensions, emitted_at: WallClock, out: &mut Outputs) -> Ingested {
        let emitted_at = emitted_at.0;
        let t = ev.occurred_at();
        if !(0..=crate::time::MAX_TIME_MS).contains(&t) {
            // The decoders refuse times before 1970; drivers refuse future ones first.
            return Ingested::Future { latest: EventTime(crate::time::MAX_TIME_MS) };
        }
        let own_tick = self.cfg.tick_of(t);
        let late = match self.last_evaluated {
            Some(last) if own_tick <= last => {
                let oldest = last.saturating_sub(self.cfg.max_lateness_ms);
                if t < oldest {
                    return Ingested::TooLate { last: Tick(last), oldest: EventTime(oldest) };
                }
                Some(Ingested::Late { tick: Tick(own_tick) })
            }
            _ => None,
        };
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
                    let alert = support_escalation(s, dims, emitted_at, self.cfg.policy);
                    if super::evaluate::remember_alerts(&mut acct.recent_alerts, std::slice::from_ref(&alert)) {
                        dirty.mark(|| StateKey::Recent(Arc::clone(aid)));
                    }
                    // The account's page shows it at once, beside the last evaluation.
                    if let Some(v) = &acct.view {
                        let mut v = AccountView::clone(v);
                        v.alerts = acct.recent_alerts.iter().cloned().collect();
                        let v = Arc::new(v);
                        acct.view = Some(Arc::clone(&v));
                        self.views_made.insert(Arc::clone(aid), v);
                    }
                    out.alerts.push(alert);
                }
            }
        }
        self.teams_total += acct.teams.len() - teams_at_start;
        self.tickets_total += acct.tickets.len() - tickets_at_start;
        self.changes_total += acct.changes.len() - changes_at_start;
        if account_changed {
            dirty.mark(|| StateKey::Account(Arc::clone(aid)));
        }
        late.unwrap_or(Ingested::Accepted)
    }
}

/// A `support_escalation`: critical (raised near renewal) under policy `all`; under
/// `focused`, a warning, not raised (see [`super::focus`]).
fn support_escalation(
    s: &crate::model::SupportEvent,
    dims: &Dimensions,
    emitted_at: i64,
    policy: crate::config::AlertPolicy,
) -> Alert {
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
    let body = AlertBody { health: None, components: BTreeMap::new(), reasons, details };
    let mut a = alert::build_with_id(id, AlertKind::SupportEscalation, Severity::Critical, ctx, body);
    if policy == crate::config::AlertPolicy::Focused {
        a.severity = super::focus::SUPPORT_ESCALATION;
    }
    a
}
