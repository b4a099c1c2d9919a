//! The JSON answers: an account's org chart as a tree, one entity, the list of accounts.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::directory::Found;
use crate::alert::{renewal_in_days, stage_at};
use crate::engine::view::{AccountView, EntityView};
use crate::model::Level;
use crate::time::{civil_from_days, format_rfc3339};

/// A node of the org chart: an entity and the entities under it.
#[derive(Debug, Default)]
pub(super) struct Node {
    pub(super) children: BTreeMap<(Level, String), Node>,
}

/// The org chart under the account: divisions, business units, groups, teams. A team
/// whose record leaves out a level hangs from the nearest level it names.
pub(super) fn tree(view: &AccountView) -> Node {
    let mut root = Node::default();
    for (team, [group, unit, division]) in view.teams.iter() {
        let mut node = &mut root;
        for (level, id) in [(Level::Division, division), (Level::BusinessUnit, unit), (Level::Group, group)] {
            if let Some(id) = id {
                node = node.children.entry((level, id.clone())).or_default();
            }
        }
        node.children.entry((Level::Team, team.clone())).or_default();
    }
    root
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// `YYYY-MM-DD` of a day number.
pub(super) fn date(day: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(day));
    format!("{y:04}-{m:02}-{d:02}")
}

/// An entity's fields: score, band, components, metrics and daily history.
pub(super) fn entity_fields(level: Level, id: &str, e: Option<&EntityView>, as_of: Option<i64>) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("level".into(), json!(level.as_str()));
    o.insert("id".into(), json!(id));
    let Some(e) = e else {
        o.insert("score".into(), Value::Null);
        o.insert("band".into(), Value::Null);
        return o;
    };
    o.insert("score".into(), json!(e.health.map(|h| h.0)));
    o.insert("band".into(), json!(e.health.map(|h| h.1)));
    let components: Map<String, Value> =
        e.components.iter().map(|c| (c.name.to_string(), json!({"score": c.score, "weight": c.weight}))).collect();
    o.insert("components".into(), Value::Object(components));
    let m = &e.metrics;
    let dora = m.dora().map(|d| d.as_str());
    o.insert(
        "metrics".into(),
        json!({
            "active_users_1d": m.active_users_1d,
            "active_users_7d": m.active_users_7d,
            "active_users_28d": m.active_users_28d,
            "active_users_7d_earlier": m.active_users_7d_earlier,
            "seats": m.seats,
            "utilization": m.utilization().map(|u| round(u, 3)),
            "breadth": m.breadth().map(|b| round(b, 3)),
            "key_features_used": m.key_features_used,
            "key_features_total": m.key_features_total,
            "trend": m.trend().map(|t| round(t, 3)),
            "time_to_production": {
                "changes": m.ttp_changes,
                "p50_ms": m.ttp_p50_ms,
                "p90_ms": m.ttp_p90_ms,
                "dora": dora,
            },
            "open_tickets": {
                "p1": m.open_tickets[0],
                "p2": m.open_tickets[1],
                "p3": m.open_tickets[2],
                "p4": m.open_tickets[3],
                "total": m.open_tickets.iter().sum::<u64>(),
            },
            "escalations_7d": m.escalations_7d,
            "champions": {"active": m.active_champions, "total": m.champions},
            "nps": m.nps.map(|n| round(n, 1)),
            "nps_responses": m.nps_responses,
            "csat": m.csat.map(|c| round(c, 2)),
            "csat_responses": m.csat_responses,
        }),
    );
    let history: Vec<Value> = match as_of {
        Some(t) => e
            .history
            .daily(t)
            .into_iter()
            .map(|(day, c)| json!({"date": date(day), "score": c.map(|c| c.score()), "band": c.map(|c| c.band)}))
            .collect(),
        None => Vec::new(),
    };
    o.insert("history".into(), Value::Array(history));
    o
}

fn node_json(view: &AccountView, level: Level, id: &str, node: &Node, as_of: Option<i64>) -> Value {
    let mut o = entity_fields(level, id, view.entity(level, id), as_of);
    let children: Vec<Value> = node.children.iter().map(|((l, i), n)| node_json(view, *l, i, n, as_of)).collect();
    o.insert("children".into(), Value::Array(children));
    Value::Object(o)
}

/// `as_of` fields of an answer.
fn as_of_fields(o: &mut Map<String, Value>, as_of: Option<i64>) {
    o.insert("as_of".into(), json!(as_of.map(format_rfc3339)));
    o.insert("as_of_ms".into(), json!(as_of));
}

/// The account's summary fields: name, stage and renewal as of `as_of`.
fn summary_fields(o: &mut Map<String, Value>, view: &AccountView, as_of: Option<i64>) {
    let record = view.record.as_ref();
    o.insert("account_id".into(), json!(view.account_id));
    o.insert("name".into(), json!(record.and_then(|r| r.name.as_deref())));
    o.insert("segment".into(), json!(record.and_then(|r| r.segment.as_deref())));
    let t = as_of.unwrap_or(view.evaluated_at);
    o.insert("stage".into(), json!(stage_at(record, t)));
    o.insert("renewal_in_days".into(), json!(renewal_in_days(record, t)));
}

/// The alerts, newest first, as written to the alert topic; those `keep` accepts.
fn alerts(view: &AccountView, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    view.alerts.iter().rev().filter_map(|a| serde_json::from_str::<Value>(a).ok()).filter(|a| keep(a)).collect()
}

/// `GET /v1/accounts/{id}`.
pub(super) fn account(found: &Found) -> Value {
    let view = &found.view;
    let mut o = Map::new();
    summary_fields(&mut o, view, found.as_of);
    as_of_fields(&mut o, found.as_of);
    o.insert("evaluated_at".into(), json!(format_rfc3339(view.evaluated_at)));
    o.insert("alerts".into(), Value::Array(alerts(view, |_| true)));
    o.insert("tree".into(), node_json(view, Level::Account, &view.account_id, &tree(view), found.as_of));
    Value::Object(o)
}

/// `GET /v1/entities/{level}/{account}/{id}`; `None` when the account has no such entity.
pub(super) fn entity(found: &Found, level: Level, id: &str) -> Option<Value> {
    let view = &found.view;
    let e = view.entity(level, id)?;
    let mut o = entity_fields(level, id, Some(e), found.as_of);
    o.insert("account_id".into(), json!(view.account_id));
    as_of_fields(&mut o, found.as_of);
    let about = |a: &Value| {
        a.pointer("/entity/level").and_then(Value::as_str) == Some(level.as_str())
            && a.pointer("/entity/id").and_then(Value::as_str) == Some(id)
    };
    o.insert("alerts".into(), Value::Array(alerts(view, about)));
    Some(Value::Object(o))
}

/// One row of `GET /v1/accounts`.
pub(super) fn summary(found: &Found) -> Value {
    let view = &found.view;
    let mut o = Map::new();
    summary_fields(&mut o, view, found.as_of);
    let health = view.account().and_then(|e| e.health);
    o.insert("score".into(), json!(health.map(|h| h.0)));
    o.insert("band".into(), json!(health.map(|h| h.1)));
    as_of_fields(&mut o, found.as_of);
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_422), "2025-11-30");
    }
}
