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

use crate::avro::container::{Container, ContainerError};
use crate::avro::plan::Decoded;
use crate::avro::Input;
use crate::config::Config;
use crate::decode::{fields, json, DecodeError, Reason, Upsert};
use crate::dims::Dimensions;
use crate::engine::{Engine, EngineConfig, Ingested, Outputs};
use crate::model::Event;
use crate::telemetry::{AlertsEmitted, ChangesMeasured, EventLimited, EventsReceived, RecordRejected};
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
    /// Rejected records by reason (late included).
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
    name: &'static str,
    path: String,
    reader: Box<dyn BufRead>,
    line_no: u64,
    avro: Option<Container>,
}

/// One record read from a file: its line (or record) number, its text for the dead-letter
/// file (empty for Avro: the number locates it), and what it decoded to.
type Item<T> = (u64, String, Result<T, DecodeError>);

impl Lines {
    fn open(name: &'static str, path: &Path, input: Input) -> Result<Self, ReplayError> {
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
        Ok(Self { name, path: shown, reader, line_no: 0, avro })
    }

    /// The next record, decoded by `json` (NDJSON) or `avro` (containers).
    fn next_item<T>(
        &mut self,
        json: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
        avro: impl FnOnce(&Decoded<'_>) -> Result<T, DecodeError>,
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
                Err(e) => Err(DecodeError::new(
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

struct Sinks {
    out: BufWriter<File>,
    out_path: String,
    scores: Option<(BufWriter<File>, String)>,
    deadletter: Option<(BufWriter<File>, String)>,
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

impl Sinks {
    fn reject(
        &mut self,
        summary: &mut ReplaySummary,
        src: &Lines,
        line: u64,
        err: &DecodeError,
        payload: &str,
    ) -> Result<(), ReplayError> {
        RecordRejected { topic: src.name, partition: -1, offset: line as i64, reason: err.reason, detail: &err.detail }
            .emit();
        *summary.rejected.entry(err.reason().to_string()).or_insert(0) += 1;
        match &mut self.deadletter {
            Some((w, path)) => {
                let dl = DeadLetter {
                    source: src.name,
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

    fn write(&mut self, summary: &mut ReplaySummary, out: &mut Outputs) -> Result<(), ReplayError> {
        ChangesMeasured { paired_ttp_ms: &out.paired_ttp_ms, expired: out.expired_changes }.emit();
        summary.changes_paired += out.paired_ttp_ms.len() as u64;
        summary.changes_expired += std::mem::take(&mut out.expired_changes);
        out.paired_ttp_ms.clear();
        AlertsEmitted { alerts: &out.alerts }.emit();
        for a in out.alerts.drain(..) {
            *summary.alerts.entry(a.kind.as_str().to_string()).or_insert(0) += 1;
            write_json(&mut self.out, &self.out_path, &a)?;
        }
        summary.scores += out.scores.len() as u64;
        match &mut self.scores {
            Some((w, path)) => {
                for s in out.scores.drain(..) {
                    write_json(w, path, &s)?;
                }
            }
            None => out.scores.clear(),
        }
        summary.ticks += std::mem::take(&mut out.ticks);
        summary.evaluations += std::mem::take(&mut out.evaluations);
        Ok(())
    }

    fn finish(mut self) -> Result<(), ReplayError> {
        let flush = |w: &mut BufWriter<File>, path: &str| {
            w.flush().map_err(|source| ReplayError::Io { path: path.to_string(), source })
        };
        flush(&mut self.out, &self.out_path)?;
        if let Some((w, p)) = &mut self.scores {
            flush(w, p)?;
        }
        if let Some((w, p)) = &mut self.deadletter {
            flush(w, p)?;
        }
        Ok(())
    }
}

/// One event stream and its next decoded event.
struct Stream {
    lines: Lines,
    input: Input,
    head: Option<(u64, String, Event)>,
}

impl Stream {
    /// Reads ahead to the next valid event, dead-lettering invalid lines on the way.
    fn fill(&mut self, sinks: &mut Sinks, summary: &mut ReplaySummary) -> Result<(), ReplayError> {
        while self.head.is_none() {
            let input = self.input;
            let item = self.lines.next_item(
                |b| if input == Input::Usage { json::decode_usage(Some(b)) } else { json::decode_support(Some(b)) },
                |r| if input == Input::Usage { fields::usage(r) } else { fields::support(r) },
            )?;
            let Some((no, line, decoded)) = item else {
                return Ok(());
            };
            EventsReceived { topic: self.lines.name, count: 1 }.emit();
            match decoded {
                Ok(ev) => self.head = Some((no, line, ev)),
                Err(e) => sinks.reject(summary, &self.lines, no, &e, &line)?,
            }
        }
        Ok(())
    }
}

/// Replays the files through the engine.
pub fn replay(cfg: &Config, files: &ReplayFiles) -> Result<ReplaySummary, ReplayError> {
    let mut summary = ReplaySummary::default();
    let mut sinks = Sinks {
        out: create(&files.out)?,
        out_path: files.out.display().to_string(),
        scores: match &files.scores {
            Some(p) => Some((create(p)?, p.display().to_string())),
            None => None,
        },
        deadletter: match &files.deadletter {
            Some(p) => Some((create(p)?, p.display().to_string())),
            None => None,
        },
    };
    let mut dims = Dimensions::default();
    if let Some(p) = &files.accounts {
        let mut lines = Lines::open("accounts", p, Input::Accounts)?;
        while let Some((no, line, decoded)) =
            lines.next_item(|b| json::decode_account(None, Some(b)), |r| fields::account(r).map(Upsert::Put))?
        {
            match decoded {
                Ok(u) => {
                    dims.apply_account(u);
                    summary.dimension_records += 1;
                }
                Err(e) => sinks.reject(&mut summary, &lines, no, &e, &line)?,
            }
        }
    }
    if let Some(p) = &files.teams {
        let mut lines = Lines::open("teams", p, Input::Teams)?;
        while let Some((no, line, decoded)) =
            lines.next_item(|b| json::decode_team(None, Some(b)), |r| fields::team(r).map(Upsert::Put))?
        {
            match decoded {
                Ok(u) => {
                    dims.apply_team(u);
                    summary.dimension_records += 1;
                }
                Err(e) => sinks.reject(&mut summary, &lines, no, &e, &line)?,
            }
        }
    }
    let mut streams = Vec::new();
    if let Some(p) = &files.usage {
        streams.push(Stream { lines: Lines::open("usage", p, Input::Usage)?, input: Input::Usage, head: None });
    }
    if let Some(p) = &files.support {
        streams.push(Stream { lines: Lines::open("support", p, Input::Support)?, input: Input::Support, head: None });
    }

    let engine_cfg = Arc::new(EngineConfig::from_config(cfg));
    let mut engine = Engine::new(engine_cfg).without_changelog();
    let lateness_ms = cfg.time.allowed_lateness_secs as i64 * 1000;
    // Files have no wall clock: one partition that is never idle.
    let mut watermarks = WatermarkTracker::new(lateness_ms, i64::MAX);
    watermarks.add_partition((), 0);
    let mut out = Outputs::default();
    let now = crate::time::now_ms;
    loop {
        for s in streams.iter_mut() {
            s.fill(&mut sinks, &mut summary)?;
        }
        // The earliest head; usage (listed first) wins ties.
        let next =
            streams.iter().enumerate().filter_map(|(i, s)| s.head.as_ref().map(|(_, _, e)| (e.occurred_at(), i))).min();
        let Some((_, i)) = next else { break };
        let Some((no, line, ev)) = streams[i].head.take() else {
            break;
        };
        let result = engine.ingest_at(&ev, &dims, now(), &mut out);
        match result.rejection(ev.occurred_at()) {
            None => {
                summary.events += 1;
                watermarks.observe(&(), ev.occurred_at(), 0);
            }
            Some(err) => {
                if let Ingested::Limit { level, key, cap } = result {
                    EventLimited { level, key, cap }.emit();
                }
                sinks.reject(&mut summary, &streams[i].lines, no, &err, &line)?;
            }
        }
        if let Some(wm) = watermarks.watermark(0) {
            engine.advance(wm, &dims, now(), &mut out);
        }
        if !out.is_empty() || !out.paired_ttp_ms.is_empty() {
            sinks.write(&mut summary, &mut out)?;
        }
    }
    if let Some(max) = watermarks.max_event_time() {
        engine.advance(engine.end_of_input_watermark(max), &dims, now(), &mut out);
    }
    sinks.write(&mut summary, &mut out)?;
    sinks.finish()?;
    summary.last_tick = engine.last_evaluated();
    Ok(summary)
}
