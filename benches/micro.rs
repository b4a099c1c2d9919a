//! Micro-benchmarks (criterion) of the hot path: decoding (JSON and Avro), the engine's
//! ingest per event, tick evaluation per entity, and alert encoding (JSON and Avro).
//! `cargo bench --bench micro` (a group alone: `cargo bench --bench micro -- decode`).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use cs_pulse::avro::{frame, output};
use cs_pulse::config::Config;
use cs_pulse::decode::avro::{reader_schema, AvroInput};
use cs_pulse::decode::json;
use cs_pulse::dims::Dimensions;
use cs_pulse::engine::{Engine, EngineConfig, Outputs};
use cs_pulse::generator::{GenRecord, Generator, Scale, DEFAULT_START_MS, KEY_FEATURES};
use cs_pulse::model::Event;
use cs_pulse::model::Input;
use cs_pulse::time::{EventTime, WallClock};

struct Data {
    records: Vec<GenRecord>,
    avro: Vec<Vec<u8>>,
    events: Vec<Event>,
    dims: Dimensions,
    cfg: Arc<EngineConfig>,
}

fn data(accounts: u64, days: i64) -> Data {
    let scale = Scale { accounts, teams_per_account: 5, users_per_team: 3 };
    let mut gen = Generator::scaled(3, DEFAULT_START_MS, scale);
    let dims = gen.dimensions();
    let mut records = Vec::new();
    for day in 0..days {
        records.extend(gen.day(day).into_iter().filter(|r| matches!(r.input, Input::Usage | Input::Support)));
    }
    let mut avro = Vec::with_capacity(records.len());
    let mut events = Vec::with_capacity(records.len());
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("generated JSON");
        let (schema, ev) = if r.input == Input::Usage {
            (reader_schema(Input::Usage), json::decode_usage(Some(&r.payload)))
        } else {
            (reader_schema(Input::Support), json::decode_support(Some(&r.payload)))
        };
        avro.push(frame(1, &output::encode(schema, &v).expect("fits the schema")));
        events.push(ev.expect("valid"));
    }
    let mut config = Config::default();
    config.adoption.key_features = KEY_FEATURES.iter().map(|s| s.to_string()).collect();
    Data { records, avro, events, dims, cfg: Arc::new(EngineConfig::from_config(&config)) }
}

fn decode(c: &mut Criterion) {
    let d = data(500, 1);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(d.records.len() as u64));
    g.bench_function("json", |b| {
        b.iter(|| {
            for r in &d.records {
                let ev = if r.input == Input::Usage {
                    json::decode_usage(Some(&r.payload))
                } else {
                    json::decode_support(Some(&r.payload))
                };
                black_box(ev.is_ok());
            }
        })
    });
    let (mut usage, mut support) = (AvroInput::new(Input::Usage, None), AvroInput::new(Input::Support, None));
    g.bench_function("avro", |b| {
        b.iter(|| {
            for (r, bytes) in d.records.iter().zip(&d.avro) {
                let ev = if r.input == Input::Usage { usage.usage(Some(bytes)) } else { support.support(Some(bytes)) };
                black_box(ev.is_ok());
            }
        })
    });
    g.finish();
}

fn engine(c: &mut Criterion) {
    let d = data(500, 1);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(d.events.len() as u64));
    g.bench_function("ingest", |b| {
        b.iter_batched(
            || Engine::new(Arc::clone(&d.cfg)),
            |mut engine| {
                let mut out = Outputs::default();
                for ev in &d.events {
                    engine.ingest(ev, &d.dims, WallClock(0), &mut out);
                }
                engine
            },
            BatchSize::LargeInput,
        )
    });
    // A day of state for 500 accounts (2,500 teams), then one hourly tick per iteration.
    let mut engine = Engine::new(Arc::clone(&d.cfg));
    let mut out = Outputs::default();
    for ev in &d.events {
        engine.ingest(ev, &d.dims, WallClock(0), &mut out);
    }
    let last = d.events.iter().map(Event::occurred_at).max().unwrap_or(DEFAULT_START_MS);
    engine.advance(EventTime(last), &d.dims, WallClock(0), &mut out);
    let entities: u64 = engine.band_counts().values().sum();
    g.throughput(Throughput::Elements(entities));
    let mut tick = engine.last_evaluated().map_or(last, |t| t.0);
    g.bench_function("tick_per_entity", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            for _ in 0..iters {
                tick += 3_600_000;
                let mut out = Outputs::default();
                engine.advance(EventTime(tick), &d.dims, WallClock(0), &mut out);
                black_box(out.scores.len());
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let d = data(50, 45);
    let mut engine = Engine::new(Arc::clone(&d.cfg));
    let mut out = Outputs::default();
    for ev in &d.events {
        engine.ingest(ev, &d.dims, WallClock(0), &mut out);
        engine.advance(EventTime(ev.occurred_at() - 3_600_000), &d.dims, WallClock(0), &mut out);
    }
    let alerts = out.alerts;
    assert!(!alerts.is_empty(), "the generated days fire alerts");
    let avro = output::AvroOutput::with_ids(1, 2);
    let mut g = c.benchmark_group("encode_alert");
    g.throughput(Throughput::Elements(alerts.len() as u64));
    g.bench_function("json", |b| {
        b.iter(|| {
            for a in &alerts {
                black_box(serde_json::to_vec(a).map(|v| v.len()).unwrap_or(0));
            }
        })
    });
    g.bench_function("avro", |b| {
        b.iter(|| {
            for a in &alerts {
                black_box(avro.alert(a).map(|v| v.len()).unwrap_or(0));
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(4));
    targets = decode, engine, encode
}
criterion_main!(benches);
