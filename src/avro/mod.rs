//! Avro on the wire: the Confluent wire format (magic byte 0, a 4-byte big-endian schema
//! id, the Avro binary body), cs-pulse's own schemas (`schemas/*.avsc`), the schema
//! registry client, and Avro alerts and scores. Decoding Avro input is
//! [`crate::decode::avro`]'s.

pub mod output;
pub mod registry;

use crate::model::{Reason, Rejection};

/// The schema of usage events.
pub const USAGE_SCHEMA: &str = include_str!("../../schemas/usage_event.avsc");
/// The schema of support events.
pub const SUPPORT_SCHEMA: &str = include_str!("../../schemas/support_event.avsc");
/// The schema of account records.
pub const ACCOUNT_SCHEMA: &str = include_str!("../../schemas/account_record.avsc");
/// The schema of team records.
pub const TEAM_SCHEMA: &str = include_str!("../../schemas/team_record.avsc");
/// The schema of alerts.
pub const ALERT_SCHEMA: &str = include_str!("../../schemas/health_alert.avsc");
/// The schema of score records.
pub const SCORE_SCHEMA: &str = include_str!("../../schemas/health_score.avsc");

/// Splits a Confluent-framed message into its schema id and Avro body.
pub fn split_frame(bytes: &[u8]) -> Result<(u32, &[u8]), Rejection> {
    match bytes {
        [0, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [0, ..] => Err(Rejection::new(
            Reason::Undecodable,
            format!("{} bytes: too short for the Avro wire format's 5-byte header", bytes.len()),
        )),
        [] => Err(Rejection::new(Reason::Undecodable, "empty payload")),
        [m, ..] => Err(Rejection::new(
            Reason::Undecodable,
            format!("magic byte is {m:#04x}, not 0: not the Confluent Avro wire format"),
        )),
    }
}

/// Prefixes an Avro body with the Confluent header.
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}
