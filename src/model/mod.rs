//! The data model: input events and dimension records, and the alerts and score records
//! cs-pulse writes.

mod events;
mod input;
mod outcome;
mod output;
mod rejection;

pub use events::{AccountRecord, Event, Priority, SupportEvent, SupportKind, TeamRecord, UsageEvent, UsageKind};
pub use input::{EventInput, Input, InputPartition, Partition};
pub use outcome::{Outcome, OutcomeRecord};
pub use output::{Alert, AlertKind, Band, EntityRef, HealthInfo, Level, ScoreRecord, Severity, Stage};
pub use rejection::{Reason, Rejection};
