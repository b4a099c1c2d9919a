//! JSON decoding of events and records: one UTF-8 object per message, unknown fields
//! ignored, timestamps as epoch milliseconds or RFC 3339 strings. Validation is shared
//! with Avro ([`super::fields`]).

use serde_json::{Map, Value};

use super::fields::{self, Field, Record};
use super::{DecodeError, Reason, Upsert};
use crate::model::{AccountRecord, Event, TeamRecord};

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

impl Record for Obj {
    fn field(&self, name: &str) -> Field<'_> {
        match self.get(name) {
            None | Some(Value::Null) => Field::Absent,
            Some(Value::String(s)) => Field::Str(s),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Field::Int(i),
                None => Field::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Some(v) => Field::Other(type_name(v)),
        }
    }
}

/// Decodes a usage event.
pub fn decode_usage(bytes: Option<&[u8]>) -> Result<Event, DecodeError> {
    let o = parse_object(bytes)?;
    let ev = fields::usage(&o)?;
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
    Ok(ev)
}

/// Decodes a support or feedback event.
pub fn decode_support(bytes: Option<&[u8]>) -> Result<Event, DecodeError> {
    fields::support(&parse_object(bytes)?)
}

/// Decodes an account record; a null value with a key is a deletion.
pub fn decode_account(key: Option<&[u8]>, bytes: Option<&[u8]>) -> Result<Upsert<AccountRecord>, DecodeError> {
    if bytes.is_none() {
        return fields::tombstone(key);
    }
    Ok(Upsert::Put(fields::account(&parse_object(bytes)?)?))
}

/// Decodes a team record; a null value with a key is a deletion.
pub fn decode_team(key: Option<&[u8]>, bytes: Option<&[u8]>) -> Result<Upsert<TeamRecord>, DecodeError> {
    if bytes.is_none() {
        return fields::tombstone(key);
    }
    Ok(Upsert::Put(fields::team(&parse_object(bytes)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Priority, UsageKind};

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
