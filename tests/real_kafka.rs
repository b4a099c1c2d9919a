//! Tests against a real Apache Kafka 4.x broker (KRaft, on 127.0.0.1), started by
//! `deploy/local/kafka.sh`. `bash tests/run-all.sh` starts it and runs these with
//! `--include-ignored`; without a reachable broker they fail with a message saying so.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use common::*;

const LATENESS_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
const SPEC_ALERT_FIELDS: [&str; 12] = [
    "alert_id",
    "kind",
    "severity",
    "entity",
    "at",
    "emitted_at",
    "stage",
    "health",
    "components",
    "reasons",
    "renewal_in_days",
    "details",
];

/// Every alert read back parses as the spec's alert JSON.
fn parse_alerts(records: &[(String, String, String)]) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (key, _, payload) in records {
        let v: Value = serde_json::from_str(payload).map_err(|e| format!("alert is not JSON ({e}): {payload}"))?;
        let keys: BTreeSet<&str> = v.as_object().ok_or("alert is not an object")?.keys().map(String::as_str).collect();
        assert_eq!(keys, SPEC_ALERT_FIELDS.iter().copied().collect::<BTreeSet<_>>(), "{payload}");
        let typed: cs_pulse::model::Alert = serde_json::from_value(v.clone()).map_err(|e| format!("{e}: {payload}"))?;
        assert_eq!(key, &typed.entity.account_id, "alerts are keyed by account_id");
        assert!(!typed.reasons.is_empty());
        out.push(v);
    }
    Ok(out)
}

fn ids_and_duplicates(alerts: &[Value]) -> (BTreeSet<String>, usize) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for a in alerts {
        *counts.entry(a["alert_id"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    let dups = counts.values().map(|c| c - 1).sum();
    (counts.into_keys().collect(), dups)
}

fn gen(config: &std::path::Path, dir: &std::path::Path, accounts: u64, days: i64) -> Result<i64> {
    let out = cs_pulse()
        .args(["gen", "--create-topics", "4", "--accounts", &accounts.to_string(), "--teams", "3", "--users", "6"])
        .args(["--days", &days.to_string(), "--seed", "7", "--ndjson-dir"])
        .arg(dir)
        .arg("--config")
        .arg(config)
        .output()?;
    assert!(out.status.success(), "gen failed: {}", String::from_utf8_lossy(&out.stderr));
    // the closing events sit at the last second of the last day
    Ok(cs_pulse::generator::DEFAULT_START_MS + days * DAY_MS - 1000)
}

#[test]
#[ignore = "needs a real Kafka broker: run `bash tests/run-all.sh`"]
fn gen_then_run_matches_replay_read_with_kcat() -> Result {
    let bootstrap = broker();
    let names = Names::new("e2e");
    let dir = temp_dir(&names)?;
    let port = free_port();
    let config = write_config(&dir, &bootstrap, &names, &format!("{}-g", names.prefix), port, "")?;
    let end = gen(&config, &dir, 24, 35)?;

    let mut run = RunProcess::start(&config, dir.join("run.log"), port)?;
    run.wait_watermark(end - LATENESS_MS, Duration::from_secs(180))?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(run.terminate(Duration::from_secs(30))?, Some(0), "{}", run.log_text());

    let alerts = parse_alerts(&kcat_read(&bootstrap, &names.topic("alerts"))?)?;
    let (ids, dups) = ids_and_duplicates(&alerts);
    let expected = replay_alert_ids(&config, &dir, end)?;
    assert!(!expected.is_empty(), "the scenario must produce alerts");
    let kinds: BTreeSet<&str> = alerts.iter().filter_map(|a| a["kind"].as_str()).collect();
    for k in ["health_band_changed", "usage_drop", "support_escalation"] {
        assert!(kinds.contains(k), "no {k} in {kinds:?}");
    }
    assert_eq!(ids.difference(&expected).count(), 0, "alerts replay does not write");
    assert_eq!(expected.difference(&ids).count(), 0, "alerts run did not write");
    eprintln!("e2e: {} alerts, {} duplicates, equal to replay", ids.len(), dups);
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
#[ignore = "needs a real Kafka broker: run `bash tests/run-all.sh`"]
fn two_instances_split_partitions_and_match_replay() -> Result {
    let bootstrap = broker();
    let names = Names::new("two");
    let dir = temp_dir(&names)?;
    let group = format!("{}-g", names.prefix);
    let (p1, p2) = (free_port(), free_port());
    // the default alert policy: `run` on two instances writes what `replay` writes under it
    let c1 = write_config(&dir, &bootstrap, &names, &group, p1, "[alerts]\npolicy = \"focused\"\n")?;
    let c2 = dir.join("second.toml");
    std::fs::write(&c2, std::fs::read_to_string(&c1)?.replace(&format!("127.0.0.1:{p1}"), &format!("127.0.0.1:{p2}")))?;
    // topics first, instances next, data last: the group is settled before any event
    cs_pulse::kafka::admin::create_topics(&cs_pulse::config::Config::load(&c1)?, 4)?;
    let mut a = RunProcess::start(&c1, dir.join("a.log"), p1)?;
    let mut b = RunProcess::start(&c2, dir.join("b.log"), p2)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (na, nb) = (a.metric("cs_pulse_assigned_partitions"), b.metric("cs_pulse_assigned_partitions"));
        if na.unwrap_or(0.0) > 0.0 && nb.unwrap_or(0.0) > 0.0 && na.unwrap_or(0.0) + nb.unwrap_or(0.0) == 8.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "partitions not split: {na:?} / {nb:?}\n{}\n{}",
            a.log_text(),
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let end = gen(&c1, &dir, 24, 35)?;
    a.wait_watermark(end - LATENESS_MS, Duration::from_secs(180))?;
    b.wait_watermark(end - LATENESS_MS, Duration::from_secs(180))?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(a.terminate(Duration::from_secs(30))?, Some(0));
    assert_eq!(b.terminate(Duration::from_secs(30))?, Some(0));

    let alerts = parse_alerts(&kcat_read(&bootstrap, &names.topic("alerts"))?)?;
    let (ids, dups) = ids_and_duplicates(&alerts);
    let expected = replay_alert_ids(&c1, &dir, end)?;
    assert!(!expected.is_empty(), "the scenario must produce alerts");
    assert_eq!(ids, expected);
    let escalations = alerts.iter().filter(|a| a["kind"] == "support_escalation");
    assert!(escalations.clone().count() > 0 && escalations.clone().all(|a| a["severity"] == "warning"), "{alerts:?}");
    eprintln!("two instances: {} alerts, {} duplicates, equal to replay", ids.len(), dups);
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
#[ignore = "needs a real Kafka broker: run `bash tests/run-all.sh`"]
fn unequal_partition_counts_exit_2_naming_both_topics() -> Result {
    let bootstrap = broker();
    let names = Names::new("copart");
    let dir = temp_dir(&names)?;
    let config = write_config(&dir, &bootstrap, &names, &format!("{}-g", names.prefix), free_port(), "")?;
    create_topics(&bootstrap, &[(&names.topic("usage"), 3), (&names.topic("support"), 2)])?;
    let out = cs_pulse().args(["run", "--config"]).arg(&config).output()?;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("'{}' has 3 partitions", names.topic("usage"))), "{err}");
    assert!(err.contains(&format!("'{}' has 2", names.topic("support"))), "{err}");
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
#[ignore = "needs a real Kafka broker: run `bash tests/run-all.sh`"]
fn garbage_reaches_the_dead_letter_topic_with_reasons() -> Result {
    let bootstrap = broker();
    let names = Names::new("dlq");
    let dir = temp_dir(&names)?;
    let port = free_port();
    let config = write_config(&dir, &bootstrap, &names, &format!("{}-g", names.prefix), port, "")?;
    cs_pulse::kafka::admin::create_topics(&cs_pulse::config::Config::load(&config)?, 2)?;
    kcat_produce(
        &bootstrap,
        &names.topic("usage"),
        &[
            ("acme", "this is not json"),
            (
                "acme",
                r#"{"event_id":"u1","occurred_at":"2026-03-02T10:00:00Z","account_id":"acme","type":"page_view"}"#,
            ),
            (
                "acme",
                r#"{"event_id":"u2","occurred_at":"2026-03-02T10:00:00Z","account_id":"acme","team_id":"t","user_id":"u","type":"page_view"}"#,
            ),
        ],
    )?;
    kcat_produce(
        &bootstrap,
        &names.topic("support"),
        &[
            (
                "acme",
                r#"{"event_id":"s1","occurred_at":1772445600000,"account_id":"acme","kind":"ticket_opened","ticket_id":"T","priority":"P7"}"#,
            ),
            ("acme", "[1,2,3]"),
        ],
    )?;
    let mut run = RunProcess::start(&config, dir.join("run.log"), port)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut dead = Vec::new();
    while std::time::Instant::now() < deadline && dead.len() < 4 {
        std::thread::sleep(Duration::from_millis(500));
        dead = kcat_read(&bootstrap, &names.topic("deadletter"))?;
    }
    assert_eq!(run.terminate(Duration::from_secs(30))?, Some(0), "{}", run.log_text());
    let mut got: Vec<(String, String)> = dead
        .iter()
        .map(|(_, headers, payload)| {
            let h: BTreeMap<&str, &str> = headers.split(',').filter_map(|kv| kv.split_once('=')).collect();
            assert!(h.get("cs_pulse.source.partition").is_some_and(|p| p.parse::<i32>().is_ok()), "{headers}");
            assert!(h.get("cs_pulse.source.offset").is_some_and(|o| o.parse::<i64>().is_ok()), "{headers}");
            assert!(h.get("cs_pulse.error").is_some_and(|e| !e.is_empty()), "{headers}");
            let source = h.get("cs_pulse.source.topic").copied().unwrap_or_default();
            let reason = h.get("cs_pulse.reason").copied().unwrap_or_default();
            (format!("{source} {reason}"), payload.clone())
        })
        .map(|(s, p)| (s, p.chars().take(16).collect()))
        .collect();
    got.sort();
    let (u, s) = (names.topic("usage"), names.topic("support"));
    let mut want = vec![
        (format!("{s} not_object"), "[1,2,3]".to_string()),
        (format!("{s} unknown_enum"), r#"{"event_id":"s1""#.to_string()),
        (format!("{u} missing_field"), r#"{"event_id":"u1""#.to_string()),
        (format!("{u} undecodable"), "this is not json".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(dead.iter().all(|(k, _, _)| k == "acme"), "original keys kept: {dead:?}");
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
#[ignore = "needs a real Kafka broker: run `bash tests/run-all.sh`"]
fn sigterm_mid_stream_and_restart_misses_no_alert() -> Result {
    let bootstrap = broker();
    let names = Names::new("restart");
    let dir = temp_dir(&names)?;
    let port = free_port();
    let config = write_config(&dir, &bootstrap, &names, &format!("{}-g", names.prefix), port, "")?;
    cs_pulse::kafka::admin::create_topics(&cs_pulse::config::Config::load(&config)?, 4)?;
    let mut first = RunProcess::start(&config, dir.join("first.log"), port)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while first.metric("cs_pulse_assigned_partitions").unwrap_or(0.0) < 8.0 {
        assert!(std::time::Instant::now() < deadline, "no assignment: {}", first.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
    // stream for several seconds at a steady rate, and stop `run` in the middle of it
    let days = 35;
    let mut gen = cs_pulse()
        .args(["gen", "--accounts", "24", "--teams", "3", "--users", "6", "--days", &days.to_string()])
        .args(["--seed", "11", "--rate", "4000", "--ndjson-dir"])
        .arg(&dir)
        .arg("--config")
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(3));
    let consumed_before = first.metric_sum("cs_pulse_events_total").unwrap_or(0.0);
    assert_eq!(first.terminate(Duration::from_secs(30))?, Some(0), "{}", first.log_text());
    let mut second = RunProcess::start(&config, dir.join("second.log"), port)?;
    assert!(gen.wait()?.success(), "gen failed");
    let end = cs_pulse::generator::DEFAULT_START_MS + days * DAY_MS - 1000;
    second.wait_watermark(end - LATENESS_MS, Duration::from_secs(180))?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(second.terminate(Duration::from_secs(30))?, Some(0), "{}", second.log_text());
    assert!(second.log_text().contains("State restored."), "{}", second.log_text());

    let total = std::fs::read_to_string(dir.join("usage.ndjson"))?.lines().count()
        + std::fs::read_to_string(dir.join("support.ndjson"))?.lines().count();
    assert!(
        consumed_before > 0.0 && consumed_before < total as f64,
        "the first instance must stop mid-stream: it read {consumed_before} of {total}"
    );
    let alerts = parse_alerts(&kcat_read(&bootstrap, &names.topic("alerts"))?)?;
    let (ids, dups) = ids_and_duplicates(&alerts);
    let expected = replay_alert_ids(&config, &dir, end)?;
    let missing: Vec<_> = expected.difference(&ids).collect();
    assert!(missing.is_empty(), "{} alerts missing after the restart: {missing:?}", missing.len());
    assert_eq!(ids.difference(&expected).count(), 0, "alerts replay does not write");
    eprintln!(
        "restart: first instance stopped after {consumed_before} of {total} records; {} alerts, 0 missing, {dups} duplicates",
        ids.len()
    );
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

const EXACTLY_ONCE: &str =
    "[processing]\nguarantee = \"exactly_once\"\ninstance_id = \"one\"\n[kafka.client]\n\"session.timeout.ms\" = \"6000\"\n";

#[test]
#[ignore = "needs a real Kafka broker: run `bash tests/run-all.sh`"]
fn exactly_once_through_five_kill_9s() -> Result {
    let bootstrap = broker();
    let names = Names::new("eos");
    let dir = temp_dir(&names)?;
    let port = free_port();
    let config = write_config(&dir, &bootstrap, &names, &format!("{}-g", names.prefix), port, "")?;
    // the common config says at_least_once; this test is about exactly_once
    let text =
        std::fs::read_to_string(&config)?.replace("[processing]\nguarantee = \"at_least_once\"\n", "") + EXACTLY_ONCE;
    std::fs::write(&config, text)?;
    cs_pulse::kafka::admin::create_topics(&cs_pulse::config::Config::load(&config)?, 4)?;

    let days = 35;
    let mut gen = cs_pulse()
        .args(["gen", "--accounts", "120", "--teams", "4", "--users", "8", "--days", &days.to_string()])
        .args(["--seed", "5", "--rate", "8000", "--ndjson-dir"])
        .arg(&dir)
        .arg("--config")
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut run = RunProcess::start(&config, dir.join("run-0.log"), port)?;
    // five kill -9s at pseudo-random moments while records are being processed,
    // restarting each time (gen writes at 8,000 events/s, about 30 s in all, so that
    // every instance has records left to read when it is killed)
    let pauses = [700u64, 1_300, 400, 1_900, 1_000];
    let mut read_at_kill = Vec::new();
    for (i, pause) in pauses.iter().enumerate() {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while run.metric_sum("cs_pulse_events_total").unwrap_or(0.0) == 0.0 {
            assert!(std::time::Instant::now() < deadline, "instance {i} read nothing: {}", run.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(*pause));
        read_at_kill.push(run.metric_sum("cs_pulse_events_total").unwrap_or(0.0));
        run.child.kill()?; // SIGKILL
        run.child.wait()?;
        run = RunProcess::start(&config, dir.join(format!("run-{}.log", i + 1)), port)?;
    }
    assert!(gen.wait()?.success(), "gen failed");
    let total = std::fs::read_to_string(dir.join("usage.ndjson"))?.lines().count()
        + std::fs::read_to_string(dir.join("support.ndjson"))?.lines().count();
    assert!(total >= 200_000, "only {total} events");
    let end = cs_pulse::generator::DEFAULT_START_MS + days * DAY_MS - 1000;
    run.wait_watermark(end - LATENESS_MS, Duration::from_secs(600))?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(run.terminate(Duration::from_secs(60))?, Some(0), "{}", run.log_text());

    let alerts = parse_alerts(&kcat_read_committed(&bootstrap, &names.topic("alerts"))?)?;
    let (ids, dups) = ids_and_duplicates(&alerts);
    let expected = replay_alert_ids(&config, &dir, end)?;
    let missing = expected.difference(&ids).count();
    let extra = ids.difference(&expected).count();
    eprintln!(
        "exactly-once: {total} events, killed -9 five times, after each instance had read {read_at_kill:?} records; {} alerts: {missing} missing, {dups} duplicated, {extra} unexpected",
        ids.len()
    );
    assert!(read_at_kill.iter().all(|r| *r > 0.0));
    assert_eq!((missing, dups, extra), (0, 0, 0));
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
#[ignore = "needs a real Kafka broker: run `bash tests/run-all.sh`"]
fn exactly_once_when_one_of_two_instances_is_killed() -> Result {
    let bootstrap = broker();
    let names = Names::new("takeover");
    let dir = temp_dir(&names)?;
    let group = format!("{}-g", names.prefix);
    let (p1, p2) = (free_port(), free_port());
    let eos = |id: &str| {
        format!("[processing]\nguarantee = \"exactly_once\"\ninstance_id = \"{id}\"\n[kafka.client]\n\"session.timeout.ms\" = \"6000\"\n")
    };
    let c1 = write_config(&dir, &bootstrap, &names, &group, p1, "")?;
    let base = std::fs::read_to_string(&c1)?.replace("[processing]\nguarantee = \"at_least_once\"\n", "");
    std::fs::write(&c1, base.clone() + &eos("one"))?;
    let c2 = dir.join("two.toml");
    std::fs::write(&c2, base.replace(&format!("127.0.0.1:{p1}"), &format!("127.0.0.1:{p2}")) + &eos("two"))?;
    cs_pulse::kafka::admin::create_topics(&cs_pulse::config::Config::load(&c1)?, 4)?;
    let mut a = RunProcess::start(&c1, dir.join("a.log"), p1)?;
    let mut b = RunProcess::start(&c2, dir.join("b.log"), p2)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while a.metric("cs_pulse_assigned_partitions").unwrap_or(0.0)
        + b.metric("cs_pulse_assigned_partitions").unwrap_or(0.0)
        != 8.0
        || a.metric("cs_pulse_assigned_partitions").unwrap_or(0.0) == 0.0
    {
        assert!(std::time::Instant::now() < deadline, "partitions not split\n{}\n{}", a.log_text(), b.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
    let days = 35;
    let mut gen = cs_pulse()
        .args(["gen", "--accounts", "60", "--teams", "4", "--users", "8", "--days", &days.to_string()])
        .args(["--seed", "9", "--rate", "20000", "--ndjson-dir"])
        .arg(&dir)
        .arg("--config")
        .arg(&c1)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while a.metric_sum("cs_pulse_events_total").unwrap_or(0.0) < 1000.0 {
        assert!(std::time::Instant::now() < deadline, "a read nothing: {}", a.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let read_by_a = a.metric_sum("cs_pulse_events_total").unwrap_or(0.0);
    a.child.kill()?; // SIGKILL, mid-stream
    a.child.wait()?;
    assert!(gen.wait()?.success(), "gen failed");
    let end = cs_pulse::generator::DEFAULT_START_MS + days * DAY_MS - 1000;
    b.wait_watermark(end - LATENESS_MS, Duration::from_secs(400))?;
    assert_eq!(b.metric("cs_pulse_assigned_partitions"), Some(8.0), "b took over every partition");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(b.terminate(Duration::from_secs(60))?, Some(0), "{}", b.log_text());

    let alerts = parse_alerts(&kcat_read_committed(&bootstrap, &names.topic("alerts"))?)?;
    let (ids, dups) = ids_and_duplicates(&alerts);
    let expected = replay_alert_ids(&c1, &dir, end)?;
    let (missing, extra) = (expected.difference(&ids).count(), ids.difference(&expected).count());
    eprintln!("takeover: a read {read_by_a} records before kill -9; {} alerts: {missing} missing, {dups} duplicated, {extra} unexpected", ids.len());
    assert_eq!((missing, dups, extra), (0, 0, 0));
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
