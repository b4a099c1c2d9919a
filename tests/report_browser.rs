//! The backtest report in a real browser: Debian's Chromium, headless, with every host
//! name unresolvable (the report must open offline). Its charts render (SVG with content),
//! its scripts raise no error, and a screenshot is not blank. A copy of the report with a
//! broken script shows that the error check can fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn cs_pulse(args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_cs-pulse")).args(args).env("RUST_LOG", "warn").output()?)
}

/// Chromium, headless, offline, with `extra` flags, on `page`: its output.
fn chromium(page: &Path, extra: &[&str]) -> Result<Output> {
    let out = Command::new("chromium")
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .args(["--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0"])
        .args(["--virtual-time-budget=10000"])
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()?;
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(out)
}

/// What the page's scripts got wrong: errors kept on the page and errors on the console.
fn script_errors(page: &Path) -> Result<(String, Vec<String>)> {
    let out = chromium(page, &["--dump-dom"])?;
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
    let stats = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/png_stats.py"))
        .arg(&shot)
        .output()?;
    assert!(stats.status.success(), "{}", String::from_utf8_lossy(&stats.stderr));
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout)?;
    assert!(v["colours"].as_u64().unwrap_or(0) > 50, "{v}");
    assert!(v["not_background"].as_f64().unwrap_or(0.0) > 0.1, "{v}");

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
