//! Helpers for the tests against a real Apache Kafka broker (started by
//! `deploy/local/kafka.sh up`; `bash tests/run-all.sh` does it and sets
//! `CS_PULSE_TEST_BOOTSTRAP`).

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The broker under test. Fails loudly, never skips.
pub fn broker() -> String {
    let Ok(b) = std::env::var("CS_PULSE_TEST_BOOTSTRAP") else {
        panic!(
            "CS_PULSE_TEST_BOOTSTRAP is not set: these tests need a real Kafka broker. \
             Run `bash tests/run-all.sh` (it starts one), or `deploy/local/kafka.sh up` and \
             export CS_PULSE_TEST_BOOTSTRAP=127.0.0.1:19092."
        )
    };
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &b).create().expect("client");
    if let Err(e) = consumer.fetch_metadata(None, Duration::from_secs(10)) {
        panic!("the Kafka broker at {b} (CS_PULSE_TEST_BOOTSTRAP) does not answer: {e}");
    }
    b
}

/// Names unique to one test run, so tests never share topics or groups.
pub struct Names {
    pub prefix: String,
}

impl Names {
    pub fn new(test: &str) -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        Self { prefix: format!("it-{test}-{}-{}", std::process::id(), nanos % 1_000_000_000) }
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    pub fn all_topics(&self) -> Vec<String> {
        ["usage", "support", "accounts", "teams", "alerts", "scores", "deadletter"]
            .iter()
            .map(|t| self.topic(t))
            .collect()
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Writes a config file for this test's topics; returns its path. The tests that check
/// particular rules see every alert: policy `all`, unless `extra` has an `[alerts]`
/// section of its own.
pub fn write_config(
    dir: &Path,
    bootstrap: &str,
    names: &Names,
    group: &str,
    metrics_port: u16,
    extra: &str,
) -> Result<PathBuf> {
    let p = dir.join(format!("{group}.toml"));
    let text = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"{group}\"\n\
         [topics]\nusage = \"{}\"\nsupport = \"{}\"\naccounts = \"{}\"\nteams = \"{}\"\nalerts = \"{}\"\nscores = \"{}\"\ndeadletter = \"{}\"\n\
         [time]\nidle_timeout_secs = 2\n\
         [processing]\nguarantee = \"at_least_once\"\n\
         [metrics]\nbind = \"127.0.0.1:{metrics_port}\"\n{extra}",
        names.topic("usage"),
        names.topic("support"),
        names.topic("accounts"),
        names.topic("teams"),
        names.topic("alerts"),
        names.topic("scores"),
        names.topic("deadletter"),
    );
    let policy = if extra.contains("[alerts]") { "" } else { "[alerts]\npolicy = \"all\"\n" };
    std::fs::write(&p, text + "\n" + policy)?;
    Ok(p)
}

pub fn temp_dir(names: &Names) -> Result<PathBuf> {
    let d = std::env::temp_dir().join(&names.prefix);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

pub fn cs_pulse() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cs-pulse"));
    c.env_remove("CS_PULSE_BOOTSTRAP_SERVERS").env_remove("CS_PULSE_METRICS_BIND").env("RUST_LOG", "warn");
    c
}

/// A `cs-pulse run` process, its log in a file; killed when dropped.
pub struct RunProcess {
    pub child: Child,
    pub log: PathBuf,
    pub metrics_port: u16,
}

impl RunProcess {
    pub fn start(config: &Path, log: PathBuf, metrics_port: u16) -> Result<Self> {
        Self::start_with_env(config, log, metrics_port, &[])
    }

    /// Like [`RunProcess::start`], with more environment (later pairs win).
    pub fn start_with_env(config: &Path, log: PathBuf, metrics_port: u16, env: &[(&str, &str)]) -> Result<Self> {
        let f = std::fs::File::create(&log)?;
        let child = cs_pulse()
            .args(["run", "--config"])
            .arg(config)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::from(f.try_clone()?))
            .stderr(Stdio::from(f))
            .spawn()?;
        Ok(Self { child, log, metrics_port })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of one unlabelled metric, when the endpoint answers.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = scrape(self.metrics_port)?;
        text.lines().find_map(|l| {
            l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
        })
    }

    /// The sum over every series of a labelled metric.
    pub fn metric_sum(&self, name: &str) -> Option<f64> {
        let text = scrape(self.metrics_port)?;
        let prefix = format!("{name}{{");
        Some(
            text.lines()
                .filter(|l| l.starts_with(&prefix))
                .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
                .sum(),
        )
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(&mut self, within: Duration) -> Result<Option<i32>> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s.code());
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                return Err(format!("no exit {within:?} after SIGTERM; log:\n{}", self.log_text()).into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the pipeline has evaluated every tick up to the watermark
    /// `at_least_ms` (hourly ticks, the default interval).
    pub fn wait_watermark(&mut self, at_least_ms: i64, within: Duration) -> Result {
        let tick = at_least_ms.div_euclid(3_600_000) * 3_600_000;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("run exited early ({status}); log:\n{}", self.log_text()).into());
            }
            if self
                .metric("cs_pulse_evaluated_tick_timestamp_seconds")
                .is_some_and(|s| (s * 1000.0).round() as i64 >= tick)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(format!("watermark did not reach {at_least_ms} within {within:?}; log:\n{}", self.log_text()).into())
    }
}

impl Drop for RunProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` on 127.0.0.1:`port`: the whole response, head and body.
fn get_raw(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// GET /metrics.
pub fn scrape(port: u16) -> Option<String> {
    get_raw(port, "/metrics")
}

/// GET `path` on the metrics port: (status line, body).
pub fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    let out = get_raw(port, path)?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// Reads a whole topic with kcat (an independent client): one `(key, headers, payload)`
/// per record. `-f` prints headers as `k=v,k=v`.
pub fn kcat_read(bootstrap: &str, topic: &str) -> Result<Vec<(String, String, String)>> {
    kcat_consume(bootstrap, topic, &[])
}

/// The same as a read_committed consumer sees it: no aborted or open transactions.
pub fn kcat_read_committed(bootstrap: &str, topic: &str) -> Result<Vec<(String, String, String)>> {
    kcat_consume(bootstrap, topic, &["-X", "isolation.level=read_committed"])
}

fn kcat_consume(bootstrap: &str, topic: &str, extra: &[&str]) -> Result<Vec<(String, String, String)>> {
    let out = Command::new("kcat")
        .args(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\x1f%h\x1f%s\x1e"])
        .args(extra)
        .output()?;
    if !out.status.success() {
        return Err(format!("kcat failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(text
        .split('\x1e')
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            let mut parts = r.splitn(3, '\x1f');
            let k = parts.next().unwrap_or("").trim_start_matches('\n').to_string();
            let h = parts.next().unwrap_or("").to_string();
            let s = parts.next().unwrap_or("").to_string();
            (k, h, s)
        })
        .collect())
}

/// Replays the NDJSON files of `dir` (those present of usage, support, accounts, teams)
/// with `config`: every alert, by id.
pub fn replay_alerts(config: &Path, dir: &Path) -> Result<std::collections::BTreeMap<String, serde_json::Value>> {
    let out = dir.join("replay-alerts.ndjson");
    let mut cmd = cs_pulse();
    cmd.arg("replay");
    for input in ["usage", "support", "accounts", "teams"] {
        let f = dir.join(format!("{input}.ndjson"));
        if f.exists() {
            cmd.arg(format!("--{input}")).arg(f);
        }
    }
    let status = cmd.arg("--out").arg(&out).arg("--config").arg(config).status()?;
    if !status.success() {
        return Err("replay failed".into());
    }
    Ok(std::fs::read_to_string(&out)?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|a| (a["alert_id"].as_str().unwrap_or_default().to_string(), a))
        .collect())
}

/// The alert ids `replay` writes over the NDJSON files `gen` left in `dir`, up to the
/// last hourly tick a `run` watermark of `end - 1 h` evaluates (support escalations fire
/// on ingest, whatever the watermark).
pub fn replay_alert_ids(config: &Path, dir: &Path, end_ms: i64) -> Result<std::collections::BTreeSet<String>> {
    let last_tick = (end_ms - 3_600_000).div_euclid(3_600_000) * 3_600_000;
    Ok(replay_alerts(config, dir)?
        .into_iter()
        .filter(|(_, a)| a["kind"] == "support_escalation" || a["at"].as_i64().is_some_and(|at| at <= last_tick))
        .map(|(id, _)| id)
        .collect())
}

/// Produces lines with kcat: `key\tvalue` per line.
pub fn kcat_produce(bootstrap: &str, topic: &str, lines: &[(&str, &str)]) -> Result {
    let mut child =
        Command::new("kcat").args(["-P", "-b", bootstrap, "-t", topic, "-K", "\t"]).stdin(Stdio::piped()).spawn()?;
    {
        let stdin = child.stdin.as_mut().ok_or("kcat stdin")?;
        for (k, v) in lines {
            writeln!(stdin, "{k}\t{v}")?;
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("kcat -P failed: {status}").into());
    }
    Ok(())
}

pub fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new().set("bootstrap.servers", bootstrap).create()?)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

/// Creates topics with partition counts.
pub fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) -> Result {
    let admin = admin(bootstrap)?;
    let specs: Vec<NewTopic<'_>> =
        topics.iter().map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1))).collect();
    for r in block_on(admin.create_topics(&specs, &AdminOptions::new()))? {
        r.map_err(|(t, e)| format!("create {t}: {e}"))?;
    }
    // a created topic reaches the broker's metadata a moment later
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for (t, _) in topics {
        loop {
            let md = consumer.fetch_metadata(Some(t), Duration::from_secs(10))?;
            if md.topics().iter().any(|m| m.name() == *t && m.error().is_none() && !m.partitions().is_empty()) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("topic {t} not visible after creation").into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// Deletes this test's topics (best effort).
pub fn delete_topics(bootstrap: &str, names: &Names) {
    if let Ok(admin) = admin(bootstrap) {
        let topics = names.all_topics();
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let _ = block_on(admin.delete_topics(&refs, &AdminOptions::new()));
    }
}

/// The Python interpreter with the interop packages (`bash tests/run-all.sh` installs them).
pub fn python() -> PathBuf {
    std::env::var_os("CS_PULSE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/venv/bin/python"))
}

pub fn interop(args: &[&std::ffi::OsStr]) -> Result<String> {
    interop_with_env(args, &[])
}

/// [`interop`] with more environment (`INTEROP_KAFKA_CONFIG`, `INTEROP_REGISTRY_CA`).
pub fn interop_with_env(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> Result<String> {
    let out = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/avro_interop.py"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .map_err(|e| format!("{}: {e} (bash tests/run-all.sh installs it)", python().display()))?;
    if !out.status.success() {
        return Err(format!("avro_interop.py {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The registry process; killed when dropped.
pub struct Registry(pub Child, pub String);

impl Registry {
    pub fn start(dir: &Path) -> Result<Self> {
        Self::start_serving(dir, None)
    }

    /// A registry serving HTTPS with the secured listener's certificate (signed by
    /// [`Secured::ca`], for 127.0.0.1).
    pub fn start_https(dir: &Path, secured: &Secured) -> Result<Self> {
        Self::start_serving(dir, Some(secured))
    }

    fn start_serving(dir: &Path, tls: Option<&Secured>) -> Result<Self> {
        let port_file = dir.join("registry.port");
        let mut cmd = Command::new(python());
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/avro_interop.py"))
            .arg("registry")
            .arg(&port_file)
            .stdout(Stdio::null());
        if let Some(s) = tls {
            let dir = Path::new(&s.ca).parent().ok_or("CA path")?;
            let pair = format!("{}:{}", dir.join("broker.pem").display(), dir.join("broker.key").display());
            cmd.env("INTEROP_REGISTRY_TLS", pair);
        }
        let child = cmd.spawn()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !port_file.exists() {
            if Instant::now() > deadline {
                return Err("the test registry did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let port = std::fs::read_to_string(&port_file)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(Self(child, format!("{scheme}://127.0.0.1:{}", port.trim())))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The broker's SASL_SSL listener (SCRAM-SHA-512), as `deploy/local/kafka.sh sasl-env`
/// prints it.
pub struct Secured {
    pub bootstrap: String,
    pub username: String,
    pub password: String,
    /// The PEM file of the CA that signed the listener's certificate.
    pub ca: String,
}

impl Secured {
    /// The listener under test. Fails loudly, never skips.
    pub fn from_env() -> Self {
        let var = |k: &str| {
            std::env::var(k).unwrap_or_else(|_| {
                panic!(
                    "{k} is not set: these tests need the broker's SASL_SSL listener. Run `bash \
                     tests/run-all.sh`, or `deploy/local/kafka.sh up` and `eval \"$(deploy/local/kafka.sh sasl-env)\"`."
                )
            })
        };
        Self {
            bootstrap: var("CS_PULSE_TEST_SASL_BOOTSTRAP"),
            username: var("CS_PULSE_TEST_SASL_USERNAME"),
            password: var("CS_PULSE_TEST_SASL_PASSWORD"),
            ca: var("CS_PULSE_TEST_CA"),
        }
    }

    /// The `[kafka.client]` table of a cs-pulse config for this listener: the password
    /// and the CA file are `${VAR}` references to `CS_PULSE_KAFKA_PASSWORD` and
    /// `CS_PULSE_KAFKA_CA`.
    pub fn client_table(&self) -> String {
        format!(
            "[kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\
             \"sasl.username\" = \"{}\"\n\"sasl.password\" = \"${{CS_PULSE_KAFKA_PASSWORD}}\"\n\
             \"ssl.ca.location\" = \"${{CS_PULSE_KAFKA_CA}}\"\n",
            self.username
        )
    }

    /// The environment [`Secured::client_table`] refers to.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("CS_PULSE_KAFKA_PASSWORD", self.password.clone()), ("CS_PULSE_KAFKA_CA", self.ca.clone())]
    }

    /// `INTEROP_KAFKA_CONFIG` for the Python clients.
    pub fn interop_config(&self) -> String {
        serde_json::json!({
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": self.username,
            "sasl.password": self.password,
            "ssl.ca.location": self.ca,
        })
        .to_string()
    }
}
