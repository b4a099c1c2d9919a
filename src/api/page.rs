//! `GET /accounts/{id}`: the account's page, server-rendered HTML with no script and no
//! external asset: the org chart coloured by band, an SVG sparkline of each entity's 90
//! days, and the latest alerts with their reasons.

use std::fmt::Write;

use serde_json::Value;

use super::directory::Found;
use super::json::{tree, Node};
use crate::alert::{renewal_in_days, stage_at};
use crate::engine::daily::DayClose;
use crate::engine::view::{AccountView, EntityView};
use crate::model::{Band, Level};
use crate::time::format_rfc3339;

/// Escapes text for HTML.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:70em}\
h1{margin:0 0 .2em}.sub{color:#666;margin-bottom:1.5em}\
ul.tree,ul.tree ul{list-style:none;padding-left:1.4em;margin:0}ul.tree{padding-left:0}\
.node{display:flex;align-items:center;gap:.7em;padding:.25em .4em;margin:.15em 0;border-left:6px solid #bbb;background:#fafafa}\
.node.green{border-color:#2e9d4a}.node.yellow{border-color:#d9a400}.node.red{border-color:#d33}\
.lvl{color:#777;font-size:12px;min-width:7em}.id{font-weight:600;min-width:12em}\
.score{font-variant-numeric:tabular-nums;min-width:4em}.band{font-size:12px;padding:0 .4em;border-radius:3px;color:#fff;background:#999}\
.band.green{background:#2e9d4a}.band.yellow{background:#b88a00}.band.red{background:#d33}\
.m{color:#555;font-size:12px}svg.spark{flex:none}\
.alert{border:1px solid #ddd;border-left:6px solid #999;padding:.5em .8em;margin:.5em 0}\
.alert.critical{border-left-color:#d33}.alert.warning{border-left-color:#d9a400}\
.alert h3{margin:0 0 .3em;font-size:14px}.alert ul{margin:.2em 0 0 1.2em;padding:0}";

fn band_class(band: Option<Band>) -> &'static str {
    band.map(|b| b.as_str()).unwrap_or("none")
}

/// An inline SVG polyline of the daily closes (0-100 upwards), with the band thresholds'
/// colours on the last point; empty days leave a gap.
pub(super) fn sparkline(days: &[(i32, Option<DayClose>)]) -> String {
    let (w, h) = (180.0, 28.0);
    let n = days.len().max(2) as f64 - 1.0;
    let mut svg = format!(
        "<svg class=\"spark\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"daily score, last {} days\">",
        days.len()
    );
    svg.push_str("<rect width=\"100%\" height=\"100%\" fill=\"#f0f0f0\"/>");
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, svg: &mut String| {
        if run.len() == 1 {
            run.push(run[0].clone());
        }
        if !run.is_empty() {
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"#345\" stroke-width=\"1.5\" points=\"{}\"/>",
                run.join(" ")
            );
        }
        run.clear();
    };
    let mut last = None;
    for (i, (_, c)) in days.iter().enumerate() {
        match c {
            Some(c) => {
                let x = i as f64 * w / n;
                let y = h - 2.0 - c.score() / 100.0 * (h - 4.0);
                run.push(format!("{x:.1},{y:.1}"));
                last = Some((x, y, c.band));
            }
            None => flush(&mut run, &mut svg),
        }
    }
    flush(&mut run, &mut svg);
    if let Some((x, y, band)) = last {
        let colour = match band {
            Band::Green => "#2e9d4a",
            Band::Yellow => "#d9a400",
            Band::Red => "#d33",
        };
        let _ = write!(svg, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"{colour}\"/>");
    }
    svg.push_str("</svg>");
    svg
}

fn entity_line(out: &mut String, level: Level, id: &str, e: Option<&EntityView>, as_of: Option<i64>) {
    let band = e.and_then(|e| e.health).map(|h| h.1);
    let score = e.and_then(|e| e.health).map(|h| format!("{:.1}", h.0)).unwrap_or_else(|| "–".into());
    let _ = write!(
        out,
        "<div class=\"node {cls}\" data-level=\"{lvl}\" data-id=\"{id}\"><span class=\"lvl\">{lvl}</span><span class=\"id\">{id}</span><span class=\"score\">{score}</span><span class=\"band {cls}\">{cls}</span>",
        cls = band_class(band),
        lvl = level.as_str(),
        id = esc(id),
    );
    if let (Some(e), Some(t)) = (e, as_of) {
        out.push_str(&sparkline(&e.history.daily(t)));
        let m = &e.metrics;
        let mut facts = format!("active {}/{}/{} (1/7/28 d)", m.active_users_1d, m.active_users_7d, m.active_users_28d);
        if let Some(s) = m.seats {
            let _ = write!(facts, ", seats {s}");
        }
        if let Some(d) = m.dora() {
            let _ = write!(facts, ", TTP {}", d.as_str());
        }
        let open: u64 = m.open_tickets.iter().sum();
        if open > 0 {
            let _ = write!(facts, ", {open} open tickets");
        }
        if m.champions > 0 {
            let _ = write!(facts, ", champions {}/{}", m.active_champions, m.champions);
        }
        let _ = write!(out, "<span class=\"m\">{}</span>", esc(&facts));
    }
    out.push_str("</div>");
}

fn node_html(out: &mut String, view: &AccountView, level: Level, id: &str, node: &Node, as_of: Option<i64>) {
    out.push_str("<li>");
    entity_line(out, level, id, view.entity(level, id), as_of);
    if !node.children.is_empty() {
        out.push_str("<ul>");
        for ((l, i), n) in &node.children {
            node_html(out, view, *l, i, n, as_of);
        }
        out.push_str("</ul>");
    }
    out.push_str("</li>");
}

fn alert_html(out: &mut String, a: &Value) {
    let s = |p: &str| a.pointer(p).and_then(Value::as_str).unwrap_or("");
    let at = a.get("at").and_then(Value::as_i64).map(format_rfc3339).unwrap_or_default();
    let _ = write!(
        out,
        "<div class=\"alert {sev}\"><h3>{kind} · {sev} · {lvl} {id} · {at}</h3><ul>",
        sev = esc(s("/severity")),
        kind = esc(s("/kind")),
        lvl = esc(s("/entity/level")),
        id = esc(s("/entity/id")),
    );
    for r in a.get("reasons").and_then(Value::as_array).into_iter().flatten() {
        let _ = write!(out, "<li>{}</li>", esc(r.as_str().unwrap_or("")));
    }
    out.push_str("</ul></div>");
}

/// The page of an account.
pub(super) fn account_page(found: &Found) -> String {
    let view = &found.view;
    let record = view.record.as_ref();
    let name = record.and_then(|r| r.name.as_deref()).unwrap_or(&view.account_id);
    let t = found.as_of.unwrap_or(view.evaluated_at);
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>{title} · cs-pulse</title><style>{STYLE}</style></head><body>",
        title = esc(name)
    );
    let health = view.account().and_then(|e| e.health);
    let _ = write!(
        out,
        "<h1>{}</h1><div class=\"sub\">account <code>{}</code> · score {} <span class=\"band {cls}\">{cls}</span> · stage {} · {} · as of {}</div>",
        esc(name),
        esc(&view.account_id),
        health.map(|h| format!("{:.1}", h.0)).unwrap_or_else(|| "–".into()),
        serde_json::to_value(stage_at(record, t)).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        renewal_in_days(record, t).map(|d| format!("renewal in {d} days")).unwrap_or_else(|| "no renewal date".into()),
        found.as_of.map(format_rfc3339).unwrap_or_else(|| "–".into()),
        cls = band_class(health.map(|h| h.1)),
    );
    out.push_str("<h2>Org chart</h2><ul class=\"tree\">");
    node_html(&mut out, view, Level::Account, &view.account_id, &tree(view), found.as_of);
    out.push_str("</ul><h2>Latest alerts</h2>");
    let alerts: Vec<Value> = view.alerts.iter().rev().filter_map(|a| serde_json::from_str(a).ok()).collect();
    if alerts.is_empty() {
        out.push_str("<p>None.</p>");
    }
    for a in &alerts {
        alert_html(&mut out, a);
    }
    out.push_str("</body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn a_sparkline_breaks_at_days_without_a_score() {
        let c = |t: u16| Some(DayClose { day: 0, tenths: t, band: Band::Green });
        let svg = sparkline(&[(0, None), (1, c(500)), (2, c(600)), (3, None), (4, c(1000))]);
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains("<circle"), "{svg}");
    }
}
