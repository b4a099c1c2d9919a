//! The other instances of the consumer group, and asking them.
//!
//! An instance advertises its API's URL (`api.advertised_url`) in its consumer's
//! `client.id`, as `cs-pulse@<url>`. Any instance finds the others by describing the
//! consumer group (Kafka's DescribeGroups): every member's client id, hence its URL. No
//! extra topic and no extra service.
//!
//! Which partition holds an account depends on the partitioner of whoever produced its
//! events (Java clients hash with murmur2, librdkafka by default with CRC32), so an
//! instance does not compute it: it asks the other instances, each of which answers only
//! from the partitions it owns, and remembers which one answered for the account.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::directory::Coverage;
use crate::hash::HashMap;

/// The prefix of the `client.id` that carries an instance's URL.
pub const CLIENT_ID_PREFIX: &str = "cs-pulse@";

/// The header a forwarded request carries: the instance asked answers from its own
/// partitions only.
pub const FORWARDED: &str = "x-cs-pulse-forwarded";
/// The header of an answer that says which partitions the instance answers for.
pub const COVERAGE: &str = "x-cs-pulse-coverage";
/// The header that names the instance that answered.
pub const SERVED_BY: &str = "x-cs-pulse-served-by";
/// The header of an answer about an account the instance holds, whatever its status (an
/// unknown entity of a held account is a 404 to relay, not a sign to look elsewhere).
pub const HOLDS: &str = "x-cs-pulse-holds";

/// How long a description of the group is reused.
const GROUP_TTL: Duration = Duration::from_secs(2);
/// The largest answer relayed from another instance (a list of 100,000 accounts is about
/// 25 MiB).
const MAX_ANSWER_BYTES: u64 = 32 << 20;
/// How long a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the other instances are.
pub trait Peers: Send + Sync {
    /// The URLs of the other instances of the group; an error says why they are not known.
    fn others(&self) -> Result<Vec<String>, String>;
}

/// No other instance (a single instance, or one that cannot advertise itself).
#[derive(Debug, Default)]
pub struct Alone;

impl Peers for Alone {
    fn others(&self) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

/// The group's members, as the brokers describe them.
pub struct KafkaPeers {
    client: BaseConsumer,
    group: String,
    me: String,
    cache: Mutex<Option<(Instant, Vec<String>)>>,
}

impl std::fmt::Debug for KafkaPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPeers").field("group", &self.group).field("me", &self.me).finish()
    }
}

impl KafkaPeers {
    /// Describes `group` with `client` (a client that joins no group), leaving out `me`.
    pub fn new(client: BaseConsumer, group: String, me: String) -> Self {
        Self { client, group, me, cache: Mutex::new(None) }
    }
}

impl Peers for KafkaPeers {
    fn others(&self) -> Result<Vec<String>, String> {
        // Held while the group is described: requests that arrive meanwhile wait for this
        // description instead of each asking the brokers.
        let mut cache = self.cache.lock().map_err(|_| "the peer cache is poisoned".to_string())?;
        if let Some((_, urls)) = cache.as_ref().filter(|(at, _)| at.elapsed() < GROUP_TTL) {
            return Ok(urls.clone());
        }
        let list = self
            .client
            .fetch_group_list(Some(&self.group), Duration::from_secs(5))
            .map_err(|e| format!("describing consumer group {}: {e}", self.group))?;
        let mut urls = Vec::new();
        for g in list.groups() {
            if g.state() != "Stable" {
                return Err(format!("consumer group {} is {} (partitions are moving)", self.group, g.state()));
            }
            for m in g.members() {
                if let Some(url) = m.client_id().strip_prefix(CLIENT_ID_PREFIX) {
                    if url != self.me && !urls.iter().any(|u| u == url) {
                        urls.push(url.to_string());
                    }
                }
            }
        }
        *cache = Some((Instant::now(), urls.clone()));
        Ok(urls)
    }
}

/// What another instance said.
#[derive(Debug)]
pub enum PeerAnswer {
    /// It holds the account (or answered the list): status, content type, body, and
    /// which partitions it answers for.
    Found { status: u16, content_type: String, body: Vec<u8>, coverage: Option<Coverage> },
    /// It does not; which partitions it answers for.
    NotHere(Coverage),
    /// It could not be asked, or answered something else.
    Failed(String),
}

/// Asks one instance for `path_and_query` (blocking), as a forwarded request.
pub fn ask(url: &str, path_and_query: &str, authorization: Option<&str>) -> PeerAnswer {
    static AGENT: std::sync::LazyLock<ureq::Agent> = std::sync::LazyLock::new(|| {
        ureq::Agent::config_builder()
            .timeout_global(Some(FORWARD_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .new_agent()
    });
    let agent = &*AGENT;
    let full = format!("{}{}", url.trim_end_matches('/'), path_and_query);
    let mut req = agent.get(&full).header(FORWARDED, "1");
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let mut resp = match req.call() {
        Ok(r) => r,
        Err(e) => return PeerAnswer::Failed(format!("{url}: {e}")),
    };
    let status = resp.status().as_u16();
    let coverage = resp.headers().get(COVERAGE).and_then(|v| v.to_str().ok()).and_then(Coverage::from_header);
    let content_type =
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_string();
    // Only cs-pulse's own answers count: one about an account it holds, or a list with the
    // partitions it answers for. Anything else at that address is not relayed.
    let holds = resp.headers().contains_key(HOLDS);
    match (status, coverage) {
        (_, coverage) if holds || (status == 200 && coverage.is_some()) => {
            match resp.body_mut().with_config().limit(MAX_ANSWER_BYTES).read_to_vec() {
                Ok(body) => PeerAnswer::Found { status, content_type, body, coverage },
                Err(e) => PeerAnswer::Failed(format!("{url}: reading the answer: {e}")),
            }
        }
        (404, Some(c)) => PeerAnswer::NotHere(c),
        (s, _) => PeerAnswer::Failed(format!("{url}: answered {s}")),
    }
}

/// Which instance answered for which account, so that the next request goes straight
/// there. Bounded: cleared when full.
#[derive(Debug, Default)]
pub struct Routes(Mutex<HashMap<String, String>>);

const MAX_ROUTES: usize = 100_000;

impl Routes {
    /// The instance that last answered for `account`.
    pub fn get(&self, account: &str) -> Option<String> {
        self.0.lock().ok()?.get(account).cloned()
    }

    /// Remembers that `url` answered for `account`.
    pub fn set(&self, account: &str, url: &str) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= MAX_ROUTES {
                m.clear();
            }
            m.insert(account.to_string(), url.to_string());
        }
    }

    /// Forgets where `account` was.
    pub fn forget(&self, account: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(account);
        }
    }
}
