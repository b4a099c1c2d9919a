//! The benchmark ceiling: a librdkafka consumer (through rdkafka, as cs-pulse uses it) that
//! only reads and counts every record of the given topics, from the beginning to the high
//! watermarks it finds at start. Prints one JSON line: records, bytes, seconds.
//!
//! `cargo run --release --example ceiling -- BOOTSTRAP TOPIC [TOPIC...]`

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().ok_or("usage: ceiling BOOTSTRAP TOPIC [TOPIC...]")?;
    let topics: Vec<String> = args.collect();
    if topics.is_empty() {
        return Err("usage: ceiling BOOTSTRAP TOPIC [TOPIC...]".into());
    }
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("cs-pulse-ceiling-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // as cs-pulse sets it: never wait a second for a full prefetch queue to drain
        .set("fetch.queue.backoff.ms", "10")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for t in &topics {
        let md = consumer.fetch_metadata(Some(t), Duration::from_secs(10))?;
        for p in md.topics().iter().flat_map(|mt| mt.partitions()) {
            let (_, high) = consumer.fetch_watermarks(t, p.id(), Duration::from_secs(10))?;
            if high > 0 {
                tpl.add_partition_offset(t, p.id(), Offset::Beginning)?;
                ends.insert((t.clone(), p.id()), high);
            }
        }
    }
    consumer.assign(&tpl)?;
    let (mut records, mut bytes) = (0u64, 0u64);
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += m.payload().map_or(0, <[u8]>::len) as u64;
                let key = (m.topic().to_string(), m.partition());
                if ends.get(&key).is_some_and(|high| m.offset() + 1 >= *high) {
                    ends.remove(&key);
                }
            }
            Some(Err(e)) => eprintln!("ceiling: {e}"),
            None => {}
        }
    }
    println!("{{\"records\":{records},\"bytes\":{bytes},\"seconds\":{:.3}}}", started.elapsed().as_secs_f64());
    Ok(())
}
