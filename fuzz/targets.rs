//! Bodies of the cs-pulse fuzz targets, shared by the libFuzzer binaries in
//! `fuzz/fuzz_targets/` and by the stable test `tests/fuzz_corpus.rs`, which replays the
//! committed seeds and regression inputs through them on every `cargo test`.
//!
//! Plain Rust with no libFuzzer types, so that it compiles on stable. A panic (including
//! an arithmetic overflow in a debug build, and a failed `assert!` of an invariant below)
//! is a crash. Each target returns nothing; the `*_accepted` variants say whether the
//! input was accepted, so that the corpus test can check that the `valid-*` seeds still
//! are.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;

use cs_pulse::avro;
use cs_pulse::config::Config;
use cs_pulse::decode::avro::AvroInput;
use cs_pulse::decode::json;
use cs_pulse::decode::Upsert;
use cs_pulse::dims::Dimensions;
use cs_pulse::engine::{Engine, EngineConfig, Outputs};
use cs_pulse::model::Input;
use cs_pulse::model::{AccountRecord, Event, Priority, SupportEvent, SupportKind, TeamRecord, UsageEvent, UsageKind};
use cs_pulse::time::{EventTime, WallClock};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

// ---------------------------------------------------------------------------------------
// Invariants of accepted events and records, whatever their encoding.

fn check_event(ev: &Event) {
    assert!(ev.occurred_at() >= 0, "accepted event with occurred_at < 0: {ev:?}");
    assert!(!ev.event_id().is_empty(), "accepted event with an empty event_id: {ev:?}");
    assert!(!ev.account_id().is_empty(), "accepted event with an empty account_id: {ev:?}");
    match ev {
        Event::Usage(u) => {
            assert!(!u.team_id.is_empty(), "accepted usage event with an empty team_id: {u:?}");
            assert!(!u.event_type.is_empty(), "accepted usage event with an empty type: {u:?}");
            for (name, v) in [
                ("user_id", &u.user_id),
                ("feature", &u.feature),
                ("app_id", &u.app_id),
                ("change_id", &u.change_id),
                ("environment", &u.environment),
            ] {
                assert!(v.as_deref() != Some(""), "accepted usage event with {name} = Some(\"\"): {u:?}");
            }
            let expected = match u.event_type.as_str() {
                "change_created" => UsageKind::ChangeCreated,
                "change_deployed" => UsageKind::ChangeDeployed,
                _ => UsageKind::Other,
            };
            assert_eq!(u.kind, expected, "usage kind does not match type: {u:?}");
            match u.kind {
                UsageKind::ChangeCreated => assert!(u.change_id.is_some(), "change_created without change_id"),
                UsageKind::ChangeDeployed => assert!(
                    u.change_id.is_some() && u.environment.is_some() && u.app_id.is_some(),
                    "change_deployed without change_id/environment/app_id: {u:?}"
                ),
                UsageKind::Other => {}
            }
        }
        Event::Support(s) => {
            for (name, v) in [("team_id", &s.team_id), ("ticket_id", &s.ticket_id), ("user_id", &s.user_id)] {
                assert!(v.as_deref() != Some(""), "accepted support event with {name} = Some(\"\"): {s:?}");
            }
            if s.kind.is_ticket() {
                assert!(s.ticket_id.is_some(), "ticket event without ticket_id: {s:?}");
            }
            if let Some(p) = s.priority {
                assert!((1..=4).contains(&p.0), "priority out of P1..P4: {s:?}");
            }
            if matches!(s.kind, SupportKind::TicketOpened | SupportKind::TicketEscalated) {
                assert!(s.priority.is_some(), "opened/escalated ticket without priority: {s:?}");
            }
            match s.kind {
                SupportKind::CsatResponse => {
                    assert!(s.score.is_some_and(|v| (1..=5).contains(&v)), "csat score out of 1..=5: {s:?}")
                }
                SupportKind::NpsResponse => {
                    assert!(s.score.is_some_and(|v| v <= 10), "nps score out of 0..=10: {s:?}")
                }
                _ => assert!(s.score.is_none(), "score on a non-survey event: {s:?}"),
            }
        }
    }
}

fn check_account(u: &Upsert<AccountRecord>) {
    match u {
        Upsert::Put(a) => {
            assert!(!a.account_id.is_empty(), "accepted account with an empty account_id: {a:?}");
            assert!(a.segment.as_deref() != Some(""), "segment Some(\"\"): {a:?}");
            for t in [a.contract_start, a.renewal_date].into_iter().flatten() {
                assert!(t >= 0, "accepted account with a time < 0: {a:?}");
            }
            assert!(a.seats.is_none_or(|s| s <= i64::MAX as u64), "seats above i64::MAX: {a:?}");
        }
        Upsert::Delete(k) => assert!(!k.is_empty(), "tombstone with an empty key"),
    }
}

fn check_team(u: &Upsert<TeamRecord>) {
    match u {
        Upsert::Put(t) => {
            assert!(!t.team_id.is_empty(), "accepted team with an empty team_id: {t:?}");
            assert!(!t.account_id.is_empty(), "accepted team with an empty account_id: {t:?}");
            for (name, v) in [("group", &t.group), ("business_unit", &t.business_unit), ("division", &t.division)] {
                assert!(v.as_deref() != Some(""), "accepted team with {name} = Some(\"\"): {t:?}");
            }
            assert!(t.seats.is_none_or(|s| s <= i64::MAX as u64), "seats above i64::MAX: {t:?}");
        }
        Upsert::Delete(k) => assert!(!k.is_empty(), "tombstone with an empty key"),
    }
}

/// Splits off a selector byte and, for records, a record key: `[sel, key_len, key.., rest..]`.
/// A `key_len` of 0xff means "no key"; the key is clamped to what is there.
fn key_and_rest(data: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match data {
        [] => (None, data),
        [0xff, rest @ ..] => (None, rest),
        [n, rest @ ..] => {
            let n = usize::from(*n).min(rest.len());
            (Some(&rest[..n]), &rest[n..])
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1. JSON events and records.

/// `data[0] % 4` picks the decoder (usage, support, account, team); the rest is the JSON
/// message. Accounts and teams take a key: `[sel, key_len, key.., json..]`; a message of
/// exactly `null` is passed as a tombstone (`None`).
pub fn json_event(data: &[u8]) {
    let _ = json_event_accepted(data);
}

/// [`json_event`], saying whether the message was accepted.
pub fn json_event_accepted(data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else { return false };
    match sel % 4 {
        0 => json::decode_usage(Some(rest)).inspect(check_event).is_ok(),
        1 => json::decode_support(Some(rest)).inspect(check_event).is_ok(),
        sel => {
            let (key, body) = key_and_rest(rest);
            let body = (body != b"null").then_some(body);
            if sel == 2 {
                let r = json::decode_account(key, body);
                if let Ok(u) = &r {
                    check_account(u);
                }
                r.is_ok()
            } else {
                let r = json::decode_team(key, body);
                if let Ok(u) = &r {
                    check_team(u);
                }
                r.is_ok()
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. Avro, Confluent wire format, no registry (cs-pulse's own schemas as writer schemas).

fn avro_decode(input: Input, key: Option<&[u8]>, msg: Option<&[u8]>) -> bool {
    let mut dec = AvroInput::new(input, None);
    match input {
        Input::Usage => dec.usage(msg).inspect(check_event).is_ok(),
        Input::Support => dec.support(msg).inspect(check_event).is_ok(),
        Input::Accounts => {
            let r = dec.account(key, msg);
            if let Ok(u) = &r {
                check_account(u);
            }
            r.is_ok()
        }
        Input::Teams => {
            let r = dec.team(key, msg);
            if let Ok(u) = &r {
                check_team(u);
            }
            r.is_ok()
        }
    }
}

/// Input layout: `[sel, ...]`.
/// - `sel & 0x80 == 0` (raw): the rest is a whole Kafka message value, header included.
///   `split_frame` runs on it, and it is decoded as input `sel % 4`.
/// - `sel & 0x80 != 0` (framed): the rest is an Avro *body*; it is framed with
///   `avro::frame(id, body)` (schema id from `sel`) so the fuzzer reaches the body decoder,
///   then decoded as input `sel % 4`.
///
/// Accounts and teams also take a record key first: `[sel, key_len, key.., rest..]`
/// (`key_len` 0xff: no key); a raw empty rest is passed as a tombstone (`None`).
pub fn avro_frame(data: &[u8]) {
    let _ = avro_frame_accepted(data);
}

/// [`avro_frame`], saying whether the message was accepted.
pub fn avro_frame_accepted(data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else { return false };
    let input = [Input::Usage, Input::Support, Input::Accounts, Input::Teams][usize::from(sel % 4)];
    let (key, rest) = if matches!(input, Input::Accounts | Input::Teams) { key_and_rest(rest) } else { (None, rest) };
    if sel & 0x80 == 0 {
        // The header check, on arbitrary bytes.
        if let Ok((id, body)) = avro::split_frame(rest) {
            assert_eq!(rest.first(), Some(&0), "split_frame accepted a message without magic byte 0");
            assert_eq!(body.len() + 5, rest.len(), "split_frame returned a body of the wrong length");
            assert_eq!(avro::frame(id, body), rest, "frame(split_frame(m)) != m");
        } else {
            assert!(rest.len() < 5 || rest[0] != 0, "split_frame refused a well-formed header");
        }
        let msg = if rest.is_empty() && key.is_some() { None } else { Some(rest) };
        avro_decode(input, key, msg)
    } else {
        let id = u32::from((sel >> 2) & 0x1f);
        let framed = avro::frame(id, rest);
        assert_eq!(avro::split_frame(&framed).ok(), Some((id, rest)), "split_frame(frame(id, b)) != (id, b)");
        avro_decode(input, key, Some(&framed))
    }
}

// ---------------------------------------------------------------------------------------
// 3. `replay` over NDJSON (or Avro container) files.

/// A per-process, per-thread scratch path; overwritten by every run.
fn scratch(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static ID: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    let tid = ID.with(|id| *id);
    std::env::temp_dir().join(format!("cs-pulse-fuzz-{}-{tid}-{name}", std::process::id()))
}

/// The bytes are one NDJSON file, given to `replay` as the usage, support, accounts and
/// teams input at once (every line is tried as each kind; the wrong kinds are
/// dead-lettered). Bytes that start like an Avro object container (`Obj\x01`) are written
/// to a `.avro` file instead, which `replay` reads as a container: then it runs four
/// times, the file being each of the four inputs in turn (a container holds one record
/// type). An `Err` is fine; a panic is a crash.
pub fn replay_line(data: &[u8]) {
    let _ = replay_line_accepted(data);
}

/// [`replay_line`], saying whether a `replay` returned `Ok` having taken at least one
/// event or dimension record.
pub fn replay_line_accepted(data: &[u8]) -> bool {
    use cs_pulse::replay::ReplayFiles;
    if data.starts_with(b"Obj\x01") {
        let input = scratch("input.avro");
        if std::fs::write(&input, data).is_err() {
            return false;
        }
        let one = |slot: usize| {
            let mut f = replay_files();
            let p = Some(input.clone());
            match slot {
                0 => f.usage = p,
                1 => f.support = p,
                2 => f.accounts = p,
                _ => f.teams = p,
            }
            run_replay(&f)
        };
        // No short-circuit: every input kind reads the container.
        (0..4).map(one).fold(false, |a, b| a | b)
    } else {
        let input = scratch("input.ndjson");
        if std::fs::write(&input, data).is_err() {
            return false;
        }
        let p = Some(input);
        run_replay(&ReplayFiles {
            usage: p.clone(),
            support: p.clone(),
            accounts: p.clone(),
            teams: p,
            ..replay_files()
        })
    }
}

fn replay_files() -> cs_pulse::replay::ReplayFiles {
    cs_pulse::replay::ReplayFiles {
        out: scratch("alerts.ndjson"),
        scores: Some(scratch("scores.ndjson")),
        deadletter: Some(scratch("deadletter.ndjson")),
        ..Default::default()
    }
}

fn run_replay(files: &cs_pulse::replay::ReplayFiles) -> bool {
    match cs_pulse::replay::replay(&Config::default(), files) {
        Ok(summary) => {
            if let Some(t) = summary.last_tick {
                assert!(t % HOUR_MS == 0, "last tick {t} is not a multiple of the 1h interval");
            }
            summary.events + summary.dimension_records > 0
        }
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------------------
// 4. Configuration.

/// Removes every `CS_PULSE_*` variable once, so that the environment cannot change what
/// a TOML text means.
fn clean_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CS_PULSE_") {
                std::env::remove_var(k);
            }
        }
    });
}

/// The milliseconds of a `*_secs` value, when they fit an `i64`.
fn secs_to_ms(secs: u64) -> Option<i64> {
    i64::try_from(secs).ok()?.checked_mul(1000)
}

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn usage_ev(id: &str, at: i64, kind: UsageKind, event_type: &str) -> Event {
    Event::Usage(UsageEvent {
        event_id: id.to_string(),
        occurred_at: at,
        account_id: "acct-1".into(),
        team_id: "team-1".into(),
        user_id: Some("user-1".into()),
        event_type: event_type.into(),
        kind,
        feature: Some("dashboards".into()),
        app_id: Some("app-1".into()),
        change_id: Some("change-1".into()),
        environment: Some("production".into()),
    })
}

/// UTF-8 bytes are a TOML configuration. When `Config::from_toml` accepts it, the
/// configuration must be usable: `to_toml` round-trips to an equal configuration, the
/// engine's millisecond durations are exact (no overflow, no wrap), and a small engine run
/// (three events in January 2026, then a few days of ticks) panics nowhere and writes
/// scores in 0..=100.
pub fn config(data: &[u8]) {
    let _ = config_accepted(data);
}

/// [`config`], saying whether the configuration was accepted.
pub fn config_accepted(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    clean_env();
    let Ok(cfg) = Config::from_toml(text, "fuzz") else { return false };

    let rendered = cfg.to_toml();
    match Config::from_toml(&rendered, "fuzz-roundtrip") {
        Ok(again) => assert_eq!(again, cfg, "to_toml does not round-trip; rendered:\n{rendered}"),
        Err(e) => panic!("to_toml output does not parse again: {e}\nrendered:\n{rendered}"),
    }

    let ecfg = EngineConfig::from_config(&cfg);
    for (key, secs, ms) in [
        ("time.evaluation_interval_secs", cfg.time.evaluation_interval_secs, ecfg.interval_ms),
        ("health.warmup_secs", cfg.health.warmup_secs, ecfg.warmup_ms),
        ("magic_number.pending_ttl_secs", cfg.magic_number.pending_ttl_secs, ecfg.pending_ttl_ms),
    ] {
        assert_eq!(secs_to_ms(secs), Some(ms), "accepted {key} = {secs} does not fit in i64 ms (engine has {ms})");
    }
    assert!(secs_to_ms(cfg.time.allowed_lateness_secs).is_some(), "accepted time.allowed_lateness_secs overflows ms");
    assert!(ecfg.interval_ms > 0 && ecfg.granularity_ms > 0, "engine interval {ecfg:?} not positive");
    assert!(DAY_MS % ecfg.granularity_ms == 0 && ecfg.interval_ms % ecfg.granularity_ms == 0, "bad granularity");

    let interval = ecfg.interval_ms;
    let mut engine = Engine::new(Arc::new(ecfg));
    let mut dims = Dimensions::default();
    dims.apply_account(Upsert::Put(AccountRecord {
        account_id: "acct-1".into(),
        name: Some("Acme".into()),
        segment: cfg.health.segments.keys().next().cloned().or_else(|| Some("enterprise".into())),
        seats: Some(10),
        contract_start: Some(T0 - 10 * DAY_MS),
        renewal_date: Some(T0 + 300 * DAY_MS),
    }));
    dims.apply_team(Upsert::Put(TeamRecord {
        team_id: "team-1".into(),
        account_id: "acct-1".into(),
        name: Some("Platform".into()),
        group: Some("Engineering".into()),
        business_unit: Some("Product".into()),
        division: Some("Technology".into()),
        seats: Some(5),
    }));
    let events = [
        usage_ev("u1", T0 + 5 * 60_000, UsageKind::ChangeCreated, "change_created"),
        usage_ev("u2", T0 + 3 * HOUR_MS, UsageKind::ChangeDeployed, "change_deployed"),
        Event::Support(SupportEvent {
            event_id: "s1".into(),
            occurred_at: T0 + 4 * HOUR_MS,
            account_id: "acct-1".into(),
            team_id: Some("team-1".into()),
            kind: SupportKind::TicketOpened,
            ticket_id: Some("ticket-1".into()),
            priority: Some(Priority(1)),
            score: None,
            user_id: None,
        }),
    ];
    let mut out = Outputs::default();
    let emitted_at = T0 + DAY_MS;
    for ev in &events {
        engine.ingest(ev, &dims, WallClock(emitted_at), &mut out);
    }
    let last = events.iter().map(Event::occurred_at).max().unwrap_or(T0);
    // At most ~14 days of hourly ticks; a shorter interval runs 3 ticks.
    let (horizon, budget) =
        if interval >= HOUR_MS { (14 * DAY_MS, 14 * 24 + 2) } else { (interval.saturating_mul(3), 3) };
    let watermark = engine.end_of_input_watermark(EventTime(last)).0.saturating_add(horizon);
    engine.advance_at_most(EventTime(watermark), budget, &dims, WallClock(emitted_at), &mut out);
    for s in &out.scores {
        assert!(s.score.is_finite() && (0.0..=100.0).contains(&s.score), "score out of 0..=100: {s:?}");
        for (name, c) in &s.components {
            assert!(c.is_finite(), "component {name} is not finite: {s:?}");
        }
    }
    true
}
