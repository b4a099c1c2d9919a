//! The command line: exit codes, error messages that name the bad input, help.

use std::process::{Command, Output};

fn cs_pulse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cs-pulse"))
        .args(args)
        .env_remove("CS_PULSE_BOOTSTRAP_SERVERS")
        .env_remove("CS_PULSE_METRICS_BIND")
        .output()
        .expect("cs-pulse runs")
}

fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("cs-pulse-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, text).expect("temp file");
    p
}

#[test]
fn check_config_prints_effective_defaults() {
    let p = write_temp("ok.toml", "[adoption]\nkey_features = [\"deploys\"]\n");
    let out = cs_pulse(&["check-config", "--config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("key_features = [\"deploys\"]"), "{text}");
    assert!(text.contains("allowed_lateness_secs = 3600"), "{text}");
    assert!(text.contains("bootstrap_servers = \"127.0.0.1:9092\""), "{text}");
}

#[test]
fn unknown_key_exits_2_naming_it() {
    let p = write_temp("bad.toml", "[health.weights]\nutilisation = 10\n");
    let out = cs_pulse(&["check-config", "--config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("utilisation"), "{err}");
}

#[test]
fn bad_value_exits_2_naming_the_key() {
    let p = write_temp("range.toml", "[time]\nevaluation_interval_secs = 0\n");
    let out = cs_pulse(&["check-config", "--config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("time.evaluation_interval_secs"));
}

#[test]
fn missing_config_file_exits_2() {
    let out = cs_pulse(&["check-config", "--config", "/nonexistent/cs-pulse.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cs-pulse.toml"));
}

#[test]
fn env_overrides_bootstrap_servers() {
    let out = Command::new(env!("CARGO_BIN_EXE_cs-pulse"))
        .args(["check-config"])
        .env("CS_PULSE_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("bootstrap_servers = \"127.0.0.1:19092\""));
}

#[test]
fn replay_of_a_missing_file_exits_2() {
    let out_file = std::env::temp_dir().join(format!("cs-pulse-cli-{}-alerts.ndjson", std::process::id()));
    let out = cs_pulse(&["replay", "--usage", "/nonexistent/usage.ndjson", "--out", out_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/usage.ndjson"));
}

#[test]
fn unknown_subcommand_exits_2_and_help_teaches() {
    assert_eq!(cs_pulse(&["frobnicate"]).status.code(), Some(2));
    let help = cs_pulse(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for word in ["run", "demo", "replay", "check-config", "Exit codes"] {
        assert!(text.contains(word), "help lacks {word}: {text}");
    }
}

/// `gen --events` stops early; its closing events (which bring every partition to the
/// same event time) then sit at the end of the last day written, not of `--days`.
#[test]
fn gen_closes_at_the_end_of_the_last_day_written() {
    let dir = std::env::temp_dir().join(format!("cs-pulse-cli-{}-gen", std::process::id()));
    let d = dir.to_str().unwrap();
    let out = cs_pulse(&["gen", "--no-kafka", "--ndjson-dir", d, "--accounts", "2", "--events", "50", "--days", "400"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let usage = std::fs::read_to_string(dir.join("usage.ndjson")).unwrap();
    let max = usage
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["occurred_at"].as_i64())
        .max()
        .unwrap();
    // 400 days from the default start would reach past today: the history starts whole
    // weeks earlier, so that it ends before the wall clock
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let start = cs_pulse::generator::start_for(400, now);
    assert!(start + 400 * 86_400_000 <= now);
    assert_eq!(max, start + 86_400_000 - 1000, "closing events at the end of day 1");
    std::fs::remove_dir_all(&dir).ok();
}

/// `gen --live` stamps events with the wall clock as they are written.
#[test]
fn gen_live_stamps_events_with_the_wall_clock() {
    let dir = std::env::temp_dir().join(format!("cs-pulse-cli-{}-live", std::process::id()));
    let d = dir.to_str().unwrap();
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let out = cs_pulse(&["gen", "--no-kafka", "--ndjson-dir", d, "--accounts", "2", "--events", "30", "--live"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let times: Vec<i64> = ["usage", "support"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(dir.join(format!("{f}.ndjson")))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok()?["occurred_at"].as_i64())
        .collect();
    assert_eq!(times.len(), 30, "no closing events in live mode");
    assert!(times.iter().all(|t| (before..=after).contains(t)), "{times:?} not in {before}..={after}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_refused_client_property_exits_2_naming_it_without_its_value() {
    // a misspelt secret key is not recognised as a secret, so its literal value reaches
    // librdkafka, which refuses the key: the message names the key, not the value
    let p = write_temp("typo.toml", "[kafka.client]\n\"sasl.passwd\" = \"hunter2-literal\"\n");
    let gen = cs_pulse(&["gen", "--config", p.to_str().unwrap(), "--accounts", "1", "--days", "1"]);
    let demo = cs_pulse(&["demo", "--config", p.to_str().unwrap(), "--duration", "5s"]);
    for out in [gen, demo] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("kafka.client \"sasl.passwd\"") && err.contains("No such configuration property"),
            "{err}"
        );
        assert!(!err.contains("hunter2-literal"), "{err}");
    }
}

#[test]
fn an_unset_variable_exits_2_naming_key_and_variable_but_replay_does_not_need_it() {
    let p = write_temp(
        "unset.toml",
        "[kafka.client]\n\"sasl.password\" = \"${CS_PULSE_CLI_TEST_UNSET}\"\n[time]\nallowed_lateness_secs = 60\n",
    );
    let out = cs_pulse(&["check-config", "--config", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("sasl.password") && err.contains("CS_PULSE_CLI_TEST_UNSET"), "{err}");
    let alerts = std::env::temp_dir().join(format!("cs-pulse-cli-{}-unset-alerts.ndjson", std::process::id()));
    let out = cs_pulse(&["replay", "--config", p.to_str().unwrap(), "--out", alerts.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The golden `trend` case (a team's usage drops on 2026-03-10: usage_drop and
/// health_band_changed warnings for the team and its account `acct`), with `acct` churning
/// 22 days later and another account renewing.
#[test]
fn backtest_measures_alerts_against_churn() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/trend");
    let outcomes = write_temp(
        "outcomes.ndjson",
        "{\"account_id\":\"acct\",\"at\":\"2026-04-01T00:00:00Z\",\"outcome\":\"churned\"}\n\
         {\"account_id\":\"other\",\"at\":\"2026-04-01T00:00:00Z\",\"outcome\":\"renewed\"}\n\
         {\"account_id\":\"acct\",\"at\":\"soon\",\"outcome\":\"churned\"}\n",
    );
    let json = std::env::temp_dir().join(format!("cs-pulse-cli-{}-backtest.json", std::process::id()));
    let usage = dir.join("usage.ndjson");
    let config = dir.join("config.toml");
    let out = cs_pulse(&[
        "backtest",
        "--usage",
        usage.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--outcomes",
        outcomes.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("usage_drop warning"), "{text}");
    assert!(err.contains("Outcome line refused") && err.contains("'soon'"), "the refused line is named: {err}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["outcomes_read"], 3);
    assert_eq!(v["outcomes_refused"], 1);
    let rows = v["summary"]["alerts"].as_array().unwrap();
    let drop = rows.iter().find(|r| r["kind"] == "usage_drop").unwrap();
    // Two usage_drop alerts (team and account), both 22 days before acct's churn.
    assert_eq!(drop["count"], 2);
    assert_eq!(drop["churn"]["precision"], 1.0);
    assert_eq!(drop["churn"]["recall"], 1.0);
    assert_eq!(drop["median_lead_days"], 22.0);
    // No critical alert; no score 90 days before either outcome (the history starts in March).
    assert_eq!(v["summary"]["band_model"]["critical"]["count"], 0);
    assert!(v["summary"]["band_model"]["auc_churned"].is_null());

    let missing =
        cs_pulse(&["backtest", "--usage", usage.to_str().unwrap(), "--outcomes", "/nonexistent/outcomes.ndjson"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/outcomes.ndjson"));
}

/// Outcomes as an Avro object container file (schemas/outcome.avsc) read as the same
/// NDJSON lines; a file that is not a container is refused, naming it (exit 2).
#[test]
fn backtest_reads_avro_outcomes() {
    use apache_avro::types::Record;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema =
        apache_avro::Schema::parse_str(&std::fs::read_to_string(dir.join("schemas/outcome.avsc")).unwrap()).unwrap();
    let mut w =
        apache_avro::Writer::with_codec(&schema, Vec::new(), apache_avro::Codec::Deflate(Default::default())).unwrap();
    for (account, outcome) in [("acct", "churned"), ("other", "renewed")] {
        let mut r = Record::new(w.schema()).unwrap();
        r.put("account_id", account);
        r.put("at", apache_avro::types::Value::TimestampMillis(1_775_001_600_000)); // 2026-04-01
        let pos = ["renewed", "expanded", "contracted", "churned"].iter().position(|o| *o == outcome).unwrap();
        r.put("outcome", apache_avro::types::Value::Enum(pos as u32, outcome.into()));
        w.append_value(r).unwrap();
    }
    let avro = std::env::temp_dir().join(format!("cs-pulse-cli-{}-outcomes.avro", std::process::id()));
    std::fs::write(&avro, w.into_inner().unwrap()).unwrap();
    let ndjson = write_temp(
        "same-outcomes.ndjson",
        "{\"account_id\":\"acct\",\"at\":1775001600000,\"outcome\":\"churned\"}\n\
         {\"account_id\":\"other\",\"at\":1775001600000,\"outcome\":\"renewed\"}\n",
    );
    let usage = dir.join("tests/golden/trend/usage.ndjson");
    let config = dir.join("tests/golden/trend/config.toml");
    let summary = |outcomes: &std::path::Path| {
        let json = outcomes.with_extension("summary.json");
        let out = cs_pulse(&[
            "backtest",
            "--usage",
            usage.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--outcomes",
            outcomes.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&json).unwrap()).unwrap()["summary"].clone()
    };
    let from_avro = summary(&avro);
    assert_eq!(from_avro["outcomes"]["churned"], 1, "{from_avro}");
    assert_eq!(from_avro, summary(&ndjson));

    let unwritable = cs_pulse(&[
        "backtest",
        "--usage",
        usage.to_str().unwrap(),
        "--outcomes",
        ndjson.to_str().unwrap(),
        "--report",
        "/nonexistent-dir/report.html",
    ]);
    assert_eq!(unwritable.status.code(), Some(2), "refused before the replay");
    assert!(String::from_utf8_lossy(&unwritable.stderr).contains("/nonexistent-dir/report.html"));
    assert!(unwritable.stdout.is_empty(), "nothing was replayed");

    let bogus = write_temp("bogus.avro", "not a container");
    let out = cs_pulse(&["backtest", "--usage", usage.to_str().unwrap(), "--outcomes", bogus.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus.avro"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `backtest` over the files `gen --ndjson-dir` wrote into `dir`: its JSON summary.
/// Backtests `gen`'s files in `dir` under the default policy, compared with policy `all`
/// (under `"compared"`).
fn backtest_gen_dir(dir: &std::path::Path) -> serde_json::Value {
    let json = dir.join("backtest.json");
    let all = dir.join("all.toml");
    if let Err(e) = std::fs::write(&all, "[alerts]\npolicy = \"all\"\n") {
        panic!("{}: {e}", all.display());
    }
    let mut args = vec!["backtest".to_string()];
    for input in ["usage", "support", "accounts", "teams", "outcomes"] {
        args.push(format!("--{input}"));
        args.push(dir.join(format!("{input}.ndjson")).display().to_string());
    }
    args.extend(["--json".to_string(), json.display().to_string()]);
    args.extend(["--compare-config".to_string(), all.display().to_string()]);
    let out = cs_pulse(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", json.display()))
}

/// Runs `gen --no-kafka` with `args` into a new temporary folder named after `name`, and
/// returns the folder.
fn gen_files(name: &str, args: &[&str]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cs-pulse-cli-{}-{name}", std::process::id()));
    let mut all = vec!["gen", "--no-kafka", "--ndjson-dir"];
    let d = dir.display().to_string();
    all.push(&d);
    all.extend_from_slice(args);
    let out = cs_pulse(&all);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// `gen --ndjson-dir` writes outcomes beside the records, and `backtest` reads them all.
#[test]
fn gen_writes_outcomes_that_backtest_reads() {
    let dir = gen_files("gen-outcomes", &["--accounts", "24", "--teams", "1", "--users", "3", "--days", "400"]);
    let outcomes = std::fs::read_to_string(dir.join("outcomes.ndjson")).unwrap();
    let lines: Vec<serde_json::Value> = outcomes.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 10, "{outcomes}");
    for o in &lines {
        assert!(o["account_id"].as_str().unwrap().starts_with("acct-"), "{o}");
        assert!(["renewed", "expanded", "contracted", "churned"].contains(&o["outcome"].as_str().unwrap()), "{o}");
    }
    let v = backtest_gen_dir(&dir);
    assert_eq!(v["outcomes_read"], lines.len());
    assert_eq!(v["outcomes_refused"], 0);
    assert_eq!(v["summary"]["accounts"], 24);
    // The storylines' churn is foretold: the score 90 days before tells churned accounts
    // from those that stayed better than chance, and under policy `all` critical alerts
    // warn of some churn. The default policy, `focused`, writes fewer alerts.
    let m = &v["summary"]["band_model"];
    assert!(m["auc_churned"].as_f64().unwrap() > 0.5, "{m}");
    let all = &v["compared"];
    assert_eq!((v["policy"].as_str(), all["policy"].as_str()), (Some("focused"), Some("all")));
    assert_eq!(all["summary"]["band_model"]["auc_churned"], m["auc_churned"], "the policy changes no score");
    assert!(all["summary"]["band_model"]["critical"]["churn"]["recall"].as_f64().unwrap() > 0.0, "{all}");
    let volume = |v: &serde_json::Value| v["summary"]["alerts_per_account_month"].as_f64().unwrap();
    assert!(volume(&v) < volume(all), "focused {} against all {}", volume(&v), volume(all));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `gen --history` writes a realistic history: churn drawn at renewals from hidden health,
/// quiet weekends, and nothing from an account after it churned; `backtest` reads it.
#[test]
fn gen_history_writes_a_history_backtest_reads() {
    let dir = gen_files(
        "history",
        &["--history", "--accounts", "24", "--teams", "1", "--users", "2", "--days", "370", "--seed", "9"],
    );
    let read = |f: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join(f)).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let outcomes = read("outcomes.ndjson");
    let churned: Vec<&serde_json::Value> = outcomes.iter().filter(|o| o["outcome"] == "churned").collect();
    assert!(outcomes.len() >= 18 && !churned.is_empty() && churned.len() * 2 < outcomes.len(), "{outcomes:?}");
    let usage = read("usage.ndjson");
    for c in &churned {
        let after = usage
            .iter()
            .filter(|e| {
                e["account_id"] == c["account_id"]
                    && e["occurred_at"].as_i64() > c["at"].as_i64().map(|t| t + 86_400_000)
            })
            .filter(|e| e["type"] != "heartbeat")
            .count();
        assert_eq!(after, 0, "{} is silent after it churned", c["account_id"]);
    }
    let v = backtest_gen_dir(&dir);
    assert_eq!(v["outcomes_read"], outcomes.len());
    let _ = std::fs::remove_dir_all(&dir);
}
