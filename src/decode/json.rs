//! JSON decoding of events and records: one UTF-8 object per message, unknown fields
//! ignored, timestamps as epoch milliseconds or RFC 3339 strings.

use serde_json::{Map, Value};

use super::{DecodeError, Reason, Upsert};
use crate::model::{AccountRecord, Event, Priority, SupportEvent, SupportKind, TeamRecord, UsageEvent, UsageKind};

type Obj = Map<String, Value>;

fn parse_object(bytes: Option<&[u8]>) -> Result<Obj, DecodeError> {
    let bytes = match bytes {
        Some(b) if !b.is_empty() => b,
        _ => return Err(DecodeError::new(Reason::Undecodable, "empty payload")),
    };
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::new(Reason::Undecodable, format!("not JSON: {e}")))?;
    match value {
        Value::Object(o) => Ok(o),
        other => Err(DecodeError::new(Reason::NotObject, format!("expected a JSON object, got {}", type_name(&other)))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn opt_str(o: &Obj, field: &str) -> Result<Option<String>, DecodeError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => {
            Err(DecodeError::new(Reason::WrongType, format!("field `{field}` must be a string, got {}", type_name(v))))
        }
    }
}

/// A string that is present; an empty string counts as missing.
fn req_str(o: &Obj, field: &str) -> Result<String, DecodeError> {
    match opt_str(o, field)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(DecodeError::new(Reason::MissingField, format!("field `{field}` is empty"))),
        None => Err(DecodeError::new(Reason::MissingField, format!("field `{field}` is required"))),
    }
}

/// An optional string where "" means absent.
fn opt_nonempty(o: &Obj, field: &str) -> Result<Option<String>, DecodeError> {
    Ok(opt_str(o, field)?.filter(|s| !s.is_empty()))
}

fn opt_time(o: &Obj, field: &str) -> Result<Option<i64>, DecodeError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(ms) if ms >= 0 => Ok(Some(ms)),
            Some(ms) => Err(DecodeError::new(Reason::InvalidValue, format!("field `{field}` is {ms}, before 1970"))),
            None => Err(DecodeError::new(
                Reason::InvalidValue,
                format!("field `{field}` must be whole epoch milliseconds, got {n}"),
            )),
        },
        Some(Value::String(s)) => crate::time::parse_rfc3339(s).filter(|ms| *ms >= 0).map(Some).ok_or_else(|| {
            DecodeError::new(Reason::InvalidValue, format!("field `{field}` is not an RFC 3339 timestamp: '{s}'"))
        }),
        Some(v) => Err(DecodeError::new(
            Reason::WrongType,
            format!("field `{field}` must be epoch milliseconds or an RFC 3339 string, got {}", type_name(v)),
        )),
    }
}

fn req_time(o: &Obj, field: &str) -> Result<i64, DecodeError> {
    opt_time(o, field)?.ok_or_else(|| DecodeError::new(Reason::MissingField, format!("field `{field}` is required")))
}

fn opt_uint(o: &Obj, field: &str) -> Result<Option<u64>, DecodeError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            DecodeError::new(Reason::InvalidValue, format!("field `{field}` must be a whole number >= 0, got {n}"))
        }),
        Some(v) => {
            Err(DecodeError::new(Reason::WrongType, format!("field `{field}` must be a number, got {}", type_name(v))))
        }
    }
}

fn missing(field: &str, why: &str) -> DecodeError {
    DecodeError::new(Reason::MissingField, format!("field `{field}` is required {why}"))
}

/// Decodes a usage event.
pub fn decode_usage(bytes: Option<&[u8]>) -> Result<Event, DecodeError> {
    let o = parse_object(bytes)?;
    let event_type = req_str(&o, "type")?;
    let kind = match event_type.as_str() {
        "change_created" => UsageKind::ChangeCreated,
        "change_deployed" => UsageKind::ChangeDeployed,
        _ => UsageKind::Other,
    };
    let ev = UsageEvent {
        event_id: req_str(&o, "event_id")?,
        occurred_at: req_time(&o, "occurred_at")?,
        account_id: req_str(&o, "account_id")?,
        team_id: req_str(&o, "team_id")?,
        user_id: opt_nonempty(&o, "user_id")?,
        feature: opt_nonempty(&o, "feature")?,
        app_id: opt_nonempty(&o, "app_id")?,
        change_id: opt_nonempty(&o, "change_id")?,
        environment: opt_nonempty(&o, "environment")?,
        event_type,
        kind,
    };
    match o.get("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(props)) => {
            if let Some((k, v)) = props.iter().find(|(_, v)| !v.is_string()) {
                return Err(DecodeError::new(
                    Reason::WrongType,
                    format!("field `properties.{k}` must be a string, got {}", type_name(v)),
                ));
            }
        }
        Some(v) => {
            return Err(DecodeError::new(
                Reason::WrongType,
                format!("field `properties` must be an object of strings, got {}", type_name(v)),
            ))
        }
    }
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

/// Decodes a support or feedback event.
pub fn decode_support(bytes: Option<&[u8]>) -> Result<Event, DecodeError> {
    let o = parse_object(bytes)?;
    let kind_s = req_str(&o, "kind")?;
    let kind = SupportKind::parse(&kind_s).ok_or_else(|| {
        DecodeError::new(
            Reason::UnknownEnum,
            format!(
                "field `kind` is '{kind_s}', not one of ticket_opened, ticket_escalated, ticket_resolved, ticket_reopened, csat_response, nps_response"
            ),
        )
    })?;
    let event_id = req_str(&o, "event_id")?;
    let occurred_at = req_time(&o, "occurred_at")?;
    let account_id = req_str(&o, "account_id")?;
    let ticket_id = opt_nonempty(&o, "ticket_id")?;
    if kind.is_ticket() && ticket_id.is_none() {
        return Err(missing("ticket_id", &format!("for kind {kind_s}")));
    }
    let priority = match opt_str(&o, "priority")? {
        None => None,
        Some(p) => Some(Priority::parse(&p).ok_or_else(|| {
            DecodeError::new(Reason::UnknownEnum, format!("field `priority` is '{p}', not one of P1, P2, P3, P4"))
        })?),
    };
    if matches!(kind, SupportKind::TicketOpened | SupportKind::TicketEscalated) && priority.is_none() {
        return Err(missing("priority", &format!("for kind {kind_s}")));
    }
    let score = match kind {
        SupportKind::CsatResponse | SupportKind::NpsResponse => {
            let max = if kind == SupportKind::CsatResponse { 5 } else { 10 };
            let min = if kind == SupportKind::CsatResponse { 1 } else { 0 };
            let s = opt_uint(&o, "score")?.ok_or_else(|| missing("score", &format!("for kind {kind_s}")))?;
            if s < min || s > max {
                return Err(DecodeError::new(
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
        team_id: opt_nonempty(&o, "team_id")?,
        kind,
        ticket_id,
        priority,
        score,
        user_id: opt_nonempty(&o, "user_id")?,
    }))
}

fn key_str(key: Option<&[u8]>) -> Option<String> {
    key.and_then(|k| std::str::from_utf8(k).ok()).filter(|s| !s.is_empty()).map(str::to_string)
}

/// Decodes an account record; a null value with a key is a deletion.
pub fn decode_account(key: Option<&[u8]>, bytes: Option<&[u8]>) -> Result<Upsert<AccountRecord>, DecodeError> {
    if bytes.is_none() {
        return key_str(key)
            .map(Upsert::Delete)
            .ok_or_else(|| DecodeError::new(Reason::MissingField, "tombstone without a key"));
    }
    let o = parse_object(bytes)?;
    Ok(Upsert::Put(AccountRecord {
        account_id: req_str(&o, "account_id")?,
        name: opt_str(&o, "name")?,
        segment: opt_nonempty(&o, "segment")?,
        seats: opt_uint(&o, "seats")?,
        contract_start: opt_time(&o, "contract_start")?,
        renewal_date: opt_time(&o, "renewal_date")?,
    }))
}

/// Decodes a team record; a null value with a key is a deletion.
pub fn decode_team(key: Option<&[u8]>, bytes: Option<&[u8]>) -> Result<Upsert<TeamRecord>, DecodeError> {
    if bytes.is_none() {
        return key_str(key)
            .map(Upsert::Delete)
            .ok_or_else(|| DecodeError::new(Reason::MissingField, "tombstone without a key"));
    }
    let o = parse_object(bytes)?;
    Ok(Upsert::Put(TeamRecord {
        team_id: req_str(&o, "team_id")?,
        account_id: req_str(&o, "account_id")?,
        name: opt_str(&o, "name")?,
        group: opt_nonempty(&o, "group")?,
        business_unit: opt_nonempty(&o, "business_unit")?,
        division: opt_nonempty(&o, "division")?,
        seats: opt_uint(&o, "seats")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(s: &str) -> Result<Event, DecodeError> {
        decode_usage(Some(s.as_bytes()))
    }
    fn support(s: &str) -> Result<Event, DecodeError> {
        decode_support(Some(s.as_bytes()))
    }

    #[test]
    fn usage_event_full() {
        let e = usage(r#"{"event_id":"e1","occurred_at":"2026-01-01T00:00:00Z","account_id":"a","team_id":"t","user_id":"u","type":"change_deployed","change_id":"c","environment":"production","app_id":"app","properties":{"k":"v"},"extra":[1]}"#).unwrap();
        let Event::Usage(u) = e else { panic!("not usage") };
        assert_eq!(u.occurred_at, 1_767_225_600_000);
        assert_eq!(u.kind, UsageKind::ChangeDeployed);
        assert_eq!(u.user_id.as_deref(), Some("u"));
    }

    #[test]
    fn system_event_has_no_user() {
        let Event::Usage(u) =
            usage(r#"{"event_id":"e","occurred_at":5,"account_id":"a","team_id":"t","user_id":"","type":"ping"}"#)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(u.user_id, None);
        assert_eq!(u.kind, UsageKind::Other);
    }

    #[test]
    fn usage_rejections_have_stable_reasons() {
        let cases = [
            ("", Reason::Undecodable),
            ("{not json", Reason::Undecodable),
            ("[1,2]", Reason::NotObject),
            (r#"{"occurred_at":5,"account_id":"a","team_id":"t","type":"x"}"#, Reason::MissingField),
            (r#"{"event_id":"e","occurred_at":5,"account_id":"a","team_id":"t"}"#, Reason::MissingField),
            (r#"{"event_id":7,"occurred_at":5,"account_id":"a","team_id":"t","type":"x"}"#, Reason::WrongType),
            (
                r#"{"event_id":"e","occurred_at":"yesterday","account_id":"a","team_id":"t","type":"x"}"#,
                Reason::InvalidValue,
            ),
            (r#"{"event_id":"e","occurred_at":1.5,"account_id":"a","team_id":"t","type":"x"}"#, Reason::InvalidValue),
            (
                r#"{"event_id":"e","occurred_at":5,"account_id":"a","team_id":"t","type":"change_created"}"#,
                Reason::MissingField,
            ),
            (
                r#"{"event_id":"e","occurred_at":5,"account_id":"a","team_id":"t","type":"change_deployed","change_id":"c","app_id":"x"}"#,
                Reason::MissingField,
            ),
            (
                r#"{"event_id":"e","occurred_at":5,"account_id":"a","team_id":"t","type":"x","properties":{"n":1}}"#,
                Reason::WrongType,
            ),
        ];
        for (input, reason) in cases {
            let err = usage(input).unwrap_err();
            assert_eq!(err.reason, reason, "{input}: {err}");
        }
        assert_eq!(decode_usage(None).unwrap_err().reason, Reason::Undecodable);
        assert_eq!(decode_usage(Some(&[0xff, 0xfe])).unwrap_err().reason, Reason::Undecodable);
    }

    #[test]
    fn support_events() {
        let Event::Support(s) = support(r#"{"event_id":"s","occurred_at":5,"account_id":"a","kind":"ticket_opened","ticket_id":"T1","priority":"P1"}"#).unwrap() else { panic!() };
        assert_eq!(s.priority, Some(Priority(1)));
        assert_eq!(s.team_id, None);
        let Event::Support(s) =
            support(r#"{"event_id":"s","occurred_at":5,"account_id":"a","kind":"nps_response","score":0}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.score, Some(0));
        let cases = [
            (
                r#"{"event_id":"s","occurred_at":5,"account_id":"a","kind":"ticket_lost","ticket_id":"T"}"#,
                Reason::UnknownEnum,
            ),
            (
                r#"{"event_id":"s","occurred_at":5,"account_id":"a","kind":"ticket_opened","ticket_id":"T","priority":"P9"}"#,
                Reason::UnknownEnum,
            ),
            (
                r#"{"event_id":"s","occurred_at":5,"account_id":"a","kind":"ticket_opened","ticket_id":"T"}"#,
                Reason::MissingField,
            ),
            (r#"{"event_id":"s","occurred_at":5,"account_id":"a","kind":"ticket_resolved"}"#, Reason::MissingField),
            (
                r#"{"event_id":"s","occurred_at":5,"account_id":"a","kind":"csat_response","score":6}"#,
                Reason::InvalidValue,
            ),
            (
                r#"{"event_id":"s","occurred_at":5,"account_id":"a","kind":"nps_response","score":"9"}"#,
                Reason::WrongType,
            ),
            (r#"{"event_id":"s","occurred_at":5,"kind":"nps_response","score":9}"#, Reason::MissingField),
        ];
        for (input, reason) in cases {
            assert_eq!(support(input).unwrap_err().reason, reason, "{input}");
        }
    }

    #[test]
    fn records_and_tombstones() {
        let r = decode_account(
            Some(b"a"),
            Some(br#"{"account_id":"a","seats":50,"contract_start":"2026-01-01T00:00:00Z","segment":"smb"}"#),
        )
        .unwrap();
        let Upsert::Put(a) = r else { panic!() };
        assert_eq!(a.seats, Some(50));
        assert_eq!(a.contract_start, Some(1_767_225_600_000));
        assert_eq!(decode_account(Some(b"a"), None).unwrap(), Upsert::Delete("a".into()));
        assert_eq!(decode_team(None, None).unwrap_err().reason, Reason::MissingField);
        let Upsert::Put(t) =
            decode_team(Some(b"t"), Some(br#"{"team_id":"t","account_id":"a","group":"g","seats":4}"#)).unwrap()
        else {
            panic!()
        };
        assert_eq!(t.group.as_deref(), Some("g"));
        assert_eq!(
            decode_team(Some(b"t"), Some(br#"{"team_id":"t","account_id":"a","seats":-4}"#)).unwrap_err().reason,
            Reason::InvalidValue
        );
    }
}
