//! The data model: input events and dimension records, and the alerts and score records
//! cs-pulse writes.

mod events;
mod output;

pub use events::{AccountRecord, Event, Priority, SupportEvent, SupportKind, TeamRecord, UsageEvent, UsageKind};
pub use output::{Alert, AlertKind, Band, EntityRef, HealthInfo, Level, ScoreRecord, Severity, Stage};
