//! Cardinality floods through `replay`: 1,000,000 events that each name a new team of one
//! account, then 1,000,000 that each name a new account. The caps of `[limits]` refuse
//! what is beyond them (dead-lettered `limit`) and bound the memory held. Prints, per
//! flood: events, taken, refused, the dead-letter lines written with reason `limit`, the
//! engine's state at the end, and the process's peak RSS during the flood (VmHWM, reset
//! between floods through /proc/self/clear_refs).
//!
//! `cargo bench --bench cardinality` (optional argument: events per flood). Each flood runs
//! in a process of its own.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

use cs_pulse::config::Config;
use cs_pulse::replay::{replay, ReplayFiles};

/// 2026-03-02T00:00:00Z.
const BASE: i64 = 1_772_409_600_000;

fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

fn write_flood(path: &Path, n: u64, line: impl Fn(u64) -> String) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..n {
        writeln!(w, "{}", line(i))?;
    }
    w.flush()
}

fn flood(name: &str, dir: &Path, n: u64, line: impl Fn(u64) -> String) -> Result<(), Box<dyn std::error::Error>> {
    let usage = dir.join(format!("{name}.ndjson"));
    write_flood(&usage, n, line)?;
    let dead = dir.join(format!("{name}-dead.ndjson"));
    // Peak RSS from here on: the files above are written and dropped.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = status_kib("VmRSS:").unwrap_or(0);
    let started = Instant::now();
    let files = ReplayFiles {
        usage: Some(usage.clone()),
        out: dir.join(format!("{name}-alerts.ndjson")),
        deadletter: Some(dead.clone()),
        ..Default::default()
    };
    let summary = replay(&Config::default(), &files)?;
    let secs = started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:").unwrap_or(0);
    let mut limit_lines = 0u64;
    for l in std::io::BufReader::new(std::fs::File::open(&dead)?).lines() {
        limit_lines += u64::from(l?.contains("\"reason\":\"limit\""));
    }
    let refused = summary.rejected.get("limit").copied().unwrap_or(0);
    println!(
        "{name:<14} {n:>9} events  {:>9} taken  {refused:>9} refused (limit)  {limit_lines:>9} dead-letter lines  {:>7.1} s  RSS before {:>6.1} MiB  peak {:>6.1} MiB{}",
        summary.events,
        secs,
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0,
        if reset { "" } else { " (peak since process start: clear_refs unavailable)" }
    );
    assert_eq!(summary.events + refused, n, "every event taken or refused");
    assert_eq!(refused, limit_lines, "every refusal dead-lettered");
    for f in [usage, dead, files.out] {
        let _ = std::fs::remove_file(f);
    }
    Ok(())
}

/// Each flood runs in a process of its own (this binary again, with `--flood NAME`), so that
/// its peak RSS is its own.
const FLOODS: [&str; 5] = ["new-teams", "new-users", "new-accounts", "teams-spread", "users-spread"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let one = args.iter().position(|a| a == "--flood").and_then(|i| args.get(i + 1));
    let Some(name) = one else {
        let l = Config::default().limits;
        println!(
            "caps: {} accounts, {} teams and {} users per partition; {} teams and {} users per account (defaults)",
            l.max_accounts_per_partition,
            l.max_teams_per_partition,
            l.max_users_per_partition,
            l.max_teams_per_account,
            l.max_users_per_account
        );
        for name in FLOODS {
            let status = std::process::Command::new(std::env::current_exe()?)
                .args(["--flood", name, &n.to_string()])
                .status()?;
            if !status.success() {
                return Err(format!("flood {name} failed: {status}").into());
            }
        }
        return Ok(());
    };
    let dir = std::env::temp_dir().join(format!("cs-pulse-cardinality-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let event = |i: u64, account: String, team: String, user: String| {
        format!(
            r#"{{"event_id":"e{i}","occurred_at":{},"account_id":"{account}","team_id":"{team}","user_id":"{user}","type":"page_view"}}"#,
            BASE + (i as i64) * 2
        )
    };
    match name.as_str() {
        "new-teams" => flood(name, &dir, n, |i| event(i, "acme".into(), format!("team-{i}"), format!("u{}", i % 50)))?,
        "new-users" => {
            flood(name, &dir, n, |i| event(i, "acme".into(), format!("team-{}", i % 20), format!("user-{i}")))?
        }
        "new-accounts" => flood(name, &dir, n, |i| event(i, format!("account-{i}"), "t".into(), "u".into()))?,
        // the same floods spread over 1,000 accounts: the per-partition caps hold them
        "teams-spread" => {
            flood(name, &dir, n, |i| event(i, format!("account-{}", i % 1_000), format!("team-{i}"), "u".into()))?
        }
        "users-spread" => {
            flood(name, &dir, n, |i| event(i, format!("account-{}", i % 1_000), "t".into(), format!("user-{i}")))?
        }
        other => return Err(format!("unknown flood {other}; one of {FLOODS:?}").into()),
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
