//! The real `run` pipeline against librdkafka's in-process mock cluster: events in
//! (garbage included), alerts and dead letters read back from the output topics, and the
//! alert set compared with `replay` on the same events.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use cs_pulse::config::Config;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const DAY: i64 = 86_400_000;
const BASE: i64 = 1_772_409_600_000; // 2026-03-02T00:00:00Z

fn config(bootstrap: &str, group: &str) -> Config {
    let mut c = Config::default();
    c.kafka.bootstrap_servers = bootstrap.into();
    c.kafka.group_id = group.into();
    c.time.evaluation_interval_secs = 86_400;
    c.time.idle_timeout_secs = 1;
    c.health.warmup_secs = 0;
    // the scenario checks rules on every level: every alert
    c.alerts.policy = cs_pulse::config::AlertPolicy::All;
    // the mock cluster does not store transactional offsets
    c.processing.guarantee = cs_pulse::config::Guarantee::AtLeastOnce;
    c
}

fn usage(id: &str, at: i64, team: &str, user: &str) -> Value {
    json!({"event_id": id, "occurred_at": at, "account_id": "acme", "team_id": team, "user_id": user, "type": "page_view"})
}

/// Ten users on days 0..6, then two on day 14: a usage drop at the tick of day 14.
fn scenario() -> (Vec<Value>, Vec<Value>) {
    let mut u = Vec::new();
    for day in 0..7 {
        for n in 0..10 {
            u.push(usage(&format!("{day}-{n}"), BASE + day * DAY + 36_000_000, "platform", &format!("u{n}")));
        }
    }
    u.push(usage("last-1", BASE + 14 * DAY + 36_000_000, "platform", "u1"));
    u.push(usage("last-2", BASE + 14 * DAY + 36_000_000, "platform", "u2"));
    let s = vec![
        json!({"event_id": "p1", "occurred_at": BASE + 3 * DAY, "account_id": "acme", "team_id": "platform", "kind": "ticket_opened", "ticket_id": "T-1", "priority": "P1"}),
        json!({"event_id": "p1-fix", "occurred_at": BASE + 14 * DAY + 36_000_000, "account_id": "acme", "kind": "ticket_resolved", "ticket_id": "T-1"}),
    ];
    (u, s)
}

fn produce(p: &BaseProducer, topic: &str, key: &str, payload: &[u8]) -> Result {
    p.send(BaseRecord::to(topic).key(key).payload(payload)).map_err(|(e, _)| e)?;
    Ok(())
}

#[test]
fn pipeline_on_mock_cluster() -> Result {
    let mock = MockCluster::new(1)?;
    let bootstrap = mock.bootstrap_servers();
    let cfg = config(&bootstrap, "mock-e2e");
    let t = cfg.topics.clone();
    cs_pulse::demo::create_topics(&mock, &cfg, 2)?;
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
    produce(&producer, &t.accounts, "acme", json!({"account_id": "acme", "seats": 20}).to_string().as_bytes())?;
    produce(
        &producer,
        &t.teams,
        "platform",
        json!({"team_id": "platform", "account_id": "acme", "group": "infra", "seats": 12}).to_string().as_bytes(),
    )?;
    let (usage_events, support_events) = scenario();
    for e in &usage_events {
        produce(&producer, &t.usage, "acme", e.to_string().as_bytes())?;
    }
    for e in &support_events {
        produce(&producer, &t.support, "acme", e.to_string().as_bytes())?;
    }
    // garbage: not UTF-8 JSON, and an event without its team
    produce(&producer, &t.usage, "acme", b"\xff\xfe not json")?;
    produce(
        &producer,
        &t.support,
        "acme",
        json!({"event_id": "x", "occurred_at": BASE, "account_id": "acme", "kind": "ticket_lost", "ticket_id": "T"})
            .to_string()
            .as_bytes(),
    )?;
    producer.flush(Duration::from_secs(10))?;

    let metrics = cs_pulse::telemetry::metrics();
    let events_before = metrics.events_total.with_label_values(&[&t.usage]).get();
    let stop = Arc::new(AtomicBool::new(false));
    let pipeline = {
        let (cfg, stop) = (cfg.clone(), Arc::clone(&stop));
        std::thread::spawn(move || cs_pulse::pipeline::run(&cfg, &stop))
    };

    let reader: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("group.id", "mock-e2e-reader").create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t.alerts, 0, Offset::Beginning)?;
    tpl.add_partition_offset(&t.deadletter, 0, Offset::Beginning)?;
    reader.assign(&tpl)?;
    let mut alerts: Vec<Value> = Vec::new();
    let mut dead: Vec<(String, String, String, Vec<u8>)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = |alerts: &[Value], dead: &[(String, String, String, Vec<u8>)]| {
        let drops = alerts.iter().filter(|a| a["kind"] == "usage_drop").count();
        drops >= 3 && dead.len() >= 2
    };
    while Instant::now() < deadline && !done(&alerts, &dead) {
        let Some(m) = reader.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m?;
        if m.topic() == t.alerts {
            alerts.push(serde_json::from_slice(m.payload().unwrap_or_default())?);
        } else {
            let mut reason = String::new();
            let mut source = String::new();
            if let Some(h) = m.headers() {
                for hdr in h.iter() {
                    let v = String::from_utf8_lossy(hdr.value.unwrap_or_default()).into_owned();
                    match hdr.key {
                        "cs_pulse.reason" => reason = v,
                        "cs_pulse.source.topic" => source = v,
                        _ => {}
                    }
                }
            }
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            dead.push((source, reason, key, m.payload().unwrap_or_default().to_vec()));
        }
    }
    // let the pipeline finish its last batch, then stop it
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let summary = pipeline.join().map_err(|_| "pipeline panicked")??;
    // read what the last batches produced
    while let Some(m) = reader.poll(Duration::from_secs(2)) {
        let m = m?;
        if m.topic() == t.alerts {
            alerts.push(serde_json::from_slice(m.payload().unwrap_or_default())?);
        }
    }

    // dead letters: original key and bytes, reason and source in headers
    dead.sort();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(
        (dead[0].0.as_str(), dead[0].1.as_str(), dead[0].2.as_str()),
        (t.support.as_str(), "unknown_enum", "acme")
    );
    assert_eq!((dead[1].0.as_str(), dead[1].1.as_str()), (t.usage.as_str(), "undecodable"));
    assert_eq!(dead[1].3, b"\xff\xfe not json");
    assert_eq!(summary.dead_letters, 2);

    // alerts: the P1 at once, the usage drop at every level
    let kinds: BTreeSet<(String, String)> = alerts
        .iter()
        .map(|a| {
            (a["kind"].as_str().unwrap_or("").to_string(), a["entity"]["level"].as_str().unwrap_or("").to_string())
        })
        .collect();
    for expected in
        [("support_escalation", "team"), ("usage_drop", "team"), ("usage_drop", "group"), ("usage_drop", "account")]
    {
        assert!(kinds.contains(&(expected.0.into(), expected.1.into())), "missing {expected:?} in {kinds:?}");
    }
    let p1 = alerts.iter().find(|a| a["kind"] == "support_escalation").ok_or("no escalation")?;
    assert_eq!(p1["at"], BASE + 3 * DAY);
    assert!(p1["health"].is_null());

    // telemetry was emitted for what the pipeline read
    assert!(metrics.events_total.with_label_values(&[&t.usage]).get() - events_before >= usage_events.len() as u64);

    // the same events through replay give the same alerts, up to run's last tick
    let dir = std::env::temp_dir().join(format!("cs-pulse-mock-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let write = |name: &str, rows: &[Value]| -> Result<std::path::PathBuf> {
        let p = dir.join(name);
        std::fs::write(&p, rows.iter().map(|r| r.to_string() + "\n").collect::<String>())?;
        Ok(p)
    };
    let files = cs_pulse::replay::ReplayFiles {
        usage: Some(write("u.ndjson", &usage_events)?),
        support: Some(write("s.ndjson", &support_events)?),
        accounts: Some(write("a.ndjson", &[json!({"account_id": "acme", "seats": 20})])?),
        teams: Some(write(
            "t.ndjson",
            &[json!({"team_id": "platform", "account_id": "acme", "group": "infra", "seats": 12})],
        )?),
        out: dir.join("alerts.ndjson"),
        scores: None,
        deadletter: None,
    };
    cs_pulse::replay::replay(&cfg, &files)?;
    let last_tick = BASE + 14 * DAY; // run's watermark: day 14 10:00 minus 1 h lateness
    let replayed: BTreeSet<String> = std::fs::read_to_string(&files.out)?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|a| a["at"].as_i64().is_some_and(|at| at <= last_tick))
        .filter_map(|a| a["alert_id"].as_str().map(str::to_string))
        .collect();
    let ran: BTreeSet<String> = alerts.iter().filter_map(|a| a["alert_id"].as_str().map(str::to_string)).collect();
    assert_eq!(ran, replayed);
    std::fs::remove_dir_all(&dir)?;
    drop(reader);
    drop(producer);
    Ok(())
}

#[test]
fn run_refuses_input_topics_that_are_not_copartitioned() -> Result {
    let mock = MockCluster::new(1)?;
    let cfg = config(&mock.bootstrap_servers(), "mock-copart");
    mock.create_topic(&cfg.topics.usage, 4, 1)?;
    mock.create_topic(&cfg.topics.support, 3, 1)?;
    let stop = AtomicBool::new(false);
    let err = cs_pulse::pipeline::run(&cfg, &stop).err().ok_or("run accepted unequal partition counts")?;
    assert_eq!(err.exit_code(), 2);
    let msg = err.to_string();
    assert!(msg.contains("'cs.usage.v1' has 4 partitions") && msg.contains("'cs.support.v1' has 3"), "{msg}");
    Ok(())
}

/// `cs-pulse run` as a process: SIGTERM finishes the batch, commits the input offsets and
/// exits 0.
#[test]
fn run_process_stops_cleanly_on_sigterm() -> Result {
    let mock = MockCluster::new(1)?;
    let bootstrap = mock.bootstrap_servers();
    let cfg = config(&bootstrap, "mock-sigterm");
    let t = cfg.topics.clone();
    cs_pulse::demo::create_topics(&mock, &cfg, 2)?;
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
    let (usage_events, support_events) = scenario();
    for e in &usage_events {
        produce(&producer, &t.usage, "acme", e.to_string().as_bytes())?;
    }
    for e in &support_events {
        produce(&producer, &t.support, "acme", e.to_string().as_bytes())?;
    }
    producer.flush(Duration::from_secs(10))?;

    let dir = std::env::temp_dir().join(format!("cs-pulse-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg_path = dir.join("cs-pulse.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"mock-sigterm\"\n[time]\nevaluation_interval_secs = 86400\nidle_timeout_secs = 1\n[processing]\nguarantee = \"at_least_once\"\n[alerts]\npolicy = \"all\"\n[metrics]\nbind = \"127.0.0.1:0\"\n"
        ),
    )?;
    let log = std::fs::File::create(dir.join("run.log"))?;
    let mut child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_cs-pulse"))
            .args(["run", "--config"])
            .arg(&cfg_path)
            .env_remove("CS_PULSE_BOOTSTRAP_SERVERS")
            .env_remove("CS_PULSE_METRICS_BIND")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );

    // wait until the pipeline has produced the usage drop (the last alert of the scenario)
    let reader: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("group.id", "mock-sigterm-reader").create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t.alerts, 0, Offset::Beginning)?;
    reader.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_drop = false;
    while Instant::now() < deadline && !seen_drop {
        if let Some(m) = reader.poll(Duration::from_millis(200)) {
            let a: Value = serde_json::from_slice(m?.payload().unwrap_or_default())?;
            seen_drop = a["kind"] == "usage_drop";
        }
    }
    let log_text = || std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
    assert!(seen_drop, "no usage_drop from `run`; its log:\n{}", log_text());

    let status = std::process::Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status()?;
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = child.0.try_wait()? {
            break s.code();
        }
        if Instant::now() > deadline {
            child.0.kill()?;
            return Err(format!("run did not exit after SIGTERM; log:\n{}", log_text()).into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, Some(0), "log:\n{}", log_text());

    // every input record's offset was committed
    let group: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("group.id", "mock-sigterm").create()?;
    for (topic, produced) in [(&t.usage, usage_events.len() as i64), (&t.support, support_events.len() as i64)] {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, 0);
        tpl.add_partition(topic, 1);
        // Plain data only: a live TopicPartitionList from committed() can hang the
        // consumer's drop.
        let committed: i64 = group
            .committed_offsets(tpl, Duration::from_secs(10))?
            .elements()
            .iter()
            .filter_map(|e| e.offset().to_raw())
            .filter(|o| *o > 0)
            .sum();
        assert_eq!(committed, produced, "{topic}");
    }
    drop(group);
    drop(reader);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A child process that is killed when the test ends, whichever way it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
