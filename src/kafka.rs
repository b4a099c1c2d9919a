//! Kafka plumbing shared by `run`, `demo` and the tests: client configuration, the output
//! sink (alerts, scores, dead letters) and topic checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use crate::config::Config;
use crate::model::{Alert, ScoreRecord};

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

/// A Kafka client configuration with the bootstrap servers and every `[kafka.client]`
/// pass-through property.
pub fn client_config(cfg: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    // rdkafka takes librdkafka's log level from the `log` crate, which cs-pulse does not
    // use: without this, librdkafka would drop everything below errors itself.
    c.set_log_level(librdkafka_log_level());
    c.set("bootstrap.servers", &cfg.kafka.bootstrap_servers);
    c.set("client.id", "cs-pulse");
    for (k, v) in &cfg.kafka.client {
        c.set(k, v);
    }
    c
}

/// The librdkafka log level that lets through what cs-pulse's log filter keeps.
fn librdkafka_log_level() -> rdkafka::config::RDKafkaLogLevel {
    use rdkafka::config::RDKafkaLogLevel as L;
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF => L::Emerg,
        LevelFilter::ERROR => L::Error,
        LevelFilter::WARN => L::Warning,
        LevelFilter::INFO => L::Info,
        _ => L::Debug,
    }
}

/// Whether librdkafka accepts the configuration's client properties. The error names a
/// refused property but not its value, which may be a secret (rdkafka's own message
/// repeats it).
pub fn check_properties(cfg: &Config) -> Result<(), ConnectError> {
    let mut c = client_config(cfg);
    c.set("bootstrap.servers", "127.0.0.1:1");
    c.create::<BaseProducer>().map(drop).map_err(|e| ConnectError::Client(without_value(&e)))
}

/// Why cs-pulse could not start talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The brokers refused the SASL credentials.
    #[error(
        "Kafka authentication failed: the brokers at {servers} refused user {user:?} with SASL mechanism \
         {mechanism} ({reason}); check kafka.client \"sasl.username\" and \"sasl.password\""
    )]
    Auth {
        /// The bootstrap servers.
        servers: String,
        /// `sasl.username`.
        user: String,
        /// `sasl.mechanisms`.
        mechanism: String,
        /// librdkafka's words.
        reason: String,
    },
    /// The TLS handshake failed: most often, the broker's certificate is not trusted.
    #[error("TLS handshake with the Kafka brokers at {servers} failed: {detail}")]
    Tls {
        /// The bootstrap servers.
        servers: String,
        /// What failed and what to check.
        detail: String,
    },
    /// No broker answered in time.
    #[error("no Kafka broker answered at {servers} within {secs} s (kafka.connect_timeout_secs); last error: {last}")]
    Unreachable {
        /// The bootstrap servers.
        servers: String,
        /// How long cs-pulse waited.
        secs: u64,
        /// The last error librdkafka reported.
        last: String,
    },
    /// librdkafka refused the client configuration (an unknown property, a bad value, a
    /// CA file it cannot load).
    #[error("the Kafka client configuration was refused: {0}")]
    Client(String),
}

impl ConnectError {
    /// The exit code: 2 for what only a configuration change fixes (credentials, trust,
    /// properties), 1 for brokers that may come back.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConnectError::Unreachable { .. } => 1,
            _ => 2,
        }
    }
}

/// Collects what librdkafka reports while [`check_connection`] waits.
#[derive(Default)]
struct ConnectProbe {
    /// The first authentication or TLS failure: waiting longer will not help.
    fatal: std::sync::Mutex<Option<(RDKafkaErrorCode, String)>>,
    /// The latest other error.
    last: std::sync::Mutex<Option<String>>,
}

impl ClientContext for ConnectProbe {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        forward_log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
        // By the code only: librdkafka files a connection reset during the handshake
        // (a broker starting or rolling) under transport errors, to be retried.
        let fatal = matches!(
            code,
            RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::SSL
        );
        if fatal {
            if let Ok(mut f) = self.fatal.lock() {
                f.get_or_insert((code, reason.to_string()));
            }
        } else if let Ok(mut l) = self.last.lock() {
            *l = Some(reason.to_string());
        }
    }
}

impl ProducerContext for ConnectProbe {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Waits until the brokers answer a metadata request, for at most
/// `kafka.connect_timeout_secs`. An authentication or TLS failure ends the wait at once
/// with an error that says which; brokers that never answer end it with one naming them.
pub fn check_connection(cfg: &Config) -> Result<(), ConnectError> {
    let servers = cfg.kafka.bootstrap_servers.clone();
    let timeout = Duration::from_secs(cfg.kafka.connect_timeout_secs);
    let mut c = client_config(cfg);
    // Asking for the usage topic's metadata must not create it.
    c.set("allow.auto.create.topics", "false").set("client.id", "cs-pulse-connect-check");
    let probe: BaseProducer<ConnectProbe> =
        c.create_with_context(ConnectProbe::default()).map_err(|e| ConnectError::Client(without_value(&e)))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let answer = probe
            .client()
            .fetch_metadata(Some(&cfg.topics.usage), left.clamp(Duration::from_millis(100), Duration::from_secs(1)));
        // Serves the log lines and error events librdkafka queued meanwhile.
        probe.poll(Duration::from_millis(50));
        let Err(e) = answer else {
            // One broker answered: others that failed do not stop the start.
            return Ok(());
        };
        let fatal = probe.context().fatal.lock().ok().and_then(|f| f.clone());
        if let Some((code, reason)) = fatal {
            return Err(classify(cfg, &servers, code, reason));
        }
        if left.is_zero() {
            let last = probe.context().last.lock().ok().and_then(|l| l.clone()).unwrap_or_else(|| e.to_string());
            return Err(ConnectError::Unreachable { servers, secs: timeout.as_secs(), last });
        }
    }
}

/// A client creation error, without the property value rdkafka's own message repeats
/// (it may be a secret).
fn without_value(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, description, key, _) => {
            format!("kafka.client \"{key}\": {}", description.trim_end_matches(|c: char| c == '.' || c.is_whitespace()))
        }
        other => other.to_string(),
    }
}

fn classify(cfg: &Config, servers: &str, code: RDKafkaErrorCode, reason: String) -> ConnectError {
    let prop = |k: &str| cfg.kafka.client.get(k).cloned();
    match code {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => ConnectError::Auth {
            servers: servers.to_string(),
            user: prop("sasl.username").unwrap_or_default(),
            mechanism: prop("sasl.mechanisms").or_else(|| prop("sasl.mechanism")).unwrap_or_else(|| "GSSAPI".into()),
            reason,
        },
        _ => {
            let detail = if reason.contains("certificate verify failed") {
                let ca = match prop("ssl.ca.location") {
                    Some(ca) => format!("kafka.client \"ssl.ca.location\" is {ca}"),
                    None => "kafka.client \"ssl.ca.location\" is not set, so the system's CA certificates were used"
                        .to_string(),
                };
                format!(
                    "the broker's certificate is not trusted ({reason}); {ca}: point it at a PEM file of the CA \
                     that signed the broker's certificate"
                )
            } else {
                format!("{reason}; check kafka.client \"security.protocol\" and the ssl.* properties")
            };
            ConnectError::Tls { servers: servers.to_string(), detail }
        }
    }
}

/// A client context that forwards librdkafka's log lines and errors into cs-pulse's log
/// and, for a producer, counts the records the brokers did not acknowledge.
#[derive(Default)]
pub struct LogContext {
    undelivered: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl LogContext {
    /// How many records were not acknowledged, and why the first was not.
    pub fn undelivered(&self) -> (u64, Option<String>) {
        let first = self.first_failure.lock().ok().and_then(|f| f.clone());
        (self.undelivered.load(Ordering::SeqCst), first)
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        forward_log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        forward_error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for LogContext {}

impl ProducerContext for LogContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, msg)) = result {
            use rdkafka::Message;
            self.undelivered.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut first) = self.first_failure.lock() {
                first.get_or_insert_with(|| format!("topic {}: {e}", msg.topic()));
            }
        }
    }
}

/// librdkafka's log lines, into cs-pulse's log (rdkafka sends them to the `log` crate,
/// which cs-pulse does not read). librdkafka redacts secrets in what it logs.
pub fn forward_log(level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => tracing::error!(target: "librdkafka", "{fac}: {message}"),
        L::Warning => tracing::warn!(target: "librdkafka", "{fac}: {message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", "{fac}: {message}"),
        L::Debug => tracing::debug!(target: "librdkafka", "{fac}: {message}"),
    }
}

/// An error librdkafka reports outside any one request, into cs-pulse's log.
pub fn forward_error(error: &KafkaError, reason: &str) {
    tracing::warn!(target: "librdkafka", error = %error, "Kafka client error: {reason}");
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
            Ok(_) => {
                if trigger_ms > 0 {
                    let secs = (crate::time::now_ms() - trigger_ms as i64).max(0) as f64 / 1000.0;
                    crate::telemetry::metrics().event_to_alert_latency_seconds.observe(secs);
                }
            }
            Err((e, msg)) => {
                self.failures.fetch_add(1, Ordering::SeqCst);
                crate::telemetry::metrics().output_errors_total.inc();
                use rdkafka::Message;
                tracing::error!(topic = msg.topic(), partition = msg.partition(), error = %e, "Output record not acknowledged.");
            }
        }
    }
}

/// Where a rejected input record came from and why it was rejected.
pub struct Rejection<'a> {
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

    /// Commits the open transaction with the consumed offsets (next offset to read per
    /// partition), or, at-least-once, waits for every output's acknowledgement.
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
    pub fn alert(&self, a: &Alert, trigger_ms: Option<i64>) -> Result<(), KafkaError> {
        let body = match &self.avro {
            Some(avro) => avro.alert(a).map_err(encode_failed)?,
            None => encode(a)?,
        };
        let trigger = trigger_ms.filter(|t| *t > 0).map_or(0, |t| t as usize);
        self.send(&self.alerts_topic, None, Some(a.entity.account_id.as_bytes()), Some(&body), None, trigger)
    }

    /// Produces a score record, keyed `level:entity_id` on the compacted scores topic.
    pub fn score(&self, s: &ScoreRecord) -> Result<(), KafkaError> {
        let body = match &self.avro {
            Some(avro) => avro.score(s).map_err(encode_failed)?,
            None => encode(s)?,
        };
        self.send(&self.scores_topic, None, Some(s.entity.score_key().as_bytes()), Some(&body), None, 0)
    }

    /// Produces a dead letter: original key, bytes and headers, plus headers saying why and
    /// where from.
    pub fn dead_letter(&self, r: Rejection<'_>) -> Result<(), KafkaError> {
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
        crate::telemetry::metrics().deadletter_records_total.inc();
        self.send(&self.deadletter_topic, None, r.key, r.payload, Some(h), 0)
    }

    /// Produces a state change (`None`: a tombstone) to the changelog partition that mirrors
    /// input `partition`.
    pub fn changelog(&self, partition: i32, key: &[u8], value: Option<&[u8]>) -> Result<(), KafkaError> {
        let m = crate::telemetry::metrics();
        m.changelog_records_total.inc();
        m.changelog_bytes_total.inc_by((key.len() + value.map_or(0, <[u8]>::len)) as u64);
        self.send(&self.changelog_topic, Some(partition), Some(key), value, None, 0)
    }

    /// Waits until every output is acknowledged. Fails when any was not.
    pub fn flush(&self, timeout: Duration) -> Result<(), String> {
        let before = self.producer.context().failures.load(Ordering::SeqCst);
        if let Err(e) = self.wait_acknowledged(timeout) {
            return Err(format!("outputs not acknowledged within {timeout:?}: {e}"));
        }
        let after = self.producer.context().failures.swap(0, Ordering::SeqCst);
        if after > 0 {
            return Err(format!("{after} output records were not acknowledged ({before} before this flush)"));
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

fn encode(v: &impl serde::Serialize) -> Result<Vec<u8>, KafkaError> {
    serde_json::to_vec(v).map_err(|e| encode_failed(e.to_string()))
}

fn encode_failed(e: String) -> KafkaError {
    tracing::error!(error = %e, "Cannot encode output record.");
    KafkaError::MessageProduction(RDKafkaErrorCode::InvalidMessage)
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
