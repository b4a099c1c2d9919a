//! The backtest's HTML report: one self-contained file that opens offline (no network
//! asset, no external script or font). It holds the summary table of each model, side by
//! side, and a health timeline per account: its daily score under each model, its alerts,
//! and its outcomes. The table is plain HTML; the timelines are SVG drawn in the browser
//! from the data embedded in the page, a page of accounts at a time.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use super::summary::SignalRow;
use super::Backtest;
use crate::model::{Alert, OutcomeRecord, ScoreRecord};
use crate::time::DAY_MS;

/// Alerts drawn per account and model, the earliest first; the rest are counted.
const MAX_MARKS: usize = 400;

/// Points of a timeline at most: a history longer than this many days is drawn a point
/// every few days (an odd event decades early must not make every timeline that long).
const MAX_POINTS: i64 = 1_500;

/// Every account's history under one model: its account score records and its alerts.
#[derive(Debug, Clone, Default)]
pub struct Timelines {
    /// The first and last tick of the history, epoch ms.
    pub span: Option<(i64, i64)>,
    /// By account: its score records, `(at, score)` in time order.
    pub scores: BTreeMap<String, Vec<(i64, f64)>>,
    /// By account: its alerts (every level), time, kind, severity, level and entity id, in
    /// time order.
    #[allow(clippy::type_complexity)]
    pub alerts: BTreeMap<String, Vec<(i64, &'static str, &'static str, &'static str, String)>>,
}

impl Timelines {
    /// From a replay's account score records and alerts, over the ticks from `first_ms`
    /// to `last_ms`.
    pub fn build(scores: &[ScoreRecord], alerts: &[Alert], first_ms: i64, last_ms: i64) -> Self {
        let mut t = Timelines { span: Some((first_ms, last_ms.max(first_ms))), ..Default::default() };
        for s in scores {
            t.scores.entry(s.entity.account_id.clone()).or_default().push((s.at, s.score));
        }
        for a in alerts {
            t.alerts.entry(a.entity.account_id.clone()).or_default().push((
                a.at,
                a.kind.as_str(),
                a.severity.as_str(),
                a.entity.level.as_str(),
                a.entity.id.clone(),
            ));
        }
        for v in t.scores.values_mut() {
            v.sort_by_key(|(at, _)| *at);
        }
        for v in t.alerts.values_mut() {
            v.sort_by_key(|a| a.0);
        }
        t
    }
}

/// The points the timelines are drawn at: from `first_day_ms` (a UTC midnight), one every
/// `step_days`, `points` of them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Grid {
    first_day_ms: i64,
    step_days: i64,
    points: usize,
}

impl Grid {
    fn over(first_ms: i64, last_ms: i64) -> Self {
        let first_day_ms = first_ms.div_euclid(DAY_MS) * DAY_MS;
        let span_days = (last_ms.saturating_sub(first_day_ms) / DAY_MS).max(0) + 1;
        let step_days = (span_days + MAX_POINTS - 1) / MAX_POINTS;
        let points = usize::try_from((span_days + step_days - 1) / step_days).unwrap_or(0);
        Grid { first_day_ms, step_days, points }
    }

    /// The score at the end of each step (the last record at or before then); `None`
    /// before the first record.
    fn sample(&self, history: &[(i64, f64)]) -> Vec<Option<f64>> {
        let (mut i, mut current) = (0, None);
        (0..self.points)
            .map(|d| {
                let end = self.first_day_ms.saturating_add((d as i64 + 1) * self.step_days * DAY_MS);
                while i < history.len() && history[i].0 <= end {
                    current = Some(history[i].1);
                    i += 1;
                }
                current
            })
            .collect()
    }

    /// Where `t` falls, in points.
    fn position(&self, t: i64) -> f64 {
        let p = (t - self.first_day_ms) as f64 / (self.step_days * DAY_MS) as f64;
        (p * 100.0).round() / 100.0
    }
}

/// One model in the report.
pub struct Model<'a> {
    /// Its name: the configuration file, or "default model".
    pub name: String,
    /// Its band thresholds, for the timelines' shading.
    pub green: f64,
    /// The yellow threshold.
    pub yellow: f64,
    /// What its backtest found.
    pub backtest: &'a Backtest,
    /// Its accounts' histories.
    pub timelines: &'a Timelines,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.0}%", v * 100.0))
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn cells(r: Option<&SignalRow>) -> String {
    match r {
        None => "<td>–</td>".repeat(5),
        Some(r) => format!(
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            r.count,
            num(r.per_account_month, 3),
            pct(r.churn.precision),
            pct(r.churn.recall),
            num(r.median_lead_days, 0)
        ),
    }
}

/// The summary table: a row per signal, a group of columns per model.
fn summary_table(models: &[Model<'_>]) -> String {
    let mut t = String::from("<table class=\"summary\"><thead><tr><th rowspan=\"2\">signal</th>");
    for m in models {
        let _ = write!(t, "<th colspan=\"5\">{}</th>", esc(&m.name));
    }
    t.push_str("</tr><tr>");
    for _ in models {
        t.push_str(
            "<th>count</th><th>per account per month</th><th>precision</th><th>recall</th><th>median lead, days</th>",
        );
    }
    t.push_str("</tr></thead><tbody>");
    let mut rows: Vec<(String, Vec<Option<&SignalRow>>)> = vec![
        ("entry into red".into(), models.iter().map(|m| Some(&m.backtest.summary.band_model.red)).collect()),
        (
            "critical alerts (any kind)".into(),
            models.iter().map(|m| Some(&m.backtest.summary.band_model.critical)).collect(),
        ),
    ];
    let mut kinds: Vec<(&'static str, &'static str)> = Vec::new();
    for m in models {
        for a in &m.backtest.summary.alerts {
            let k = (a.kind.as_str(), a.severity.as_str());
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
    }
    kinds.sort_unstable();
    for (kind, severity) in kinds {
        let per_model = models
            .iter()
            .map(|m| {
                m.backtest
                    .summary
                    .alerts
                    .iter()
                    .find(|a| a.kind.as_str() == kind && a.severity.as_str() == severity)
                    .map(|a| &a.row)
            })
            .collect();
        rows.push((format!("{kind} ({severity})"), per_model));
    }
    for (name, per_model) in rows {
        let _ = write!(t, "<tr><th>{}</th>", esc(&name));
        for r in per_model {
            t.push_str(&cells(r));
        }
        t.push_str("</tr>");
    }
    t.push_str("</tbody></table>");
    t
}

/// The discrimination lines: AUC of the score 90 days before each outcome.
fn auc_table(models: &[Model<'_>]) -> String {
    let mut t = String::from(
        "<table class=\"auc\"><thead><tr><th>model</th><th>ROC AUC, churned against renewed and expanded</th>\
         <th>ROC AUC, contracted against renewed and expanded</th><th>outcomes with a score 90 days before</th></tr></thead><tbody>",
    );
    for m in models {
        let b = &m.backtest.summary.band_model;
        let n: Vec<String> = b.scored_outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = write!(
            t,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.name),
            num(b.auc_churned, 3),
            num(b.auc_contracted, 3),
            esc(&n.join(", "))
        );
    }
    t.push_str("</tbody></table>");
    t
}

/// The page's data for the timelines, as JSON.
fn timeline_data(models: &[Model<'_>], outcomes: &[OutcomeRecord]) -> Value {
    let spans = models.iter().filter_map(|m| m.timelines.span);
    let first = spans.clone().map(|(f, _)| f).min().unwrap_or(0);
    let last = spans.map(|(_, l)| l).max().unwrap_or(first);
    let grid = Grid::over(first, last);
    let mut by_account: BTreeMap<&str, Vec<(f64, &str)>> = BTreeMap::new();
    for o in outcomes {
        by_account.entry(&o.account_id).or_default().push((grid.position(o.at), o.outcome.as_str()));
    }
    let mut ids: Vec<&str> = models.iter().flat_map(|m| m.timelines.scores.keys().map(String::as_str)).collect();
    ids.sort_unstable();
    ids.dedup();
    let accounts: Vec<Value> = ids
        .iter()
        .map(|id| {
            let scores: Vec<Value> = models
                .iter()
                .map(|m| {
                    let history = m.timelines.scores.get(*id).map(Vec::as_slice).unwrap_or_default();
                    let points = grid.sample(history);
                    Value::Array(
                        points
                            .into_iter()
                            .map(|s| s.map_or(Value::Null, |s| json!((s * 10.0).round() / 10.0)))
                            .collect(),
                    )
                })
                .collect();
            let alerts: Vec<Value> = models
                .iter()
                .map(|m| {
                    let list = m.timelines.alerts.get(*id).map(Vec::as_slice).unwrap_or_default();
                    let marks: Vec<Value> = list
                        .iter()
                        .take(MAX_MARKS)
                        .map(|(at, kind, sev, level, entity)| json!([grid.position(*at), kind, sev, level, entity]))
                        .collect();
                    json!({"marks": marks, "total": list.len()})
                })
                .collect();
            let outcomes: Vec<Value> =
                by_account.get(id).map(|v| v.iter().map(|(d, o)| json!([d, o])).collect()).unwrap_or_default();
            json!({"id": id, "scores": scores, "alerts": alerts, "outcomes": outcomes})
        })
        .collect();
    json!({
        "first_day_ms": grid.first_day_ms,
        "step_days": grid.step_days,
        "days": grid.points,
        "models": models.iter().map(|m| json!({"name": m.name, "green": m.green, "yellow": m.yellow})).collect::<Vec<_>>(),
        "accounts": accounts,
    })
}

/// The report, as one HTML document.
pub fn render(models: &[Model<'_>], outcomes: &[OutcomeRecord]) -> String {
    let Some(first) = models.first() else { return String::new() };
    let b = first.backtest;
    let s = &b.summary;
    let outcome_counts: Vec<String> = s.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    // No `<` inside the script element: `\u003c` is the same character to JSON.parse.
    let data = timeline_data(models, outcomes).to_string().replace('<', "\\u003c");
    let title = if models.len() > 1 { "cs-pulse backtest: two models side by side" } else { "cs-pulse backtest" };
    let mut h = String::with_capacity(data.len() + 16_384);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{CSS}</style></head><body>\
         <h1>{title}</h1>\
         <p class=\"meta\">{} accounts scored over {:.1} months; {} events replayed, {} ticks. Outcomes: {} \
         (read {}, refused {}). A churn counts as foretold by a signal within {} days before it.</p>",
        s.accounts,
        s.months,
        b.replay.events,
        b.replay.ticks,
        esc(&if outcome_counts.is_empty() { "none".into() } else { outcome_counts.join(", ") }),
        b.outcomes_read,
        b.outcomes_refused,
        b.horizon_days,
    );
    h.push_str("<h2>Does the score tell churn apart?</h2>");
    h.push_str(&auc_table(models));
    h.push_str(
        "<p class=\"note\">The account's score 90 days before each outcome; 0.5 is a coin toss, 1.0 orders every \
         churned account below every renewed one.</p>",
    );
    h.push_str("<h2>Signals against churn</h2>");
    h.push_str(&summary_table(models));
    h.push_str(
        "<p class=\"note\">Precision: of the signals, the share followed by their account's churn within the \
         horizon. Recall: of the churns of accounts scored before, the share with a signal within the horizon \
         before. Lead: days from the first such signal to the churn.</p>",
    );
    h.push_str(
        "<h2>Health timelines</h2><div class=\"controls\"><label>outcome <select id=\"filter\">\
         <option value=\"all\">all</option><option value=\"churned\">churned</option>\
         <option value=\"contracted\">contracted</option><option value=\"renewed\">renewed</option>\
         <option value=\"expanded\">expanded</option><option value=\"none\">no outcome</option></select></label> \
         <label>account <input id=\"search\" type=\"search\" placeholder=\"id contains\"></label> \
         <button id=\"prev\">previous</button> <span id=\"page\"></span> <button id=\"next\">next</button></div>\
         <div class=\"legend\" id=\"legend\"></div><div id=\"timelines\"></div>",
    );
    let _ = writeln!(
        h,
        "<script>{ERRORS}</script><script type=\"application/json\" id=\"data\">{data}</script><script>{JS}</script></body></html>"
    );
    h
}

const CSS: &str =
    "body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fff}\
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 8px}.meta,.note{color:#555;max-width:70em}\
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f4f4f4}tbody th{text-align:left;font-weight:normal}\
.controls{margin:8px 0}.controls label{margin-right:12px}.legend span{margin-right:14px}\
.account{margin:14px 0 20px}.account h3{font-size:14px;margin:0 0 2px}.account .sub{color:#555;font-size:12px}\
svg{display:block;max-width:100%;height:auto}";

/// Script errors are kept on the page (`data-errors` of the root element), for a reader
/// and for the browser test.
const ERRORS: &str = "window.addEventListener('error',function(e){var d=document.documentElement;\
d.setAttribute('data-errors',(d.getAttribute('data-errors')||'')+e.message+'; ');});";

const JS: &str = r##"
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("data").textContent);
  var NS = "http://www.w3.org/2000/svg", PER_PAGE = 20, W = 960, H = 170, L = 36, R = 10, T = 14, B = 22;
  var SEV = { critical: "#c62828", warning: "#ef6c00", info: "#1565c0" };
  var LINE = ["#222", "#6a1b9a"], DASH = ["", "5,3"];
  var state = { page: 0, filter: "all", search: "" };
  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(e); }
    return e;
  }
  function x(day) { return L + (W - L - R) * (data.days > 1 ? day / (data.days - 1) : 0); }
  function y(score) { return T + (H - T - B) * (100 - score) / 100; }
  function date(point) {
    return new Date(data.first_day_ms + point * data.step_days * 86400000).toISOString().slice(0, 10);
  }
  function churnDay(a) {
    for (var i = 0; i < a.outcomes.length; i++) { if (a.outcomes[i][1] === "churned") { return a.outcomes[i][0]; } }
    return null;
  }
  function outcomeOf(a) { return a.outcomes.length ? a.outcomes[a.outcomes.length - 1][1] : "none"; }
  function lowest(a) {
    var m = 101;
    a.scores[0].forEach(function (s) { if (s !== null && s < m) { m = s; } });
    return m;
  }
  var order = data.accounts.slice().sort(function (p, q) {
    var cp = churnDay(p), cq = churnDay(q);
    if ((cp === null) !== (cq === null)) { return cp === null ? 1 : -1; }
    if (cp !== null && cp !== cq) { return cp - cq; }
    return lowest(p) - lowest(q) || (p.id < q.id ? -1 : 1);
  });
  function chart(a) {
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img",
      "aria-label": "health of " + a.id });
    var m0 = data.models[0];
    [[0, m0.yellow, "#fdecea"], [m0.yellow, m0.green, "#fff8e1"], [m0.green, 100, "#e8f5e9"]].forEach(function (b) {
      el("rect", { x: L, y: y(b[1]), width: W - L - R, height: Math.max(0, y(b[0]) - y(b[1])), fill: b[2] }, svg);
    });
    [0, 40, 70, 100].forEach(function (s) {
      var t = el("text", { x: L - 4, y: y(s) + 4, "text-anchor": "end", "font-size": 10, fill: "#666" }, svg);
      t.textContent = s;
    });
    // a line at each month's first point (each year's, over a long history)
    var month = date(0).slice(0, 7), long = data.days * data.step_days > 1100;
    for (var d = 1; d < data.days; d++) {
      var m = date(d).slice(0, 7);
      if (m === month) { continue; }
      month = m;
      if (long && m.slice(5) !== "01") { continue; }
      el("line", { x1: x(d), x2: x(d), y1: T, y2: H - B, stroke: "#ddd" }, svg);
      var t = el("text", { x: x(d) + 2, y: H - 8, "font-size": 10, fill: "#666" }, svg);
      t.textContent = long ? m.slice(0, 4) : m;
    }
    a.scores.forEach(function (series, m) {
      var pts = [];
      function flush() {
        if (pts.length) {
          el("polyline", { points: pts.join(" "), fill: "none", stroke: LINE[m % 2], "stroke-width": 1.5,
            "stroke-dasharray": DASH[m % 2], "class": "score model-" + m }, svg);
        }
        pts = [];
      }
      series.forEach(function (s, d) { if (s === null) { flush(); } else { pts.push(x(d).toFixed(1) + "," + y(s).toFixed(1)); } });
      flush();
    });
    a.alerts.forEach(function (list, m) {
      list.marks.forEach(function (k) {
        var cx = x(k[0]), cy = m === 0 ? T - 6 : H - B + 8;
        var mark = m === 0
          ? el("path", { d: "M" + (cx - 4) + "," + (cy - 4) + "h8l-4,7z", fill: SEV[k[2]] || "#555", "class": "alert" }, svg)
          : el("circle", { cx: cx, cy: cy, r: 3.5, fill: SEV[k[2]] || "#555", "class": "alert" }, svg);
        var tip = el("title", {}, mark);
        tip.textContent = date(Math.floor(k[0])) + " " + k[2] + " " + k[1] + " (" + k[3] + " " + k[4] + ")" +
          (data.models.length > 1 ? ", " + data.models[m].name : "");
      });
    });
    a.outcomes.forEach(function (o) {
      var color = o[1] === "churned" ? "#b71c1c" : o[1] === "contracted" ? "#e65100" : "#2e7d32";
      el("line", { x1: x(o[0]), x2: x(o[0]), y1: T, y2: H - B, stroke: color, "stroke-width": 2,
        "stroke-dasharray": "4,2", "class": "outcome" }, svg);
      var t = el("text", { x: x(o[0]) + 3, y: T + 10, "font-size": 11, fill: color }, svg);
      t.textContent = o[1] + " " + date(Math.floor(o[0]));
    });
    return svg;
  }
  function visible() {
    return order.filter(function (a) {
      return (state.filter === "all" || outcomeOf(a) === state.filter || (state.filter === "churned" && churnDay(a) !== null)) &&
        (!state.search || a.id.indexOf(state.search) >= 0);
    });
  }
  function draw() {
    var list = visible(), pages = Math.max(1, Math.ceil(list.length / PER_PAGE));
    state.page = Math.min(state.page, pages - 1);
    var box = document.getElementById("timelines");
    while (box.firstChild) { box.removeChild(box.firstChild); }
    list.slice(state.page * PER_PAGE, (state.page + 1) * PER_PAGE).forEach(function (a) {
      var div = document.createElement("div");
      div.className = "account";
      var h = document.createElement("h3");
      h.textContent = a.id;
      div.appendChild(h);
      var sub = document.createElement("div");
      sub.className = "sub";
      var parts = a.outcomes.map(function (o) { return o[1] + " " + date(Math.floor(o[0])); });
      a.alerts.forEach(function (l, m) {
        parts.push(l.total + " alerts" + (data.models.length > 1 ? " (" + data.models[m].name + ")" : "") +
          (l.total > l.marks.length ? ", the first " + l.marks.length + " drawn" : ""));
      });
      sub.textContent = parts.join(" · ");
      div.appendChild(sub);
      div.appendChild(chart(a));
      box.appendChild(div);
    });
    document.documentElement.setAttribute("data-rendered", box.getElementsByTagName("svg").length);
    document.getElementById("page").textContent = list.length ? "page " + (state.page + 1) + " of " + pages + " (" + list.length + " accounts)" : "no account";
  }
  var legend = document.getElementById("legend");
  data.models.forEach(function (m, i) {
    var s = document.createElement("span");
    s.textContent = (i === 0 ? "solid line, ▼ alerts above: " : "dashed line, ● alerts below: ") + m.name;
    legend.appendChild(s);
  });
  ["critical", "warning", "info"].forEach(function (k) {
    var s = document.createElement("span");
    s.style.color = SEV[k];
    s.textContent = "■ " + k;
    legend.appendChild(s);
  });
  document.getElementById("filter").addEventListener("change", function (e) { state.filter = e.target.value; state.page = 0; draw(); });
  document.getElementById("search").addEventListener("input", function (e) { state.search = e.target.value; state.page = 0; draw(); });
  document.getElementById("prev").addEventListener("click", function () { state.page = Math.max(0, state.page - 1); draw(); });
  document.getElementById("next").addEventListener("click", function () { state.page += 1; draw(); });
  draw();
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Band, EntityRef, Level};

    const DAY: i64 = DAY_MS;
    const H: i64 = 3_600_000;
    const T0: i64 = 20_000 * DAY;

    fn score(account: &str, at: i64, score: f64) -> ScoreRecord {
        ScoreRecord {
            entity: EntityRef { level: Level::Account, id: account.into(), account_id: account.into() },
            at,
            score,
            band: Band::Green,
            components: BTreeMap::new(),
        }
    }

    #[test]
    fn daily_scores_by_hand() {
        // a tick at midnight evaluates the day before it: it is that day's score
        let a = [(T0 + 10 * H, 50.0), (T0 + DAY, 60.0), (T0 + 2 * DAY + 5 * H, 30.0)];
        let g = Grid::over(T0 + 10 * H, T0 + 3 * DAY + H);
        assert_eq!(g, Grid { first_day_ms: T0, step_days: 1, points: 4 });
        assert_eq!(g.sample(&a), vec![Some(60.0), Some(60.0), Some(30.0), Some(30.0)]);
        assert_eq!(
            g.sample(&[(T0 + 2 * DAY + H, 80.0)]),
            vec![None, None, Some(80.0), Some(80.0)],
            "none before the first"
        );
        assert_eq!(g.position(T0 + 2 * DAY + 12 * H), 2.5);
    }

    #[test]
    fn a_long_history_is_drawn_a_point_every_few_days() {
        // an event from 1971 and one from today: 55 years, at most MAX_POINTS points
        let g = Grid::over(365 * DAY, 20_000 * DAY);
        assert_eq!(g.step_days, 14);
        assert!(g.points as i64 <= MAX_POINTS && g.points as i64 * g.step_days >= 20_000 - 365, "{g:?}");
        assert_eq!(g.sample(&[(366 * DAY, 10.0), (19_999 * DAY, 90.0)]).last(), Some(&Some(90.0)));
    }

    #[test]
    fn ids_cannot_close_the_data_script() {
        let scores = [score("</script><b>x", T0 + DAY, 50.0)];
        let timelines = Timelines::build(&scores, &[], T0, T0 + 2 * DAY);
        let json_of = |html: &str| -> Value {
            let start = html.find("id=\"data\">").unwrap() + "id=\"data\">".len();
            serde_json::from_str(&html[start..start + html[start..].find("</script>").unwrap()]).unwrap()
        };
        let backtest = Backtest {
            policy: Default::default(),
            replay: Default::default(),
            outcomes_read: 0,
            outcomes_refused: 0,
            horizon_days: 180,
            summary: super::super::summary::summarize(super::super::summary::Inputs {
                alerts: &[],
                scores: &scores,
                outcomes: &[],
                horizon_days: 180,
                span_ms: DAY,
                end_ms: T0 + DAY,
            }),
            timelines: timelines.clone(),
            outcomes: Vec::new(),
        };
        let model = Model { name: "<m>".into(), green: 70.0, yellow: 40.0, backtest: &backtest, timelines: &timelines };
        let html = render(&[model], &[]);
        assert_eq!(html.matches("</script>").count(), 3, "the error hook, the data and the script end once each");
        assert_eq!(json_of(&html)["accounts"][0]["id"], "</script><b>x", "the id is kept, escaped for the page");
        assert!(html.contains("<th colspan=\"5\">&lt;m&gt;</th>"), "names are escaped in the table");
        assert!(!html.contains("<m>"), "nor raw in the data");
        assert_eq!(json_of(&html)["models"][0]["name"], "<m>");
        let comment = Timelines::build(&[score("<!--", T0 + DAY, 50.0)], &[], T0, T0 + 2 * DAY);
        let model = Model { name: "m".into(), green: 70.0, yellow: 40.0, backtest: &backtest, timelines: &comment };
        assert_eq!(json_of(&render(&[model], &[]))["accounts"][0]["id"], "<!--", "the data still parses");
    }
}
