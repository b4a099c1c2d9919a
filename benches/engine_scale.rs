//! Engine benchmark at the end-to-end benchmark's scale, without Kafka: where one core's
//! time goes between ingesting events, evaluating hourly ticks and writing changelog
//! records, for 20,000 accounts, 100,000 teams and 1,000,000 users.
//!
//! `cargo bench --bench engine_scale` (`-- --events N` to change the event count;
//! `--accounts N --users N` the customer base; `--days N` to stop after N simulated days
//! instead; `--views` to make the HTTP API's views at every evaluation, as `run` does).
//! Events are generated and decoded before the clock starts; the figures are for the
//! engine alone, one partition holding every account. It ends with the memory the daily
//! score histories take per entity.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cs_pulse::config::Config;
use cs_pulse::decode::json;
use cs_pulse::engine::{Engine, EngineConfig, Outputs};
use cs_pulse::generator::{Generator, Scale, DEFAULT_START_MS};
use cs_pulse::model::Event;
use cs_pulse::model::Input;
use cs_pulse::time::{EventTime, WallClock};

/// The allocator `cs-pulse` itself runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The value after `--name`, parsed.
fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let days: Option<i64> = arg(&args, "--days");
    let wanted: usize = arg(&args, "--events").unwrap_or(if days.is_some() { usize::MAX } else { 5_000_000 });
    let views = args.iter().any(|a| a == "--views");
    let scale = Scale {
        accounts: arg(&args, "--accounts").unwrap_or(20_000),
        teams_per_account: 5,
        users_per_team: arg(&args, "--users").unwrap_or(10),
    };
    let cfg = Config::default();
    let engine_cfg = Arc::new(EngineConfig { views, ..EngineConfig::from_config(&cfg) });
    let mut gen = Generator::scaled(1, DEFAULT_START_MS, scale);
    let dims = gen.dimensions();
    let mut events: Vec<(i64, Event)> = Vec::with_capacity(wanted.min(10_000_000));
    let mut day = 0;
    while events.len() < wanted && days.is_none_or(|d| day < d) {
        for r in gen.day(day) {
            let ev = match r.input {
                Input::Usage => json::decode_usage(Some(&r.payload)),
                Input::Support => json::decode_support(Some(&r.payload)),
                _ => continue,
            };
            if let Ok(ev) = ev {
                events.push((r.at, ev));
            }
        }
        day += 1;
    }
    events.truncate(wanted);
    eprintln!("generated {} events over {day} simulated days", events.len());

    let mut engine = Engine::new(Arc::clone(&engine_cfg));
    let mut out = Outputs::default();
    let (mut ingest, mut ticks, mut changes) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut alerts, mut scores, mut evaluated, mut records) = (0usize, 0usize, 0u64, 0usize);
    let mut views_made = 0usize;
    let started = Instant::now();
    // batches of 10,000 events, as `run` would commit them, with the watermark one hour
    // behind the newest event
    for chunk in events.chunks(10_000) {
        let t = Instant::now();
        for (_, ev) in chunk {
            engine.ingest(ev, &dims, WallClock(0), &mut out);
        }
        let t2 = Instant::now();
        let last = chunk.last().map_or(0, |(at, _)| *at);
        engine.advance(EventTime(last - 3_600_000), &dims, WallClock(0), &mut out);
        let t3 = Instant::now();
        records += engine.take_changes().len();
        views_made += engine.take_views().len();
        let t4 = Instant::now();
        ingest += t2 - t;
        ticks += t3 - t2;
        changes += t4 - t3;
        alerts += out.alerts.len();
        scores += out.scores.len();
        evaluated += out.ticks;
        out = Outputs::default();
    }
    let total = started.elapsed().as_secs_f64();
    let size = engine.state_size();
    let n = events.len() as f64;
    println!(
        "engine benchmark: {} events, {} accounts, {} teams, {} (team, user) activity sets, {evaluated} hourly ticks",
        events.len(),
        size.accounts,
        size.teams,
        size.user_activity
    );
    println!("  total            {total:.2} s, {:.0} events/s", n / total);
    let share = |d: Duration| 100.0 * d.as_secs_f64() / total;
    println!(
        "  ingest           {:.2} s ({:.0} %), {:.0} events/s",
        ingest.as_secs_f64(),
        share(ingest),
        n / ingest.as_secs_f64()
    );
    println!(
        "  tick evaluation  {:.2} s ({:.0} %), {:.1} ms per tick",
        ticks.as_secs_f64(),
        share(ticks),
        ticks.as_secs_f64() * 1e3 / evaluated.max(1) as f64
    );
    println!("  changelog        {:.2} s ({:.0} %), {records} records", changes.as_secs_f64(), share(changes));
    println!("  outputs          {alerts} alerts, {scores} score records");
    if views {
        println!("  views            {views_made} account views made (for the HTTP API)");
    }
    let entities: u64 = engine.band_counts().values().sum();
    let bytes = engine.state_bytes();
    println!(
        "  daily histories  {} bytes for {entities} scored entities over {day} simulated days: {:.0} bytes per entity ({:.1} % of the state's {} bytes)",
        bytes.histories,
        bytes.histories as f64 / entities.max(1) as f64,
        100.0 * bytes.histories as f64 / (bytes.accounts + bytes.teams + bytes.user_activity + bytes.histories).max(1) as f64,
        bytes.accounts + bytes.teams + bytes.user_activity + bytes.histories,
    );
}
