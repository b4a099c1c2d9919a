//! Avro against a real Apache Kafka broker, with clients cs-pulse did not write: Python's
//! `confluent-kafka` AvroSerializer produces the events (three writer schema versions and
//! one incompatible record), cs-pulse reads them through a schema registry and writes
//! Avro alerts, and `fastavro` decodes those with `schemas/health_alert.avsc`. The alert
//! set must equal `replay`'s over the same events as NDJSON. Also: `replay` over Avro
//! container files written by fastavro gives the same alerts as over NDJSON.
//!
//! Needs the broker (`deploy/local/kafka.sh`) and the Python packages that
//! `tests/run-all.sh` installs into `.cache/venv`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::*;

const DAY_MS: i64 = 86_400_000;

fn gen_files(dir: &Path, days: i64) -> Result<i64> {
    let out = cs_pulse()
        .args(["gen", "--no-kafka", "--accounts", "24", "--teams", "3", "--users", "6", "--seed", "7"])
        .args(["--days", &days.to_string(), "--ndjson-dir"])
        .arg(dir)
        .output()?;
    assert!(out.status.success(), "gen failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(cs_pulse::generator::DEFAULT_START_MS + days * DAY_MS - 1000)
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

#[test]
#[ignore = "needs a real Kafka broker and the test Python packages: run `bash tests/run-all.sh`"]
fn avro_in_and_out_with_independent_clients_matches_replay() -> Result {
    let bootstrap = broker();
    let names = Names::new("avro");
    let dir = temp_dir(&names)?;
    let registry = Registry::start(&dir)?;
    let port = free_port();
    let extra = format!(
        "[input]\nformat = \"avro\"\n[output]\nformat = \"avro\"\n[schema_registry]\nurl = \"{}\"\n",
        registry.1
    );
    let config = write_config(&dir, &bootstrap, &names, &format!("{}-g", names.prefix), port, &extra)?;
    let end = gen_files(&dir, 35)?;
    cs_pulse::kafka::admin::create_topics(&cs_pulse::config::Config::load(&config)?, 4)?;
    let produced = interop(&[
        os("produce"),
        os(&bootstrap),
        os(&registry.1),
        dir.as_os_str(),
        os(&names.topic("usage")),
        os(&names.topic("support")),
        os(&names.topic("accounts")),
        os(&names.topic("teams")),
    ])?;
    eprintln!("avro: {}", produced.trim());
    let produced: serde_json::Value = serde_json::from_str(produced.trim())?;
    for v in ["v1", "v2", "v3"] {
        assert!(produced["usage_writer_schemas"][v].as_u64().unwrap_or(0) > 100, "few {v} records: {produced}");
    }

    let mut run = RunProcess::start(&config, dir.join("run.log"), port)?;
    run.wait_watermark(end - 3_600_000, Duration::from_secs(180))?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(run.terminate(Duration::from_secs(30))?, Some(0), "{}", run.log_text());

    let decoded = dir.join("alerts-decoded.ndjson");
    interop(&[os("decode-alerts"), os(&bootstrap), os(&names.topic("alerts")), decoded.as_os_str()])?;
    let mut ids = BTreeSet::new();
    let mut schema_ids = BTreeSet::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for line in std::fs::read_to_string(&decoded)?.lines() {
        let a: serde_json::Value = serde_json::from_str(line)?;
        assert_eq!(a["_key"], a["entity"]["account_id"], "keyed by account_id: {line}");
        assert!(a["reasons"].as_array().is_some_and(|r| !r.is_empty()), "{line}");
        schema_ids.insert(a["_schema_id"].as_i64().unwrap_or(-1));
        *kinds.entry(a["kind"].as_str().unwrap_or("?").to_string()).or_default() += 1;
        assert!(ids.insert(a["alert_id"].as_str().unwrap_or_default().to_string()), "duplicate: {line}");
    }
    assert_eq!(schema_ids.len(), 1, "one registered alert schema: {schema_ids:?}");
    let expected = replay_alert_ids(&config, &dir, end)?;
    assert!(!expected.is_empty());
    assert_eq!(ids.difference(&expected).count(), 0, "alerts replay does not write");
    assert_eq!(expected.difference(&ids).count(), 0, "alerts run did not write");
    eprintln!("avro: {} alerts decoded by fastavro equal replay's over NDJSON: {kinds:?}", ids.len());

    // The incompatible record, and only it, is dead-lettered with a reason.
    let dead = kcat_read(&bootstrap, &names.topic("deadletter"))?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (key, headers, _) = &dead[0];
    assert_eq!(key, "bad-record");
    assert!(headers.contains("cs_pulse.reason=incompatible_schema"), "{headers}");
    assert!(headers.contains("cannot be read as UsageEvent"), "{headers}");
    let log = run.log_text();
    // usage v1, v2, v3; support; accounts; teams: each resolved once
    assert_eq!(log.matches("Resolved a writer schema.").count(), 6, "{log}");

    // replay over Avro container files written by fastavro: the same alerts as over NDJSON
    // (and outcomes for backtest, below)
    let at = cs_pulse::generator::DEFAULT_START_MS + 30 * 86_400_000;
    let outcomes: String = ["churned", "renewed", "contracted", "expanded", "renewed"]
        .iter()
        .enumerate()
        .map(|(i, o)| format!("{{\"account_id\":\"acct-{i:06}\",\"at\":{at},\"outcome\":\"{o}\"}}\n"))
        .collect();
    std::fs::write(dir.join("outcomes.ndjson"), outcomes)?;
    interop(&[os("to-ocf"), dir.as_os_str()])?;
    let mut cmd = cs_pulse();
    cmd.arg("replay");
    for input in ["usage", "support", "accounts", "teams"] {
        cmd.arg(format!("--{input}")).arg(dir.join(format!("{input}.avro")));
    }
    let from_ocf = dir.join("replay-ocf.ndjson");
    assert!(cmd.arg("--out").arg(&from_ocf).arg("--config").arg(&config).status()?.success());
    let strip = |p: &Path| -> Result<BTreeSet<String>> {
        Ok(std::fs::read_to_string(p)?
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
                v.as_object_mut().map(|o| o.remove("emitted_at"));
                v.to_string()
            })
            .collect())
    };
    let (ocf, json) = (strip(&from_ocf)?, strip(&dir.join("replay-alerts.ndjson"))?);
    assert!(!ocf.is_empty());
    assert_eq!(ocf, json, "replay over .avro equals replay over .ndjson, field for field");

    // backtest reads fastavro's outcomes file as it reads the NDJSON one
    let backtest = |outcomes: &str| -> Result<serde_json::Value> {
        let summary = dir.join(format!("backtest-{outcomes}.json"));
        let out = cs_pulse()
            .args(["backtest", "--usage"])
            .arg(dir.join("usage.avro"))
            .arg("--outcomes")
            .arg(dir.join(outcomes))
            .arg("--json")
            .arg(&summary)
            .arg("--config")
            .arg(&config)
            .output()?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary)?)?;
        v.as_object_mut().map(|o| o.remove("replay"));
        Ok(v)
    };
    let (from_avro, from_ndjson) = (backtest("outcomes.avro")?, backtest("outcomes.ndjson")?);
    assert!(from_avro["outcomes_read"].as_u64().unwrap_or(0) > 0, "{from_avro}");
    assert_eq!(from_avro, from_ndjson, "outcomes from .avro and .ndjson");

    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
