//! `cs-pulse demo`: everything in one process, nothing installed.
//!
//! Starts librdkafka's in-process mock cluster, creates the topics, loads a synthetic
//! customer base, streams its events with simulated time running fast (about a day per
//! second), runs the real `run` pipeline against it, prints alerts as they arrive on the
//! alert topic, and ends with a summary.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::generator::{self, Generator};
use crate::model::Input;
use crate::model::{Alert, Band, Level, ScoreRecord, Severity};

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Wall-clock length of the demo.
    pub duration: Duration,
    /// Seed of the synthetic customer base.
    pub seed: u64,
    /// Simulated days to stream.
    pub days: i64,
    /// Print alerts as they arrive.
    pub print: bool,
    /// Where the pipeline publishes the accounts' views for the HTTP API.
    pub directory: Arc<crate::api::directory::Directory>,
}

/// What the demo saw.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    /// Input records produced (events and dimension records).
    pub produced: u64,
    /// Alerts read back from the alert topic.
    pub alerts: Vec<Alert>,
    /// The latest score of each account.
    pub account_scores: BTreeMap<String, ScoreRecord>,
    /// Records on the dead-letter topic.
    pub dead_letters: u64,
    /// Records the pipeline read.
    pub pipeline_records: u64,
}

/// Errors of the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Kafka (the mock cluster) failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The pipeline failed.
    #[error("pipeline: {0}")]
    Pipeline(#[from] crate::pipeline::PipelineError),
    /// The configuration's client properties were refused.
    #[error("{0}")]
    Config(#[from] crate::kafka::connect::ConnectError),
}

/// The demo's configuration: the given one, pointed at the mock cluster, with time
/// settings that suit a fast-forwarded stream.
pub fn demo_config(mut cfg: Config, bootstrap: &str) -> Config {
    cfg.kafka.bootstrap_servers = bootstrap.to_string();
    cfg.kafka.group_id = "cs-pulse-demo".into();
    cfg.time.idle_timeout_secs = cfg.time.idle_timeout_secs.min(2);
    // librdkafka's mock cluster does not store transactional offsets: the demo runs
    // at-least-once. Exactly-once is tested against a real broker.
    cfg.processing.guarantee = crate::config::Guarantee::AtLeastOnce;
    if cfg.adoption.key_features.is_empty() {
        cfg.adoption.key_features = generator::KEY_FEATURES.iter().map(|s| s.to_string()).collect();
    }
    cfg
}

/// Creates every topic of `cfg` on the mock cluster (it has no CreateTopics API):
/// usage, support and the state changelog with `partitions` partitions, the rest with one.
pub fn create_topics(
    mock: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    cfg: &Config,
    partitions: i32,
) -> Result<(), rdkafka::error::KafkaError> {
    let t = &cfg.topics;
    for (name, count) in [
        (&t.usage, partitions),
        (&t.support, partitions),
        (&t.accounts, 1),
        (&t.teams, 1),
        (&t.alerts, 1),
        (&t.scores, 1),
        (&t.deadletter, 1),
        (&cfg.changelog_topic(), partitions),
    ] {
        mock.create_topic(name, count, 1)?;
    }
    Ok(())
}

fn topic_of(cfg: &Config, input: Input) -> &str {
    match input {
        Input::Usage => &cfg.topics.usage,
        Input::Support => &cfg.topics.support,
        Input::Accounts => &cfg.topics.accounts,
        Input::Teams => &cfg.topics.teams,
    }
}

/// One line per alert, readable at a glance.
pub fn format_alert(a: &Alert) -> String {
    let sev = match a.severity {
        Severity::Critical => "CRITICAL",
        Severity::Warning => "WARNING ",
        Severity::Info => "INFO    ",
    };
    let when = crate::time::format_rfc3339(a.at).replace('T', " ");
    let when = when.trim_end_matches(":00Z");
    let entity = match a.entity.level {
        Level::Account => format!("account {}", a.entity.id),
        Level::Team => format!("team {}", a.entity.id),
        l => format!("{} {}/{}", l.as_str().replace('_', " "), a.entity.account_id, a.entity.id),
    };
    let health = a
        .health
        .as_ref()
        .map(|h| match (h.previous_score, h.previous_band) {
            (Some(ps), Some(pb)) if pb != h.band => {
                format!("  {} {ps:.1} -> {} {:.1}", pb.as_str(), h.band.as_str(), h.score)
            }
            _ => format!("  score {:.1} ({})", h.score, h.band.as_str()),
        })
        .unwrap_or_default();
    let mut s = format!("[{when}] {sev} {:<22} {entity}{health}", a.kind.as_str());
    if let Some(days) = a.renewal_in_days.filter(|_| a.stage == crate::model::Stage::Renewal) {
        s.push_str(&format!("  (renews in {days} days)"));
    }
    for r in &a.reasons {
        s.push_str("\n      - ");
        s.push_str(r);
    }
    s
}

/// Reads alerts, scores and dead letters back from their topics.
fn spawn_reader(
    cfg: &Config,
    stop: Arc<AtomicBool>,
    print: bool,
    summary: Arc<Mutex<DemoSummary>>,
) -> Result<std::thread::JoinHandle<()>, DemoError> {
    let consumer: BaseConsumer = crate::kafka::client_config(cfg)
        .set("group.id", "cs-pulse-demo-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for t in [&cfg.topics.alerts, &cfg.topics.scores, &cfg.topics.deadletter] {
        tpl.add_partition_offset(t, 0, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let (alerts, scores) = (cfg.topics.alerts.clone(), cfg.topics.scores.clone());
    Ok(std::thread::spawn(move || {
        let mut quiet_since = Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    quiet_since = Instant::now();
                    let Ok(mut s) = summary.lock() else { return };
                    let payload = m.payload().unwrap_or_default();
                    if m.topic() == alerts {
                        if let Ok(a) = serde_json::from_slice::<Alert>(payload) {
                            if print {
                                println!("{}", format_alert(&a));
                                let _ = std::io::stdout().flush();
                            }
                            s.alerts.push(a);
                        }
                    } else if m.topic() == scores {
                        if let Ok(r) = serde_json::from_slice::<ScoreRecord>(payload) {
                            if r.entity.level == Level::Account {
                                s.account_scores.insert(r.entity.id.clone(), r);
                            }
                        }
                    } else {
                        s.dead_letters += 1;
                    }
                }
                Some(Err(e)) => tracing::debug!(error = %e, "Demo reader error."),
                None => {
                    if stop.load(Ordering::SeqCst) && quiet_since.elapsed() > Duration::from_millis(500) {
                        return;
                    }
                }
            }
        }
    }))
}

/// Runs the demo. `shutdown` (Ctrl-C) ends it early, still with a summary.
pub fn run(base: Config, opts: &DemoOptions, shutdown: Arc<AtomicBool>) -> Result<DemoSummary, DemoError> {
    let started = Instant::now();
    let mock = MockCluster::new(1)?;
    let cfg = demo_config(base, &mock.bootstrap_servers());
    crate::kafka::connect::check_properties(&cfg)?;
    create_topics(&mock, &cfg, 4)?;
    let producer: BaseProducer = crate::kafka::client_config(&cfg).set("linger.ms", "5").create()?;
    let send = |topic: &str, key: &str, payload: &[u8]| -> Result<(), DemoError> {
        loop {
            match producer.send(BaseRecord::<str, [u8]>::to(topic).key(key).payload(payload)) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    _,
                )) => {
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    };
    let mut gen = Generator::new(opts.seed, generator::start_for(opts.days, crate::time::now_ms()));
    let summary = Arc::new(Mutex::new(DemoSummary::default()));
    let mut produced = 0u64;
    for r in gen.dimension_records() {
        send(topic_of(&cfg, r.input), &r.key, &r.payload)?;
        produced += 1;
    }
    let _ = producer.flush(Duration::from_secs(10));

    let stop_pipeline = Arc::new(AtomicBool::new(false));
    let pipeline = {
        let cfg = cfg.clone();
        let stop = Arc::clone(&stop_pipeline);
        let directory = Arc::clone(&opts.directory);
        std::thread::spawn(move || crate::pipeline::run_serving(&cfg, &stop, &directory))
    };
    let stop_reader = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(&cfg, Arc::clone(&stop_reader), opts.print, Arc::clone(&summary))?;

    // Leave ~25% of the time (at least 6 s) for the group join and for draining.
    let total = opts.duration.as_secs_f64();
    let stream_secs = (total * 0.75).min(total - 6.0).max(1.0);
    let per_day = stream_secs / opts.days.max(1) as f64;
    let stream_start = Instant::now();
    if opts.print {
        println!(
            "cs-pulse demo: {} simulated days of 5 companies, one day every {:.2} s; accounts on http://{bind}/ (JSON under http://{bind}/v1/accounts), metrics on http://{bind}/metrics",
            opts.days, per_day, bind = cfg.metrics.bind
        );
    }
    'days: for day in 0..opts.days {
        let records = gen.day(day);
        let n = records.len().max(1);
        for (i, r) in records.into_iter().enumerate() {
            if shutdown.load(Ordering::SeqCst) {
                break 'days;
            }
            send(topic_of(&cfg, r.input), &r.key, &r.payload)?;
            produced += 1;
            // pace: record i of day d is due at (d + i/n) * per_day seconds
            let due = (day as f64 + i as f64 / n as f64) * per_day;
            let ahead = due - stream_start.elapsed().as_secs_f64();
            if ahead > 0.005 {
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_secs_f64(ahead));
            }
        }
        producer.poll(Duration::ZERO);
    }
    let _ = producer.flush(Duration::from_secs(10));
    // Drain: let the pipeline catch up and its partitions go idle, until the deadline.
    while started.elapsed() < opts.duration && !shutdown.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_pipeline.store(true, Ordering::SeqCst);
    let run_result = pipeline
        .join()
        .unwrap_or_else(|_| Err(crate::pipeline::PipelineError::Delivery("pipeline thread panicked".into())));
    stop_reader.store(true, Ordering::SeqCst);
    let _ = reader.join();
    let run_summary = run_result?;
    let mut s = summary.lock().map(|s| s.clone()).unwrap_or_default();
    s.produced = produced;
    s.pipeline_records = run_summary.records;
    drop(producer);
    drop(mock);
    Ok(s)
}

/// The end-of-demo summary, as printed.
pub fn format_summary(s: &DemoSummary) -> String {
    let mut out = String::from("\n=== cs-pulse demo summary ===\n");
    out.push_str(&format!(
        "input records produced: {}   read by the pipeline: {}   dead-lettered: {}\n",
        s.produced, s.pipeline_records, s.dead_letters
    ));
    let mut by_kind: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for a in &s.alerts {
        *by_kind.entry((a.kind.as_str(), a.severity.as_str())).or_insert(0) += 1;
    }
    out.push_str(&format!("alerts: {}\n", s.alerts.len()));
    for ((k, sev), n) in by_kind {
        out.push_str(&format!("  {k:<24} {sev:<9} {n}\n"));
    }
    out.push_str("accounts at the end:\n");
    for (id, r) in &s.account_scores {
        let band = match r.band {
            Band::Green => "green",
            Band::Yellow => "yellow",
            Band::Red => "red",
        };
        let comps: Vec<String> = r.components.iter().map(|(k, v)| format!("{k} {v:.0}")).collect();
        out.push_str(&format!("  {id:<10} {:>5.1} {band:<6}  {}\n", r.score, comps.join(", ")));
    }
    out
}
