//! Validation of events and records, whatever their encoding: JSON and Avro decoders
//! present a record as named [`Field`]s, and the rules here turn it into an event or a
//! dimension record, or reject it with a reason naming the field.

use super::Upsert;
use crate::model::{AccountRecord, Event, Priority, SupportEvent, SupportKind, TeamRecord, UsageEvent, UsageKind};
use crate::model::{Outcome, OutcomeRecord, Reason, Rejection};

/// One field of a record as decoded, before validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    /// Absent or null.
    Absent,
    /// A string (an Avro enum symbol counts as one).
    Str(&'a str),
    /// A whole number.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// Anything else, named for the error message ("a boolean", "an array", ...).
    Other(&'static str),
}

impl Field<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Field::Absent => "null",
            Field::Str(_) => "a string",
            Field::Int(_) | Field::Float(_) => "a number",
            Field::Other(t) => t,
        }
    }
}

/// A decoded record whose fields can be looked up by name.
pub trait Record {
    /// The field called `name`.
    fn field(&self, name: &str) -> Field<'_>;
}

/// The longest string field accepted, in bytes: ids, names, types and features are short;
/// a longer one is a producer's mistake (a payload written into an id) and would be held
/// in state.
pub const MAX_STRING_BYTES: usize = 1024;

fn opt_str<'a, R: Record + ?Sized>(o: &'a R, field: &str) -> Result<Option<&'a str>, Rejection> {
    match o.field(field) {
        Field::Absent => Ok(None),
        Field::Str(s) if s.len() > MAX_STRING_BYTES => Err(Rejection::new(
            Reason::TooLong,
            format!("field `{field}` is {} bytes long; at most {MAX_STRING_BYTES} are accepted", s.len()),
        )),
        Field::Str(s) => Ok(Some(s)),
        v => Err(Rejection::new(Reason::WrongType, format!("field `{field}` must be a string, got {}", v.type_name()))),
    }
}

/// A string that is present; an empty string counts as missing.
fn req_str<R: Record + ?Sized>(o: &R, field: &str) -> Result<String, Rejection> {
    match opt_str(o, field)? {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        Some(_) => Err(Rejection::new(Reason::MissingField, format!("field `{field}` is empty"))),
        None => Err(Rejection::new(Reason::MissingField, format!("field `{field}` is required"))),
    }
}

/// An optional string where "" means absent.
fn opt_nonempty<R: Record + ?Sized>(o: &R, field: &str) -> Result<Option<String>, Rejection> {
    Ok(opt_str(o, field)?.filter(|s| !s.is_empty()).map(str::to_string))
}

fn opt_time<R: Record + ?Sized>(o: &R, field: &str) -> Result<Option<i64>, Rejection> {
    match o.field(field) {
        Field::Absent => Ok(None),
        Field::Int(ms) if ms >= 0 => Ok(Some(ms)),
        Field::Int(ms) => Err(Rejection::new(Reason::InvalidValue, format!("field `{field}` is {ms}, before 1970"))),
        Field::Float(n) => Err(Rejection::new(
            Reason::InvalidValue,
            format!("field `{field}` must be whole epoch milliseconds, got {n}"),
        )),
        Field::Str(s) => crate::time::parse_rfc3339(s).filter(|ms| *ms >= 0).map(Some).ok_or_else(|| {
            Rejection::new(Reason::InvalidValue, format!("field `{field}` is not an RFC 3339 timestamp: '{s}'"))
        }),
        v => Err(Rejection::new(
            Reason::WrongType,
            format!("field `{field}` must be epoch milliseconds or an RFC 3339 string, got {}", v.type_name()),
        )),
    }
}

fn req_time<R: Record + ?Sized>(o: &R, field: &str) -> Result<i64, Rejection> {
    opt_time(o, field)?.ok_or_else(|| Rejection::new(Reason::MissingField, format!("field `{field}` is required")))
}

fn opt_uint<R: Record + ?Sized>(o: &R, field: &str) -> Result<Option<u64>, Rejection> {
    match o.field(field) {
        Field::Absent => Ok(None),
        Field::Int(n) if n >= 0 => Ok(Some(n as u64)),
        Field::Int(n) => {
            Err(Rejection::new(Reason::InvalidValue, format!("field `{field}` must be a whole number >= 0, got {n}")))
        }
        Field::Float(n) => {
            Err(Rejection::new(Reason::InvalidValue, format!("field `{field}` must be a whole number >= 0, got {n}")))
        }
        v => Err(Rejection::new(Reason::WrongType, format!("field `{field}` must be a number, got {}", v.type_name()))),
    }
}

/// The largest number of seats accepted on a record: sums over an account's teams stay
/// exact, and anything larger is a producer's mistake.
pub const MAX_SEATS: u64 = 1_000_000_000;

fn opt_seats<R: Record + ?Sized>(o: &R) -> Result<Option<u64>, Rejection> {
    match opt_uint(o, "seats")? {
        Some(n) if n > MAX_SEATS => Err(Rejection::new(
            Reason::InvalidValue,
            format!("field `seats` is {n}, above the largest accepted, {MAX_SEATS}"),
        )),
        n => Ok(n),
    }
}

/// A date of a dimension record: at most the end of year 9999, so that the engine's
/// arithmetic on it cannot overflow. (An event's `occurred_at` has no such bound here:
/// the event-time sanity rule refuses a future one with reason `future`.)
fn opt_record_time<R: Record + ?Sized>(o: &R, field: &str) -> Result<Option<i64>, Rejection> {
    match opt_time(o, field)? {
        Some(ms) if ms > crate::time::MAX_TIME_MS => Err(Rejection::new(
            Reason::InvalidValue,
            format!("field `{field}` is {ms}, after year 9999 (epoch milliseconds expected)"),
        )),
        t => Ok(t),
    }
}

fn missing(field: &str, why: &str) -> Rejection {
    Rejection::new(Reason::MissingField, format!("field `{field}` is required {why}"))
}

/// A usage event from its fields.
pub fn usage<R: Record + ?Sized>(o: &R) -> Result<Event, Rejection> {
    let event_type = req_str(o, "type")?;
    let kind = match event_type.as_str() {
        "change_created" => UsageKind::ChangeCreated,
        "change_deployed" => UsageKind::ChangeDeployed,
        _ => UsageKind::Other,
    };
    let ev = UsageEvent {
        event_id: req_str(o, "event_id")?,
        occurred_at: req_time(o, "occurred_at")?,
        account_id: req_str(o, "account_id")?,
        team_id: req_str(o, "team_id")?,
        user_id: opt_nonempty(o, "user_id")?,
        feature: opt_nonempty(o, "feature")?,
        app_id: opt_nonempty(o, "app_id")?,
        change_id: opt_nonempty(o, "change_id")?,
        environment: opt_nonempty(o, "environment")?,
        event_type,
        kind,
    };
    match ev.kind {
        UsageKind::ChangeCreated if ev.change_id.is_none() => {
            return Err(missing("change_id", "for type change_created"))
        }
        UsageKind::ChangeDeployed => {
            for (field, v) in [("change_id", &ev.change_id), ("environment", &ev.environment), ("app_id", &ev.app_id)] {
                if v.is_none() {
                    return Err(missing(field, "for type change_deployed"));
                }
            }
        }
        _ => {}
    }
    Ok(Event::Usage(ev))
}

/// A support or feedback event from its fields.
pub fn support<R: Record + ?Sized>(o: &R) -> Result<Event, Rejection> {
    let kind_s = req_str(o, "kind")?;
    let kind = SupportKind::parse(&kind_s).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownEnum,
            format!(
                "field `kind` is '{kind_s}', not one of ticket_opened, ticket_escalated, ticket_resolved, ticket_reopened, csat_response, nps_response"
            ),
        )
    })?;
    let event_id = req_str(o, "event_id")?;
    let occurred_at = req_time(o, "occurred_at")?;
    let account_id = req_str(o, "account_id")?;
    let ticket_id = opt_nonempty(o, "ticket_id")?;
    if kind.is_ticket() && ticket_id.is_none() {
        return Err(missing("ticket_id", &format!("for kind {kind_s}")));
    }
    let priority = match opt_str(o, "priority")? {
        None => None,
        Some(p) => Some(Priority::parse(p).ok_or_else(|| {
            Rejection::new(Reason::UnknownEnum, format!("field `priority` is '{p}', not one of P1, P2, P3, P4"))
        })?),
    };
    if matches!(kind, SupportKind::TicketOpened | SupportKind::TicketEscalated) && priority.is_none() {
        return Err(missing("priority", &format!("for kind {kind_s}")));
    }
    let score = match kind {
        SupportKind::CsatResponse | SupportKind::NpsResponse => {
            let max = if kind == SupportKind::CsatResponse { 5 } else { 10 };
            let min = if kind == SupportKind::CsatResponse { 1 } else { 0 };
            let s = opt_uint(o, "score")?.ok_or_else(|| missing("score", &format!("for kind {kind_s}")))?;
            if s < min || s > max {
                return Err(Rejection::new(
                    Reason::InvalidValue,
                    format!("field `score` is {s}, outside {min}..={max} for kind {kind_s}"),
                ));
            }
            Some(s as u8)
        }
        _ => None,
    };
    Ok(Event::Support(SupportEvent {
        event_id,
        occurred_at,
        account_id,
        team_id: opt_nonempty(o, "team_id")?,
        kind,
        ticket_id,
        priority,
        score,
        user_id: opt_nonempty(o, "user_id")?,
    }))
}

/// The deletion a tombstone (a key with no value) stands for.
pub fn tombstone<T>(key: Option<&[u8]>) -> Result<Upsert<T>, Rejection> {
    key.and_then(|k| std::str::from_utf8(k).ok())
        .filter(|s| !s.is_empty())
        .map(|s| Upsert::Delete(s.to_string()))
        .ok_or_else(|| Rejection::new(Reason::MissingField, "tombstone without a key"))
}

/// An account record from its fields.
pub fn account<R: Record + ?Sized>(o: &R) -> Result<AccountRecord, Rejection> {
    Ok(AccountRecord {
        account_id: req_str(o, "account_id")?,
        name: opt_str(o, "name")?.map(str::to_string),
        segment: opt_nonempty(o, "segment")?,
        seats: opt_seats(o)?,
        contract_start: opt_record_time(o, "contract_start")?,
        renewal_date: opt_record_time(o, "renewal_date")?,
    })
}

/// A backtest outcome from its fields: `account_id`, `at` (epoch ms or RFC 3339, not after
/// year 9999) and `outcome` (renewed, expanded, contracted or churned).
pub fn outcome<R: Record + ?Sized>(o: &R) -> Result<OutcomeRecord, Rejection> {
    let account_id = req_str(o, "account_id")?;
    let at = req_time(o, "at")?;
    if at > crate::time::MAX_TIME_MS {
        return Err(Rejection::new(Reason::InvalidValue, format!("field `at` is {at}, after the year 9999")));
    }
    let name = req_str(o, "outcome")?;
    let outcome = Outcome::parse(&name).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownEnum,
            format!("field `outcome` is '{name}', not one of renewed, expanded, contracted, churned"),
        )
    })?;
    Ok(OutcomeRecord { account_id, at, outcome })
}

/// A team record from its fields.
pub fn team<R: Record + ?Sized>(o: &R) -> Result<TeamRecord, Rejection> {
    Ok(TeamRecord {
        team_id: req_str(o, "team_id")?,
        account_id: req_str(o, "account_id")?,
        name: opt_str(o, "name")?.map(str::to_string),
        group: opt_nonempty(o, "group")?,
        business_unit: opt_nonempty(o, "business_unit")?,
        division: opt_nonempty(o, "division")?,
        seats: opt_seats(o)?,
    })
}
