//! The HTTP API over the real `run` pipeline on librdkafka's mock cluster: its answers
//! equal what `replay` computes from the same events at the same tick (scores, bands and
//! the daily history), and bad requests get the right status and a JSON error without
//! changing anything.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::Value;

use cs_pulse::api::directory::Directory;
use cs_pulse::api::{peers::Alone, Api};
use cs_pulse::config::Config;
use cs_pulse::generator::{Generator, Rng, Scale};
use cs_pulse::model::Input;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const DAY: i64 = 86_400_000;
const START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const DAYS: i64 = 40;
const TOKEN: &str = "t0ken-for-tests";

struct Server {
    base: String,
    stop: Arc<AtomicBool>,
    pipeline: Option<std::thread::JoinHandle<()>>,
    _rt: tokio::runtime::Runtime,
    _mock: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    dir: TempDir,
    cfg: Config,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(p) = self.pipeline.take() {
            let _ = p.join();
        }
    }
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

/// GET with the token; status and JSON body (`Value::Null` when not JSON).
fn get(base: &str, path: &str) -> Result<(u16, Value)> {
    get_as(base, path, Some(&format!("Bearer {TOKEN}")))
}

fn get_as(base: &str, path: &str, auth: Option<&str>) -> Result<(u16, Value)> {
    let mut req = agent().get(&format!("{base}{path}"));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let mut resp = req.call()?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Synthetic customers streamed through the mock cluster into `run`, the API served with a
/// token; the same events written as NDJSON for `replay`.
fn start() -> Result<Server> {
    let mock = MockCluster::new(1)?;
    let bootstrap = mock.bootstrap_servers();
    let mut cfg = Config::default();
    cfg.kafka.bootstrap_servers = bootstrap.clone();
    cfg.kafka.group_id = "api-test".into();
    cfg.time.idle_timeout_secs = 1;
    // the mock cluster does not store transactional offsets
    cfg.processing.guarantee = cs_pulse::config::Guarantee::AtLeastOnce;
    cs_pulse::demo::create_topics(&mock, &cfg, 2)?;
    let dir = TempDir(std::env::temp_dir().join(format!("cs-pulse-api-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;

    let mut gen = Generator::scaled(11, START, Scale { accounts: 8, teams_per_account: 4, users_per_team: 6 });
    let mut records = gen.dimension_records();
    for day in 0..DAYS {
        records.extend(gen.day(day));
    }
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
    let mut files: BTreeMap<&str, std::fs::File> = BTreeMap::new();
    for r in &records {
        let (topic, name) = match r.input {
            Input::Usage => (&cfg.topics.usage, "usage"),
            Input::Support => (&cfg.topics.support, "support"),
            Input::Accounts => (&cfg.topics.accounts, "accounts"),
            Input::Teams => (&cfg.topics.teams, "teams"),
        };
        loop {
            match producer.send(BaseRecord::to(topic).key(&r.key).payload(&r.payload)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        let f = match files.entry(name) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(std::fs::File::create(dir.0.join(format!("{name}.ndjson")))?)
            }
        };
        f.write_all(&r.payload)?;
        f.write_all(b"\n")?;
    }
    producer.flush(Duration::from_secs(30))?;

    let directory = Arc::new(Directory::default());
    let stop = Arc::new(AtomicBool::new(false));
    let pipeline = {
        let (cfg, stop, directory) = (cfg.clone(), Arc::clone(&stop), Arc::clone(&directory));
        std::thread::spawn(move || {
            if let Err(e) = cs_pulse::pipeline::run_serving(&cfg, &stop, &directory) {
                eprintln!("pipeline: {e}");
            }
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let api = Arc::new(Api::new(Arc::clone(&directory), Arc::new(Alone), Some(TOKEN.into())));
    let (addr, _task) = rt.block_on(cs_pulse::api::serve("127.0.0.1:0".parse()?, api))?;
    let server =
        Server { base: format!("http://{addr}"), stop, pipeline: Some(pipeline), _rt: rt, _mock: mock, dir, cfg };
    // Ready once all eight accounts are answered and the ticks stop moving (the watermark
    // waits the allowed lateness behind the last event).
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut last, mut steady) = (None, 0);
    loop {
        let (status, list) = get(&server.base, "/v1/accounts")?;
        let accounts = list["accounts"].as_array().cloned().unwrap_or_default();
        let ticks: Vec<Option<i64>> = accounts.iter().map(|a| a["as_of_ms"].as_i64()).collect();
        let now = (status == 200 && accounts.len() == 8).then_some(ticks);
        steady = if now.is_some() && now == last { steady + 1 } else { 0 };
        if steady >= 4 {
            return Ok(server);
        }
        if Instant::now() > deadline {
            return Err(format!("the API did not settle: {status} {list}").into());
        }
        last = now;
        std::thread::sleep(Duration::from_millis(700));
    }
}

/// Score records (tick, score, band) by (level, account, id), in time order.
type ScoresByEntity = BTreeMap<(String, String, String), Vec<(i64, f64, String)>>;

/// Replays the same events: each entity's score records, by (level, account, id), in time
/// order.
fn replay_scores(s: &Server) -> Result<ScoresByEntity> {
    let d = &s.dir.0;
    let files = cs_pulse::replay::ReplayFiles {
        usage: Some(d.join("usage.ndjson")),
        support: Some(d.join("support.ndjson")),
        accounts: Some(d.join("accounts.ndjson")),
        teams: Some(d.join("teams.ndjson")),
        out: d.join("alerts.ndjson"),
        scores: Some(d.join("scores.ndjson")),
        deadletter: None,
    };
    cs_pulse::replay::replay(&s.cfg, &files)?;
    let mut by_entity = ScoresByEntity::new();
    for line in std::fs::read_to_string(d.join("scores.ndjson"))?.lines() {
        let r: Value = serde_json::from_str(line)?;
        let e = &r["entity"];
        let key = (
            e["level"].as_str().unwrap_or("").to_string(),
            e["account_id"].as_str().unwrap_or("").to_string(),
            e["id"].as_str().unwrap_or("").to_string(),
        );
        let at = r["at"].as_i64().ok_or("score record without at")?;
        let band = r["band"].as_str().unwrap_or("").to_string();
        by_entity.entry(key).or_default().push((at, r["score"].as_f64().unwrap_or(f64::NAN), band));
    }
    Ok(by_entity)
}

/// Every (level, id) of a tree answer.
fn entities_of(node: &Value, out: &mut Vec<(String, String)>) {
    out.push((node["level"].as_str().unwrap_or("").into(), node["id"].as_str().unwrap_or("").into()));
    for c in node["children"].as_array().into_iter().flatten() {
        entities_of(c, out);
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn answers_match_replay_and_bad_requests_change_nothing() -> Result {
    let s = start()?;
    let replayed = replay_scores(&s)?;

    // Every entity of every account, from the trees.
    let (_, list) = get(&s.base, "/v1/accounts?sort=score")?;
    let accounts: Vec<String> = list["accounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["account_id"].as_str().map(String::from))
        .collect();
    let scores: Vec<f64> =
        list["accounts"].as_array().into_iter().flatten().filter_map(|a| a["score"].as_f64()).collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "sort=score is ascending: {scores:?}");
    let mut all = Vec::new();
    for a in &accounts {
        let (status, body) = get(&s.base, &format!("/v1/accounts/{}", encode(a)))?;
        assert_eq!(status, 200, "{body}");
        let mut es = Vec::new();
        entities_of(&body["tree"], &mut es);
        assert_eq!(es[0], ("account".to_string(), a.clone()), "the tree's root is the account");
        assert!(es.iter().any(|(l, _)| l == "team"), "{a} has teams in its tree");
        all.extend(es.into_iter().map(|(l, id)| (l, a.clone(), id)));
    }
    assert!(all.len() >= 40, "{} entities", all.len());

    // 20 of them at random: score, band and each day's close equal replay's at the same tick.
    let mut rng = Rng::new(5);
    let mut checked = 0;
    for _ in 0..20 {
        let (level, account, id) = all[rng.below(all.len() as u64) as usize].clone();
        let path = format!("/v1/entities/{level}/{}/{}", encode(&account), encode(&id));
        let (status, e) = get(&s.base, &path)?;
        assert_eq!(status, 200, "{path}: {e}");
        let as_of = e["as_of_ms"].as_i64().ok_or("as_of_ms")?;
        let records = replayed.get(&(level.clone(), account.clone(), id.clone())).cloned().unwrap_or_default();
        let at = |t: i64| records.iter().rev().find(|(at, ..)| *at <= t).cloned();
        let expected = at(as_of);
        assert_eq!(
            e["score"].as_f64().zip(e["band"].as_str().map(String::from)),
            expected.as_ref().map(|(_, s, b)| (*s, b.clone())),
            "{path} at {as_of}"
        );
        let history = e["history"].as_array().ok_or("history")?;
        assert_eq!(history.len(), 90, "{path}");
        for h in history {
            let date = h["date"].as_str().ok_or("date")?;
            let day = cs_pulse::time::parse_rfc3339(&format!("{date}T00:00:00Z")).ok_or("a date")?;
            // the close of a day: its last tick (the next midnight), or as_of for today
            let close = at((day + DAY).min(as_of)).map(|(_, s, b)| (s, b));
            assert_eq!(h["score"].as_f64().zip(h["band"].as_str().map(String::from)), close, "{path} on {date}");
        }
        checked += 1;
    }
    assert_eq!(checked, 20);

    // Bad requests: the right status and a JSON error each.
    let account = &accounts[0];
    let (_, before) = get(&s.base, &format!("/v1/accounts/{}", encode(account)))?;
    let cases: Vec<(String, Option<String>, u16, &str)> = vec![
        ("/v1/accounts".into(), None, 401, "unauthorized"),
        ("/v1/accounts".into(), Some("Bearer wrong".into()), 401, "unauthorized"),
        ("/v1/accounts".into(), Some(TOKEN.into()), 401, "unauthorized"),
        ("/metrics".into(), None, 401, "unauthorized"),
        ("/v1/nothing-here".into(), None, 401, "unauthorized"),
        ("/v1/accounts/no-such-account".into(), Some(format!("Bearer {TOKEN}")), 404, "unknown_account"),
        (format!("/v1/entities/planet/{account}/x"), Some(format!("Bearer {TOKEN}")), 404, "unknown_level"),
        (format!("/v1/entities/team/{account}/no-such-team"), Some(format!("Bearer {TOKEN}")), 404, "unknown_entity"),
        ("/v1/entities/team/no-such-account/x".into(), Some(format!("Bearer {TOKEN}")), 404, "unknown_account"),
        (format!("/v1/entities/team/{account}"), Some(format!("Bearer {TOKEN}")), 404, "not_found"),
        (format!("/v1/accounts/{account}/extra"), Some(format!("Bearer {TOKEN}")), 404, "not_found"),
        ("/v1/accounts/%FF%FE".into(), Some(format!("Bearer {TOKEN}")), 400, "bad_path"),
        ("/v1/accounts?band=purple".into(), Some(format!("Bearer {TOKEN}")), 400, "bad_query"),
        ("/v1/accounts?sort=size".into(), Some(format!("Bearer {TOKEN}")), 400, "bad_query"),
        ("/v1/accounts?limit=-1".into(), Some(format!("Bearer {TOKEN}")), 400, "bad_query"),
        ("/v1/accounts?colour=red".into(), Some(format!("Bearer {TOKEN}")), 400, "bad_query"),
        ("/accounts/no-such-account".into(), Some(format!("Bearer {TOKEN}")), 404, "unknown_account"),
    ];
    for (path, auth, status, code) in &cases {
        let (got, body) = get_as(&s.base, path, auth.as_deref())?;
        assert_eq!((got, body["error"].as_str()), (*status, Some(*code)), "{path} with {auth:?}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {body}");
        assert!(!body.to_string().contains(TOKEN), "{path}: the token is never echoed");
    }
    // Writes are refused: the API is read-only.
    let resp = agent()
        .post(&format!("{}/v1/accounts/{}", s.base, encode(account)))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send("{}")?;
    assert_eq!(resp.status().as_u16(), 405);
    // The probes need no token.
    assert_eq!(agent().get(&format!("{}/healthz", s.base)).call()?.status().as_u16(), 200);
    assert_eq!(get(&s.base, "/metrics")?.0, 200);
    let (_, after) = get(&s.base, &format!("/v1/accounts/{}", encode(account)))?;
    assert_eq!(before, after, "bad requests changed nothing");
    // The page renders the same account.
    let mut page = agent()
        .get(&format!("{}/accounts/{}", s.base, encode(account)))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()?;
    assert_eq!(page.status().as_u16(), 200);
    let html = page.body_mut().read_to_string()?;
    assert!(html.contains("<svg class=\"spark\""), "sparklines");
    assert!(html.contains(&format!("data-id=\"{account}\"")), "the account's node");
    assert!(
        !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
        "no script, no external asset"
    );
    Ok(())
}
