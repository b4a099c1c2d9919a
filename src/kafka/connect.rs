//! The connection check at start: do the brokers answer, and do they take cs-pulse's
//! credentials and TLS settings?

use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

use super::{client_config, forward_log};
use crate::config::Config;

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
