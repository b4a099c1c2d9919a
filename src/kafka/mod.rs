//! Kafka plumbing shared by `run`, `gen`, `demo` and the tests: client configuration and
//! logging ([`client_config`], [`LogContext`]), the connection check at start
//! ([`connect`]), topic administration ([`admin`]) and the output sink ([`sink`]).

pub mod admin;
pub mod connect;
pub mod sink;

use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;

use crate::config::Config;

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
