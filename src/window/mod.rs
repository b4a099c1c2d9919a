//! Event time: watermarks per input partition, and compact time-bucketed activity sets.

mod activity;
mod watermark;

pub use activity::ActivitySet;
pub use watermark::{Watermark, WatermarkTracker};
