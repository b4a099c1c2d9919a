//! Decode benchmark: events per second through JSON and through Avro (Confluent framing,
//! resolved reader cached per schema id), each into a validated event, over the same
//! generated usage and support events. Prints figures; run with
//! `cargo bench --bench decode`.

use std::hint::black_box;
use std::time::Instant;

use cs_pulse::avro::{frame, output, reader_schema, AvroInput, Input as AvroKind};
use cs_pulse::decode::json;
use cs_pulse::demo::generator::{Generator, Input, Scale, DEFAULT_START_MS};

fn main() {
    let scale = Scale { accounts: 2_000, teams_per_account: 5, users_per_team: 3 };
    let mut gen = Generator::scaled(3, DEFAULT_START_MS, scale);
    let mut records = Vec::new();
    for day in 0..2 {
        records.extend(gen.day(day).into_iter().filter(|r| matches!(r.input, Input::Usage | Input::Support)));
    }
    let usage_schema = reader_schema(AvroKind::Usage);
    let support_schema = reader_schema(AvroKind::Support);
    let mut avro = Vec::with_capacity(records.len());
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("generated JSON");
        let schema = if r.input == Input::Usage { usage_schema } else { support_schema };
        let body = output::encode(schema, &v).expect("fits the schema");
        avro.push(frame(1, &body));
    }
    let json_bytes: usize = records.iter().map(|r| r.payload.len()).sum();
    let avro_bytes: usize = avro.iter().map(Vec::len).sum();
    let n = records.len();
    println!("decode benchmark ({n} generated usage and support events, validated into events)");
    for round in 0..2 {
        let t = Instant::now();
        for r in &records {
            let ev = if r.input == Input::Usage {
                json::decode_usage(Some(&r.payload))
            } else {
                json::decode_support(Some(&r.payload))
            };
            black_box(ev.expect("valid"));
        }
        let json_secs = t.elapsed().as_secs_f64();
        let (mut usage, mut support) = (AvroInput::new(AvroKind::Usage, None), AvroInput::new(AvroKind::Support, None));
        let t = Instant::now();
        for (r, bytes) in records.iter().zip(&avro) {
            let ev = if r.input == Input::Usage { usage.usage(Some(bytes)) } else { support.support(Some(bytes)) };
            black_box(ev.expect("valid"));
        }
        let avro_secs = t.elapsed().as_secs_f64();
        if round == 1 {
            println!(
                "  JSON   {:>10.0} events/s  {:>6.0} ns/event  {:>5.1} bytes/event",
                n as f64 / json_secs,
                json_secs * 1e9 / n as f64,
                json_bytes as f64 / n as f64
            );
            println!(
                "  Avro   {:>10.0} events/s  {:>6.0} ns/event  {:>5.1} bytes/event (5-byte header included)",
                n as f64 / avro_secs,
                avro_secs * 1e9 / n as f64,
                avro_bytes as f64 / n as f64
            );
        }
    }
}
