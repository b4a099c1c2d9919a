//! JSON decoding of events and records: one UTF-8 object per message, unknown fields
//! ignored, timestamps as epoch milliseconds or RFC 3339 strings. Validation is shared
//! with Avro ([`super::fields`]).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::fields::{self, Field, Record};
use super::Upsert;
use crate::model::{AccountRecord, Event, OutcomeRecord, TeamRecord};
use crate::model::{Reason, Rejection};

/// A JSON object's top-level fields, borrowed from the message where no escape had to be
/// undone: decoding builds no tree and copies no string. A repeated name counts with its
/// last value, as in a JSON map.
#[derive(Debug)]
struct Obj<'a> {
    fields: Vec<(Cow<'a, str>, Val<'a>)>,
}

/// A JSON value. The message's own object keeps its fields whole; a nested object keeps
/// only its entries' types (for `properties`); arrays are skipped.
#[derive(Debug)]
enum Val<'a> {
    Null,
    Bool,
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Array,
    Object(Vec<(Cow<'a, str>, &'static str)>),
    Fields(Obj<'a>),
}

impl Val<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool => "a boolean",
            Val::Int(_) | Val::Float(_) => "a number",
            Val::Str(_) => "a string",
            Val::Array => "an array",
            Val::Object(_) | Val::Fields(_) => "an object",
        }
    }
}

impl<'a> Obj<'a> {
    fn get(&self, name: &str) -> Option<&Val<'a>> {
        self.fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// Reads one value; `top` for the message itself.
struct ValSeed {
    top: bool,
}

impl<'de> de::DeserializeSeed<'de> for ValSeed {
    type Value = Val<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValSeed {
    type Value = Val<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Val<'de>, E> {
        Ok(Val::Bool)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val<'de>, E> {
        Ok(Val::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val<'de>, E> {
        Ok(i64::try_from(v).map_or(Val::Float(v as f64), Val::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Val<'de>, E> {
        Ok(Val::Float(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<'de>, A::Error> {
        // Elements are read as values, not skipped, so that the parser's nesting limit
        // (128) refuses a deeply nested message wherever the nesting is.
        while seq.next_element_seed(ValSeed { top: false })?.is_some() {}
        Ok(Val::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val<'de>, A::Error> {
        if self.top {
            let mut fields = Vec::with_capacity(12);
            while let Some(Key(k)) = map.next_key()? {
                fields.push((k, map.next_value_seed(ValSeed { top: false })?));
            }
            return Ok(Val::Fields(Obj { fields }));
        }
        let mut entries = Vec::new();
        while let Some(Key(k)) = map.next_key()? {
            entries.push((k, map.next_value_seed(ValSeed { top: false })?.type_name()));
        }
        Ok(Val::Object(entries))
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct K;
        impl<'de> Visitor<'de> for K {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(K)
    }
}

fn parse_object(bytes: Option<&[u8]>) -> Result<Obj<'_>, Rejection> {
    let bytes = match bytes {
        Some(b) if !b.is_empty() => b,
        _ => return Err(Rejection::new(Reason::Undecodable, "empty payload")),
    };
    // A UTF-8 byte-order mark, which some Windows tools write, is not part of the JSON.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut d = serde_json::Deserializer::from_slice(bytes);
    let value = de::DeserializeSeed::deserialize(ValSeed { top: true }, &mut d).and_then(|v| d.end().map(|()| v));
    match value {
        Ok(Val::Fields(o)) => Ok(o),
        Ok(other) => {
            Err(Rejection::new(Reason::NotObject, format!("expected a JSON object, got {}", other.type_name())))
        }
        Err(e) => Err(Rejection::new(Reason::Undecodable, format!("not JSON: {e}"))),
    }
}

impl Record for Obj<'_> {
    fn field(&self, name: &str) -> Field<'_> {
        match self.get(name) {
            None | Some(Val::Null) => Field::Absent,
            Some(Val::Str(s)) => Field::Str(s),
            Some(Val::Int(i)) => Field::Int(*i),
            Some(Val::Float(f)) => Field::Float(*f),
            Some(v) => Field::Other(v.type_name()),
        }
    }
}

/// Decodes a usage event.
pub fn decode_usage(bytes: Option<&[u8]>) -> Result<Event, Rejection> {
    let o = parse_object(bytes)?;
    let ev = fields::usage(&o)?;
    match o.get("properties") {
        None | Some(Val::Null) => {}
        Some(Val::Object(props)) => {
            // As a JSON map reads it: a repeated name counts with its last value, and the
            // first offending name in sorted order is the one named.
            let last = |i: usize, k: &str| !props[i + 1..].iter().any(|(k2, _)| k2 == k);
            let bad = props
                .iter()
                .enumerate()
                .filter(|(i, (k, t))| *t != "a string" && last(*i, k))
                .map(|(_, e)| e)
                .min_by(|a, b| a.0.cmp(&b.0));
            if let Some((k, t)) = bad {
                return Err(Rejection::new(
                    Reason::WrongType,
                    format!("field `properties.{k}` must be a string, got {t}"),
                ));
            }
        }
        Some(v) => {
            return Err(Rejection::new(
                Reason::WrongType,
                format!("field `properties` must be an object of strings, got {}", v.type_name()),
            ))
        }
    }
    Ok(ev)
}

/// Decodes a support or feedback event.
pub fn decode_support(bytes: Option<&[u8]>) -> Result<Event, Rejection> {
    fields::support(&parse_object(bytes)?)
}

/// Decodes an account record; a null value with a key is a deletion.
pub fn decode_account(key: Option<&[u8]>, bytes: Option<&[u8]>) -> Result<Upsert<AccountRecord>, Rejection> {
    if bytes.is_none() {
        return fields::tombstone(key);
    }
    Ok(Upsert::Put(fields::account(&parse_object(bytes)?)?))
}

/// Decodes a backtest outcome.
pub fn decode_outcome(bytes: Option<&[u8]>) -> Result<OutcomeRecord, Rejection> {
    fields::outcome(&parse_object(bytes)?)
}

/// Decodes a team record; a null value with a key is a deletion.
pub fn decode_team(key: Option<&[u8]>, bytes: Option<&[u8]>) -> Result<Upsert<TeamRecord>, Rejection> {
    if bytes.is_none() {
        return fields::tombstone(key);
    }
    Ok(Upsert::Put(fields::team(&parse_object(bytes)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Priority, UsageKind};

    fn usage(s: &str) -> Result<Event, Rejection> {
        decode_usage(Some(s.as_bytes()))
    }
    fn support(s: &str) -> Result<Event, Rejection> {
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
    fn read_as_a_json_map_reads_it() {
        // escapes undone, a repeated name counts with its last value, nested levels skipped
        let Event::Usage(u) = usage(
            r#"{"event_id":"first","occurred_at":5,"account_id":"a","team_id":"t\u00e9\"q","user_id":"u","type":"ping","event_id":"last","x":{"y":[{"z":1}]}}"#,
        )
        .unwrap() else {
            panic!("not usage")
        };
        assert_eq!((u.event_id.as_str(), u.team_id.as_str()), ("last", "té\"q"));
        // the first offending property in name order is the one named
        let err = usage(
            r#"{"event_id":"e","occurred_at":5,"account_id":"a","team_id":"t","type":"ping","properties":{"z":1,"b":"ok","m":[2],"b":true}}"#,
        )
        .unwrap_err();
        assert_eq!(err.detail, "field `properties.b` must be a string, got a boolean");
        let err = usage(
            r#"{"event_id":"e","occurred_at":5,"account_id":"a","team_id":"t","type":"ping","properties":{"z":1,"b":true,"b":"ok"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.detail, "field `properties.z` must be a string, got a number");
        assert_eq!(usage("[1,2]").unwrap_err().detail, "expected a JSON object, got an array");
        assert_eq!(usage("\"x\"").unwrap_err().detail, "expected a JSON object, got a string");
        assert_eq!(usage("{} trailing").unwrap_err().reason, Reason::Undecodable);
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

    #[test]
    fn hostile_values_are_refused_with_their_own_reasons() {
        let long = "x".repeat(fields::MAX_STRING_BYTES + 1);
        let e = usage(&format!(r#"{{"event_id":"e","occurred_at":1,"account_id":"{long}","team_id":"t","type":"v"}}"#));
        assert_eq!(e.unwrap_err().reason, Reason::TooLong);
        let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let e = usage(&format!(
            r#"{{"event_id":"e","occurred_at":1,"account_id":"a","team_id":"t","type":"v","x":{nested}}}"#
        ));
        assert_eq!(e.unwrap_err().reason, Reason::Undecodable, "nesting beyond the parser's limit");
        assert_eq!(usage(r#"{"event_id":"e","occurred_at":1e400}"#).unwrap_err().reason, Reason::Undecodable);
        assert_eq!(
            usage(r#"{"event_id":"e","occurred_at":-5,"account_id":"a","team_id":"t","type":"v"}"#).unwrap_err().reason,
            Reason::InvalidValue
        );
        assert!(usage(
            "\u{feff}{\"event_id\":\"e\",\"occurred_at\":1,\"account_id\":\"a\",\"team_id\":\"t\",\"type\":\"v\"}"
        )
        .is_ok());
        let acct = |body: &str| decode_account(Some(b"a"), Some(body.as_bytes())).map(|_| ());
        assert_eq!(acct(r#"{"account_id":"a","seats":1000000001}"#).unwrap_err().reason, Reason::InvalidValue);
        assert!(acct(r#"{"account_id":"a","seats":1000000000}"#).is_ok());
        assert_eq!(
            acct(r#"{"account_id":"a","contract_start":1767225600000000}"#).unwrap_err().reason,
            Reason::InvalidValue
        );
        assert!(acct(r#"{"account_id":"a","contract_start":"9999-12-31T23:59:59Z"}"#).is_ok());
        // a far-future event decodes: the event-time sanity rule refuses it as `future`
        assert!(usage(r#"{"event_id":"e","occurred_at":1767225600000000,"account_id":"a","team_id":"t","type":"v"}"#)
            .is_ok());
    }

    #[test]
    fn outcomes() {
        use crate::model::Outcome;
        let ok = |s: &str| decode_outcome(Some(s.as_bytes()));
        let r = ok(r#"{"account_id":"acme","at":"2026-03-01T00:00:00Z","outcome":"churned"}"#).unwrap();
        assert_eq!((r.account_id.as_str(), r.at, r.outcome), ("acme", 1_772_323_200_000, Outcome::Churned));
        assert_eq!(ok(r#"{"account_id":"a","at":5,"outcome":"expanded"}"#).unwrap().outcome, Outcome::Expanded);
        let reason = |s: &str| ok(s).unwrap_err().reason;
        assert_eq!(reason(r#"{"account_id":"a","at":5,"outcome":"lost"}"#), Reason::UnknownEnum);
        assert_eq!(reason(r#"{"at":5,"outcome":"renewed"}"#), Reason::MissingField);
        assert_eq!(reason(r#"{"account_id":"a","outcome":"renewed"}"#), Reason::MissingField);
        assert_eq!(reason(r#"{"account_id":"a","at":1.5,"outcome":"renewed"}"#), Reason::InvalidValue);
        assert_eq!(reason(r#"{"account_id":"a","at":253402300800000,"outcome":"renewed"}"#), Reason::InvalidValue);
        assert_eq!(reason(r#"{"account_id":"a","at":5,"outcome":7}"#), Reason::WrongType);
        assert_eq!(reason("[1]"), Reason::NotObject);
    }
}
