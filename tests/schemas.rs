//! The Avro schemas in schemas/ describe the same fields as the JSON cs-pulse reads and
//! writes.

use std::collections::BTreeSet;

use serde_json::Value;

use cs_pulse::model::{Alert, AlertKind, Band, EntityRef, HealthInfo, Level, ScoreRecord, Severity, Stage};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn schema(name: &str) -> Result<Value> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(name);
    Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?)
}

fn field_names(record: &Value) -> BTreeSet<String> {
    record["fields"]
        .as_array()
        .map(|fs| fs.iter().filter_map(|f| f["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn field<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["fields"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == name))
        .map(|f| &f["type"])
        .unwrap_or(&Value::Null)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn sample_alert() -> Alert {
    Alert {
        alert_id: "x".into(),
        kind: AlertKind::UsageDrop,
        severity: Severity::Warning,
        entity: EntityRef { level: Level::Team, id: "t".into(), account_id: "a".into() },
        at: 1,
        emitted_at: 2,
        stage: Stage::Adoption,
        health: Some(HealthInfo {
            score: 50.0,
            band: Band::Yellow,
            previous_score: Some(80.0),
            previous_band: Some(Band::Green),
        }),
        components: Default::default(),
        reasons: vec!["r".into()],
        renewal_in_days: Some(3),
        details: Default::default(),
    }
}

#[test]
fn alert_schema_matches_alert_json() -> Result {
    let s = schema("health_alert.avsc")?;
    let json = serde_json::to_value(sample_alert())?;
    assert_eq!(field_names(&s), keys(&json));
    assert_eq!(field_names(field(&s, "entity")), keys(&json["entity"]));
    let health = &field(&s, "health")[1];
    assert_eq!(field_names(health), keys(&json["health"]));
    let kinds: Vec<&str> =
        field(&s, "kind")["symbols"].as_array().ok_or("symbols")?.iter().filter_map(Value::as_str).collect();
    let ours: Vec<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(kinds, ours);
    let levels: Vec<&str> = field(field(&s, "entity"), "level")["symbols"]
        .as_array()
        .ok_or("symbols")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let ours: Vec<&str> = Level::ALL.iter().map(|l| l.as_str()).collect();
    assert_eq!(levels, ours);
    Ok(())
}

#[test]
fn score_schema_matches_score_json() -> Result {
    let s = schema("health_score.avsc")?;
    let rec = ScoreRecord {
        entity: EntityRef { level: Level::Account, id: "a".into(), account_id: "a".into() },
        at: 1,
        score: 1.0,
        band: Band::Red,
        components: Default::default(),
    };
    assert_eq!(field_names(&s), keys(&serde_json::to_value(rec)?));
    Ok(())
}

#[test]
fn input_schemas_have_the_spec_fields() -> Result {
    let expect = |name: &str, fields: &[&str]| -> Result {
        let got = field_names(&schema(name)?);
        let want: BTreeSet<String> = fields.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "{name}");
        Ok(())
    };
    expect(
        "usage_event.avsc",
        &[
            "event_id",
            "occurred_at",
            "account_id",
            "team_id",
            "user_id",
            "type",
            "feature",
            "app_id",
            "change_id",
            "environment",
            "properties",
        ],
    )?;
    expect(
        "support_event.avsc",
        &["event_id", "occurred_at", "account_id", "team_id", "kind", "ticket_id", "priority", "score", "user_id"],
    )?;
    expect("account_record.avsc", &["account_id", "name", "segment", "seats", "contract_start", "renewal_date"])?;
    expect("team_record.avsc", &["team_id", "account_id", "name", "group", "business_unit", "division", "seats"])?;
    expect("outcome.avsc", &["account_id", "at", "outcome"])?;
    Ok(())
}
