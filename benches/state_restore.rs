//! State benchmark: how many changelog bytes one input event costs, how big the compacted
//! changelog of 100,000 teams is, and how long rebuilding a partition's state from it
//! takes: in memory (decode and rebuild), and, when `CS_PULSE_BENCH_BOOTSTRAP` names a
//! Kafka broker, read back from a real topic as `run` does on assignment.
//!
//! `cargo bench --bench state_restore` (with `bash deploy/local/kafka.sh up` and
//! `CS_PULSE_BENCH_BOOTSTRAP=127.0.0.1:19092` for the broker figure). Prints figures.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cs_pulse::config::Config;
use cs_pulse::decode::json;
use cs_pulse::engine::{Engine, EngineConfig, Outputs};
use cs_pulse::generator::{Generator, Scale, DEFAULT_START_MS};
use cs_pulse::model::Input;
use cs_pulse::time::{EventTime, WallClock};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

type Records = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn main() {
    let scale = Scale { accounts: 20_000, teams_per_account: 5, users_per_team: 3 };
    let days = 3;
    let cfg = Config::default();
    let engine_cfg = Arc::new(EngineConfig::from_config(&cfg));
    let mut gen = Generator::scaled(1, DEFAULT_START_MS, scale);
    let dims = gen.dimensions();
    let mut engine = Engine::new(Arc::clone(&engine_cfg));
    let mut out = Outputs::default();
    let (mut events, mut batches) = (0u64, 0u64);
    let (mut changelog_bytes, mut changelog_records) = (0u64, 0u64);
    // key -> (offset of its last record, value)
    let mut latest: HashMap<Vec<u8>, (u64, Option<Vec<u8>>)> = HashMap::new();
    let mut by_kind: std::collections::BTreeMap<&str, (u64, u64)> = std::collections::BTreeMap::new();
    let started = Instant::now();
    for day in 0..days {
        let records = gen.day(day);
        // batches of 10,000 events, as `run` would commit them
        for chunk in records.chunks(10_000) {
            let mut last = 0;
            for r in chunk {
                let ev = match r.input {
                    Input::Usage => json::decode_usage(Some(&r.payload)),
                    _ => json::decode_support(Some(&r.payload)),
                };
                if let Ok(ev) = ev {
                    engine.ingest(&ev, &dims, WallClock(0), &mut out);
                    events += 1;
                    last = r.at;
                }
            }
            engine.advance(EventTime(last - 3_600_000), &dims, WallClock(0), &mut out);
            out = Outputs::default();
            for (k, v) in engine.take_changes() {
                let bytes = (k.len() + v.as_ref().map_or(0, Vec::len)) as u64;
                changelog_bytes += bytes;
                let kind = by_kind.entry(kind_of(&k)).or_insert((0, 0));
                kind.0 += 1;
                kind.1 += bytes;
                latest.insert(k, (changelog_records, v));
                changelog_records += 1;
            }
            batches += 1;
        }
    }
    let process_secs = started.elapsed().as_secs_f64();
    let mut compacted: Vec<(u64, Vec<u8>, Vec<u8>)> =
        latest.into_iter().filter_map(|(k, (offset, v))| v.map(|v| (offset, k, v))).collect();
    compacted.sort_unstable_by_key(|r| r.0);
    let compacted_bytes: u64 = compacted.iter().map(|(_, k, v)| (k.len() + v.len()) as u64).sum();
    let size = engine.state_size();
    let bytes = engine.state_bytes();
    let records: Records = compacted.iter().map(|(_, k, v)| (k.clone(), Some(v.clone()))).collect();
    let n = records.len();
    let t = Instant::now();
    let restored = Engine::restore(Arc::clone(&engine_cfg), records).expect("restore");
    let restore_secs = t.elapsed().as_secs_f64();
    assert_eq!(restored.state_size(), size);
    drop(restored);
    println!(
        "state benchmark ({} accounts, {} teams, {} users per team, {days} simulated days, hourly ticks)",
        scale.accounts, size.teams, scale.users_per_team
    );
    println!(
        "  input events                 {events} in {batches} batches ({:.0} events/s through the engine)",
        events as f64 / process_secs
    );
    println!(
        "  state                        {} accounts, {} teams, {} (team, user) activity sets",
        size.accounts, size.teams, size.user_activity
    );
    println!(
        "  state in memory (approx.)    {:.0} bytes per active user (activity sets), {:.0} bytes per team (own state), {:.0} bytes per team all in",
        bytes.user_activity as f64 / size.user_activity as f64,
        bytes.teams as f64 / size.teams as f64,
        (bytes.user_activity + bytes.teams + bytes.accounts) as f64 / size.teams as f64
    );
    println!(
        "  changelog written            {changelog_records} records, {changelog_bytes} bytes: {:.1} bytes per input event",
        changelog_bytes as f64 / events as f64
    );
    for (kind, (records, bytes)) in &by_kind {
        println!(
            "    {kind:<26} {records} records, {bytes} bytes ({:.1} per input event)",
            *bytes as f64 / events as f64
        );
    }
    println!(
        "  changelog after compaction   {n} records, {compacted_bytes} bytes ({:.0} bytes per team)",
        compacted_bytes as f64 / size.teams as f64
    );
    println!(
        "  restore in memory            {restore_secs:.2} s for {} teams ({:.0} records/s, decode and rebuild)",
        size.teams,
        n as f64 / restore_secs
    );
    match std::env::var("CS_PULSE_BENCH_BOOTSTRAP") {
        Ok(bootstrap) => {
            let secs = restore_from_broker(&bootstrap, &engine_cfg, &compacted, size);
            println!(
                "  restore from Kafka           {secs:.2} s for {} teams (read_committed read of {n} records, decode, rebuild; broker {bootstrap})",
                size.teams
            );
        }
        Err(_) => {
            println!("  restore from Kafka           skipped: set CS_PULSE_BENCH_BOOTSTRAP to a broker to measure it")
        }
    }
}

/// What a changelog key holds, by its tag (see `src/engine/changelog.rs`).
fn kind_of(key: &[u8]) -> &'static str {
    match key.first() {
        Some(b'a') => "account",
        Some(b't') => "team",
        Some(b'u') => "user activity",
        Some(b'f') => "feature activity",
        Some(b'c') => "change",
        Some(b'k') => "ticket",
        Some(b'e') => "entity health",
        _ => "engine bookkeeping",
    }
}

/// Writes the compacted changelog to a fresh one-partition topic and times `run`'s own
/// restore of it.
fn restore_from_broker(
    bootstrap: &str,
    engine_cfg: &Arc<EngineConfig>,
    compacted: &[(u64, Vec<u8>, Vec<u8>)],
    size: cs_pulse::engine::StateSize,
) -> f64 {
    let mut cfg = Config::default();
    cfg.kafka.bootstrap_servers = bootstrap.to_string();
    cfg.kafka.group_id = format!("cs-pulse-bench-{}", std::process::id());
    let topic = format!("{}-state-changelog", cfg.kafka.group_id);
    cfg.topics.changelog = Some(topic.clone());
    cs_pulse::kafka::admin::create_topic(&cfg, &topic, 1, true).expect("create the changelog topic");
    let producer: ThreadedProducer<DefaultProducerContext> = cs_pulse::kafka::client_config(&cfg)
        .set("linger.ms", "20")
        .set("compression.type", "zstd")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    for (_, k, v) in compacted {
        let mut record = BaseRecord::<[u8], [u8]>::to(&topic).partition(0).key(k.as_slice()).payload(v.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let store = cs_pulse::pipeline::StateStore::new(&cfg).expect("state store");
    let t = Instant::now();
    let engine = store.restore(cs_pulse::model::Partition(0), engine_cfg).expect("restore from Kafka");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(engine.state_size(), size, "the broker gave back the whole state");
    let admin: AdminClient<_> = cs_pulse::kafka::client_config(&cfg).create().expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    if let Err(e) = rt.block_on(admin.delete_topics(&[&topic], &AdminOptions::new())) {
        eprintln!("could not delete {topic}: {e}");
    }
    secs
}
