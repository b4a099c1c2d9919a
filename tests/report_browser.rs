//! The backtest report and the account page in a real browser: Debian's Chromium,
//! headless, with every host name unresolvable (neither may fetch anything from outside).
//! The report's charts render (SVG with content), its scripts raise no error, and a
//! screenshot is not blank; a copy with a broken script shows that the error check can
//! fail. The account page of a running demo renders its org chart and sparklines with no
//! console error and no script at all.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn cs_pulse(args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_cs-pulse")).args(args).env("RUST_LOG", "warn").output()?)
}

/// Chromium, headless, offline, with `extra` flags, on `page`: its output.
fn chromium(page: &Path, extra: &[&str]) -> Result<Output> {
    chromium_at(&format!("file://{}", page.display()), extra)
}

/// Chromium on a URL (loopback only: every other host name is unresolvable).
fn chromium_at(url: &str, extra: &[&str]) -> Result<Output> {
    let out = Command::new("chromium")
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .args(["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--enable-logging=stderr", "--v=0"])
        .args(["--virtual-time-budget=10000"])
        .args(extra)
        .arg(url)
        .output()?;
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(out)
}

/// What the page's scripts got wrong: errors kept on the page and errors on the console.
fn script_errors(page: &Path) -> Result<(String, Vec<String>)> {
    dom_and_console(&format!("file://{}", page.display()))
}

/// The rendered DOM and the console's errors.
fn dom_and_console(url: &str) -> Result<(String, Vec<String>)> {
    let out = chromium_at(url, &["--dump-dom"])?;
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let console: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains("Uncaught") || l.contains("Error")))
        .map(String::from)
        .collect();
    Ok((dom, console))
}

fn attribute(dom: &str, name: &str) -> Option<String> {
    let html = &dom[dom.find("<html")?..];
    let tag = &html[..html.find('>')?];
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    Some(tag[start..].split('"').next()?.to_string())
}

fn python() -> PathBuf {
    std::env::var_os("CS_PULSE_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| "python3".into())
}

#[test]
#[ignore = "needs Debian's chromium: run `bash tests/run-all.sh`"]
fn the_report_renders_offline_without_script_errors() -> Result {
    let dir = std::env::temp_dir().join(format!("cs-pulse-report-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let d = dir.to_str().ok_or("path")?;
    let gen = cs_pulse(&[
        "gen",
        "--no-kafka",
        "--ndjson-dir",
        d,
        "--accounts",
        "12",
        "--teams",
        "1",
        "--users",
        "3",
        "--days",
        "120",
    ])?;
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
    // a second model that weighs support more
    std::fs::write(dir.join("tuned.toml"), "[health.weights]\nsupport = 40\nutilization = 15\n")?;
    let f = |name: &str| dir.join(name).display().to_string();
    let report = dir.join("report.html");
    let out = cs_pulse(&[
        "backtest",
        "--usage",
        &f("usage.ndjson"),
        "--support",
        &f("support.ndjson"),
        "--accounts",
        &f("accounts.ndjson"),
        "--teams",
        &f("teams.ndjson"),
        "--outcomes",
        &f("outcomes.ndjson"),
        "--report",
        &f("report.html"),
        "--compare-config",
        &f("tuned.toml"),
    ])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&report)?;
    for outside in ["http://", "https://", "src=\"//", "@import"] {
        let allowed = "http://www.w3.org/2000/svg"; // the SVG namespace name, not a fetch
        assert!(!html.replace(allowed, "").contains(outside), "the report refers to {outside}");
    }

    // the charts rendered: one SVG per account on the first page, each with score lines
    let (dom, console) = script_errors(&report)?;
    assert_eq!(attribute(&dom, "data-errors"), None, "script errors on the page");
    assert!(console.is_empty(), "console errors: {console:?}");
    assert_eq!(attribute(&dom, "data-rendered").as_deref(), Some("12"), "one chart per account");
    let lines = dom.matches("<polyline").count();
    assert!(lines >= 24, "each chart draws both models' scores: {lines} lines");
    let points = dom.split("points=\"").skip(1).map(|p| p.split('"').next().unwrap_or("").split(' ').count());
    assert!(points.clone().all(|n| n >= 1) && points.sum::<usize>() > 12 * 100, "score lines have content");
    assert!(dom.contains("class=\"alert\""), "alerts are marked");
    assert!(dom.contains("<table class=\"summary\">") && dom.contains("entry into red"), "the summary table");

    // a screenshot that is not blank
    let shot = dir.join("report.png");
    chromium(&report, &["--window-size=1000,1400", &format!("--screenshot={}", shot.display())])?;
    not_blank(&shot, 50, 0.1)?;

    // the error check can fail: the same report with a script that throws
    let broken = dir.join("broken.html");
    std::fs::write(&broken, html.replacen("<script>", "<script>undefinedFunction();</script><script>", 2))?;
    let (dom, console) = script_errors(&broken)?;
    assert!(
        attribute(&dom, "data-errors").is_some_and(|e| e.contains("undefinedFunction")) || !console.is_empty(),
        "a throwing script is caught"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Checks that a PNG screenshot is not blank: more than `colours` colours, more than
/// `share` of it not background.
fn not_blank(shot: &Path, colours: u64, share: f64) -> Result {
    let stats = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/png_stats.py"))
        .arg(shot)
        .output()?;
    assert!(stats.status.success(), "{}", String::from_utf8_lossy(&stats.stderr));
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout)?;
    assert!(v["colours"].as_u64().unwrap_or(0) > colours, "{v}");
    assert!(v["not_background"].as_f64().unwrap_or(0.0) > share, "{v}");
    Ok(())
}

/// `tests/interop/page_check.py` on a URL: what Playwright saw of the page.
fn page_check(url: &str, shot: Option<&Path>) -> Result<serde_json::Value> {
    let mut cmd = Command::new(python());
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/page_check.py")).arg(url);
    if let Some(s) = shot {
        cmd.arg(s);
    }
    let out = cmd.output()?;
    assert!(out.status.success(), "page_check.py: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
#[ignore = "needs Debian's chromium: run `bash tests/run-all.sh`"]
fn the_account_page_of_a_demo_renders_its_tree_and_sparklines() -> Result {
    let dir = std::env::temp_dir().join(format!("cs-pulse-page-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = dir.join("demo.toml");
    std::fs::write(&config, format!("[metrics]\nbind = \"127.0.0.1:{port}\"\n"))?;
    let mut demo = Command::new(env!("CARGO_BIN_EXE_cs-pulse"))
        .args(["demo", "--duration", "120s", "--days", "30", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let result = (|| -> Result {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
        let base = format!("http://127.0.0.1:{port}");
        // wait for a week of history on the demo's accounts
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(100);
        let tree = loop {
            let body = agent
                .get(&format!("{base}/v1/accounts/globex"))
                .call()
                .ok()
                .and_then(|mut r| (r.status() == 200).then(|| r.body_mut().read_to_string().ok()).flatten());
            let v: serde_json::Value = body.and_then(|b| serde_json::from_str(&b).ok()).unwrap_or_default();
            let days = v["tree"]["history"].as_array().map(|h| h.iter().filter(|d| d["score"].is_number()).count());
            if days.unwrap_or(0) >= 7 {
                break v["tree"].clone();
            }
            assert!(std::time::Instant::now() < deadline, "the demo's API did not answer for globex: {v}");
            std::thread::sleep(std::time::Duration::from_millis(500));
        };
        fn count(n: &serde_json::Value) -> usize {
            1 + n["children"].as_array().map(|c| c.iter().map(count).sum()).unwrap_or(0)
        }
        let entities = count(&tree);
        let url = format!("{base}/accounts/globex");
        let shot = dir.join("page.png");
        let v = page_check(&url, Some(&shot))?;
        assert_eq!(v["errors"], serde_json::json!([]), "console errors or failed loads: {v}");
        assert_eq!(v["scripts"], 0, "readable without JavaScript: there is none");
        assert_eq!(v["nodes"].as_u64(), Some(entities as u64), "one node per entity of the tree: {v}");
        assert_eq!(v["sparks"].as_u64(), Some(entities as u64), "one sparkline per entity: {v}");
        assert!(v["points"].as_u64().unwrap_or(0) >= 7 * entities as u64, "a point per day: {v}");
        let bands: Vec<&str> = ["green", "yellow", "red"]
            .into_iter()
            .filter(|b| tree.to_string().contains(&format!("\"band\":\"{b}\"")))
            .collect();
        assert_eq!(v["bands"], serde_json::json!(bands), "nodes coloured by band: {v}");
        not_blank(&shot, 20, 0.05)?;
        // the check can fail: a copy of the page that loads a missing image
        let mut page = agent.get(&url).call()?;
        let html = page.body_mut().read_to_string()?;
        let broken = dir.join("broken.html");
        std::fs::write(&broken, html.replacen("<h1>", "<img src=\"missing.png\"><h1>", 1))?;
        let v = page_check(&format!("file://{}", broken.display()), None)?;
        assert!(v["errors"].as_array().is_some_and(|e| !e.is_empty()), "a failed load is caught: {v}");
        Ok(())
    })();
    let _ = demo.kill();
    let _ = demo.wait();
    result?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
