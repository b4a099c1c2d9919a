//! The output side of the pipeline: alerts, scores, dead letters and state changes, from
//! one idempotent (exactly-once: transactional) producer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use super::{client_config, forward_error, forward_log};
use crate::config::Config;
use crate::model::{Alert, ScoreRecord};
use crate::telemetry::{ChangelogWritten, DeadLetterProduced, OutputDelivered};

/// Dead-letter header: the stable reason code.
pub const HEADER_REASON: &str = "cs_pulse.reason";
/// Dead-letter header: the human detail naming the field.
pub const HEADER_ERROR: &str = "cs_pulse.error";
/// Dead-letter header: the source topic.
pub const HEADER_SOURCE_TOPIC: &str = "cs_pulse.source.topic";
/// Dead-letter header: the source partition.
pub const HEADER_SOURCE_PARTITION: &str = "cs_pulse.source.partition";
/// Dead-letter header: the source offset.
pub const HEADER_SOURCE_OFFSET: &str = "cs_pulse.source.offset";

/// Why an output could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The producer failed: a transaction to abort and redo, or a client to replace.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// An output record could not be encoded: it does not fit its schema (a defect).
    /// Producing it again cannot help, so it is never retried: `run` stops (exit 1),
    /// naming the record, with the batch uncommitted, so nothing is lost.
    #[error("cannot encode {what}: {why}")]
    Encode {
        /// The record, named.
        what: String,
        /// Why.
        why: String,
    },
    /// Outputs were produced but not acknowledged in time, or refused by the brokers.
    #[error("{0}")]
    NotAcknowledged(String),
}

/// Counts delivery failures and observes event-to-alert latency on acknowledgement.
#[derive(Default)]
pub struct DeliveryContext {
    failures: AtomicU64,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        forward_log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        forward_error(&error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    /// For alerts: the triggering record's append time in epoch ms; 0 for no latency.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, trigger_ms: usize) {
        match result {
            Ok(_) => OutputDelivered { trigger_ms: (trigger_ms > 0).then_some(trigger_ms as i64), error: None }.emit(),
            Err((e, msg)) => {
                self.failures.fetch_add(1, Ordering::SeqCst);
                use rdkafka::Message;
                OutputDelivered { trigger_ms: None, error: Some((e, msg.topic(), msg.partition())) }.emit();
            }
        }
    }
}

/// Where a rejected input record came from and why it was rejected.
pub struct DeadLetter<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// The original key.
    pub key: Option<&'a [u8]>,
    /// The original bytes.
    pub payload: Option<&'a [u8]>,
    /// The original headers.
    pub headers: Option<OwnedHeaders>,
    /// Stable reason code.
    pub reason: &'a str,
    /// Human detail.
    pub detail: &'a str,
}

/// The output side of the pipeline: one idempotent producer for alerts, scores and dead
/// letters.
pub struct KafkaSink {
    producer: BaseProducer<DeliveryContext>,
    /// Exactly-once: every output goes into the open transaction.
    transactional: bool,
    in_txn: std::cell::Cell<bool>,
    alerts_topic: String,
    scores_topic: String,
    deadletter_topic: String,
    changelog_topic: String,
    /// Avro encoding of alerts and scores (`output.format = "avro"`); JSON without.
    avro: Option<std::sync::Arc<crate::avro::output::AvroOutput>>,
}

impl KafkaSink {
    /// Creates the producer; with `exactly_once`, a transactional one (initialised, so
    /// that an earlier incarnation with the same transactional id is fenced).
    pub fn new(
        cfg: &Config,
        avro: Option<std::sync::Arc<crate::avro::output::AvroOutput>>,
    ) -> Result<Self, KafkaError> {
        let transactional = cfg.processing.guarantee == crate::config::Guarantee::ExactlyOnce;
        let mut c = client_config(cfg);
        c.set("enable.idempotence", "true").set("linger.ms", "5").set("compression.type", "zstd");
        if transactional {
            c.set("transactional.id", cfg.transactional_id())
                .set("transaction.timeout.ms", cfg.processing.transaction_timeout_ms.to_string());
        }
        let producer: BaseProducer<DeliveryContext> = c.create_with_context(DeliveryContext::default())?;
        if transactional {
            producer.init_transactions(Duration::from_secs(60))?;
        }
        Ok(Self {
            producer,
            transactional,
            in_txn: std::cell::Cell::new(false),
            alerts_topic: cfg.topics.alerts.clone(),
            scores_topic: cfg.topics.scores.clone(),
            deadletter_topic: cfg.topics.deadletter.clone(),
            changelog_topic: cfg.changelog_topic(),
            avro,
        })
    }

    /// The Avro encoder of alerts and scores, if any.
    pub fn avro_output(&self) -> Option<std::sync::Arc<crate::avro::output::AvroOutput>> {
        self.avro.clone()
    }

    /// Opens a transaction when exactly-once and none is open.
    fn ensure_txn(&self) -> Result<(), KafkaError> {
        if self.transactional && !self.in_txn.get() {
            self.producer.begin_transaction()?;
            self.in_txn.set(true);
        }
        Ok(())
    }

    /// Exactly-once only: waits until every output of the open transaction is
    /// acknowledged, then commits it together with the consumed offsets (the next offset
    /// to read per partition). At-least-once uses [`KafkaSink::flush`] instead.
    pub fn commit_txn(
        &self,
        offsets: &rdkafka::TopicPartitionList,
        group: &rdkafka::consumer::ConsumerGroupMetadata,
    ) -> Result<(), KafkaError> {
        self.ensure_txn()?;
        // Serve the delivery reports first: with event-based delivery reports,
        // librdkafka's own wait inside the commit counts the unserved ones as outstanding.
        self.wait_acknowledged(Duration::from_secs(60))?;
        if offsets.count() > 0 {
            self.producer.send_offsets_to_transaction(offsets, group, Duration::from_secs(30))?;
        }
        let r = self.producer.commit_transaction(Duration::from_secs(60));
        if r.is_ok() {
            self.in_txn.set(false);
        }
        r
    }

    /// Aborts the open transaction.
    pub fn abort_txn(&self) -> Result<(), KafkaError> {
        if self.in_txn.get() {
            self.in_txn.set(false);
            self.producer.abort_transaction(Duration::from_secs(60))?;
        }
        Ok(())
    }

    /// Whether the producer hit a fatal error and must be replaced.
    pub fn is_fatal(&self) -> bool {
        use rdkafka::client::Client;
        let client: &Client<DeliveryContext> = self.producer.client();
        client.fatal_error().is_some()
    }

    /// Whether outputs go into Kafka transactions.
    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        trigger_ms: usize,
    ) -> Result<(), KafkaError> {
        let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, trigger_ms);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        self.ensure_txn()?;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Back-pressure: serve delivery reports until the queue has room.
                    record = r;
                    self.producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Produces an alert, keyed by account_id. `trigger_ms` is the append time of the
    /// record that caused it, for the latency histogram.
    pub fn alert(&self, a: &Alert, trigger_ms: Option<i64>) -> Result<(), SinkError> {
        let what = || format!("alert {}", a.alert_id);
        let body = match &self.avro {
            Some(avro) => avro.alert(a).map_err(|why| SinkError::Encode { what: what(), why })?,
            None => encode(a, what)?,
        };
        let trigger = trigger_ms.filter(|t| *t > 0).map_or(0, |t| t as usize);
        Ok(self.send(&self.alerts_topic, None, Some(a.entity.account_id.as_bytes()), Some(&body), None, trigger)?)
    }

    /// Produces a score record, keyed `level:entity_id` on the compacted scores topic.
    pub fn score(&self, s: &ScoreRecord) -> Result<(), SinkError> {
        let what = || format!("the score record of {}", s.entity.score_key());
        let body = match &self.avro {
            Some(avro) => avro.score(s).map_err(|why| SinkError::Encode { what: what(), why })?,
            None => encode(s, what)?,
        };
        Ok(self.send(&self.scores_topic, None, Some(s.entity.score_key().as_bytes()), Some(&body), None, 0)?)
    }

    /// Produces a dead letter: original key, bytes and headers, plus headers saying why and
    /// where from.
    pub fn dead_letter(&self, r: DeadLetter<'_>) -> Result<(), KafkaError> {
        let mut h = OwnedHeaders::new();
        if let Some(orig) = &r.headers {
            for hdr in orig.iter() {
                h = h.insert(Header { key: hdr.key, value: hdr.value });
            }
        }
        let partition = r.partition.to_string();
        let offset = r.offset.to_string();
        for (k, v) in [
            (HEADER_REASON, r.reason),
            (HEADER_ERROR, r.detail),
            (HEADER_SOURCE_TOPIC, r.topic),
            (HEADER_SOURCE_PARTITION, partition.as_str()),
            (HEADER_SOURCE_OFFSET, offset.as_str()),
        ] {
            h = h.insert(Header { key: k, value: Some(v) });
        }
        DeadLetterProduced.emit();
        self.send(&self.deadletter_topic, None, r.key, r.payload, Some(h), 0)
    }

    /// Produces a state change (`None`: a tombstone) to the changelog partition that mirrors
    /// input `partition`.
    pub fn changelog(&self, partition: i32, key: &[u8], value: Option<&[u8]>) -> Result<(), KafkaError> {
        ChangelogWritten { bytes: key.len() + value.map_or(0, <[u8]>::len) }.emit();
        self.send(&self.changelog_topic, Some(partition), Some(key), value, None, 0)
    }

    /// Waits until every output is acknowledged. Fails when any was not.
    pub fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        let before = self.producer.context().failures.load(Ordering::SeqCst);
        if let Err(e) = self.wait_acknowledged(timeout) {
            return Err(SinkError::NotAcknowledged(format!("outputs not acknowledged within {timeout:?}: {e}")));
        }
        let after = self.producer.context().failures.swap(0, Ordering::SeqCst);
        if after > 0 {
            return Err(SinkError::NotAcknowledged(format!(
                "{after} output records were not acknowledged ({before} before this flush)"
            )));
        }
        Ok(())
    }

    /// Serves delivery reports without blocking.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Serves delivery reports until every record sent has been acknowledged or has
    /// failed, for at most `timeout`. (rdkafka's `flush` waits in 100 ms polls that
    /// always run to their end: a tenth of a second per batch.)
    fn wait_acknowledged(&self, timeout: Duration) -> Result<(), KafkaError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.producer.in_flight_count() == 0 {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
            }
            self.producer.poll(Duration::from_millis(1));
        }
    }
}

fn encode(v: &impl serde::Serialize, what: impl FnOnce() -> String) -> Result<Vec<u8>, SinkError> {
    serde_json::to_vec(v).map_err(|e| SinkError::Encode { what: what(), why: e.to_string() })
}
