//! State benchmark: how big the changelog of 100,000 teams is, how many changelog bytes
//! one input event costs, and how long rebuilding a partition's state from its changelog
//! records takes (decode and rebuild in memory; reading the records from Kafka comes on
//! top). Prints figures; run with `cargo bench --bench state_restore`.

use std::sync::Arc;
use std::time::Instant;

use cs_pulse::config::Config;
use cs_pulse::decode::json;
use cs_pulse::demo::generator::{Generator, Input, Scale, DEFAULT_START_MS};
use cs_pulse::dims::Dimensions;
use cs_pulse::engine::{Engine, EngineConfig, Outputs};

fn main() {
    let scale = Scale { accounts: 20_000, teams_per_account: 5, users_per_team: 3 };
    let days = 3;
    let cfg = Config::default();
    let engine_cfg = Arc::new(EngineConfig::from_config(&cfg));
    let mut gen = Generator::scaled(1, DEFAULT_START_MS, scale);
    let mut dims = Dimensions::default();
    for r in gen.dimension_records() {
        match r.input {
            Input::Accounts => dims.apply_account(json::decode_account(None, Some(&r.payload)).expect("account")),
            _ => dims.apply_team(json::decode_team(None, Some(&r.payload)).expect("team")),
        }
    }
    let mut engine = Engine::new(Arc::clone(&engine_cfg));
    let mut out = Outputs::default();
    let (mut events, mut batches) = (0u64, 0u64);
    let (mut changelog_bytes, mut changelog_records) = (0u64, 0u64);
    let mut latest: std::collections::HashMap<Vec<u8>, Vec<u8>> = std::collections::HashMap::new();
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
                    engine.ingest(&ev, &dims, 0, &mut out);
                    events += 1;
                    last = r.at;
                }
            }
            engine.advance(last - 3_600_000, &dims, 0, &mut out);
            out = Outputs::default();
            for (k, v) in engine.take_changes() {
                changelog_bytes += (k.len() + v.len()) as u64;
                changelog_records += 1;
                latest.insert(k, v);
            }
            batches += 1;
        }
    }
    let process_secs = started.elapsed().as_secs_f64();
    let compacted: u64 = latest.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
    let size = engine.state_size();
    let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = latest.into_iter().map(|(k, v)| (k, Some(v))).collect();
    let n = records.len();
    let t = Instant::now();
    let restored = Engine::restore(Arc::clone(&engine_cfg), records).expect("restore");
    let restore_secs = t.elapsed().as_secs_f64();
    assert_eq!(restored.state_size(), size);
    println!(
        "state benchmark ({} accounts, {} teams, {} users per team, {days} simulated days)",
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
    println!("  changelog written            {changelog_records} records, {changelog_bytes} bytes: {:.0} bytes per input event", changelog_bytes as f64 / events as f64);
    println!(
        "  changelog after compaction   {n} records, {compacted} bytes ({:.0} bytes per team)",
        compacted as f64 / size.teams as f64
    );
    println!(
        "  restore (decode + rebuild)   {restore_secs:.2} s for {} teams ({:.0} records/s)",
        size.teams,
        n as f64 / restore_secs
    );
}
