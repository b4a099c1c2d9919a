//! cs-pulse against the real broker's SASL_SSL listener (SCRAM-SHA-512, a certificate
//! signed by a CA made by `deploy/local/kafka.sh`), with the password and the CA file
//! given as `${VAR}` references to the environment:
//! - `gen`, then `run` exactly-once: the alerts, read by Python's confluent-kafka over the
//!   same listener, equal `replay`'s over the same events; no log line and no
//!   `check-config` output holds the password;
//! - a wrong password, an untrusted certificate and an unreachable broker each end `run`
//!   and `gen` with their own message and exit code, quickly;
//! - a schema registry over HTTPS is trusted through `schema_registry.ca_location` (Avro
//!   in and out, with Python's confluent-kafka producing over SASL_SSL and fastavro
//!   decoding the alerts), and an untrusted or unreachable one stops `run` with a message
//!   naming it.
//!
//! Debian's kcat cannot be the independent client here: its librdkafka (2.0.2) predates
//! the SCRAM fix Kafka 4.x needs (2.6.1).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

const DAY_MS: i64 = 86_400_000;
const EXACTLY_ONCE: &str = "[processing]\nguarantee = \"exactly_once\"\ninstance_id = \"one\"\n";

/// A config for the secured listener: `write_config`'s, with `processing` replaced by
/// `processing` and the SASL_SSL client table.
fn secured_config(dir: &Path, s: &Secured, names: &Names, port: u16, processing: &str, extra: &str) -> Result<PathBuf> {
    let config = write_config(dir, &s.bootstrap, names, &format!("{}-g", names.prefix), port, "")?;
    let text = std::fs::read_to_string(&config)?.replace("[processing]\nguarantee = \"at_least_once\"\n", "")
        + processing
        + &s.client_table()
        + extra;
    std::fs::write(&config, text)?;
    Ok(config)
}

fn env_pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
#[ignore = "needs a real Kafka broker with its SASL_SSL listener: run `bash tests/run-all.sh`"]
fn sasl_ssl_gen_then_exactly_once_run_matches_replay_and_never_prints_the_password() -> Result {
    let s = Secured::from_env();
    let names = Names::new("sasl");
    let dir = temp_dir(&names)?;
    let port = free_port();
    let config = secured_config(&dir, &s, &names, port, EXACTLY_ONCE, "")?;
    let env = s.env();
    let env = env_pairs(&env);

    // check-config shows the effective settings with the password redacted
    let shown = cs_pulse().args(["check-config", "--config"]).arg(&config).envs(env.iter().copied()).output()?;
    assert!(shown.status.success(), "{}", text(&shown));
    let shown = text(&shown);
    assert!(shown.contains("\"sasl.password\" = \"${CS_PULSE_KAFKA_PASSWORD}\""), "redacted: {shown}");
    assert!(shown.contains(&s.ca), "the CA reference is expanded: {shown}");

    // gen logs librdkafka's own debug lines too, its configuration dump among them
    let gen_config = dir.join("gen.toml");
    std::fs::write(&gen_config, std::fs::read_to_string(&config)? + "\"debug\" = \"conf,security,broker\"\n")?;
    let days = 35;
    let gen = cs_pulse()
        .args(["gen", "--create-topics", "4", "--accounts", "24", "--teams", "3", "--users", "6"])
        .args(["--days", &days.to_string(), "--seed", "7", "--ndjson-dir"])
        .arg(&dir)
        .arg("--config")
        .arg(&gen_config)
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
        .output()?;
    let gen_log = text(&gen);
    assert!(gen.status.success(), "gen over SASL_SSL failed: {gen_log}");
    assert!(gen_log.contains("sasl.password"), "librdkafka's configuration dump is in the log: {gen_log}");
    let end = cs_pulse::generator::DEFAULT_START_MS + days * DAY_MS - 1000;

    let mut run = RunProcess::start_with_env(&config, dir.join("run.log"), port, &env)?;
    run.wait_watermark(end - 3_600_000, Duration::from_secs(180))?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(run.terminate(Duration::from_secs(30))?, Some(0), "{}", run.log_text());
    let run_log = run.log_text();
    assert!(run_log.contains("Consuming."), "{run_log}");

    // The alerts, read committed by confluent-kafka over the same listener.
    let read = dir.join("alerts-read.ndjson");
    let cfg_json = s.interop_config();
    interop_with_env(
        &["read-topic".as_ref(), s.bootstrap.as_ref(), names.topic("alerts").as_ref(), read.as_os_str()],
        &[("INTEROP_KAFKA_CONFIG", &cfg_json)],
    )?;
    let mut ids = std::collections::BTreeSet::new();
    for line in std::fs::read_to_string(&read)?.lines() {
        let r: serde_json::Value = serde_json::from_str(line)?;
        let alert: cs_pulse::model::Alert = serde_json::from_str(r["value"].as_str().ok_or("no value")?)?;
        assert_eq!(r["key"].as_str(), Some(alert.entity.account_id.as_ref()), "{line}");
        assert!(ids.insert(alert.alert_id.clone()), "exactly-once: {} twice", alert.alert_id);
    }
    let expected = replay_alert_ids(&config, &dir, end)?;
    assert!(!expected.is_empty(), "the scenario must produce alerts");
    assert_eq!(ids.difference(&expected).count(), 0, "alerts replay does not write");
    assert_eq!(expected.difference(&ids).count(), 0, "alerts run did not write");

    // The state changelog went over the same listener: it holds the engine's state.
    let changelog = dir.join("changelog.ndjson");
    let counted = interop_with_env(
        &[
            "read-topic".as_ref(),
            s.bootstrap.as_ref(),
            format!("{}-g-state-changelog", names.prefix).as_ref(),
            changelog.as_os_str(),
        ],
        &[("INTEROP_KAFKA_CONFIG", &cfg_json)],
    )?;
    let counted: serde_json::Value = serde_json::from_str(counted.trim())?;
    assert!(counted["records"].as_u64().unwrap_or(0) > 0, "empty changelog: {counted}");

    // No output holds the password: not check-config's, not gen's debug log, not run's.
    for (what, output) in [("check-config", &shown), ("gen", &gen_log), ("run", &run_log)] {
        assert!(!output.contains(&s.password), "{what} printed the password");
    }
    eprintln!(
        "sasl_ssl: {} alerts over SASL_SSL exactly-once, equal to replay; {} log lines checked for the password",
        ids.len(),
        gen_log.lines().count() + run_log.lines().count()
    );
    delete_topics(&broker(), &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Runs `cs-pulse ARGS --config CONFIG` with `env`; its output, exit code and duration.
fn timed(args: &[&str], config: &Path, env: &[(&str, &str)]) -> Result<(String, Option<i32>, Duration)> {
    let started = Instant::now();
    let out = cs_pulse().args(args).arg("--config").arg(config).envs(env.iter().copied()).output()?;
    Ok((text(&out), out.status.code(), started.elapsed()))
}

#[test]
#[ignore = "needs a real Kafka broker with its SASL_SSL listener: run `bash tests/run-all.sh`"]
fn wrong_password_untrusted_certificate_and_unreachable_broker_each_say_so_quickly() -> Result {
    let s = Secured::from_env();
    let names = Names::new("sasl-fail");
    let dir = temp_dir(&names)?;
    let port = free_port();
    let config = secured_config(&dir, &s, &names, port, "", "")?;
    let gen_args = ["gen", "--accounts", "2", "--days", "2"];

    // A wrong password: an authentication error naming the mechanism and the user.
    for args in [&["run"][..], &gen_args[..]] {
        let (out, code, took) =
            timed(args, &config, &[("CS_PULSE_KAFKA_PASSWORD", "wrong"), ("CS_PULSE_KAFKA_CA", &s.ca)])?;
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(out.contains("Kafka authentication failed"), "{out}");
        assert!(out.contains("SCRAM-SHA-512") && out.contains(&format!("user \"{}\"", s.username)), "{out}");
        assert!(took < Duration::from_secs(30), "{args:?} took {took:?}");
        assert!(!out.contains("Consuming."), "{out}");
        eprintln!("wrong password: {args:?} exit 2 after {took:?}");
    }

    // A certificate the client does not trust: without ssl.ca.location, the system's CAs
    // are used, and none of them signed the local broker's certificate.
    let system_cas = dir.join("system-cas.toml");
    let text = std::fs::read_to_string(&config)?.replace("\"ssl.ca.location\" = \"${CS_PULSE_KAFKA_CA}\"\n", "");
    std::fs::write(&system_cas, text)?;
    for args in [&["run"][..], &gen_args[..]] {
        let env = [("CS_PULSE_KAFKA_PASSWORD", s.password.as_str())];
        let (out, code, took) = timed(args, &system_cas, &env)?;
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(out.contains("TLS handshake") && out.contains("certificate is not trusted"), "{out}");
        assert!(out.contains("\"ssl.ca.location\" is not set, so the system's CA certificates were used"), "{out}");
        assert!(took < Duration::from_secs(30), "{args:?} took {took:?}");
        assert!(!out.contains(&s.password), "{out}");
        eprintln!("untrusted certificate: {args:?} exit 2 after {took:?}");
    }

    // No broker at all: the servers tried, after kafka.connect_timeout_secs.
    let closed = free_port();
    let unreachable = std::fs::read_to_string(&config)?
        .replace(&s.bootstrap, &format!("127.0.0.1:{closed}"))
        .replace("[kafka]\n", "[kafka]\nconnect_timeout_secs = 5\n");
    let unreachable_config = dir.join("unreachable.toml");
    std::fs::write(&unreachable_config, unreachable)?;
    for args in [&["run"][..], &gen_args[..]] {
        let env = [("CS_PULSE_KAFKA_PASSWORD", s.password.as_str()), ("CS_PULSE_KAFKA_CA", s.ca.as_str())];
        let (out, code, took) = timed(args, &unreachable_config, &env)?;
        assert_eq!(code, Some(1), "{args:?}: {out}");
        assert!(out.contains(&format!("no Kafka broker answered at 127.0.0.1:{closed} within 5 s")), "{out}");
        assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(25), "{args:?} took {took:?}");
        eprintln!("unreachable: {args:?} exit 1 after {took:?}");
    }

    // A secret written into the file is refused, naming the key and never echoing it.
    let literal = std::fs::read_to_string(&config)?.replace("${CS_PULSE_KAFKA_PASSWORD}", &s.password);
    let literal_config = dir.join("literal.toml");
    std::fs::write(&literal_config, literal)?;
    let (out, code, _) = timed(&["check-config"], &literal_config, &[("CS_PULSE_KAFKA_CA", &s.ca)])?;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("kafka.client.\"sasl.password\"") && out.contains("must come from the environment"), "{out}");
    assert!(!out.contains(&s.password), "{out}");

    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
#[ignore = "needs a real Kafka broker with its SASL_SSL listener and the test Python packages: run `bash tests/run-all.sh`"]
fn schema_registry_over_https_is_trusted_through_its_ca_and_refused_without() -> Result {
    let s = Secured::from_env();
    let names = Names::new("sasl-registry");
    let dir = temp_dir(&names)?;
    let port = free_port();
    let registry = Registry::start_https(&dir, &s)?;
    assert!(registry.1.starts_with("https://127.0.0.1:"), "{}", registry.1);
    let avro_out = |ca: &str| format!("[output]\nformat = \"avro\"\n[schema_registry]\nurl = \"{}\"\n{ca}", registry.1);
    let env = s.env();
    let env = env_pairs(&env);

    // Without the CA, the registry's certificate is refused: exit 2, saying so.
    let untrusted = secured_config(&dir, &s, &names, port, "", &avro_out(""))?;
    let (out, code, took) = timed(&["run"], &untrusted, &env)?;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("schema registry's TLS certificate is not trusted"), "{out}");
    assert!(out.contains("schema_registry.ca_location") && out.contains(&registry.1), "{out}");
    eprintln!("untrusted registry: exit 2 after {took:?}");

    // A registry nobody serves: exit 1, naming it, after a few attempts.
    let closed = format!("https://127.0.0.1:{}", free_port());
    let gone = secured_config(&dir, &s, &names, port, "", &avro_out("").replace(&registry.1, &closed))?;
    let (out, code, took) = timed(&["run"], &gone, &env)?;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("the schema registry at {closed} did not answer")), "{out}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    eprintln!("unreachable registry: exit 1 after {took:?}");

    // With the CA, end to end: Python's confluent-kafka produces Avro events over SASL_SSL,
    // registering their schemas over HTTPS (trusting the same CA); run reads them through
    // the registry and writes Avro alerts; fastavro decodes those, read over SASL_SSL.
    // The alerts equal replay's over the same events as NDJSON.
    let trusted = secured_config(
        &dir,
        &s,
        &names,
        port,
        "",
        &(avro_out("ca_location = \"${CS_PULSE_KAFKA_CA}\"\n") + "[input]\nformat = \"avro\"\n"),
    )?;
    let shown = timed(&["check-config"], &trusted, &env)?.0;
    assert!(shown.contains(&format!("ca_location = \"{}\"", s.ca)), "{shown}");
    cs_pulse::kafka::admin::create_topics(&cs_pulse::config::Config::load(&config_with_env(&trusted, &s)?)?, 2)?;
    let days = 21;
    let gen = cs_pulse()
        .args(["gen", "--no-kafka", "--accounts", "12", "--teams", "3", "--users", "6", "--seed", "3"])
        .args(["--days", &days.to_string(), "--ndjson-dir"])
        .arg(&dir)
        .output()?;
    assert!(gen.status.success(), "{}", text(&gen));
    let end = cs_pulse::generator::DEFAULT_START_MS + days * DAY_MS - 1000;
    let kafka = s.interop_config();
    let interop_env = [("INTEROP_KAFKA_CONFIG", kafka.as_str()), ("INTEROP_REGISTRY_CA", s.ca.as_str())];
    let produced = interop_with_env(
        &[
            "produce".as_ref(),
            s.bootstrap.as_ref(),
            registry.1.as_ref(),
            dir.as_os_str(),
            names.topic("usage").as_ref(),
            names.topic("support").as_ref(),
            names.topic("accounts").as_ref(),
            names.topic("teams").as_ref(),
        ],
        &interop_env,
    )?;
    eprintln!("https registry: {}", produced.trim());
    let mut run = RunProcess::start_with_env(&trusted, dir.join("run.log"), port, &env)?;
    run.wait_watermark(end - 3_600_000, Duration::from_secs(180))?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(run.terminate(Duration::from_secs(30))?, Some(0), "{}", run.log_text());
    let decoded = dir.join("alerts-decoded.ndjson");
    interop_with_env(
        &["decode-alerts".as_ref(), s.bootstrap.as_ref(), names.topic("alerts").as_ref(), decoded.as_os_str()],
        &interop_env,
    )?;
    let ids: std::collections::BTreeSet<String> = std::fs::read_to_string(&decoded)?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|a| a["alert_id"].as_str().map(str::to_string))
        .collect();
    let expected = replay_alert_ids(&trusted, &dir, end)?;
    assert!(!expected.is_empty(), "the scenario must produce alerts");
    assert_eq!(ids, expected, "Avro alerts over SASL_SSL and an HTTPS registry equal replay's");
    eprintln!("https registry: {} Avro alerts decoded by fastavro equal replay's", ids.len());
    delete_topics(&broker(), &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// `config` with its `${VAR}` references written out, for the tests' own use of
/// `Config::load` (which reads this process's environment).
fn config_with_env(config: &Path, s: &Secured) -> Result<PathBuf> {
    let text = std::fs::read_to_string(config)?.replace("${CS_PULSE_KAFKA_CA}", &s.ca);
    let out = config.with_extension("expanded.toml");
    // the password stays a reference: this process has it in CS_PULSE_TEST_SASL_PASSWORD
    std::fs::write(&out, text.replace("${CS_PULSE_KAFKA_PASSWORD}", "${CS_PULSE_TEST_SASL_PASSWORD}"))?;
    Ok(out)
}
