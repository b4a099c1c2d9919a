//! Odd and hostile input against a real Apache Kafka broker: every kind of bad record is
//! dead-lettered with its reason and counted while valid records around it flow; trial
//! deploys before a contract starts raise the same onboarding alerts as `replay`; and a
//! defect (a panic, injected by the test-only hook `CS_PULSE_FAULT_PANIC_EVENT_ID`) stops
//! only its input partition, whose records are processed exactly once after a restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use common::*;

const DAY_MS: i64 = 86_400_000;
const LATENESS_MS: i64 = 3_600_000;
/// 2026-03-02T00:00:00Z: in the past of any run.
const BASE: i64 = 1_772_409_600_000;

/// Produces raw bytes (kcat's line protocol cannot carry them).
fn produce_bytes(bootstrap: &str, topic: &str, records: &[(&str, Vec<u8>)]) -> Result {
    let p: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    for (key, payload) in records {
        p.send(BaseRecord::to(topic).key(*key).payload(payload)).map_err(|(e, _)| e)?;
    }
    p.flush(Duration::from_secs(30))?;
    Ok(())
}

fn headers_of(h: &str) -> BTreeMap<&str, &str> {
    h.split(',').filter_map(|kv| kv.split_once('=')).collect()
}

#[test]
#[ignore = "needs a real Kafka broker and the test Python packages: run `bash tests/run-all.sh`"]
fn every_kind_of_bad_record_is_dead_lettered_with_its_reason_and_nothing_else_is_affected() -> Result {
    let bootstrap = broker();
    let names = Names::new("hostile");
    let dir = temp_dir(&names)?;
    // the registry answers "not found" for unknown schema ids
    let registry = Registry::start(&dir)?;
    let port = free_port();
    let extra = format!(
        "[input]\nusage = \"avro\"\n[schema_registry]\nurl = \"{}\"\n[limits]\nmax_teams_per_account = 2\n",
        registry.1
    );
    let config = write_config(&dir, &bootstrap, &names, &format!("{}-g", names.prefix), port, &extra)?;
    cs_pulse::kafka::admin::create_topics(&cs_pulse::config::Config::load(&config)?, 1)?;

    let (u, s) = (names.topic("usage"), names.topic("support"));
    let ok_event = |id: &str, at: i64, kind: &str, extra: Value| {
        let mut v = json!({"event_id": id, "occurred_at": at, "account_id": "acme", "kind": kind, "ticket_id": id});
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v.to_string().into_bytes()
    };
    let nested = format!("{{\"event_id\":\"n\",\"x\":{}{}}}", "[".repeat(5_000), "]".repeat(5_000));
    let huge = format!(
        "{{\"event_id\":\"h\",\"occurred_at\":{BASE},\"account_id\":\"{}\",\"kind\":\"csat_response\",\"score\":3}}",
        "a".repeat(300_000)
    );
    produce_bytes(
        &bootstrap,
        &u,
        &[
            ("acme", vec![0, 0, 0]),                                  // truncated frame
            ("acme", vec![0, 0, 0, 0, 1, 0x02]),                      // truncated body
            ("acme", b"\x01\x00\x00\x00\x01hello".to_vec()),          // wrong magic byte
            ("acme", vec![0, 0x7f, 0xff, 0xff, 0xf0, 2, 0x61, 0x62]), // unknown schema id
        ],
    )?;
    produce_bytes(
        &bootstrap,
        &s,
        &[
            ("acme", ok_event("t1", BASE, "ticket_opened", json!({"priority": "P3", "team_id": "t1"}))),
            ("acme", b"{\"event_id\":\"\xff\xfe\",\"occurred_at\":1}".to_vec()), // not UTF-8
            ("acme", ok_event("big", BASE, "csat_response", json!({"score": 11}))), // out of range
            ("acme", br#"{"event_id":"x","occurred_at":1e400,"account_id":"acme"}"#.to_vec()),
            ("acme", huge.into_bytes()),
            ("acme", nested.into_bytes()),
            ("acme", ok_event("old", -86_400_000, "ticket_opened", json!({"priority": "P3"}))), // before 1970
            ("acme", ok_event("y9999", 253_402_300_799_000, "ticket_opened", json!({"priority": "P3"}))),
            ("acme", ok_event("micros", (BASE + DAY_MS) * 1000, "ticket_opened", json!({"priority": "P3"}))),
            ("acme", ok_event("t2", BASE + 1, "ticket_opened", json!({"priority": "P3", "team_id": "t2"}))),
            ("acme", ok_event("t3", BASE + 2, "ticket_opened", json!({"priority": "P3", "team_id": "t3"}))), // a third team
            // valid events after all of it: an escalation fires at once, ticks move on
            ("acme", ok_event("p1", BASE + 3 * DAY_MS, "ticket_opened", json!({"priority": "P1", "team_id": "t1"}))),
            ("acme", ok_event("end", BASE + 10 * DAY_MS, "ticket_resolved", json!({}))),
        ],
    )?;
    let want: BTreeSet<(String, String)> = [
        (&u, "undecodable"),
        (&u, "undecodable"),
        (&u, "undecodable"),
        (&u, "unknown_schema"),
        (&s, "undecodable"),
        (&s, "invalid_value"),
        (&s, "undecodable"),
        (&s, "too_long"),
        (&s, "undecodable"),
        (&s, "invalid_value"),
        (&s, "future"),
        (&s, "future"),
        (&s, "limit"),
    ]
    .iter()
    .map(|(t, r)| (t.to_string(), r.to_string()))
    .collect();
    let want_count = 13;

    let mut run = RunProcess::start(&config, dir.join("run.log"), port)?;
    run.wait_watermark(BASE + 10 * DAY_MS - LATENESS_MS, Duration::from_secs(120))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut dead = Vec::new();
    while Instant::now() < deadline && dead.len() < want_count {
        dead = kcat_read(&bootstrap, &names.topic("deadletter"))?;
        std::thread::sleep(Duration::from_millis(300));
    }
    let invalid = run.metric_sum("cs_pulse_invalid_events_total").unwrap_or(-1.0);
    let limited = scrape(port).unwrap_or_default();
    let late = run.metric_sum("cs_pulse_late_events_total").unwrap_or(-1.0);
    assert_eq!(run.terminate(Duration::from_secs(30))?, Some(0), "{}", run.log_text());

    let mut got = Vec::new();
    for (key, headers, payload) in &dead {
        let h = headers_of(headers);
        assert_eq!(key, "acme", "the original key is kept");
        assert!(h.get("cs_pulse.error").is_some_and(|e| !e.is_empty()), "{headers}");
        assert!(h.get("cs_pulse.source.offset").is_some_and(|o| o.parse::<i64>().is_ok()), "{headers}");
        let topic = h.get("cs_pulse.source.topic").copied().unwrap_or_default().to_string();
        let reason = h.get("cs_pulse.reason").copied().unwrap_or_default().to_string();
        if reason == "limit" {
            assert!(payload.contains("\"t3\""), "the third team is the one refused: {payload}");
        }
        got.push((topic, reason));
    }
    assert_eq!(got.len(), want_count, "{got:?}");
    assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), want, "{got:?}");
    assert_eq!(invalid as usize, want_count, "each counted by its reason");
    assert!(limited.contains("cs_pulse_limited_events_total{level=\"team\"} 1"), "{limited}");
    assert_eq!(late, 0.0, "no valid event was made late");
    let alerts = parse_alerts_committed(&bootstrap, &names.topic("alerts"))?;
    let escalations: Vec<&Value> = alerts.iter().filter(|a| a["kind"] == "support_escalation").collect();
    assert_eq!(escalations.len(), 1, "the P1 after the bad records fired: {alerts:?}");
    assert_eq!(escalations[0]["entity"]["id"], "t1");
    drop(registry);
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn parse_alerts_committed(bootstrap: &str, topic: &str) -> Result<Vec<Value>> {
    kcat_read_committed(bootstrap, topic)?
        .iter()
        .map(|(_, _, p)| serde_json::from_str(p).map_err(|e| format!("{e}: {p}").into()))
        .collect()
}

fn ids(alerts: &[Value]) -> (BTreeSet<String>, usize) {
    let mut seen = BTreeSet::new();
    let mut dups = 0;
    for a in alerts {
        if !seen.insert(a["alert_id"].as_str().unwrap_or_default().to_string()) {
            dups += 1;
        }
    }
    (seen, dups)
}

#[test]
#[ignore = "needs a real Kafka broker: run `bash tests/run-all.sh`"]
fn trial_deploys_before_contract_start_raise_the_onboarding_alerts_replay_raises() -> Result {
    let bootstrap = broker();
    let names = Names::new("trial");
    let dir = temp_dir(&names)?;
    let port = free_port();
    let config = write_config(&dir, &bootstrap, &names, &format!("{}-g", names.prefix), port, "")?;
    cs_pulse::kafka::admin::create_topics(&cs_pulse::config::Config::load(&config)?, 2)?;
    let cs = BASE + 30 * DAY_MS;
    let accounts: Vec<Value> = ["pilot", "stalled"]
        .iter()
        .map(|a| json!({"account_id": a, "name": a, "seats": 10, "contract_start": cs, "renewal_date": cs + 365 * DAY_MS}))
        .collect();
    let deploy = |id: &str, at: i64, account: &str, app: &str| {
        json!({"event_id": id, "occurred_at": at, "account_id": account, "team_id": "t", "type": "change_deployed",
               "change_id": id, "environment": "production", "app_id": app})
    };
    let mut usage = vec![
        deploy("pd0", BASE + DAY_MS, "pilot", "trial-app"),
        deploy("sd0", BASE + 2 * DAY_MS, "stalled", "trial-app"),
        deploy("pd1", cs + 10 * DAY_MS, "pilot", "app-1"),
    ];
    for day in 0..130 {
        for account in ["pilot", "stalled"] {
            usage.push(json!({"event_id": format!("{account}-{day}"), "occurred_at": BASE + day * DAY_MS + 7,
                "account_id": account, "team_id": "t", "user_id": "ada", "type": "page_view"}));
        }
    }
    usage.sort_by_key(|e| e["occurred_at"].as_i64());
    let lines = |v: &[Value]| v.iter().map(|e| format!("{e}\n")).collect::<String>();
    std::fs::write(dir.join("accounts.ndjson"), lines(&accounts))?;
    std::fs::write(dir.join("usage.ndjson"), lines(&usage))?;
    let key_of = |e: &Value| e["account_id"].as_str().unwrap_or_default().to_string();
    let acc: Vec<(String, String)> = accounts.iter().map(|e| (key_of(e), e.to_string())).collect();
    let acc_refs: Vec<(&str, &str)> = acc.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    kcat_produce(&bootstrap, &names.topic("accounts"), &acc_refs)?;
    let ev: Vec<(String, String)> = usage.iter().map(|e| (key_of(e), e.to_string())).collect();
    let ev_refs: Vec<(&str, &str)> = ev.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    kcat_produce(&bootstrap, &names.topic("usage"), &ev_refs)?;

    let mut run = RunProcess::start(&config, dir.join("run.log"), port)?;
    let end = BASE + 129 * DAY_MS + 7;
    run.wait_watermark(end - LATENESS_MS, Duration::from_secs(180))?;
    assert_eq!(run.terminate(Duration::from_secs(30))?, Some(0), "{}", run.log_text());
    let last_tick = (end - LATENESS_MS).div_euclid(3_600_000) * 3_600_000;
    let onboarding = |alerts: Vec<&Value>| -> BTreeSet<(String, String, i64)> {
        alerts
            .into_iter()
            .filter(|a| a["kind"].as_str().is_some_and(|k| k.starts_with("onboarding")))
            .filter(|a| a["at"].as_i64().is_some_and(|at| at <= last_tick))
            .map(|a| {
                (
                    a["entity"]["id"].as_str().unwrap_or("").into(),
                    a["kind"].as_str().unwrap_or("").into(),
                    a["at"].as_i64().unwrap_or(0),
                )
            })
            .collect()
    };
    let got = parse_alerts_committed(&bootstrap, &names.topic("alerts"))?;
    let expected = replay_alerts(&config, &dir)?;
    let (got_set, want_set) = (onboarding(got.iter().collect()), onboarding(expected.values().collect()));
    let kinds: BTreeSet<(&str, &str)> = got_set.iter().map(|(a, k, _)| (a.as_str(), k.as_str())).collect();
    assert_eq!(
        kinds,
        [("pilot", "onboarding_milestone"), ("stalled", "onboarding_at_risk"), ("stalled", "onboarding_missed")]
            .into_iter()
            .collect(),
        "{got_set:?}"
    );
    assert_eq!(got_set, want_set);
    assert!(!run.log_text().contains("panicked"), "{}", run.log_text());
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
#[ignore = "needs a real Kafka broker: run `bash tests/run-all.sh`"]
fn a_panic_stops_only_its_partition_and_after_a_restart_alerts_are_exact() -> Result {
    let bootstrap = broker();
    let names = Names::new("panic");
    let dir = temp_dir(&names)?;
    let port = free_port();
    let config = write_config(&dir, &bootstrap, &names, &format!("{}-g", names.prefix), port, "")?;
    let text =
        std::fs::read_to_string(&config)?.replace("guarantee = \"at_least_once\"", "guarantee = \"exactly_once\"");
    std::fs::write(&config, text)?;
    let days = 35;
    let out = cs_pulse()
        .args(["gen", "--create-topics", "4", "--accounts", "24", "--teams", "3", "--users", "6"])
        .args(["--days", &days.to_string(), "--seed", "11", "--ndjson-dir"])
        .arg(&dir)
        .arg("--config")
        .arg(&config)
        .output()?;
    assert!(out.status.success(), "gen failed: {}", String::from_utf8_lossy(&out.stderr));
    let end = cs_pulse::generator::DEFAULT_START_MS + days * DAY_MS - 1000;

    // which partition each account's records are in, as the broker holds them
    let located = std::process::Command::new("kcat")
        .args(["-C", "-b", &bootstrap, "-t", &names.topic("usage"), "-o", "beginning", "-e", "-q", "-f", "%p %k\n"])
        .output()?;
    let partition_of: BTreeMap<String, i32> = String::from_utf8_lossy(&located.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').and_then(|(p, k)| Some((k.to_string(), p.parse().ok()?))))
        .collect();
    // the fault: an event a third of the way through one account's usage
    let usage: Vec<Value> = std::fs::read_to_string(dir.join("usage.ndjson"))?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let victim = &usage[usage.len() / 3];
    let (fault_id, victim_account) =
        (victim["event_id"].as_str().ok_or("event_id")?.to_string(), victim["account_id"].as_str().ok_or("account")?);
    let failed = *partition_of.get(victim_account).ok_or("victim's partition")?;
    let on_failed =
        |a: &Value| partition_of.get(a["entity"]["account_id"].as_str().unwrap_or_default()) == Some(&failed);

    let expected = replay_alert_ids(&config, &dir, end)?;
    let mut run = RunProcess::start_with_env(
        &config,
        dir.join("run-faulty.log"),
        port,
        &[("CS_PULSE_FAULT_PANIC_EVENT_ID", fault_id.as_str())],
    )?;
    // the other partitions reach the end: the stopped one holds nothing back
    run.wait_watermark(end - LATENESS_MS, Duration::from_secs(240))?;
    std::thread::sleep(Duration::from_secs(2));
    let stopped = run.metric("cs_pulse_failed_partitions");
    let failures = run.metric("cs_pulse_partition_failures_total");
    let ready = http_get(port, "/readyz").ok_or("readyz")?;
    assert_eq!(run.terminate(Duration::from_secs(60))?, Some(0), "{}", run.log_text());
    let log = run.log_text();
    assert_eq!((stopped, failures), (Some(1.0), Some(1.0)), "{log}");
    assert!(ready.0.contains("503") && ready.1.contains(&format!("input partition {failed} stopped")), "{ready:?}");
    assert!(
        log.lines().any(|l| l.contains("ERROR") && l.contains(&format!("partition={failed}")) && l.contains("offset")),
        "an ERROR names the partition and offset: {log}"
    );

    let first = parse_alerts_committed(&bootstrap, &names.topic("alerts"))?;
    let (first_ids, first_dups) = ids(&first);
    let others: BTreeSet<String> =
        first.iter().filter(|a| !on_failed(a)).filter_map(|a| a["alert_id"].as_str().map(String::from)).collect();
    let expected_others: BTreeSet<String> = replay_alerts(&config, &dir)?
        .into_iter()
        .filter(|(id, a)| expected.contains(id) && !on_failed(a))
        .map(|(id, _)| id)
        .collect();
    assert!(!expected_others.is_empty());
    assert_eq!(others, expected_others, "the other partitions' alerts kept flowing, exactly");
    assert_eq!(first_dups, 0);
    assert!(first_ids.is_subset(&expected), "nothing unexpected from the stopped partition");

    // the fix: restart without the fault; the stopped partition resumes from its commit
    let mut run = RunProcess::start(&config, dir.join("run-fixed.log"), port)?;
    run.wait_watermark(end - LATENESS_MS, Duration::from_secs(240))?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(run.terminate(Duration::from_secs(60))?, Some(0), "{}", run.log_text());
    let all = parse_alerts_committed(&bootstrap, &names.topic("alerts"))?;
    let (all_ids, dups) = ids(&all);
    let missing = expected.difference(&all_ids).count();
    let extra = all_ids.difference(&expected).count();
    eprintln!(
        "containment: partition {failed} stopped at event {fault_id}; {} alerts before the restart, {} after: {missing} missing, {dups} duplicated, {extra} unexpected",
        first_ids.len(),
        all_ids.len()
    );
    assert!(first_ids.len() < all_ids.len(), "the stopped partition had alerts left to write");
    assert_eq!((missing, dups, extra), (0, 0, 0));
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
