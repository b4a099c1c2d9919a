//! cs-pulse with the real Prometheus tools (Debian's `prometheus` package, installed by
//! `bash tests/run-all.sh`): `promtool` checks of the shipped configuration, rules and rule
//! tests, `promtool check metrics` on a running instance's /metrics, and a Prometheus
//! server on loopback scraping `cs-pulse run` (fed by `gen` on the real broker) while every
//! PromQL expression of both Grafana dashboards is run through its HTTP API.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A Prometheus tool; fails loudly, never skips.
fn tool(name: &str) -> Command {
    let found = Command::new(name).arg("--version").output();
    if !found.is_ok_and(|o| o.status.success()) {
        panic!("{name} is not installed: run `bash tests/run-all.sh` (it installs Debian's prometheus package)");
    }
    Command::new(name)
}

/// Runs a promtool command; returns its output, failing with it unless it succeeded.
fn promtool(args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = tool("promtool");
    cmd.args(args).current_dir(repo("")).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("promtool starts");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes()).expect("promtool reads stdin");
    }
    let out = child.wait_with_output().expect("promtool runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {} failed ({}):\n{text}", args.join(" "), out.status);
    text
}

#[test]
#[ignore = "needs promtool: run `bash tests/run-all.sh`"]
fn shipped_config_and_rules_pass_promtool() {
    let out = promtool(&["check", "config", "deploy/prometheus/prometheus.yml"], None);
    // the config names the rule file, which promtool checks with it
    assert!(out.contains("SUCCESS: 9 rules found"), "{out}");
    let out = promtool(&["check", "rules", "deploy/prometheus/cs-pulse.rules.yml"], None);
    assert!(out.contains("SUCCESS: 9 rules found"), "{out}");
    let out = promtool(&["test", "rules", "deploy/prometheus/cs-pulse.rules.test.yml"], None);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
#[ignore = "needs promtool: run `bash tests/run-all.sh`"]
fn a_rule_test_that_expects_the_wrong_alert_fails() {
    // The rule tests can fail: the same tests against a rule file whose threshold moved.
    let dir = std::env::temp_dir().join(format!("cs-pulse-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rules = std::fs::read_to_string(repo("deploy/prometheus/cs-pulse.rules.yml")).expect("rules");
    let moved = rules.replace("> 0.01", "> 0.10");
    assert_ne!(moved, rules, "the dead-letter threshold is in the rules");
    std::fs::write(dir.join("cs-pulse.rules.yml"), moved).expect("write rules");
    let tests = std::fs::read_to_string(repo("deploy/prometheus/cs-pulse.rules.test.yml")).expect("tests");
    std::fs::write(dir.join("cs-pulse.rules.test.yml"), tests).expect("write tests");
    let out = tool("promtool")
        .args(["test", "rules", "cs-pulse.rules.test.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the moved threshold went unnoticed:\n{text}");
    assert!(text.contains("CsPulseDeadLetterRateHigh"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Every PromQL expression of a dashboard, with the panel it belongs to.
fn dashboard_queries(file: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let d: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap_or_else(|| panic!("{file} has no panels")) {
        let title = p["title"].as_str().unwrap_or("?").to_string();
        assert_eq!(p["datasource"]["uid"], "cs-pulse-prometheus", "{file}: panel {title}");
        assert!(p["description"].as_str().is_some_and(|s| !s.is_empty()), "{file}: panel {title} says what it answers");
        for t in p["targets"].as_array().unwrap_or_else(|| panic!("{file}: panel {title} has no targets")) {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("{file}: panel {title} has a target without expr"));
            out.push((title.clone(), expr.to_string()));
        }
    }
    out
}

/// A Prometheus server on loopback; killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, target_port: u16) -> Self {
        let port = free_port();
        let rules = repo("deploy/prometheus/cs-pulse.rules.yml");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: cs-pulse\n    static_configs:\n      - targets: [\"127.0.0.1:{target_port}\"]\n",
                rules.display()
            ),
        )
        .expect("write prometheus.yml");
        promtool(&["check", "config", config.to_str().expect("utf-8 path")], None);
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus log");
        let child = tool("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus starts");
        Self { child, port, dir: dir.to_path_buf() }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let mut req = ureq::get(&format!("http://127.0.0.1:{}{path}", self.port));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let body = req.call()?.body_mut().read_to_string()?;
        Ok(serde_json::from_str(&body)?)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            if ureq::get(&format!("http://127.0.0.1:{}/-/ready", self.port)).call().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("prometheus not ready in 60 s:\n{}", self.log());
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn finite_values(result: &Value) -> usize {
    result
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|series| series["values"].as_array().into_iter().flatten())
        .filter_map(|v| v[1].as_str().and_then(|s| s.parse::<f64>().ok()))
        .filter(|v| v.is_finite())
        .count()
}

#[test]
#[ignore = "needs a real Kafka broker and Prometheus: run `bash tests/run-all.sh`"]
fn prometheus_scrapes_a_running_instance_and_every_dashboard_query_returns_data() -> Result {
    let bootstrap = broker();
    let names = Names::new("prom");
    let dir = temp_dir(&names)?;
    let port = free_port();
    let config = write_config(&dir, &bootstrap, &names, &format!("{}-g", names.prefix), port, "")?;
    cs_pulse::kafka::admin::create_topics(&cs_pulse::config::Config::load(&config)?, 4)?;

    // cs-pulse first, so that Prometheus sees it from the start; then records keep
    // arriving for a while: bad ones through kcat, and a synthetic customer base at a
    // steady rate through `gen` (14,069 events at 600/s: about 23 s, so that Prometheus
    // scrapes every kind of output while it is produced).
    let mut run = RunProcess::start_with_env(
        &config,
        dir.join("run.log"),
        port,
        &[("CS_PULSE_LOG_FORMAT", "json"), ("RUST_LOG", "info,cs_pulse::telemetry=debug")],
    )?;
    let mut prom = Prometheus::start(&dir, port);
    prom.wait_ready();
    kcat_produce(
        &bootstrap,
        &names.topic("usage"),
        &[("acme", "not json"), ("acme", r#"{"event_id":"x","occurred_at":"yesterday","account_id":"acme"}"#)],
    )?;
    let started = Instant::now();
    let days = 35;
    let gen = cs_pulse()
        .args(["gen", "--accounts", "12", "--teams", "3", "--users", "6", "--days", &days.to_string()])
        .args(["--seed", "11", "--rate", "600", "--config"])
        .arg(&config)
        .output()?;
    assert!(gen.status.success(), "gen failed: {}", String::from_utf8_lossy(&gen.stderr));
    let end = cs_pulse::generator::DEFAULT_START_MS + days * cs_pulse::time::DAY_MS - 1000;
    run.wait_watermark(end - 3_600_000, Duration::from_secs(180))?;
    // a few more scrapes of the final state
    std::thread::sleep(Duration::from_secs(4));
    let produced_for = started.elapsed();

    // /metrics of the running instance passes promtool's linter.
    let text = scrape(port).ok_or("no /metrics")?;
    let body = text.split_once("\r\n\r\n").map_or(text.as_str(), |(_, b)| b);
    assert!(body.contains("cs_pulse_events_total"), "{body}");
    let lint = promtool(&["check", "metrics"], Some(body));
    assert!(lint.trim().is_empty(), "promtool check metrics found problems:\n{lint}");

    // The target is up and every rule evaluates without error.
    let up = prom.get("/api/v1/query", &[("query", "up{job=\"cs-pulse\"}")])?;
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    let rules = prom.get("/api/v1/rules", &[])?;
    let mut rule_names = BTreeSet::new();
    for g in rules["data"]["groups"].as_array().ok_or("no rule groups")? {
        for r in g["rules"].as_array().ok_or("no rules")? {
            assert_eq!(r["health"], "ok", "rule {} does not evaluate: {}", r["name"], r["lastError"]);
            rule_names.insert(r["name"].as_str().unwrap_or("?").to_string());
        }
    }
    assert_eq!(rule_names.len(), 9, "{rule_names:?}");

    // Every dashboard expression, as Grafana would send it, over the run.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    let (start, end_s) = (format!("{:.3}", now - produced_for.as_secs_f64() - 10.0), format!("{now:.3}"));
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in ["deploy/grafana/dashboards/pipeline-health.json", "deploy/grafana/dashboards/customer-health.json"] {
        for (panel, expr) in dashboard_queries(file) {
            let q = expr.replace("$__rate_interval", "30s").replace("$__range", "10m");
            let r =
                prom.get("/api/v1/query_range", &[("query", &q), ("start", &start), ("end", &end_s), ("step", "2")]);
            match r {
                Ok(v) if v["status"] == "success" && finite_values(&v["data"]["result"]) > 0 => checked += 1,
                Ok(v) => failures.push(format!("{file}: {panel}: {q}\n  -> {v}")),
                Err(e) => failures.push(format!("{file}: {panel}: {q}\n  -> {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "dashboard queries without data:\n{}\n", failures.join("\n"));
    assert!(checked >= 25, "only {checked} queries checked");
    eprintln!("prometheus: {checked} dashboard queries returned data; 9 rules healthy; /metrics lint clean");

    assert_eq!(run.terminate(Duration::from_secs(30))?, Some(0), "{}", run.log_text());
    drop(prom);

    // JSON logs: one object per line; the lines about a record say where it came from.
    let log = run.log_text();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l}")))
        .collect();
    let dead: Vec<&Value> = lines.iter().filter(|l| l["fields"]["message"] == "Record dead-lettered.").collect();
    assert!(dead.len() >= 2, "the two bad records are logged:\n{log}");
    for l in dead {
        let f = &l["fields"];
        assert!(f["topic"] == names.topic("usage").as_str() || f["topic"] == names.topic("support").as_str(), "{l}");
        assert!(f["partition"].as_i64().is_some_and(|p| (0..4).contains(&p)), "{l}");
        assert!(f["offset"].as_i64().is_some_and(|o| o >= 0), "{l}");
        assert!(f["reason"].as_str().is_some_and(|r| !r.is_empty()), "{l}");
    }
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
