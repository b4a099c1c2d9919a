//! Replays the fuzz corpus on every `cargo test`: every file of `fuzz/seeds/<target>/` and
//! of `fuzz/regressions/<target>/` goes through the same target function the libFuzzer
//! binaries run (`fuzz/targets.rs`). A panic in a target fails the test, naming the file.
//! Seeds whose name starts with `valid-` must also still be accepted, so that the corpus
//! keeps reaching past the decoders, and an NDJSON input whose name starts with
//! `timeout-` (a reproducer of a libFuzzer timeout) must replay within
//! [`MAX_EVALUATIONS`] account evaluations: work is counted, not timed. See
//! `fuzz/README.md`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/targets.rs"]
mod targets;

type Target = fn(&[u8]) -> bool;

/// The work a `timeout-*` input may cost: such an input is a few lines, and each event
/// keeps its account evaluated for at most about 90 days of hourly ticks.
const MAX_EVALUATIONS: u64 = 20_000;

/// The account evaluations `replay` does over an NDJSON file given as every input.
fn replay_work(path: &Path) -> Result<u64, String> {
    let dir = std::env::temp_dir().join(format!("cs-pulse-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let p = Some(path.to_path_buf());
    let files = cs_pulse::replay::ReplayFiles {
        usage: p.clone(),
        support: p.clone(),
        accounts: p.clone(),
        teams: p,
        out: dir.join("alerts.ndjson"),
        ..Default::default()
    };
    let summary = cs_pulse::replay::replay(&cs_pulse::config::Config::default(), &files).map_err(|e| e.to_string())?;
    Ok(summary.evaluations)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read corpus directory").path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

fn replay_corpus(name: &str, target: Target) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = files(&root.join("seeds").join(name));
    assert!(!seeds.is_empty(), "fuzz/seeds/{name}/ is empty or missing: the corpus test would prove nothing");
    let regressions = files(&root.join("regressions").join(name));
    let mut failures = Vec::new();
    for path in seeds.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("read corpus file");
        let shown = path.strip_prefix(&root).unwrap_or(path).display().to_string();
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if file_name.starts_with("timeout-") && file_name.ends_with(".ndjson") {
            match replay_work(path) {
                Ok(work) if work > MAX_EVALUATIONS => failures.push(format!(
                    "fuzz/{shown}: {work} account evaluations, over the {MAX_EVALUATIONS} a timeout-* input may cost"
                )),
                Ok(_) => {}
                Err(e) => failures.push(format!("fuzz/{shown}: replay failed: {e}")),
            }
        }
        let result = catch_unwind(AssertUnwindSafe(|| target(&data)));
        match result {
            Ok(accepted) => {
                if file_name.starts_with("valid-") && !accepted {
                    failures.push(format!("fuzz/{shown}: a valid-* seed is no longer accepted"));
                }
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("fuzz/{shown}: panicked: {msg}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus input(s) of target {name} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn json_event_corpus() {
    replay_corpus("json_event", targets::json_event_accepted);
}

#[test]
fn avro_frame_corpus() {
    replay_corpus("avro_frame", targets::avro_frame_accepted);
}

#[test]
fn replay_line_corpus() {
    replay_corpus("replay_line", targets::replay_line_accepted);
}

#[test]
fn config_corpus() {
    replay_corpus("config", targets::config_accepted);
}

/// The plain entry points the fuzz binaries call exist with the documented signatures.
#[test]
fn entry_points_have_fuzz_signatures() {
    let entry: [fn(&[u8]); 4] = [targets::json_event, targets::avro_frame, targets::replay_line, targets::config];
    for f in entry {
        f(b"");
    }
}
