//! # cs-pulse
//!
//! A real-time customer-health engine on Kafka.
//!
//! ## Layout: how data flows
//!
//! ```text
//!  Kafka source / NDJSON files        (source: pipeline/, replay.rs; demo runs pipeline/)
//!        │ bytes
//!        ▼
//!  decode  ── invalid ──► dead-letter topic (reason headers), counted
//!        │ Event
//!        ▼
//!  window  (per-partition watermarks, time-bucketed activity)    ◄── dims (accounts, teams)
//!        │ watermark passes tick T
//!        ▼
//!  engine  (per-partition state, roll-up team → group → business unit → division → account)
//!        │ EntityMetrics
//!        ▼
//!  health  (components, weighted score, bands with hysteresis)
//!        │
//!        ▼
//!  alert   (rules, reasons, ids)  ──►  alerts topic, scores topic (Kafka sink / files)
//!        │ views of each committed batch (scores, metrics, daily history, latest alerts)
//!        ▼
//!  api     (HTTP: /v1/accounts…, /accounts/{id}, /metrics; forwards to the owning instance)
//! ```
//!
//! `config` and `telemetry` serve every step. The core (`decode`, `window`, `engine`,
//! `health`, `alert`) is synchronous and takes time as an argument. One driver
//! (`driver.rs`) takes every decoded record through it, behind a small sink trait:
//! `run` (`pipeline/`, which `demo` runs on an in-process cluster) and `replay` differ
//! only in their sources and sinks. `generator` makes the synthetic customers of `demo`,
//! `gen` (`loadgen`), the benchmarks and the tests; `kafka` holds client configuration,
//! the connection check, topic administration and the output sink. `api` serves what the
//! pipeline publishes to its `Directory` after each committed batch.

// The public API: what the commands (`src/main.rs`), the benchmarks and the tests use.
pub mod api;
pub mod avro;
pub mod backtest;
pub mod config;
pub mod decode;
pub mod demo;
pub mod dims;
pub mod engine;
pub mod generator;
pub mod history;
pub mod kafka;
pub mod loadgen;
pub mod model;
pub mod pipeline;
pub mod replay;
pub mod telemetry;
pub mod time;
pub mod window;

// Internal: the engine's rules and models, and the driver every command shares.
pub(crate) mod alert;
pub(crate) mod driver;
pub(crate) mod hash;
pub(crate) mod health;
pub(crate) mod magic;
