//! Golden replay tests: each folder of tests/golden holds input files, a config, and
//! hand-checked expected alerts, scores and dead letters (see its README.md). The test
//! runs the `cs-pulse replay` binary over the inputs and compares projections of its
//! output, as sets, with the expected files.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn rfc3339(ms: &Value) -> Value {
    ms.as_i64().map(|m| json!(cs_pulse::time::format_rfc3339(m))).unwrap_or(Value::Null)
}

fn read_ndjson(path: &Path) -> Result<Vec<Value>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path)?;
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| Ok(serde_json::from_str(l)?)).collect()
}

/// Keeps the fields a golden file pins down.
type Projection = fn(&Value) -> Value;

fn project_alert(a: &Value) -> Value {
    let h = &a["health"];
    json!({
        "kind": a["kind"], "severity": a["severity"],
        "level": a["entity"]["level"], "id": a["entity"]["id"],
        "at": rfc3339(&a["at"]),
        "score": h["score"], "band": h["band"],
        "previous_score": h["previous_score"], "previous_band": h["previous_band"],
    })
}

/// The same, with the lifecycle fields and details, for cases whose expected alerts pin
/// those down.
fn project_alert_full(a: &Value) -> Value {
    let mut v = project_alert(a);
    v["stage"] = a["stage"].clone();
    v["renewal_in_days"] = a["renewal_in_days"].clone();
    v["details"] = a["details"].clone();
    v
}

/// The same, with what a focused alert groups: its conditions, how many triggers, and each
/// trigger listed with its severity (`trigger_N` and `trigger_N_severity`, in order).
fn project_alert_focused(a: &Value) -> Value {
    let mut v = project_alert(a);
    let d = &a["details"];
    v["conditions"] = d["conditions"].clone();
    v["triggers"] = d["triggers"].clone();
    let listed: Vec<Value> = (1..)
        .map_while(|n| {
            let name = d[format!("trigger_{n}")].as_str()?;
            Some(json!(format!("{name}|{}", d[format!("trigger_{n}_severity")].as_str().unwrap_or("?"))))
        })
        .collect();
    v["listed"] = Value::Array(listed);
    v
}

fn project_score(s: &Value) -> Value {
    json!({
        "level": s["entity"]["level"], "id": s["entity"]["id"], "at": rfc3339(&s["at"]),
        "score": s["score"], "band": s["band"], "components": s["components"],
    })
}

fn project_deadletter(d: &Value) -> Value {
    json!({ "source": d["source"], "line": d["line"], "reason": d["reason"] })
}

fn sorted(mut v: Vec<Value>) -> Vec<String> {
    let mut s: Vec<String> = v.drain(..).map(|x| x.to_string()).collect();
    s.sort();
    s
}

/// Replays the case's inputs with `config`, into `out`: (alerts, scores, dead letters).
fn replay(dir: &Path, config: &Path, out: &Path) -> Result<(Vec<Value>, Vec<Value>, Vec<Value>)> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cs-pulse"));
    cmd.arg("replay");
    for input in ["usage", "support", "accounts", "teams"] {
        let f = dir.join(format!("{input}.ndjson"));
        if f.exists() {
            cmd.arg(format!("--{input}")).arg(f);
        }
    }
    let (alerts, scores, dead) = (out.join("alerts.ndjson"), out.join("scores.ndjson"), out.join("dead.ndjson"));
    cmd.arg("--out").arg(&alerts).arg("--scores").arg(&scores).arg("--deadletter").arg(&dead);
    cmd.arg("--config").arg(config);
    let output = cmd.output()?;
    assert!(output.status.success(), "{}: replay failed: {}", dir.display(), String::from_utf8_lossy(&output.stderr));
    let got_alerts = read_ndjson(&alerts)?;
    for a in &got_alerts {
        let reasons = a["reasons"].as_array().ok_or("reasons missing")?;
        assert!(!reasons.is_empty(), "{}: alert without reasons: {a}", dir.display());
        assert!(
            reasons.iter().any(|r| r.as_str().is_some_and(|s| s.chars().any(|c| c.is_ascii_digit()))),
            "{}: reasons name no number: {a}",
            dir.display()
        );
        assert_eq!(a["alert_id"].as_str().map(str::len), Some(32), "{a}");
    }
    Ok((got_alerts, read_ndjson(&scores)?, read_ndjson(&dead)?))
}

fn compare(dir: &Path, file: &str, got: &[Value], project: Projection) -> Result {
    let expected_path = dir.join(file);
    if !expected_path.exists() {
        return Ok(());
    }
    let expected = sorted(read_ndjson(&expected_path)?);
    let got = sorted(got.iter().map(project).collect());
    assert_eq!(got, expected, "{}: {file} differs", dir.display());
    Ok(())
}

/// Replays the case with its config and compares the outputs with the expected files. A
/// case with `expected_alerts_all.ndjson` is replayed again under policy "all" (its config
/// then has no `[alerts]` section), and its alerts compared with that file.
fn run_case(dir: &Path) -> Result {
    let out = tempdir(dir)?;
    let (alerts, scores, dead) = replay(dir, &dir.join("config.toml"), &out)?;
    let expected = std::fs::read_to_string(dir.join("expected_alerts.ndjson")).unwrap_or_default();
    let project: Projection = if expected.contains("\"conditions\"") {
        project_alert_focused
    } else if expected.contains("\"stage\"") {
        project_alert_full
    } else {
        project_alert
    };
    compare(dir, "expected_alerts.ndjson", &alerts, project)?;
    compare(dir, "expected_scores.ndjson", &scores, project_score)?;
    compare(dir, "expected_deadletter.ndjson", &dead, project_deadletter)?;
    if dir.join("expected_alerts_all.ndjson").exists() {
        let config = out.join("config_all.toml");
        let text = std::fs::read_to_string(dir.join("config.toml"))?;
        std::fs::write(&config, format!("{text}\n[alerts]\npolicy = \"all\"\n"))?;
        let all = out.join("all");
        std::fs::create_dir_all(&all)?;
        let (alerts_all, scores_all, _) = replay(dir, &config, &all)?;
        compare(dir, "expected_alerts_all.ndjson", &alerts_all, project_alert)?;
        // The policy chooses alerts only: the scores are the same.
        compare(dir, "expected_scores.ndjson", &scores_all, project_score)?;
    }
    std::fs::remove_dir_all(&out)?;
    Ok(())
}

fn tempdir(case: &Path) -> Result<PathBuf> {
    let name = case.file_name().and_then(|n| n.to_str()).unwrap_or("case");
    let dir = std::env::temp_dir().join(format!("cs-pulse-golden-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn case(name: &str) -> Result {
    run_case(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name))
}

#[test]
fn focused_one_alert_for_a_cascade_across_levels() -> Result {
    case("focused_cascade")
}

#[test]
fn focused_repeats_suppressed_and_decline_corroborated() -> Result {
    case("focused_repeat")
}

#[test]
fn hysteresis_at_every_band_boundary() -> Result {
    case("hysteresis")
}

#[test]
fn unions_across_teams_of_a_group() -> Result {
    case("unions")
}

#[test]
fn trend_left_out_while_the_earlier_week_is_empty() -> Result {
    case("trend")
}

#[test]
fn ticks_one_by_one_when_the_watermark_jumps() -> Result {
    case("watermark_jump")
}

#[test]
fn late_events_count_from_the_next_tick_and_too_late_ones_are_dead_lettered() -> Result {
    case("late")
}

#[test]
fn a_crm_batch_of_tickets_a_day_late_counts_and_alerts() -> Result {
    case("crm_batch")
}

#[test]
fn system_events_without_user_id() -> Result {
    case("system_events")
}

#[test]
fn time_to_production_and_magic_number_regressed() -> Result {
    case("magic_number")
}

#[test]
fn onboarding_alerts_and_the_renewal_raise() -> Result {
    case("onboarding")
}

#[test]
fn champions_reopened_tickets_and_teamless_support() -> Result {
    case("champions_support")
}

#[test]
fn every_case_folder_is_tested() -> Result {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "champions_support",
            "crm_batch",
            "focused_cascade",
            "focused_repeat",
            "hysteresis",
            "late",
            "magic_number",
            "onboarding",
            "system_events",
            "trend",
            "unions",
            "watermark_jump"
        ]
    );
    Ok(())
}
