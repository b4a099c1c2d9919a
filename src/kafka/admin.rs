//! Topic administration: partition counts, and creating the topics `gen` writes and the
//! state changelog `run` keeps.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::LogContext;
use crate::config::Config;

/// Why topics could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The cluster refused to create a topic.
    #[error("cannot create topic {topic}: {code}")]
    Refused {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// Created topics did not show up in the cluster's metadata in time.
    #[error("topics not visible 30 s after creation: {0:?}")]
    NotVisible(Vec<String>),
    /// The runtime that drives the admin request could not start.
    #[error("cannot start the admin client's runtime: {0}")]
    Runtime(String),
}

/// Partition counts of topics, `None` for a topic that does not exist.
pub fn partition_counts<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<Option<usize>>, KafkaError> {
    use rdkafka::consumer::Consumer;
    let mut out = Vec::with_capacity(topics.len());
    for t in topics {
        let md = consumer.fetch_metadata(Some(t), timeout)?;
        let count = md
            .topics()
            .iter()
            .find(|mt| mt.name() == *t && mt.error().is_none())
            .map(|mt| mt.partitions().len())
            .filter(|n| *n > 0);
        out.push(count);
    }
    Ok(out)
}

/// Creates one topic; `compact` sets `cleanup.policy=compact`. An existing topic is fine.
pub fn create_topic(cfg: &Config, name: &str, partitions: i32, compact: bool) -> Result<(), AdminError> {
    let admin: AdminClient<LogContext> = super::client_config(cfg).create_with_context(LogContext::default())?;
    let mut spec = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    if compact {
        spec = spec.set("cleanup.policy", "compact");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AdminError::Runtime(e.to_string()))?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in rt.block_on(admin.create_topics([&spec], &opts))? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(AdminError::Refused { topic: name, code }),
        }
    }
    wait_for_topics(cfg, &[name])
}

/// Creates the topics that do not exist: inputs with `partitions`, accounts, teams and
/// scores compacted.
pub fn create_topics(cfg: &Config, partitions: i32) -> Result<(), AdminError> {
    let admin: AdminClient<LogContext> = super::client_config(cfg).create_with_context(LogContext::default())?;
    let t = &cfg.topics;
    let compact = [("cleanup.policy", "compact")];
    let specs: Vec<NewTopic<'_>> = vec![
        NewTopic::new(&t.usage, partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&t.support, partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&t.accounts, 1, TopicReplication::Fixed(1)).set(compact[0].0, compact[0].1),
        NewTopic::new(&t.teams, 1, TopicReplication::Fixed(1)).set(compact[0].0, compact[0].1),
        NewTopic::new(&t.alerts, partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&t.scores, partitions, TopicReplication::Fixed(1)).set(compact[0].0, compact[0].1),
        NewTopic::new(&t.deadletter, partitions, TopicReplication::Fixed(1)),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AdminError::Runtime(e.to_string()))?;
    let results = rt
        .block_on(admin.create_topics(&specs, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(AdminError::Refused { topic: name, code }),
        }
    }
    wait_for_topics(cfg, &[&t.usage, &t.support, &t.accounts, &t.teams, &t.alerts, &t.scores, &t.deadletter])
}

/// Waits until every topic is visible in the cluster's metadata: a created topic reaches
/// the brokers a moment after the controller accepts it.
fn wait_for_topics(cfg: &Config, topics: &[&str]) -> Result<(), AdminError> {
    let consumer: rdkafka::consumer::BaseConsumer<LogContext> =
        super::client_config(cfg).create_with_context(LogContext::default())?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counts = partition_counts(&consumer, topics, Duration::from_secs(10))?;
        if counts.iter().all(Option::is_some) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(AdminError::NotVisible(topics.iter().map(|t| t.to_string()).collect()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
