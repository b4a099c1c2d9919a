//! Backtesting: does the health model predict churn? The contract is SPEC's "Backtest".
//!
//! [`metrics`] holds the numbers a backtest reports, as pure functions over what a replay
//! wrote (scores, alerts) and what customers did ([`crate::model::Outcome`]).

pub mod metrics;
pub mod summary;
