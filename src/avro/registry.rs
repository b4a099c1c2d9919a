//! A small client of the Confluent schema registry API: writer schemas by id (cached for
//! the life of the process, as ids are immutable) and subject registration for output.
//! Basic auth comes from `CS_PULSE_SCHEMA_REGISTRY_USERNAME` and
//! `CS_PULSE_SCHEMA_REGISTRY_PASSWORD`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use ureq::tls::RootCerts;

/// Why the registry did not give a schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered that there is no such schema or subject.
    #[error("not found: {0}")]
    NotFound(String),
    /// The registry could not be reached or failed; worth retrying.
    #[error("{0}")]
    Unavailable(String),
    /// The registry refused cs-pulse: its TLS certificate is not trusted, the CA file
    /// cannot be used, or the credentials are wrong. A configuration error, not worth
    /// retrying.
    #[error("{0}")]
    Refused(String),
}

/// A schema registry.
pub struct Registry {
    base: String,
    auth: Option<String>,
    agent: ureq::Agent,
    cache: Mutex<HashMap<u32, String>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("base", &self.base).field("auth", &self.auth.is_some()).finish()
    }
}

/// Attempts per request while the registry is unreachable or failing.
const ATTEMPTS: u32 = 4;

impl Registry {
    /// A client of the registry `cfg` names, with basic auth from the environment and,
    /// with `ca_location`, only that file's CA certificates trusted for HTTPS.
    pub fn from_config(cfg: &crate::config::SchemaRegistryConfig) -> Result<Self, RegistryError> {
        let user = std::env::var("CS_PULSE_SCHEMA_REGISTRY_USERNAME").ok().filter(|u| !u.is_empty());
        let password = std::env::var("CS_PULSE_SCHEMA_REGISTRY_PASSWORD").unwrap_or_default();
        let ca = cfg.ca_location.trim();
        let roots = if ca.is_empty() {
            None
        } else {
            let pem = std::fs::read(ca)
                .map_err(|e| RegistryError::Refused(format!("schema_registry.ca_location: cannot read {ca}: {e}")))?;
            Some(ca_certificates(&pem).map_err(|e| {
                RegistryError::Refused(format!("schema_registry.ca_location: {ca} holds no usable certificate: {e}"))
            })?)
        };
        Ok(Self::build(cfg.url.trim(), user.map(|u| (u, password)), roots))
    }

    /// A client with explicit credentials, trusting the system's CA certificates.
    pub fn with_auth(url: &str, credentials: Option<(String, String)>) -> Self {
        Self::build(url, credentials, None)
    }

    fn build(url: &str, credentials: Option<(String, String)>, roots: Option<RootCerts>) -> Self {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .root_certs(roots.unwrap_or(RootCerts::PlatformVerifier))
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .timeout_connect(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .tls_config(tls)
            .build()
            .new_agent();
        Self {
            base: url.trim_end_matches('/').to_string(),
            auth: credentials.map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes()))),
            agent,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Asks the registry for its subjects: whether it can be reached, trusted and logged
    /// into. Retries a few times over about three seconds while it cannot be reached.
    pub fn check(&self) -> Result<(), RegistryError> {
        match self.request("GET", "/subjects", None) {
            Ok(_) => Ok(()),
            Err(RegistryError::Unavailable(e)) => Err(RegistryError::Unavailable(format!(
                "the schema registry at {} did not answer after {ATTEMPTS} attempts: {e}",
                self.base
            ))),
            Err(RegistryError::NotFound(e)) => {
                Err(RegistryError::NotFound(format!("the schema registry at {} refused: {e}", self.base)))
            }
            Err(e) => Err(e),
        }
    }

    /// The schema text with this id.
    pub fn schema(&self, id: u32) -> Result<String, RegistryError> {
        if let Some(s) = self.cache.lock().ok().and_then(|c| c.get(&id).cloned()) {
            return Ok(s);
        }
        let body = self.request("GET", &format!("/schemas/ids/{id}"), None)?;
        if let Some(t) = body.get("schemaType").and_then(Value::as_str).filter(|t| *t != "AVRO") {
            return Err(RegistryError::NotFound(format!("schema {id} is {t}, not AVRO")));
        }
        let text = body
            .get("schema")
            .and_then(Value::as_str)
            .ok_or_else(|| RegistryError::Unavailable(format!("the answer for schema {id} has no `schema`")))?
            .to_string();
        if let Ok(mut c) = self.cache.lock() {
            c.insert(id, text.clone());
        }
        Ok(text)
    }

    /// Registers `schema` under `subject` (or finds it there) and returns its id.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" }).to_string();
        let answer = self.request("POST", &format!("/subjects/{}/versions", encode_path(subject)), Some(&body))?;
        answer
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| RegistryError::Unavailable(format!("registering under {subject} gave no id: {answer}")))
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<Value, RegistryError> {
        let url = format!("{}{path}", self.base);
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 << attempt));
            }
            let result = match body {
                None => {
                    let mut req = self.agent.get(&url).header("Accept", "application/vnd.schemaregistry.v1+json");
                    if let Some(a) = &self.auth {
                        req = req.header("Authorization", a);
                    }
                    req.call()
                }
                Some(b) => {
                    let mut req = self
                        .agent
                        .post(&url)
                        .header("Accept", "application/vnd.schemaregistry.v1+json")
                        .content_type("application/vnd.schemaregistry.v1+json");
                    if let Some(a) = &self.auth {
                        req = req.header("Authorization", a);
                    }
                    req.send(b)
                }
            };
            let mut response = match result {
                Ok(r) => r,
                Err(e) if is_untrusted(&e) => {
                    return Err(RegistryError::Refused(format!(
                        "{method} {url}: the schema registry's TLS certificate is not trusted ({e}); set \
                         schema_registry.ca_location to a PEM file of the CA that signed it"
                    )))
                }
                Err(e) => {
                    last = format!("{method} {url}: {e}");
                    continue;
                }
            };
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            match status {
                200..=299 => {
                    return serde_json::from_str(&text)
                        .map_err(|e| RegistryError::Unavailable(format!("{method} {url}: answer is not JSON: {e}")))
                }
                404 => return Err(RegistryError::NotFound(format!("{method} {url}: {}", text.trim()))),
                401 | 403 => {
                    return Err(RegistryError::Refused(format!(
                        "{method} {url}: {status} {} (check CS_PULSE_SCHEMA_REGISTRY_USERNAME and _PASSWORD)",
                        text.trim()
                    )))
                }
                400..=499 => return Err(RegistryError::NotFound(format!("{method} {url}: {status} {}", text.trim()))),
                _ => last = format!("{method} {url}: {status} {}", text.trim()),
            }
        }
        Err(RegistryError::Unavailable(last))
    }
}

/// Whether a request failed because the server's certificate did not verify.
fn is_untrusted(e: &ureq::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("certificate verify failed")
        || text.contains("self-signed certificate")
        || text.contains("unable to get local issuer")
}

/// The certificates of a PEM file, as roots.
fn ca_certificates(pem: &[u8]) -> Result<RootCerts, String> {
    use ureq::tls::{parse_pem, PemItem};
    let mut certs = Vec::new();
    for item in parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    if certs.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// Percent-encodes a path segment (the API's links use it too).
pub(crate) fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_encoding() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn subjects_are_escaped() {
        assert_eq!(encode_path("cs.health.alerts.v1-value"), "cs.health.alerts.v1-value");
        assert_eq!(encode_path("a/b c"), "a%2Fb%20c");
    }
}
