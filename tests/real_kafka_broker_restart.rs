//! The broker restarted under a running pipeline (exactly-once): cs-pulse recovers by
//! itself and the alert set is exact. Kept apart from tests/real_kafka.rs because they
//! restart the shared broker; `bash tests/run-all.sh` runs them on their own, after them,
//! one at a time.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::*;

const DAY_MS: i64 = 86_400_000;
const LATENESS_MS: i64 = 3_600_000;

#[test]
#[ignore = "needs a real Kafka broker it may restart: run `bash tests/run-all.sh`"]
fn exactly_once_across_a_broker_restart() -> Result {
    across_a_broker_restart("restart-broker", 0, false)
}

/// The broker stays down longer than the consumer's session (45 s): the batch's outputs
/// time out and the transaction is aborted, and librdkafka's rejoin as the same static
/// member (`group.instance.id`) is refused as fenced, a fatal consumer error (librdkafka
/// issue 3437). cs-pulse starts a new consumer and producer and carries on from the
/// committed state.
#[test]
#[ignore = "needs a real Kafka broker it may restart: run `bash tests/run-all.sh`"]
fn exactly_once_across_an_outage_longer_than_the_session() -> Result {
    across_a_broker_restart("restart-outage", 70, true)
}

fn across_a_broker_restart(name: &str, outage_secs: u64, fenced: bool) -> Result {
    let bootstrap = broker();
    let names = Names::new(name);
    let dir = temp_dir(&names)?;
    let port = free_port();
    let config = write_config(&dir, &bootstrap, &names, &format!("{}-g", names.prefix), port, "")?;
    let text = std::fs::read_to_string(&config)?.replace("[processing]\nguarantee = \"at_least_once\"\n", "")
        + "[processing]\nguarantee = \"exactly_once\"\ninstance_id = \"solo\"\n";
    std::fs::write(&config, text)?;
    cs_pulse::kafka::admin::create_topics(&cs_pulse::config::Config::load(&config)?, 4)?;
    let days = 30;
    let out = cs_pulse()
        .args(["gen", "--accounts", "60", "--teams", "4", "--users", "8", "--days", &days.to_string()])
        .args(["--seed", "3", "--ndjson-dir"])
        .arg(&dir)
        .arg("--config")
        .arg(&config)
        .output()?;
    assert!(out.status.success());
    let mut run = RunProcess::start(&config, dir.join("run.log"), port)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while run.metric_sum("cs_pulse_events_total").unwrap_or(0.0) < 1000.0 {
        assert!(std::time::Instant::now() < deadline, "read nothing: {}", run.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let port_of_broker = bootstrap.rsplit(':').next().unwrap_or("19092").to_string();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/kafka.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg("restart")
        .env("KAFKA_PORT", &port_of_broker)
        .env("KAFKA_RESTART_PAUSE", outage_secs.to_string())
        .status()?;
    assert!(status.success(), "broker restart failed");
    let end = cs_pulse::generator::DEFAULT_START_MS + days * DAY_MS - 1000;
    run.wait_watermark(end - LATENESS_MS, Duration::from_secs(400))?;
    std::thread::sleep(Duration::from_secs(2));
    let aborted = run.metric("cs_pulse_transactions_total{outcome=\"aborted\"}").unwrap_or(0.0);
    let restarts = run.metric("cs_pulse_consumer_restarts_total").unwrap_or(0.0);
    eprintln!("{name}: {aborted} transactions aborted, {restarts} consumers replaced");
    if fenced {
        // Otherwise this test no longer shows the path it is for.
        assert!(aborted >= 1.0 && restarts >= 1.0, "{}", run.log_text());
    }
    assert_eq!(run.terminate(Duration::from_secs(60))?, Some(0), "{}", run.log_text());

    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for (_, _, payload) in kcat_read_committed(&bootstrap, &names.topic("alerts"))? {
        let a: Value = serde_json::from_str(&payload)?;
        *counts.entry(a["alert_id"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    let dups: usize = counts.values().map(|c| c - 1).sum();
    let expected = replay_alert_ids(&config, &dir, end)?;
    let ids: std::collections::BTreeSet<String> = counts.into_keys().collect();
    let (missing, extra) = (expected.difference(&ids).count(), ids.difference(&expected).count());
    eprintln!("{name}: {} alerts: {missing} missing, {dups} duplicated, {extra} unexpected", ids.len());
    assert_eq!((missing, dups, extra), (0, 0, 0));
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
