//! `replay` on odd and hostile input: bytes that are not UTF-8, a byte-order mark, event
//! times far in the future, and trial usage before a contract starts. Nothing crashes,
//! stops the replay or makes later valid events late.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cs_pulse::config::Config;
use cs_pulse::replay::{replay, ReplayFiles, ReplaySummary};
use serde_json::{json, Value};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const DAY: i64 = 86_400_000;
/// 2026-03-02T00:00:00Z, in the past of any run of this test.
const BASE: i64 = 1_772_409_600_000;

fn dir(name: &str) -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("cs-pulse-hostile-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn write(path: &Path, bytes: &[u8]) -> Result {
    std::fs::File::create(path)?.write_all(bytes)?;
    Ok(())
}

fn lines(values: &[Value]) -> Vec<u8> {
    values.iter().flat_map(|v| format!("{v}\n").into_bytes()).collect()
}

fn usage(id: &str, at: Value, account: &str, team: &str, user: &str) -> Value {
    json!({"event_id": id, "occurred_at": at, "account_id": account, "team_id": team, "user_id": user, "type": "page_view"})
}

fn read_lines(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?)
}

fn run(d: &Path, usage: Option<&Path>, accounts: Option<&Path>) -> Result<(ReplaySummary, Vec<Value>, Vec<Value>)> {
    let files = ReplayFiles {
        usage: usage.map(Path::to_path_buf),
        accounts: accounts.map(Path::to_path_buf),
        out: d.join("alerts.ndjson"),
        deadletter: Some(d.join("dead.ndjson")),
        ..Default::default()
    };
    let mut cfg = Config::default();
    cfg.time.evaluation_interval_secs = 86_400;
    // the onboarding rules are checked as the alert table has them
    cfg.alerts.policy = cs_pulse::config::AlertPolicy::All;
    let summary = replay(&cfg, &files)?;
    Ok((summary, read_lines(&d.join("alerts.ndjson"))?, read_lines(&d.join("dead.ndjson"))?))
}

#[test]
fn a_line_that_is_not_utf8_is_dead_lettered_and_the_rest_is_read() -> Result {
    let d = dir("utf8")?;
    let mut bytes = b"\xEF\xBB\xBF".to_vec(); // a byte-order mark before the first record
    bytes.extend(lines(&[usage("1", json!(BASE), "acme", "t", "ada")]));
    bytes.extend(b"{\"event_id\":\"2\",\"occurred_at\":1772409600000,\"account_id\":\"ac\xFFme\"}\n");
    bytes.extend(b"\xC3\x28 not even json\r\n");
    bytes.extend(lines(&[usage("3", json!(BASE + DAY), "acme", "t", "bob")]));
    write(&d.join("usage.ndjson"), &bytes)?;
    let (summary, _, dead) = run(&d, Some(&d.join("usage.ndjson")), None)?;
    assert_eq!(summary.events, 2, "the first line (after its BOM) and the last: {summary:?}");
    assert_eq!(summary.rejected.get("undecodable"), Some(&2), "{summary:?}");
    assert_eq!(dead.len(), 2);
    for (d, line) in dead.iter().zip([2, 3]) {
        assert_eq!(d["line"], line);
        assert_eq!(d["reason"], "undecodable");
        assert!(d["error"].as_str().unwrap_or("").contains("not UTF-8"), "{d}");
    }
    assert!(dead[0]["payload"].as_str().unwrap_or("").contains("ac\u{FFFD}me"), "{}", dead[0]);
    Ok(())
}

/// 20,000 ordinary events over 28 days, 40 accounts of 5 teams and 10 users each.
fn ordinary() -> Vec<Value> {
    (0..20_000i64)
        .map(|i| {
            let at = BASE + i * (28 * DAY / 20_000);
            usage(
                &format!("e{i}"),
                json!(at),
                &format!("acct-{}", i % 40),
                &format!("t{}", i % 5),
                &format!("u{}", i % 10),
            )
        })
        .collect()
}

#[test]
fn far_future_events_are_dead_lettered_future_and_nothing_else_is_late() -> Result {
    let d = dir("future")?;
    let clean = ordinary();
    let mut hostile = clean.clone();
    // one dated year 9999, one in microseconds, early in the stream
    hostile.insert(100, usage("y9999", json!("9999-12-31T23:59:59Z"), "acct-1", "t0", "u1"));
    hostile.insert(200, usage("micros", json!((BASE + DAY) * 1000), "acct-2", "t0", "u2"));
    write(&d.join("clean.ndjson"), &lines(&clean))?;
    write(&d.join("hostile.ndjson"), &lines(&hostile))?;

    let started = Instant::now();
    let (base, base_alerts, _) = run(&d, Some(&d.join("clean.ndjson")), None)?;
    let clean_time = started.elapsed();
    let started = Instant::now();
    let (with, alerts, dead) = run(&d, Some(&d.join("hostile.ndjson")), None)?;
    let hostile_time = started.elapsed();
    println!("replay of 20,000 events: {clean_time:?}; with the two far-future ones: {hostile_time:?}");

    assert_eq!(with.rejected.get("future"), Some(&2), "{with:?}");
    assert_eq!(with.rejected.len(), 1, "nothing otherwise rejected: {with:?}");
    assert_eq!((with.late, base.late), (0, 0), "nothing late: {with:?}");
    assert_eq!(with.events, 20_000);
    let reasons: Vec<_> = dead.iter().map(|d| (d["payload"].to_string(), d["reason"].clone())).collect();
    assert!(reasons.iter().all(|(_, r)| r == "future"), "{reasons:?}");
    assert!(dead.iter().any(|d| d["payload"].as_str().unwrap_or("").contains("y9999")));
    assert!(dead.iter().any(|d| d["payload"].as_str().unwrap_or("").contains("micros")));
    // The same outputs and the same work: the outliers moved nothing. (Work is counted,
    // not timed: the timing above is printed.)
    assert_eq!((with.ticks, with.last_tick), (base.ticks, base.last_tick));
    assert!(with.evaluations <= 3 * base.evaluations, "{} vs {}", with.evaluations, base.evaluations);
    let strip = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|a| {
                let mut a = a.clone();
                a["emitted_at"] = Value::Null;
                a.to_string()
            })
            .collect()
    };
    assert_eq!(strip(&alerts), strip(&base_alerts));
    Ok(())
}

#[test]
fn trial_usage_and_deploys_before_contract_start_raise_onboarding_alerts() -> Result {
    let d = dir("trial")?;
    let cs = BASE + 30 * DAY;
    write(
        &d.join("accounts.ndjson"),
        &lines(&[
            json!({"account_id": "pilot", "name": "Pilot Co", "seats": 20, "contract_start": cs, "renewal_date": cs + 365 * DAY}),
            json!({"account_id": "stalled", "name": "Stalled Co", "seats": 20, "contract_start": cs, "renewal_date": cs + 365 * DAY}),
        ]),
    )?;
    let deploy = |id: &str, at: i64, account: &str, app: &str| {
        json!({"event_id": id, "occurred_at": at, "account_id": account, "team_id": "t", "type": "change_deployed",
               "change_id": id, "environment": "production", "app_id": app})
    };
    let mut events = vec![
        // both accounts trial the product and deploy before signing
        usage("p0", json!(BASE), "pilot", "t", "ada"),
        deploy("pd0", BASE + DAY, "pilot", "trial-app"),
        usage("s0", json!(BASE), "stalled", "t", "bob"),
        deploy("sd0", BASE + 2 * DAY, "stalled", "trial-app"),
        // the pilot reaches production after signing; the other never does
        deploy("pd1", cs + 10 * DAY, "pilot", "app-1"),
    ];
    for day in 0..100 {
        events.push(usage(&format!("pu{day}"), json!(BASE + day * DAY + 1), "pilot", "t", "ada"));
        events.push(usage(&format!("su{day}"), json!(BASE + day * DAY + 2), "stalled", "t", "bob"));
    }
    events.sort_by_key(|e| e["occurred_at"].as_i64());
    write(&d.join("usage.ndjson"), &lines(&events))?;
    let (summary, alerts, _) = run(&d, Some(&d.join("usage.ndjson")), Some(&d.join("accounts.ndjson")))?;
    assert!(summary.rejected.is_empty(), "{summary:?}");
    let kinds = |account: &str| -> Vec<String> {
        alerts
            .iter()
            .filter(|a| {
                a["entity"]["account_id"] == account && a["kind"].as_str().is_some_and(|k| k.starts_with("onboarding"))
            })
            .map(|a| a["kind"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(kinds("pilot"), ["onboarding_milestone"]);
    assert_eq!(kinds("stalled"), ["onboarding_at_risk"], "trial deploys do not count; 90 days are not over");
    Ok(())
}
