use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use apache_avro::types::Value;
use apache_avro::Schema;
use serde_json::json;

use super::*;
use crate::avro::registry::{Registry, RegistryError};
use crate::avro::{frame, output, split_frame, ALERT_SCHEMA, SCORE_SCHEMA};
use crate::decode::json;

/// Avro binary of `record` (JSON, resolved against `schema`).
fn datum(schema: &Schema, record: serde_json::Value) -> Vec<u8> {
    let v = output::from_json(&record).resolve(schema).expect("the test record fits its schema");
    apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(v))
        .expect("encode")
}

fn usage_json() -> serde_json::Value {
    json!({"event_id":"e1","occurred_at":1_767_225_600_000i64,"account_id":"acme","team_id":"web",
           "user_id":"u1","type":"change_deployed","feature":null,"app_id":"shop","change_id":"c1",
           "environment":"production","properties":{"k":"v"}})
}

#[test]
fn own_schemas_parse_and_resolve_against_themselves() {
    for input in [Input::Usage, Input::Support, Input::Accounts, Input::Teams] {
        let schema = Schema::parse_str(schema_of(input).0).expect("parses");
        let spec = plan::ReaderSpec::of(schema_of(input).1, &schema).expect("reader spec");
        assert!(!spec.fields.is_empty());
        plan::Plan::compile(&schema, &spec).expect("own plan");
    }
    for text in [ALERT_SCHEMA, SCORE_SCHEMA] {
        Schema::parse_str(text).expect("output schema parses");
    }
}

#[test]
fn avro_usage_event_decodes_like_its_json() {
    let body = datum(reader_schema(Input::Usage), usage_json());
    let mut input = AvroInput::new(Input::Usage, None);
    let from_avro = input.usage(Some(&frame(7, &body))).expect("decodes");
    let from_json = json::decode_usage(Some(usage_json().to_string().as_bytes())).expect("json");
    assert_eq!(from_avro, from_json);
}

#[test]
fn avro_support_event_with_enums() {
    let record = json!({"event_id":"s1","occurred_at":5,"account_id":"acme","team_id":null,
        "kind":"ticket_opened","ticket_id":"T1","priority":"P1","score":null,"user_id":null});
    let body = datum(reader_schema(Input::Support), record.clone());
    let ev = AvroInput::new(Input::Support, None).support(Some(&frame(1, &body))).expect("decodes");
    assert_eq!(ev, json::decode_support(Some(record.to_string().as_bytes())).expect("json"));
}

#[test]
fn wire_format_errors_are_named() {
    let mut input = AvroInput::new(Input::Usage, None);
    let err = |b: &[u8], input: &mut AvroInput| match input.usage(Some(b)) {
        Err(DecodeError::Rejected(e)) => e,
        other => panic!("expected a record error, got {other:?}"),
    };
    let e = err(b"{\"event_id\":1}", &mut input);
    assert_eq!(e.reason, Reason::Undecodable);
    assert!(e.detail.contains("magic byte is 0x7b"), "{e}");
    assert!(err(&[0, 0, 0], &mut input).detail.contains("too short"));
    assert!(err(&[], &mut input).detail.contains("empty"));
    // A body cut short, and one with bytes to spare.
    let body = datum(reader_schema(Input::Usage), usage_json());
    assert!(err(&frame(1, &body[..body.len() - 3]), &mut input).detail.contains("ends early"));
    let mut long = body.clone();
    long.push(0);
    assert!(err(&frame(1, &long), &mut input).detail.contains("1 bytes left"));
}

fn usage_with(fields: serde_json::Value) -> Schema {
    Schema::parse_str(
        &json!({"type":"record","name":"UsageEvent","namespace":"producer.v2","fields":fields}).to_string(),
    )
    .expect("test schema")
}

fn compile_usage(writer: &Schema) -> Result<plan::Plan, String> {
    plan::Plan::compile(writer, &reader(Input::Usage).spec)
}

#[test]
fn evolution_added_and_missing_optional_fields() {
    // Adds an optional field cs-pulse does not know, in the middle; lacks `feature`,
    // `app_id` and `properties`; has `occurred_at` as timestamp-micros and `type` first.
    let writer = usage_with(json!([
        {"name":"type","type":"string"},
        {"name":"event_id","type":"string"},
        {"name":"region","type":["null","string"],"default":null},
        {"name":"tags","type":{"type":"array","items":{"type":"record","name":"Tag","fields":[{"name":"k","type":"string"},{"name":"n","type":"double"}]}}},
        {"name":"occurred_at","type":{"type":"long","logicalType":"timestamp-micros"}},
        {"name":"account_id","type":"string"},
        {"name":"team_id","type":"string"},
        {"name":"user_id","type":["null","string"],"default":null},
        {"name":"change_id","type":["null","string"],"default":null},
        {"name":"environment","type":["null","string"],"default":null}
    ]));
    let plan = compile_usage(&writer).expect("compatible");
    let body = datum(
        &writer,
        json!({"type":"page_view","event_id":"e9","region":"eu","tags":[{"k":"a","n":1.5},{"k":"b","n":2.0}],
               "occurred_at":1_767_225_600_000_123i64,"account_id":"acme","team_id":"web","user_id":"u7",
               "change_id":null,"environment":null}),
    );
    let ev = crate::decode::fields::usage(&plan.decode(&body).expect("decodes")).expect("valid");
    let crate::model::Event::Usage(u) = ev else { panic!("usage") };
    assert_eq!((u.event_id.as_str(), u.occurred_at, u.user_id.as_deref()), ("e9", 1_767_225_600_000, Some("u7")));
    assert_eq!(u.feature, None);
}

#[test]
fn incompatible_writer_schemas_say_why() {
    let no_event_id = usage_with(json!([
        {"name":"occurred_at","type":"long"},{"name":"account_id","type":"string"},
        {"name":"team_id","type":"string"},{"name":"type","type":"string"}
    ]));
    let e = compile_usage(&no_event_id).unwrap_err();
    assert!(e.contains("no field `event_id`"), "{e}");
    let wrong_type = usage_with(json!([
        {"name":"event_id","type":"long"},{"name":"occurred_at","type":"long"},{"name":"account_id","type":"string"},
        {"name":"team_id","type":"string"},{"name":"type","type":"string"}
    ]));
    let e = compile_usage(&wrong_type).unwrap_err();
    assert!(e.contains("field `event_id`: the writer's long cannot be read as string"), "{e}");
    let not_record = Schema::parse_str("\"string\"").unwrap();
    assert!(compile_usage(&not_record).unwrap_err().contains("not a record"));
}

#[test]
fn a_union_branch_the_reader_cannot_take_fails_only_its_records() {
    let writer = Schema::parse_str(
        &json!({"type":"record","name":"SupportEvent","fields":[
            {"name":"event_id","type":"string"},{"name":"occurred_at","type":"long"},
            {"name":"account_id","type":"string"},{"name":"kind","type":"string"},
            {"name":"score","type":["null","int","string"],"default":null}
        ]})
        .to_string(),
    )
    .unwrap();
    let plan = plan::Plan::compile(&writer, &reader(Input::Support).spec).expect("some branches fit");
    let ok = datum(&writer, json!({"event_id":"s","occurred_at":5,"account_id":"a","kind":"nps_response","score":9}));
    let ev = crate::decode::fields::support(&plan.decode(&ok).unwrap()).expect("int branch");
    let crate::model::Event::Support(s) = ev else { panic!() };
    assert_eq!(s.score, Some(9));
    let bad =
        datum(&writer, json!({"event_id":"s","occurred_at":5,"account_id":"a","kind":"nps_response","score":"9"}));
    let e = plan.decode(&bad).unwrap_err();
    assert_eq!(e.reason, Reason::IncompatibleSchema);
    assert!(e.detail.contains("field `score`"), "{e}");
}

/// A registry on loopback that answers from recorded responses (as Apicurio's and
/// Confluent's registries answer), counting the requests it serves.
fn recorded_registry(routes: Vec<(&'static str, u16, String)>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut auth = String::new();
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    auth = h["authorization:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0u8; length];
            std::io::Read::read_exact(&mut reader, &mut body).ok();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (status, text) = if auth != "Basic dTpw" {
                (401, r#"{"error_code":40101,"message":"Unauthorized"}"#.to_string())
            } else {
                routes
                    .iter()
                    .find(|(path, ..)| request_line.contains(path))
                    .map(|(_, s, t)| (*s, t.clone()))
                    .unwrap_or((404, r#"{"error_code":40403,"message":"Schema not found"}"#.into()))
            };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, hits)
}

#[test]
fn writer_schemas_come_from_the_registry_once_per_id() {
    let v2 = usage_with(json!([
        {"name":"event_id","type":"string"},{"name":"occurred_at","type":"long"},
        {"name":"account_id","type":"string"},{"name":"team_id","type":"string"},
        {"name":"type","type":"string"},{"name":"region","type":["null","string"],"default":null}
    ]));
    let v2_text = v2.canonical_form();
    let (url, hits) = recorded_registry(vec![
        ("/schemas/ids/21 ", 200, json!({"schema": v2_text}).to_string()),
        ("/schemas/ids/22 ", 200, json!({"schema": "{\"type\":\"record\",\"name\":\"X\",\"fields\":[]}"}).to_string()),
        ("/subjects/cs.health.alerts.v1-value/versions", 200, r#"{"id":31}"#.into()),
        ("/subjects/cs.health.scores.v1-value/versions", 200, r#"{"id":32}"#.into()),
    ]);
    let registry = Arc::new(Registry::with_auth(&url, Some(("u".into(), "p".into()))));
    let mut input = AvroInput::new(Input::Usage, Some(Arc::clone(&registry)));
    let body =
        datum(&v2, json!({"event_id":"e","occurred_at":5,"account_id":"a","team_id":"t","type":"x","region":"eu"}));
    for _ in 0..3 {
        input.usage(Some(&frame(21, &body))).expect("decodes with schema 21");
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "one fetch for three records");
    match input.usage(Some(&frame(22, &body))) {
        Err(DecodeError::Rejected(e)) => {
            assert_eq!(e.reason, Reason::IncompatibleSchema);
            assert!(e.detail.contains("writer schema 22"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    match input.usage(Some(&frame(23, &body))) {
        Err(DecodeError::Rejected(e)) => assert_eq!(e.reason, Reason::UnknownSchema, "{e}"),
        other => panic!("{other:?}"),
    }
    let out = output::AvroOutput::register(&registry, "cs.health.alerts.v1", "cs.health.scores.v1").expect("ids");
    let score = crate::model::ScoreRecord {
        entity: crate::model::EntityRef {
            level: crate::model::Level::Team,
            id: "web".into(),
            account_id: "acme".into(),
        },
        at: 5,
        score: 71.5,
        band: crate::model::Band::Green,
        components: [("utilization".to_string(), 80.0)].into_iter().collect(),
    };
    let framed = out.score(&score).expect("encodes");
    assert_eq!(split_frame(&framed).unwrap().0, 32);
    // Wrong credentials: refused, and said so.
    let wrong = Registry::with_auth(&url, Some(("u".into(), "x".into())));
    let e = wrong.schema(21).unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    // The start-up check says the same, as a refusal (a configuration error).
    match wrong.check() {
        Err(RegistryError::Refused(e)) => assert!(e.contains("401") && e.contains(&url), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unreachable_registry_is_not_the_records_fault() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut input = AvroInput::new(Input::Usage, Some(Arc::new(Registry::with_auth(&url, None))));
    let body = datum(reader_schema(Input::Usage), usage_json());
    assert!(matches!(input.usage(Some(&frame(5, &body))), Err(DecodeError::Registry(_))));
    // The start-up check names the registry it could not reach.
    match Registry::with_auth(&url, None).check() {
        Err(RegistryError::Unavailable(e)) => assert!(e.contains(&format!("the schema registry at {url}")), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_ca_file_without_certificates_is_refused_naming_it() {
    let dir = std::env::temp_dir().join(format!("cs-pulse-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for (path, why) in
        [(empty.display().to_string(), "no usable certificate"), ("/nonexistent/ca.pem".into(), "cannot read")]
    {
        let cfg = crate::config::SchemaRegistryConfig { url: "https://127.0.0.1:1".into(), ca_location: path.clone() };
        match Registry::from_config(&cfg) {
            Err(RegistryError::Refused(e)) => {
                assert!(e.contains("schema_registry.ca_location") && e.contains(&path) && e.contains(why), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn alerts_encode_to_the_alert_schema() {
    let alert: crate::model::Alert = serde_json::from_value(json!({
        "alert_id":"a1","kind":"health_band_changed","severity":"critical",
        "entity":{"level":"group","id":"Platform","account_id":"acme"},
        "at":1_767_225_600_000i64,"emitted_at":1_767_225_600_500i64,"stage":"renewal",
        "health":{"score":34.8,"band":"red","previous_score":35.7,"previous_band":"yellow"},
        "components":{"utilization":20.0,"trend":0.0},"reasons":["one","two"],"renewal_in_days":40,
        "details":{"score":34.8,"active_users_7d":3,"who":"x","none":null,"flag":true}
    }))
    .unwrap();
    let framed = output::AvroOutput::with_ids(9, 10).alert(&alert).expect("encodes");
    let (id, body) = split_frame(&framed).unwrap();
    assert_eq!(id, 9);
    let schema = Schema::parse_str(ALERT_SCHEMA).unwrap();
    #[allow(deprecated)]
    let back = apache_avro::from_avro_datum(&schema, &mut &body[..], None).expect("decodes");
    let Value::Record(fields) = back else { panic!("record") };
    let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(get("kind"), Value::Enum(0, "health_band_changed".into()));
    assert_eq!(get("severity"), Value::Enum(2, "critical".into()));
    assert_eq!(get("renewal_in_days"), Value::Union(1, Box::new(Value::Long(40))));
    let Value::Map(details) = get("details") else { panic!("map") };
    assert_eq!(details["active_users_7d"], Value::Union(2, Box::new(Value::Long(3))));
    assert_eq!(details["score"], Value::Union(3, Box::new(Value::Double(34.8))));
    assert_eq!(details["none"], Value::Union(0, Box::new(Value::Null)));
    assert_eq!(details["flag"], Value::Union(1, Box::new(Value::Boolean(true))));
}

#[test]
fn container_files_decode_with_the_header_schema() {
    let schema = reader_schema(Input::Usage);
    let dir = std::env::temp_dir().join(format!("cs-pulse-ocf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("usage.avro");
    let mut w =
        apache_avro::Writer::with_codec(schema, Vec::new(), apache_avro::Codec::Deflate(Default::default())).unwrap();
    for i in 0..500 {
        let mut r = usage_json();
        r["event_id"] = json!(format!("e{i}"));
        w.append_value(output::from_json(&r).resolve(schema).unwrap()).unwrap();
        if i == 250 {
            w.flush().unwrap();
        }
    }
    std::fs::write(&path, w.into_inner().unwrap()).unwrap();
    let mut c = container::Container::open(&path, Input::Usage).expect("opens");
    let mut ids = Vec::new();
    while let Some(r) = c.next_with(|rec| crate::decode::fields::usage(rec)).expect("reads") {
        ids.push(r.expect("valid").event_id().to_string());
    }
    assert_eq!(ids.len(), 500);
    assert_eq!(ids[499], "e499");
    std::fs::write(&path, b"not avro").unwrap();
    let e = container::Container::open(&path, Input::Usage).unwrap_err();
    assert!(e.to_string().contains("not an Avro object container"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
