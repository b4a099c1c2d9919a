//! Late data against a real Apache Kafka broker: a day of support tickets arrives in one
//! batch a day and more late, as a CRM sync delivers them. The late tickets count from the
//! next tick, each P1 and escalation raises its `support_escalation` at its own time, an
//! event 91 days late is dead-lettered `too_late`, and `run` writes exactly what `replay`
//! writes when both read the events in the same order.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use common::*;

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;
/// 2026-03-02T00:00:00Z: in the past of any run.
const BASE: i64 = 1_772_409_600_000;
/// The last event before the batch: usage and support both end here, so that the
/// watermark (1 h behind) is the same whether or not the support partition is idle.
const BEFORE_BATCH: i64 = BASE + 92 * DAY + 18 * H;

fn usage(id: String, at: i64, account: &str, team: &str, user: &str) -> Value {
    json!({"event_id": id, "occurred_at": at, "account_id": account, "team_id": team, "user_id": user, "type": "page_view"})
}

fn ticket(id: &str, at: i64, kind: &str, ticket: &str, prio: Option<&str>, team: &str) -> Value {
    let mut v = json!({"event_id": id, "occurred_at": at, "account_id": "acme", "team_id": team, "kind": kind, "ticket_id": ticket});
    if let Some(p) = prio {
        v["priority"] = json!(p);
    }
    v
}

/// Usage of both accounts' teams every 6 hours in `[from, to]`.
fn usage_between(from: i64, to: i64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut t = from;
    while t <= to {
        for (account, team) in [("acme", "t1"), ("acme", "t2"), ("globex", "g1")] {
            let user = format!("u{}", (t / (6 * H)) % 5);
            out.push(usage(format!("{account}-{team}-{t}"), t, account, team, &user));
        }
        t += 6 * H;
    }
    out
}

/// Produces the records (keyed by account) and appends them to `file`, in that order.
fn produce(bootstrap: &str, topic: &str, file: &std::path::Path, records: &[Value]) -> Result {
    let lines: Vec<(String, String)> =
        records.iter().map(|r| (r["account_id"].as_str().unwrap_or_default().to_string(), r.to_string())).collect();
    let refs: Vec<(&str, &str)> = lines.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    kcat_produce(bootstrap, topic, &refs)?;
    let mut text = std::fs::read_to_string(file).unwrap_or_default();
    for (_, v) in &lines {
        text.push_str(v);
        text.push('\n');
    }
    std::fs::write(file, text)?;
    Ok(())
}

fn records(bootstrap: &str, topic: &str) -> Result<Vec<Value>> {
    Ok(kcat_read(bootstrap, topic)?.iter().filter_map(|(_, _, v)| serde_json::from_str(v).ok()).collect())
}

/// `(level, id, account, at, score, components)` of each score record up to `last_tick`.
fn score_rows(scores: &[Value], last_tick: i64) -> BTreeSet<String> {
    scores
        .iter()
        .filter(|s| s["at"].as_i64().is_some_and(|at| at <= last_tick))
        .map(|s| {
            json!([
                s["entity"]["level"],
                s["entity"]["id"],
                s["entity"]["account_id"],
                s["at"],
                s["score"],
                s["band"],
                s["components"]
            ])
            .to_string()
        })
        .collect()
}

#[test]
#[ignore = "needs a real Kafka broker: run `bash tests/run-all.sh`"]
fn a_crm_batch_a_day_late_counts_alerts_and_matches_replay() -> Result {
    let bootstrap = broker();
    let names = Names::new("crm");
    let dir = temp_dir(&names)?;
    let port = free_port();
    let config = write_config(&dir, &bootstrap, &names, &format!("{}-g", names.prefix), port, "")?;
    cs_pulse::kafka::admin::create_topics(&cs_pulse::config::Config::load(&config)?, 1)?;
    let (usage_topic, support_topic) = (names.topic("usage"), names.topic("support"));
    let (usage_file, support_file) = (dir.join("usage.ndjson"), dir.join("support.ndjson"));

    // 92 days on time: usage, and a globex ticket opened and resolved. Both topics hold
    // their records before `run` starts, so that neither partition is idle while the
    // other is read: every one of these events is on time, as in replay.
    produce(&bootstrap, &usage_topic, &usage_file, &usage_between(BASE, BEFORE_BATCH))?;
    let g = |id: &str, at, kind, prio| {
        let mut v = ticket(id, at, kind, "G-1", prio, "g1");
        v["account_id"] = json!("globex");
        v
    };
    let on_time = vec![
        g("g-open", BASE + 10 * DAY, "ticket_opened", Some("P2")),
        g("g-resolved", BASE + 12 * DAY, "ticket_resolved", None),
        g("g-last", BEFORE_BATCH, "ticket_reopened", None),
    ];
    produce(&bootstrap, &support_topic, &support_file, &on_time)?;
    let mut run = RunProcess::start(&config, dir.join("run.log"), port)?;
    run.wait_watermark(BEFORE_BATCH - H, Duration::from_secs(240))?;
    let evaluated = BEFORE_BATCH - H;

    // the tickets of day 90 arrive in one batch, with one synced 91 days late
    let day90 = BASE + 90 * DAY;
    let too_late_at = evaluated - 91 * DAY;
    let batch = vec![
        ticket("a1-open", day90 + 9 * H, "ticket_opened", "A-1", Some("P1"), "t1"),
        ticket("a2-open", day90 + 10 * H, "ticket_opened", "A-2", Some("P1"), "t1"),
        ticket("a3-resolved", day90 + 11 * H, "ticket_resolved", "A-3", None, "t1"),
        ticket("a3-open", day90 + 10 * H + 30 * 60_000, "ticket_opened", "A-3", Some("P2"), "t1"),
        ticket("a4-escalated", day90 + 12 * H, "ticket_escalated", "A-4", Some("P2"), "t2"),
        ticket("a5-open", too_late_at, "ticket_opened", "A-5", Some("P1"), "t1"),
    ];
    produce(&bootstrap, &support_topic, &support_file, &batch)?;
    // read before the stream goes on (replay reads the batch right after the last
    // on-time record); then half a day more
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while run.metric_sum("cs_pulse_late_events_total") != Some(6.0) {
        assert!(std::time::Instant::now() < deadline, "the batch was not read: {}", run.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
    let end = BEFORE_BATCH + 12 * H;
    produce(&bootstrap, &usage_topic, &usage_file, &usage_between(BEFORE_BATCH + 6 * H, end))?;
    produce(&bootstrap, &support_topic, &support_file, &[g("g-end", end, "ticket_resolved", None)])?;
    run.wait_watermark(end - H, Duration::from_secs(240))?;
    let last_tick = end - H;
    std::thread::sleep(Duration::from_secs(2));
    let late = run.metric_sum("cs_pulse_late_events_total");
    let scraped = scrape(port).unwrap_or_default();
    assert_eq!(run.terminate(Duration::from_secs(30))?, Some(0), "{}", run.log_text());

    // every late event counted; the one beyond 90 days dead-lettered too_late, alone
    assert_eq!(late, Some(6.0), "late events counted");
    let too_late_line = format!("cs_pulse_invalid_events_total{{reason=\"too_late\",topic=\"{support_topic}\"}} 1");
    assert!(scraped.contains(&too_late_line), "{too_late_line} not in\n{scraped}");
    let dead = kcat_read(&bootstrap, &names.topic("deadletter"))?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].1.contains("cs_pulse.reason=too_late"), "{:?}", dead[0]);
    assert!(dead[0].2.contains("\"a5-open\""), "the original record: {:?}", dead[0]);

    // each late P1 and the late escalation alert, at their own times; the too-late P1 not
    let alerts = records(&bootstrap, &names.topic("alerts"))?;
    let escalations: BTreeSet<(String, i64)> = alerts
        .iter()
        .filter(|a| a["kind"] == "support_escalation")
        .map(|a| (a["details"]["ticket_id"].as_str().unwrap_or_default().to_string(), a["at"].as_i64().unwrap_or(0)))
        .collect();
    let want: BTreeSet<(String, i64)> =
        [("A-1", day90 + 9 * H), ("A-2", day90 + 10 * H), ("A-4", day90 + 12 * H)].map(|(t, at)| (t.into(), at)).into();
    assert_eq!(escalations, want);

    // the open P1 tickets count for team t1 from the next tick on, not before
    let scores = records(&bootstrap, &names.topic("scores"))?;
    let support_of = |team: &str, at_or_before: i64| {
        scores
            .iter()
            .filter(|s| s["entity"]["id"] == team && s["at"].as_i64().is_some_and(|at| at <= at_or_before))
            .max_by_key(|s| s["at"].as_i64())
            .map(|s| (s["at"].as_i64().unwrap_or(0), s["components"]["support"].as_f64()))
    };
    assert_eq!(support_of("t1", evaluated).map(|s| s.1), Some(Some(100.0)), "written before the batch");
    // open (P1 each: -30); A-3 closed: opened 10:30, resolved 11:00
    assert_eq!(support_of("t1", evaluated + H), Some((evaluated + H, Some(40.0))));
    // opened by its escalation (P2: -10), and an escalation in 7 days (-15)
    assert_eq!(support_of("t2", evaluated + H), Some((evaluated + H, Some(75.0))));

    // replay, reading the files in the order run read the topics, writes the same
    let replayed = replay_alerts(&config, &dir)?;
    let run_ids: BTreeSet<String> = alerts.iter().filter_map(|a| a["alert_id"].as_str().map(String::from)).collect();
    let replay_ids: BTreeSet<String> = replayed
        .iter()
        .filter(|(_, a)| a["kind"] == "support_escalation" || a["at"].as_i64().is_some_and(|at| at <= last_tick))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(run_ids, replay_ids, "run and replay alerts differ");
    let replay_scores_file = dir.join("replay-scores.ndjson");
    let out = cs_pulse()
        .args(["replay", "--usage"])
        .arg(&usage_file)
        .arg("--support")
        .arg(&support_file)
        .arg("--out")
        .arg(dir.join("replay-out.ndjson"))
        .arg("--scores")
        .arg(&replay_scores_file)
        .arg("--config")
        .arg(&config)
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replay_scores: Vec<Value> =
        std::fs::read_to_string(&replay_scores_file)?.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(score_rows(&scores, last_tick), score_rows(&replay_scores, last_tick), "run and replay scores differ");
    eprintln!("crm batch: {} alerts, {} score records, equal to replay", run_ids.len(), scores.len());
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
