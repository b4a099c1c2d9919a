//! The HTTP API of two `cs-pulse run` instances of one group on a real Apache Kafka broker:
//! either instance answers for any account (the other's through a forwarded request, the
//! bearer token carried along), and after the owner is killed with SIGKILL the survivor
//! takes its partitions over and answers from the restored state, history included. While
//! the partitions move, every answer is the restored one or a 503 with `Retry-After`.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

const TOKEN: &str = "two-instances-s3cret";

/// Status, the instance that served it (`x-cs-pulse-served-by`), `Retry-After`, and the
/// JSON body.
fn get(port: u16, path: &str, forwarded: bool) -> Result<(u16, Option<String>, Option<String>, Value)> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent();
    let mut req =
        agent.get(&format!("http://127.0.0.1:{port}{path}")).header("Authorization", &format!("Bearer {TOKEN}"));
    if forwarded {
        req = req.header("x-cs-pulse-forwarded", "1");
    }
    let mut resp = req.call()?;
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from);
    let (served_by, retry) = (header("x-cs-pulse-served-by"), header("retry-after"));
    let status = resp.status().as_u16();
    let body = serde_json::from_str(&resp.body_mut().read_to_string()?).unwrap_or(Value::Null);
    Ok((status, served_by, retry, body))
}

fn ids(list: &Value) -> Vec<String> {
    list["accounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["account_id"].as_str().map(String::from))
        .collect()
}

#[test]
#[ignore = "needs a real Kafka broker: run `bash tests/run-all.sh`"]
fn any_instance_answers_and_the_survivor_answers_from_restored_state() -> Result {
    let bootstrap = broker();
    let names = Names::new("api2");
    let dir = temp_dir(&names)?;
    let group = format!("{}-g", names.prefix);
    let (p1, p2) = (free_port(), free_port());
    let extra = "[alerts]\npolicy = \"focused\"\n[api]\ntoken_env = \"CS_PULSE_TEST_API_TOKEN\"\n";
    let c1 = write_config(&dir, &bootstrap, &names, &group, p1, extra)?;
    let c2 = dir.join("second.toml");
    std::fs::write(&c2, std::fs::read_to_string(&c1)?.replace(&format!("127.0.0.1:{p1}"), &format!("127.0.0.1:{p2}")))?;
    cs_pulse::kafka::admin::create_topics(&cs_pulse::config::Config::load(&c1)?, 4)?;
    let env = [("CS_PULSE_TEST_API_TOKEN", TOKEN)];
    let a = RunProcess::start_with_env(&c1, dir.join("a.log"), p1, &env)?;
    let mut b = RunProcess::start_with_env(&c2, dir.join("b.log"), p2, &env)?;

    // Both instances own partitions, then the history arrives.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // (not listening yet: refused)
        let up = |p| get(p, "/v1/accounts", true).is_ok_and(|(s, ..)| s == 200);
        if up(p1) && up(p2) {
            break;
        }
        assert!(Instant::now() < deadline, "the API did not come up\n{}\n{}", a.log_text(), b.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = cs_pulse()
        .args(["gen", "--accounts", "16", "--teams", "3", "--users", "5", "--days", "30", "--seed", "3"])
        .args(["--ndjson-dir"])
        .arg(&dir)
        .arg("--config")
        .arg(&c1)
        .output()?;
    assert!(out.status.success(), "gen failed: {}", String::from_utf8_lossy(&out.stderr));

    // Settled: all 16 accounts answered through A, with ticks that have stopped moving.
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut last, mut steady) = (Value::Null, 0);
    loop {
        let (status, _, _, list) = get(p1, "/v1/accounts", false)?;
        steady = if status == 200 && ids(&list).len() == 16 && list == last { steady + 1 } else { 0 };
        if steady >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "not settled: {status} {list}\n{}\n{}", a.log_text(), b.log_text());
        last = list;
        std::thread::sleep(Duration::from_secs(1));
    }
    let (_, _, _, mine_a) = get(p1, "/v1/accounts", true)?;
    let (_, _, _, mine_b) = get(p2, "/v1/accounts", true)?;
    let (held_a, held_b) = (ids(&mine_a), ids(&mine_b));
    assert!(!held_a.is_empty() && !held_b.is_empty(), "both hold accounts: {held_a:?} / {held_b:?}");
    assert_eq!(held_a.len() + held_b.len(), 16);

    // A answers for B's account with B's answer, the token carried along.
    let account = &held_b[0];
    let path = format!("/v1/accounts/{account}");
    let (status, served_by, _, via_a) = get(p1, &path, false)?;
    let (_, _, _, from_b) = get(p2, &path, true)?;
    assert_eq!(status, 200, "{via_a}");
    assert_eq!(served_by.as_deref(), Some(format!("http://127.0.0.1:{p2}").as_str()));
    assert_eq!(via_a, from_b, "A relays B's answer");
    let history_days = |v: &Value| {
        v["tree"]["history"].as_array().map(|h| h.iter().filter(|d| d["score"].is_number()).count()).unwrap_or(0)
    };
    assert!(history_days(&from_b) >= 20, "B's answer has history: {}", from_b["tree"]);
    // An entity and the page, forwarded too.
    let team = from_b["tree"]["children"][0].clone();
    let (status, served_by, _, _) = get(p1, &format!("/v1/accounts/{account}"), false)?;
    assert_eq!((status, served_by.is_some()), (200, true));
    let mut leaf = team.clone();
    while let Some(c) = leaf["children"].as_array().and_then(|c| c.first()).cloned() {
        leaf = c;
    }
    let (status, _, _, e) =
        get(p1, &format!("/v1/entities/team/{account}/{}", leaf["id"].as_str().unwrap_or("")), false)?;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["score"], leaf["score"]);
    // An unknown entity of B's account is B's 404, relayed, not a reason to look elsewhere.
    let (status, served_by, _, e) = get(p1, &format!("/v1/entities/team/{account}/no-such-team"), false)?;
    assert_eq!((status, e["error"].as_str(), served_by.is_some()), (404, Some("unknown_entity"), true), "{e}");
    // A missing account is a 404 only once every partition has answered.
    assert_eq!(get(p1, "/v1/accounts/no-such-account", false)?.0, 404);

    // B dies without a goodbye; A takes its partitions over.
    b.child.kill()?;
    b.child.wait()?;
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(180);
    let (mut unavailable, mut retry_after) = (0, true);
    let after = loop {
        let (status, served_by, retry, body) = get(p1, &path, false)?;
        match status {
            200 => {
                assert_eq!(served_by, None, "answered by A itself");
                break body;
            }
            503 => {
                unavailable += 1;
                retry_after &= retry.is_some();
            }
            other => panic!("while partitions move: {other} {body}"),
        }
        assert!(Instant::now() < deadline, "A did not take over\n{}", a.log_text());
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(retry_after, "every 503 says Retry-After");
    assert_eq!(after["tree"], from_b["tree"], "the restored tree, scores, metrics and history equal B's");
    assert_eq!(after["alerts"], from_b["alerts"]);
    assert_eq!(after["as_of"], from_b["as_of"]);
    assert!(history_days(&after) >= 20);
    // The list, once the group has settled without B (503 until then).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, retry, list) = get(p1, "/v1/accounts", false)?;
        if status == 200 {
            assert_eq!(ids(&list).len(), 16, "{list}");
            break;
        }
        assert_eq!((status, retry.is_some()), (503, true), "{list}");
        assert!(Instant::now() < deadline, "the list stayed unavailable: {list}");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "api: forwarded, then taken over {:.1} s after SIGKILL ({unavailable} answers 503 meanwhile)",
        killed.elapsed().as_secs_f64()
    );
    drop(a);
    delete_topics(&bootstrap, &names);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
