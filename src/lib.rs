//! # cs-pulse
//!
//! A real-time customer-health engine on Kafka.
//!
//! ## Layout: how data flows
//!
//! ```text
//!  Kafka source / NDJSON files        (source: pipeline.rs, replay.rs, demo/)
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
//! ```
//!
//! `config` and `telemetry` serve every step. The core (`decode`, `window`, `engine`,
//! `health`, `alert`) is synchronous and takes time as an argument; `replay`, `demo` and
//! `run` drive the same core.

pub mod alert;
pub mod avro;
pub mod config;
pub mod decode;
pub mod demo;
pub mod dims;
pub mod engine;
pub mod health;
pub mod kafka;
pub mod loadgen;
pub mod magic;
pub mod model;
pub mod pipeline;
pub mod replay;
pub mod telemetry;
pub mod time;
pub mod window;
