//! The `cs-pulse` binary: command-line parsing and the async edge (signals, metrics
//! endpoint) around the synchronous pipeline.

/// glibc malloc took about a third of `run`'s time in profiles; mimalloc is far faster
/// for the many small, short-lived allocations of decoding and evaluation.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};

use cs_pulse::api::directory::Directory;
use cs_pulse::config::{Config, ConfigError};
use cs_pulse::{demo, pipeline, replay, telemetry};

/// cs-pulse: real-time customer health on Kafka.
///
/// Consumes product-usage and support events, keeps event-time windowed adoption
/// aggregates per team rolled up the customer's org chart, scores health with an
/// explainable model and publishes health-change alerts to a Kafka risk topic.
#[derive(Parser, Debug)]
#[command(name = "cs-pulse", version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "\
Examples:
  cs-pulse demo                                   # everything in-process, nothing installed
  cs-pulse run --config cs-pulse.toml             # the service, against your Kafka
  cs-pulse replay --usage u.ndjson --support s.ndjson --accounts a.ndjson \\
                  --teams t.ndjson --out alerts.ndjson --scores scores.ndjson
  cs-pulse check-config --config cs-pulse.toml    # validate and print the effective config

Environment: CS_PULSE_BOOTSTRAP_SERVERS, CS_PULSE_GROUP_ID, CS_PULSE_METRICS_BIND,
CS_PULSE_LOG_FORMAT and CS_PULSE_SCHEMA_REGISTRY_URL override the config (registry basic
auth: CS_PULSE_SCHEMA_REGISTRY_USERNAME and _PASSWORD); RUST_LOG sets the log level
(default info). Secrets in the config are ${VAR} references
to the environment, e.g. \"sasl.password\" = \"${CS_PULSE_KAFKA_PASSWORD}\".
Exit codes: 0 ok, 2 usage or configuration error (also refused credentials or an
untrusted certificate), 1 runtime failure (also brokers that do not answer in time).";

/// The history files `replay` and `backtest` read.
#[derive(clap::Args, Debug)]
struct History {
    /// Usage events.
    #[arg(long)]
    usage: Option<PathBuf>,
    /// Support and feedback events.
    #[arg(long)]
    support: Option<PathBuf>,
    /// Account records.
    #[arg(long)]
    accounts: Option<PathBuf>,
    /// Team records.
    #[arg(long)]
    teams: Option<PathBuf>,
}

impl History {
    /// The files of a replay, writing alerts to `out` (`backtest` writes none).
    fn files(self, out: PathBuf) -> replay::ReplayFiles {
        let History { usage, support, accounts, teams } = self;
        replay::ReplayFiles { usage, support, accounts, teams, out, ..Default::default() }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service: consume, aggregate, score, alert and serve metrics.
    ///
    /// Joins the consumer group `kafka.group_id` on the usage and support topics (which
    /// must be co-partitioned), loads the account and team tables from their compacted
    /// topics, and writes alerts, scores and dead letters. Stops cleanly on SIGTERM or
    /// SIGINT: finishes the batch, commits, leaves the group.
    Run {
        /// TOML configuration file (every key is optional; see `check-config`).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run the whole pipeline on an in-process mock Kafka cluster with synthetic customers.
    ///
    /// Nothing needs to be installed. Alerts are printed as they fire; metrics are served
    /// on 127.0.0.1:9464 (metrics.bind) while it runs.
    Demo {
        /// How long to run (e.g. 45s, 2m).
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Seed of the synthetic customer base: same seed, same events.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Simulated days to stream.
        #[arg(long, default_value_t = 60)]
        days: i64,
        /// Optional configuration (health model, topics, metrics.bind).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run the engine over files, without Kafka, for backtesting a health model.
    ///
    /// Inputs are NDJSON, one object per line, or Avro object container files when the
    /// name ends in `.avro`. Dimension files load first; usage and
    /// support are merged by occurred_at. Any input flag may be omitted.
    Replay {
        #[command(flatten)]
        history: History,
        /// Where to write alerts (NDJSON).
        #[arg(long)]
        out: PathBuf,
        /// Where to write score records (NDJSON), when wanted.
        #[arg(long)]
        scores: Option<PathBuf>,
        /// Where to write rejected input lines (too late, future, invalid...) with their reasons (NDJSON).
        /// Without it they are logged as warnings.
        #[arg(long)]
        deadletter: Option<PathBuf>,
        /// Optional configuration (health model, time settings).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Replay history and measure whether the health model foretold churn.
    ///
    /// Replays the usage, support, account and team files through the same engine as
    /// `run`, then compares its alerts and account scores with what customers did
    /// (--outcomes: NDJSON lines, or an Avro container file by its .avro extension, of
    /// account_id, at (epoch ms or RFC 3339) and outcome, one of renewed, expanded,
    /// contracted, churned). Prints, for entries into red, the first critical alert and
    /// each alert kind and severity: volume per account per month, precision and recall
    /// against churn within --horizon-days after the signal, and the median lead time in
    /// days; and the ROC AUC of the account score 90 days before each outcome (churned,
    /// and contracted, against renewed and expanded). Says how far the replay is every
    /// 5 s on stderr.
    ///
    /// --report writes all of it as one HTML file that opens offline, with a health
    /// timeline per account (its daily score, alerts and outcome). --compare-config
    /// replays the history a second time with another model and sets the two side by
    /// side, so that a weight or threshold change can be judged by what it foretells.
    ///
    /// Example:
    ///   cs-pulse gen --no-kafka --ndjson-dir hist --accounts 200 --days 365
    ///   cs-pulse backtest --usage hist/usage.ndjson --support hist/support.ndjson \
    ///     --accounts hist/accounts.ndjson --teams hist/teams.ndjson \
    ///     --outcomes hist/outcomes.ndjson --report report.html --compare-config tuned.toml
    #[command(verbatim_doc_comment)]
    Backtest {
        #[command(flatten)]
        history: History,
        /// What customers did (NDJSON).
        #[arg(long)]
        outcomes: PathBuf,
        /// Days after a signal within which a churn counts as foretold.
        #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(i64).range(1..=3650))]
        horizon_days: i64,
        /// Write the HTML report here: summary table and a health timeline per account.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// A second configuration (another health model) to backtest side by side.
        #[arg(long, value_name = "FILE")]
        compare_config: Option<PathBuf>,
        /// Also write the summary as JSON here, for tools (with --compare-config, the
        /// second model's under "compared").
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Optional configuration (health model, time settings).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Write a synthetic customer base to a real Kafka cluster (a load generator).
    ///
    /// Deterministic by seed: the same seed and sizes give the same records. Writes account
    /// and team records first, then usage and support events day by day, then one closing
    /// event per account at the end so that every partition's event time reaches it.
    Gen {
        /// Kafka brokers (overrides the config and CS_PULSE_BOOTSTRAP_SERVERS).
        #[arg(long, value_name = "HOST:PORT")]
        bootstrap_servers: Option<String>,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Number of accounts.
        #[arg(long, default_value_t = 20)]
        accounts: u64,
        /// Teams per account.
        #[arg(long, default_value_t = 5)]
        teams: u64,
        /// Users per team.
        #[arg(long, default_value_t = 10)]
        users: u64,
        /// Simulated days.
        #[arg(long, default_value_t = 42)]
        days: i64,
        /// Stop after this many events.
        #[arg(long)]
        events: Option<u64>,
        /// Target events per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        /// Create missing topics first, with this many input partitions.
        #[arg(long, value_name = "PARTITIONS")]
        create_topics: Option<i32>,
        /// Also write the records as NDJSON files into this folder (for `replay`), and
        /// outcomes.ndjson: what the accounts did at their renewals (for `backtest`).
        #[arg(long, value_name = "DIR")]
        ndjson_dir: Option<PathBuf>,
        /// Write only the NDJSON files, not to Kafka.
        #[arg(long, requires = "ndjson_dir")]
        no_kafka: bool,
        /// Stamp each event with the wall clock as it is written, instead of the simulated
        /// days (for latency tests: ticks then come once an hour, as in production).
        #[arg(long)]
        live: bool,
        /// Write a realistic history to backtest on instead of the storylines: each
        /// account's hidden health drifts and takes shocks, shows only through noisy
        /// events (weekly cycles, holidays, turnover, over-provisioned seats, product-wide
        /// incidents), and churn is drawn at renewals from it. --teams is the most teams
        /// an account has, --users about the users of a team.
        #[arg(long, conflicts_with = "live")]
        history: bool,
        /// The first simulated day's midnight (RFC 3339, e.g. 2026-11-28T00:00:00Z, or epoch
        /// ms). Default: 2026-01-01, or earlier when the days would otherwise run past now.
        #[arg(long, value_parser = parse_time)]
        start: Option<i64>,
        /// Optional configuration (topic names, kafka.client properties).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn parse_time(s: &str) -> Result<i64, String> {
    s.trim()
        .parse::<i64>()
        .ok()
        .or_else(|| cs_pulse::time::parse_rfc3339(s.trim()))
        .filter(|t| (0..=cs_pulse::time::MAX_TIME_MS).contains(t))
        .ok_or_else(|| format!("'{s}' is not an RFC 3339 time or epoch milliseconds after 1970"))
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    cs_pulse::time::parse_duration(s)
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None => Config::from_env(),
    }
}

/// Logging for commands whose output is not the log: warnings only, unless `RUST_LOG`
/// says otherwise.
fn init_quiet_logging(cfg: &Config) {
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    telemetry::init_logging(cfg.log.format);
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn runtime_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

/// Sets `flag` on SIGINT or SIGTERM.
fn install_signal_handler(rt: &tokio::runtime::Runtime, flag: Arc<AtomicBool>) {
    rt.spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                tracing::warn!("Cannot install signal handlers.");
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("Shutdown requested: finishing the batch.");
        flag.store(true, Ordering::SeqCst);
    });
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return runtime_error(format!("cannot start runtime: {e}")),
    };
    match cli.command {
        Command::CheckConfig { config } => match load_config(config.as_ref()) {
            Ok(cfg) => {
                print!("{}", cfg.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        },
        Command::Replay { history, out, scores, deadletter, config } => {
            // Replay reads files: the Kafka settings' ${VAR} references need not be set.
            let loaded = match config.as_ref() {
                Some(p) => Config::load_offline(p),
                None => Config::from_env(),
            };
            let cfg = match loaded {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            // Alerts go to --out; keep the terminal to warnings and the summary.
            init_quiet_logging(&cfg);
            let files = replay::ReplayFiles { scores, deadletter, ..history.files(out) };
            match replay::replay(&cfg, &files) {
                Ok(summary) => {
                    let line = serde_json::to_string(&summary).unwrap_or_default();
                    eprintln!("replay summary: {line}");
                    ExitCode::SUCCESS
                }
                Err(e) if e.is_usage() => usage_error(e),
                Err(e) => runtime_error(e),
            }
        }
        Command::Backtest { history, outcomes, horizon_days, report, compare_config, json, config } => {
            let load = |p: Option<&PathBuf>| match p {
                Some(p) => Config::load_offline(p),
                None => Config::from_env(),
            };
            let cfg = match load(config.as_ref()) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            let second = match compare_config.as_ref().map(|p| load(Some(p))).transpose() {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            init_quiet_logging(&cfg);
            // An output that cannot be written is said before a long replay, not after; one
            // created only to check is removed again if the backtest fails.
            let mut created = Vec::new();
            for path in report.iter().chain(json.iter()) {
                let existed = path.exists();
                if let Err(e) = std::fs::OpenOptions::new().append(true).create(true).open(path) {
                    return usage_error(format!("{}: {e}", path.display()));
                }
                if !existed {
                    created.push(path.clone());
                }
            }
            let clean_up = || created.iter().for_each(|p| drop(std::fs::remove_file(p)));
            let inputs = history.files(PathBuf::new());
            let opts =
                cs_pulse::backtest::BacktestOptions { inputs, outcomes, horizon_days, timelines: report.is_some() };
            let name = |p: Option<&PathBuf>| p.map_or_else(|| "default model".to_string(), |p| p.display().to_string());
            let mut models = Vec::new();
            let mut runs = vec![(&cfg, config.as_ref())];
            if let (Some(c), Some(p)) = (second.as_ref(), compare_config.as_ref()) {
                runs.push((c, Some(p)));
            }
            if second.is_some() {
                eprintln!(
                    "backtest: replaying the history with {} and with {} side by side",
                    name(config.as_ref()),
                    name(compare_config.as_ref())
                );
            }
            // Two models replay on two threads: the replays share nothing but the inputs.
            let results: Vec<Option<Result<cs_pulse::backtest::Backtest, cs_pulse::backtest::BacktestError>>> =
                std::thread::scope(|scope| {
                    // The main thread's stack size, not a spawned thread's default.
                    let thread = || std::thread::Builder::new().stack_size(8 << 20);
                    let handles: Vec<_> = runs
                        .iter()
                        .map(|(c, _)| thread().spawn_scoped(scope, || cs_pulse::backtest::run(c, &opts)).ok())
                        .collect();
                    handles.into_iter().map(|h| h.and_then(|h| h.join().ok())).collect()
                });
            for ((c, path), result) in runs.into_iter().zip(results) {
                match result {
                    Some(Ok(b)) => models.push((name(path), c.health.bands.clone(), b)),
                    Some(Err(e)) => {
                        clean_up();
                        return if e.is_usage() { usage_error(e) } else { runtime_error(e) };
                    }
                    None => {
                        clean_up();
                        return runtime_error(format!("backtest: the replay with {} failed", name(path)));
                    }
                }
            }
            for (name, _, b) in &models {
                if models.len() > 1 {
                    print!("\n--- {name} ---");
                }
                print!("{}", cs_pulse::backtest::format_summary(b));
            }
            if let Some(path) = report {
                let views: Vec<cs_pulse::backtest::report::Model<'_>> = models
                    .iter()
                    .map(|(name, bands, b)| cs_pulse::backtest::report::Model {
                        name: name.clone(),
                        green: bands.green,
                        yellow: bands.yellow,
                        backtest: b,
                        timelines: &b.timelines,
                    })
                    .collect();
                let html = cs_pulse::backtest::report::render(&views, &models[0].2.outcomes);
                if let Err(e) = std::fs::write(&path, html) {
                    return runtime_error(format!("{}: {e}", path.display()));
                }
                eprintln!("backtest: report written to {}", path.display());
            }
            if let Some(path) = json {
                let value = |(name, _, b): &(String, cs_pulse::config::Bands, cs_pulse::backtest::Backtest)| {
                    let mut v = serde_json::to_value(b).unwrap_or_default();
                    v["model"] = serde_json::Value::String(name.clone());
                    v
                };
                let mut v = value(&models[0]);
                if let Some(m) = models.get(1) {
                    v["compared"] = value(m);
                }
                let written = serde_json::to_string_pretty(&v)
                    .map_err(|e| e.to_string())
                    .and_then(|text| std::fs::write(&path, text + "\n").map_err(|e| e.to_string()));
                if let Err(e) = written {
                    return runtime_error(format!("{}: {e}", path.display()));
                }
            }
            ExitCode::SUCCESS
        }
        Command::Run { config } => {
            let cfg = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            telemetry::init_logging(cfg.log.format);
            let shutdown = Arc::new(AtomicBool::new(false));
            install_signal_handler(&rt, Arc::clone(&shutdown));
            let directory = Arc::new(Directory::default());
            let mut cfg = cfg;
            match cs_pulse::api::start(&rt, &mut cfg, &directory, true) {
                Ok(addr) => {
                    tracing::info!(%addr, advertised = ?cfg.api.advertised_url, "Serving the API, /metrics, /healthz and /readyz.")
                }
                Err(e) => return usage_error(e),
            }
            let result = {
                let shutdown = Arc::clone(&shutdown);
                let handle = rt.spawn_blocking(move || pipeline::run_serving(&cfg, &shutdown, &directory));
                rt.block_on(handle)
            };
            match result {
                Ok(Ok(_)) => ExitCode::SUCCESS,
                Ok(Err(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code() as u8)
                }
                Err(e) => runtime_error(format!("pipeline thread failed: {e}")),
            }
        }
        Command::Gen {
            bootstrap_servers,
            seed,
            accounts,
            teams,
            users,
            days,
            events,
            rate,
            create_topics,
            ndjson_dir,
            no_kafka,
            live,
            history,
            start,
            config,
        } => {
            let mut cfg = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            if let Some(b) = bootstrap_servers {
                cfg.kafka.bootstrap_servers = b;
            }
            telemetry::init_logging(cfg.log.format);
            let opts = cs_pulse::loadgen::GenOptions {
                seed,
                scale: cs_pulse::generator::Scale { accounts, teams_per_account: teams, users_per_team: users },
                days,
                max_events: events,
                rate,
                to_kafka: !no_kafka,
                ndjson_dir,
                create_topics,
                progress: true,
                live,
                history,
                start,
            };
            match cs_pulse::loadgen::run(&cfg, &opts) {
                Ok(s) => {
                    eprintln!(
                        "gen: wrote {} events and {} account/team records in {:.1} s ({:.0} events/s); last event at {}",
                        s.events,
                        s.dimension_records,
                        s.seconds,
                        s.events as f64 / s.seconds.max(1e-9),
                        cs_pulse::time::format_rfc3339(s.last_event_ms)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Demo { duration, seed, days, config } => {
            let cfg = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            // The demo prints alerts itself.
            init_quiet_logging(&cfg);
            let shutdown = Arc::new(AtomicBool::new(false));
            install_signal_handler(&rt, Arc::clone(&shutdown));
            let directory = Arc::new(Directory::default());
            let mut cfg = cfg;
            if let Err(e) = cs_pulse::api::start(&rt, &mut cfg, &directory, false) {
                return usage_error(e);
            }
            let opts = demo::DemoOptions { duration, seed, days, print: true, directory };
            match demo::run(cfg, &opts, shutdown) {
                Ok(summary) => {
                    println!("{}", demo::format_summary(&summary));
                    ExitCode::SUCCESS
                }
                Err(demo::DemoError::Config(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code() as u8)
                }
                Err(e) => runtime_error(e),
            }
        }
    }
}
