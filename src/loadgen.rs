//! `cs-pulse gen`: writes a synthetic customer base to a real cluster (and/or NDJSON
//! files), deterministic by seed, at a target rate or as fast as possible.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::kafka::LogContext;

use crate::config::Config;
use crate::generator::{start_for, GenRecord, Generator, Scale};
use crate::model::Input;
use crate::time::DAY_MS;

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Seed: same seed and sizes, same records.
    pub seed: u64,
    /// Size of the customer base.
    pub scale: Scale,
    /// Simulated days.
    pub days: i64,
    /// Stop after this many events (dimension records not counted).
    pub max_events: Option<u64>,
    /// Events per second; `None` for as fast as possible.
    pub rate: Option<f64>,
    /// Produce to Kafka (the config's bootstrap servers and topics).
    pub to_kafka: bool,
    /// Also write `usage.ndjson`, `support.ndjson`, `accounts.ndjson`, `teams.ndjson` here,
    /// and `outcomes.ndjson`: what the accounts did at their renewals (for `backtest`).
    pub ndjson_dir: Option<PathBuf>,
    /// Create missing topics with this many input partitions first.
    pub create_topics: Option<i32>,
    /// Print a progress line every second.
    pub progress: bool,
    /// Event times are the wall clock: each event's `occurred_at` is the moment it is
    /// written (the storylines keep their order, not their days). For latency tests.
    pub live: bool,
    /// Write a realistic history ([`crate::history`]) instead of the storylines.
    pub history: bool,
    /// The first simulated day, epoch ms; `None`: [`start_for`] the days and now.
    pub start: Option<i64>,
}

/// What `gen` writes: the storylines, or a realistic history.
enum Synthetic {
    Storylines(Generator),
    History(Box<crate::history::History>),
}

impl Synthetic {
    fn start_ms(&self) -> i64 {
        match self {
            Synthetic::Storylines(g) => g.start_ms(),
            Synthetic::History(h) => h.start_ms(),
        }
    }
    fn dimension_records(&self) -> Vec<GenRecord> {
        match self {
            Synthetic::Storylines(g) => g.dimension_records(),
            Synthetic::History(h) => h.dimension_records(),
        }
    }
    fn day(&mut self, day: i64) -> Vec<GenRecord> {
        match self {
            Synthetic::Storylines(g) => g.day(day),
            Synthetic::History(h) => h.day(day),
        }
    }
    fn closing_records(&mut self, at: i64) -> Vec<GenRecord> {
        match self {
            Synthetic::Storylines(g) => g.closing_records(at),
            Synthetic::History(h) => h.closing_records(at),
        }
    }
    fn outcomes(&self, days: i64) -> Vec<crate::model::OutcomeRecord> {
        match self {
            Synthetic::Storylines(g) => g.outcomes(days),
            Synthetic::History(h) => h.outcomes(days),
        }
    }
}

/// What `gen` wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenSummary {
    /// Events written (usage and support).
    pub events: u64,
    /// Account and team records written.
    pub dimension_records: u64,
    /// Latest event time written, epoch ms.
    pub last_event_ms: i64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Errors of `gen`.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// Kafka failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A file could not be written.
    #[error("{0}")]
    Io(String),
    /// The brokers could not be reached, or refused the credentials or the TLS handshake.
    #[error("{0}")]
    Connect(#[from] crate::kafka::connect::ConnectError),
    /// The topics could not be created.
    #[error("{0}")]
    Admin(#[from] crate::kafka::admin::AdminError),
}

impl GenError {
    /// The process exit code: 2 for what only a configuration change fixes, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            GenError::Connect(e) => e.exit_code() as u8,
            _ => 1,
        }
    }
}

struct Files {
    usage: BufWriter<File>,
    support: BufWriter<File>,
    accounts: BufWriter<File>,
    teams: BufWriter<File>,
    outcomes: BufWriter<File>,
}

/// The record with its event time moved to now.
fn at_now(mut r: GenRecord) -> GenRecord {
    let now = crate::time::now_ms();
    if let Ok(serde_json::Value::Object(mut o)) = serde_json::from_slice::<serde_json::Value>(&r.payload) {
        o.insert("occurred_at".into(), serde_json::Value::from(now));
        if let Ok(p) = serde_json::to_vec(&o) {
            r.payload = p;
            r.at = now;
        }
    }
    r
}

impl Files {
    fn create(dir: &std::path::Path) -> Result<Self, GenError> {
        std::fs::create_dir_all(dir).map_err(|e| GenError::Io(format!("{}: {e}", dir.display())))?;
        let open = |name: &str| {
            let p = dir.join(name);
            File::create(&p).map(BufWriter::new).map_err(|e| GenError::Io(format!("{}: {e}", p.display())))
        };
        Ok(Self {
            usage: open("usage.ndjson")?,
            support: open("support.ndjson")?,
            accounts: open("accounts.ndjson")?,
            teams: open("teams.ndjson")?,
            outcomes: open("outcomes.ndjson")?,
        })
    }

    fn write_outcomes(&mut self, outcomes: &[crate::model::OutcomeRecord]) -> Result<(), GenError> {
        for o in outcomes {
            serde_json::to_writer(&mut self.outcomes, o).map_err(|e| GenError::Io(e.to_string()))?;
            self.outcomes.write_all(b"\n").map_err(|e| GenError::Io(e.to_string()))?;
        }
        Ok(())
    }

    fn write(&mut self, r: &GenRecord) -> Result<(), GenError> {
        let w = match r.input {
            Input::Usage => &mut self.usage,
            Input::Support => &mut self.support,
            Input::Accounts => &mut self.accounts,
            Input::Teams => &mut self.teams,
        };
        w.write_all(&r.payload).and_then(|_| w.write_all(b"\n")).map_err(|e| GenError::Io(e.to_string()))
    }

    fn flush(&mut self) -> Result<(), GenError> {
        for w in [&mut self.usage, &mut self.support, &mut self.accounts, &mut self.teams, &mut self.outcomes] {
            w.flush().map_err(|e| GenError::Io(e.to_string()))?;
        }
        Ok(())
    }
}

/// Generates and writes.
pub fn run(cfg: &Config, opts: &GenOptions) -> Result<GenSummary, GenError> {
    let started = Instant::now();
    if opts.to_kafka {
        crate::kafka::connect::check_connection(cfg)?;
    }
    if let Some(p) = opts.create_topics.filter(|_| opts.to_kafka) {
        crate::kafka::admin::create_topics(cfg, p)?;
    }
    let producer: Option<BaseProducer<LogContext>> = if opts.to_kafka {
        Some(
            crate::kafka::client_config(cfg)
                .set("linger.ms", "20")
                .set("compression.type", "zstd")
                .set("queue.buffering.max.messages", "1000000")
                .create_with_context(LogContext::default())?,
        )
    } else {
        None
    };
    let mut files = opts.ndjson_dir.as_deref().map(Files::create).transpose()?;
    let topic_of = |i: Input| match i {
        Input::Usage => cfg.topics.usage.as_str(),
        Input::Support => cfg.topics.support.as_str(),
        Input::Accounts => cfg.topics.accounts.as_str(),
        Input::Teams => cfg.topics.teams.as_str(),
    };
    let mut emit = |r: &GenRecord| -> Result<(), GenError> {
        if let Some(p) = &producer {
            loop {
                match p.send(BaseRecord::<str, [u8]>::to(topic_of(r.input)).key(r.key.as_str()).payload(&r.payload)) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        p.poll(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
        }
        if let Some(f) = &mut files {
            f.write(r)?;
        }
        Ok(())
    };
    let start = opts.start.unwrap_or_else(|| start_for(opts.days, crate::time::now_ms()));
    let mut gen = if opts.history {
        Synthetic::History(Box::new(crate::history::History::new(opts.seed, start, opts.scale, opts.days)))
    } else {
        Synthetic::Storylines(Generator::scaled(opts.seed, start, opts.scale))
    };
    let mut summary = GenSummary::default();
    for r in gen.dimension_records() {
        emit(&r)?;
        summary.dimension_records += 1;
    }
    let mut last_progress = Instant::now();
    let mut days_written = opts.days;
    'days: for day in 0..opts.days {
        for r in gen.day(day) {
            if opts.max_events.is_some_and(|m| summary.events >= m) {
                days_written = day + 1;
                break 'days;
            }
            let r = if opts.live { at_now(r) } else { r };
            emit(&r)?;
            summary.events += 1;
            summary.last_event_ms = summary.last_event_ms.max(r.at);
            if let Some(rate) = opts.rate.filter(|r| *r > 0.0) {
                let due = summary.events as f64 / rate;
                let ahead = due - started.elapsed().as_secs_f64();
                if ahead > 0.002 {
                    std::thread::sleep(Duration::from_secs_f64(ahead));
                }
            }
            if summary.events % 4096 == 0 {
                if let Some(p) = &producer {
                    p.poll(Duration::ZERO);
                }
                if opts.progress && last_progress.elapsed() >= Duration::from_secs(1) {
                    last_progress = Instant::now();
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "gen: {} events ({:.0}/s), day {}/{}",
                        summary.events,
                        summary.events as f64 / secs,
                        day + 1,
                        opts.days
                    );
                }
            }
        }
    }
    // Bring every partition's event time to the same end, so that consumers' watermarks
    // meet there: the end of the last day written (stopping early at `--events` does not
    // leave an empty stretch of days for consumers to evaluate). Live event times need
    // no closing: the wall clock moves on.
    if !opts.live {
        let end = summary.last_event_ms.max(gen.start_ms() + days_written * DAY_MS - 1000);
        for r in gen.closing_records(end) {
            emit(&r)?;
            summary.events += 1;
        }
        summary.last_event_ms = end;
    }
    if let Some(p) = &producer {
        p.flush(Duration::from_secs(120))?;
        let (undelivered, first) = p.context().undelivered();
        if undelivered > 0 {
            return Err(GenError::Io(format!(
                "{undelivered} records were not acknowledged by the brokers; the first: {}",
                first.unwrap_or_default()
            )));
        }
    }
    if let Some(f) = &mut files {
        f.write_outcomes(&gen.outcomes(days_written))?;
        f.flush()?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
