//! `cs-pulse replay`: the engine over files, no Kafka. For backtesting a health model on
//! history. Files are NDJSON, or Avro object container files when their name ends in
//! `.avro` (read with the schema in their header, resolved against cs-pulse's).
//!
//! Dimension files are loaded first. Usage and support files are each read in their own
//! line order and merged by `occurred_at` (usage first on ties), as one input partition:
//! the watermark is the highest event time so far minus the allowed lateness. At the end
//! of input the watermark moves to the end of the tick interval holding the latest event.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::config::Config;
use crate::decode::avro::container::{Container, ContainerError};
use crate::decode::avro::plan::Decoded;
use crate::decode::{fields, json, Upsert};
use crate::dims::Dimensions;
use crate::driver::{Driver, Sink, Taken};
use crate::engine::{EngineConfig, Outputs};
use crate::model::{Alert, Event, EventInput, Input, InputPartition, Level, Partition, Reason, Rejection, ScoreRecord};
use crate::telemetry::{EventsReceived, LateEventRead, RecordRejected};
use crate::time::WallClock;
use crate::window::WatermarkTracker;

/// Errors of a replay run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// An input file has a format this build cannot read.
    #[error("{path}: {why}")]
    Unsupported {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// Processing a record or a tick failed (a defect in cs-pulse, not in the input).
    #[error("{0}")]
    Failed(String),
}

impl ReplayError {
    /// Whether the error is the user's input (exit 2) rather than a runtime failure.
    pub fn is_usage(&self) -> bool {
        matches!(self, ReplayError::Unsupported { .. })
            || matches!(self, ReplayError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The files of a replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayFiles {
    /// Usage events.
    pub usage: Option<PathBuf>,
    /// Support events.
    pub support: Option<PathBuf>,
    /// Account records.
    pub accounts: Option<PathBuf>,
    /// Team records.
    pub teams: Option<PathBuf>,
    /// Alerts out.
    pub out: PathBuf,
    /// Score records out.
    pub scores: Option<PathBuf>,
    /// Rejected and late input out.
    pub deadletter: Option<PathBuf>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplaySummary {
    /// Events taken into state.
    pub events: u64,
    /// Dimension records applied.
    pub dimension_records: u64,
    /// Events read after their tick was evaluated: applied, or rejected `too_late`.
    pub late: u64,
    /// Rejected records by reason (`too_late` included).
    pub rejected: BTreeMap<String, u64>,
    /// Alerts by kind.
    pub alerts: BTreeMap<String, u64>,
    /// Score records written.
    pub scores: u64,
    /// Ticks evaluated.
    pub ticks: u64,
    /// Account evaluations done (an account at a tick): the engine's work.
    pub evaluations: u64,
    /// The last tick evaluated, epoch ms.
    pub last_tick: Option<i64>,
    /// Changes whose halves paired (time to production measured).
    pub changes_paired: u64,
    /// Halves of changes that expired without a partner.
    pub changes_expired: u64,
}

/// A rejected input line, as written to `--deadletter`.
#[derive(Debug, Serialize)]
struct DeadLetter<'a> {
    source: &'a str,
    file: &'a str,
    line: u64,
    reason: &'static str,
    error: &'a str,
    payload: &'a str,
}

/// An input file: NDJSON lines or an Avro container's records.
struct Lines {
    input: Input,
    path: String,
    reader: Box<dyn BufRead>,
    line_no: u64,
    avro: Option<Container>,
}

/// One record read from a file: its line (or record) number, its text for the dead-letter
/// file (empty for Avro: the number locates it), and what it decoded to.
type Item<T> = (u64, String, Result<T, Rejection>);

impl Lines {
    fn open(input: Input, path: &Path) -> Result<Self, ReplayError> {
        let shown = path.display().to_string();
        let avro = if path.extension().is_some_and(|e| e == "avro") {
            Some(Container::open(path, input).map_err(|e| match e {
                ContainerError::Io(source) => ReplayError::Io { path: shown.clone(), source },
                ContainerError::Format(why) => ReplayError::Unsupported { path: shown.clone(), why },
            })?)
        } else {
            None
        };
        let reader: Box<dyn BufRead> = if avro.is_some() {
            Box::new(std::io::empty())
        } else {
            let f = File::open(path).map_err(|source| ReplayError::Io { path: shown.clone(), source })?;
            Box::new(BufReader::new(f))
        };
        Ok(Self { input, path: shown, reader, line_no: 0, avro })
    }

    /// The next record, decoded by `json` (NDJSON) or `avro` (containers).
    fn next_item<T>(
        &mut self,
        json: impl FnOnce(&[u8]) -> Result<T, Rejection>,
        avro: impl FnOnce(&Decoded<'_>) -> Result<T, Rejection>,
    ) -> Result<Option<Item<T>>, ReplayError> {
        if let Some(c) = &mut self.avro {
            let next = c.next_with(avro).map_err(|e| match e {
                ContainerError::Io(source) => ReplayError::Io { path: self.path.clone(), source },
                ContainerError::Format(why) => ReplayError::Unsupported { path: self.path.clone(), why },
            })?;
            return Ok(next.map(|r| (c.record_no, String::new(), r)));
        }
        Ok(self.next_line()?.map(|(no, line)| {
            let decoded = match std::str::from_utf8(&line) {
                Ok(_) => json(&line),
                Err(e) => Err(Rejection::new(
                    Reason::Undecodable,
                    format!("line is not UTF-8: invalid byte at offset {}", e.valid_up_to()),
                )),
            };
            // The dead-letter file is JSON: a line that is not UTF-8 is written with its
            // invalid bytes replaced; the file and line number locate the original.
            (no, String::from_utf8_lossy(&line).into_owned(), decoded)
        }))
    }

    /// The next non-blank line, as bytes, and its number. A UTF-8 byte-order mark at the
    /// start of the file is skipped.
    fn next_line(&mut self) -> Result<Option<(u64, Vec<u8>)>, ReplayError> {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut buf)
                .map_err(|source| ReplayError::Io { path: self.path.clone(), source })?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let mut line = buf.as_slice();
            if self.line_no == 1 {
                line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
            }
            while let [rest @ .., b'\n' | b'\r'] = line {
                line = rest;
            }
            if !line.trim_ascii().is_empty() {
                return Ok(Some((self.line_no, line.to_vec())));
            }
        }
    }
}

/// A rejected record's place: its file and line (record number for Avro), and its text.
struct LineRef<'a> {
    lines: &'a Lines,
    line: u64,
    payload: &'a str,
}

/// What a replay kept in memory instead of writing it ([`replay_kept`]).
#[derive(Debug, Clone, Default)]
pub struct Kept {
    /// Every alert, in the order written.
    pub alerts: Vec<Alert>,
    /// The accounts' score records (not the other levels'), in the order written.
    pub account_scores: Vec<ScoreRecord>,
}

/// Where replay's outputs go: the `--out`, `--scores` and `--deadletter` files, or memory,
/// and the summary.
struct Files {
    out: Option<(BufWriter<File>, String)>,
    scores: Option<(BufWriter<File>, String)>,
    deadletter: Option<(BufWriter<File>, String)>,
    kept: Option<Kept>,
    /// Print progress to stderr every few seconds (`backtest`).
    progress: Option<Progress>,
    summary: ReplaySummary,
}

/// Progress lines on a long replay.
struct Progress {
    started: std::time::Instant,
    last: std::time::Instant,
}

/// How often a long replay says how far it is.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Progress {
    fn new() -> Self {
        let now = std::time::Instant::now();
        Self { started: now, last: now }
    }

    /// Says how far the replay is, when it last said so long enough ago.
    fn tick(&mut self, events: u64, event_time: i64) {
        if self.last.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last = std::time::Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!(
            "replay: {events} events in {secs:.0} s ({:.0}/s), event time {}",
            events as f64 / secs.max(1e-9),
            crate::time::format_rfc3339(event_time)
        );
    }
}

fn create(path: &Path) -> Result<BufWriter<File>, ReplayError> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|source| ReplayError::Io { path: path.display().to_string(), source })
}

fn write_json(w: &mut BufWriter<File>, path: &str, v: &impl Serialize) -> Result<(), ReplayError> {
    let io = |source| ReplayError::Io { path: path.to_string(), source };
    serde_json::to_writer(&mut *w, v).map_err(|e| io(std::io::Error::other(e)))?;
    w.write_all(b"\n").map_err(io)
}

impl Sink for Files {
    type Origin<'a> = LineRef<'a>;
    type Error = ReplayError;

    fn reject(&mut self, origin: &LineRef<'_>, err: &Rejection) -> Result<(), ReplayError> {
        let src = origin.lines;
        let (line, payload) = (origin.line, origin.payload);
        RecordRejected {
            topic: src.input.as_str(),
            partition: -1,
            offset: line as i64,
            reason: err.reason,
            detail: &err.detail,
        }
        .emit();
        *self.summary.rejected.entry(err.reason().to_string()).or_insert(0) += 1;
        match &mut self.deadletter {
            Some((w, path)) => {
                let dl = DeadLetter {
                    source: src.input.as_str(),
                    file: &src.path,
                    line,
                    reason: err.reason(),
                    error: &err.detail,
                    payload,
                };
                write_json(w, path, &dl)
            }
            None => {
                tracing::warn!(file = %src.path, line, reason = err.reason(), error = %err.detail, "Rejected input line.");
                Ok(())
            }
        }
    }

    fn write(&mut self, out: &mut Outputs, _trigger_ms: Option<i64>) -> Result<(), ReplayError> {
        let summary = &mut self.summary;
        summary.changes_paired += out.paired_ttp_ms.len() as u64;
        summary.changes_expired += out.expired_changes;
        for a in out.alerts.drain(..) {
            *summary.alerts.entry(a.kind.as_str().to_string()).or_insert(0) += 1;
            if let Some((w, path)) = &mut self.out {
                write_json(w, path, &a)?;
            }
            if let Some(kept) = &mut self.kept {
                kept.alerts.push(a);
            }
        }
        summary.scores += out.scores.len() as u64;
        if let Some((w, path)) = &mut self.scores {
            for s in &out.scores {
                write_json(w, path, s)?;
            }
        }
        if let Some(kept) = &mut self.kept {
            kept.account_scores.extend(out.scores.drain(..).filter(|s| s.entity.level == Level::Account));
        }
        summary.ticks += out.ticks;
        summary.evaluations += out.evaluations;
        Ok(())
    }

    fn late(&mut self, origin: &LineRef<'_>) {
        LateEventRead { topic: origin.lines.input.as_str() }.emit();
        self.summary.late += 1;
    }

    fn describe(&self, origin: &LineRef<'_>) -> String {
        format!("{} line {}", origin.lines.path, origin.line)
    }
}

impl Files {
    fn finish(mut self) -> Result<(ReplaySummary, Option<Kept>), ReplayError> {
        for (w, path) in [&mut self.out, &mut self.scores, &mut self.deadletter].into_iter().flatten() {
            w.flush().map_err(|source| ReplayError::Io { path: path.clone(), source })?;
        }
        Ok((self.summary, self.kept))
    }
}

/// One event stream and its next decoded event.
struct Stream {
    lines: Lines,
    input: EventInput,
    head: Option<(u64, String, Event)>,
}

/// Replay's files are one input partition.
const PARTITION: Partition = Partition(0);

impl Stream {
    fn open(input: EventInput, path: &Path) -> Result<Self, ReplayError> {
        Ok(Self { lines: Lines::open(input.input(), path)?, input, head: None })
    }

    /// Reads ahead to the next valid event, dead-lettering invalid lines on the way.
    fn fill(&mut self, driver: &mut Driver<Partition>, files: &mut Files) -> Result<(), ReplayError> {
        while self.head.is_none() {
            let usage = self.input == EventInput::Usage;
            let item = self.lines.next_item(
                |b| if usage { json::decode_usage(Some(b)) } else { json::decode_support(Some(b)) },
                |r| if usage { fields::usage(r) } else { fields::support(r) },
            )?;
            let Some((no, line, decoded)) = item else {
                return Ok(());
            };
            EventsReceived { topic: self.lines.input.as_str(), count: 1 }.emit();
            match decoded {
                Ok(ev) => self.head = Some((no, line, ev)),
                Err(e) => {
                    let at = InputPartition { input: self.input, partition: PARTITION };
                    let origin = LineRef { lines: &self.lines, line: no, payload: &line };
                    driver.reject(at, &origin, &e, WallClock::now(), files)?;
                }
            }
        }
        Ok(())
    }
}

/// Loads a dimension file: account or team records.
fn load_dimension<T>(
    files: &mut Files,
    input: Input,
    path: &Path,
    json: impl Fn(&[u8]) -> Result<Upsert<T>, Rejection>,
    avro: impl Fn(&Decoded<'_>) -> Result<T, Rejection>,
    mut apply: impl FnMut(Upsert<T>),
) -> Result<(), ReplayError> {
    let lines = &mut Lines::open(input, path)?;
    while let Some((no, line, decoded)) = lines.next_item(&json, |r| avro(r).map(Upsert::Put))? {
        match decoded {
            Ok(u) => {
                apply(u);
                files.summary.dimension_records += 1;
            }
            Err(e) => files.reject(&LineRef { lines, line: no, payload: &line }, &e)?,
        }
    }
    Ok(())
}

/// Replays the files through the engine, writing alerts, scores and dead letters to their
/// files.
pub fn replay(cfg: &Config, paths: &ReplayFiles) -> Result<ReplaySummary, ReplayError> {
    let opened = |p: &Option<PathBuf>| -> Result<_, ReplayError> {
        p.as_ref().map(|p| Ok((create(p)?, p.display().to_string()))).transpose()
    };
    let files = Files {
        out: opened(&Some(paths.out.clone()))?,
        scores: opened(&paths.scores)?,
        deadletter: opened(&paths.deadletter)?,
        kept: None,
        progress: None,
        summary: ReplaySummary::default(),
    };
    run(cfg, paths, files).map(|(summary, _)| summary)
}

/// Replays the input files of `paths` through the engine and keeps the alerts and the
/// accounts' score records in memory (for `backtest`). Nothing is written: `out`, `scores`
/// and `deadletter` are not used, and rejected lines are logged as warnings.
pub fn replay_kept(cfg: &Config, paths: &ReplayFiles) -> Result<(ReplaySummary, Kept), ReplayError> {
    let files = Files {
        out: None,
        scores: None,
        deadletter: None,
        kept: Some(Kept::default()),
        progress: Some(Progress::new()),
        summary: ReplaySummary::default(),
    };
    run(cfg, paths, files).map(|(summary, kept)| (summary, kept.unwrap_or_default()))
}

fn run(cfg: &Config, paths: &ReplayFiles, mut files: Files) -> Result<(ReplaySummary, Option<Kept>), ReplayError> {
    let mut dims = Dimensions::default();
    if let Some(p) = &paths.accounts {
        let json = |b: &[u8]| json::decode_account(None, Some(b));
        load_dimension(&mut files, Input::Accounts, p, json, |r| fields::account(r), |u| dims.apply_account(u))?;
    }
    if let Some(p) = &paths.teams {
        let json = |b: &[u8]| json::decode_team(None, Some(b));
        load_dimension(&mut files, Input::Teams, p, json, |r| fields::team(r), |u| dims.apply_team(u))?;
    }
    let mut streams = Vec::new();
    if let Some(p) = &paths.usage {
        streams.push(Stream::open(EventInput::Usage, p)?);
    }
    if let Some(p) = &paths.support {
        streams.push(Stream::open(EventInput::Support, p)?);
    }

    let lateness_ms = cfg.time.allowed_lateness_secs as i64 * 1000;
    // Files have no wall clock: one partition, both inputs merged, that is never idle.
    let watermarks = WatermarkTracker::new(lateness_ms, i64::MAX);
    let engine_cfg = Arc::new(EngineConfig::from_config(cfg));
    let mut driver = Driver::new(engine_cfg, watermarks, |at: InputPartition| at.partition, false);
    loop {
        for s in streams.iter_mut() {
            s.fill(&mut driver, &mut files)?;
        }
        // The earliest head; usage (listed first) wins ties.
        let next =
            streams.iter().enumerate().filter_map(|(i, s)| s.head.as_ref().map(|(_, _, e)| (e.occurred_at(), i))).min();
        let Some((_, i)) = next else { break };
        let stream = &mut streams[i];
        let Some((no, line, ev)) = stream.head.take() else {
            break;
        };
        let at = InputPartition { input: stream.input, partition: PARTITION };
        let origin = LineRef { lines: &stream.lines, line: no, payload: &line };
        match driver.ingest(at, &origin, &ev, &dims, WallClock::now(), &mut files)? {
            Taken::Accepted => {
                files.summary.events += 1;
                if files.summary.events % 65_536 == 0 {
                    let events = files.summary.events;
                    if let Some(p) = &mut files.progress {
                        p.tick(events, ev.occurred_at());
                    }
                }
            }
            Taken::Rejected => {}
            Taken::Skipped => break,
            Taken::Failed(why) => return Err(ReplayError::Failed(why)),
        }
        if let Some((_, why)) = driver.advance(WallClock::now(), usize::MAX, &dims, true, &mut files)?.failed.pop() {
            return Err(ReplayError::Failed(why));
        }
    }
    if let Some((_, why)) = driver.finish(WallClock::now(), &dims, &mut files)?.failed.pop() {
        return Err(ReplayError::Failed(why));
    }
    let last_tick = driver.last_evaluated();
    let (mut summary, kept) = files.finish()?;
    summary.last_tick = last_tick.map(|t| t.0);
    Ok((summary, kept))
}
