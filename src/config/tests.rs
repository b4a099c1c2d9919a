use super::*;

fn parse(s: &str) -> Result<Config, ConfigError> {
    let mut c: Config = toml::from_str(s).map_err(|e| {
        let key = e.span().and_then(|span| dotted_key_at(s, span.start)).unwrap_or_default();
        ConfigError::Parse { path: "t".into(), message: format!("key `{key}`: {e}") }
    })?;
    c.apply_env(|_| None);
    c.validate()?;
    Ok(c)
}

#[test]
fn empty_file_gives_spec_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.kafka.bootstrap_servers, "127.0.0.1:9092");
    assert_eq!(c.topics.alerts, "cs.health.alerts.v1");
    assert_eq!(c.time.allowed_lateness_secs, 3600);
    assert_eq!(c.health.weights.support, 20.0);
    assert_eq!(c.health.bands.hysteresis, 5.0);
    assert_eq!(c.processing.guarantee, Guarantee::ExactlyOnce);
    assert_eq!(c.metrics.bind, "127.0.0.1:9464");
    assert_eq!(c.alerts.policy, AlertPolicy::Focused);
}

#[test]
fn alert_policy_is_focused_or_all() {
    assert_eq!(parse("[alerts]\npolicy = \"all\"\n").unwrap().alerts.policy, AlertPolicy::All);
    assert_eq!(parse("[alerts]\npolicy = \"focused\"\n").unwrap().alerts.policy, AlertPolicy::Focused);
    let e = parse("[alerts]\npolicy = \"loud\"\n").unwrap_err().to_string();
    assert!(e.contains("alerts.policy") && e.contains("focused") && e.contains("all"), "{e}");
}

#[test]
fn unknown_key_is_named() {
    let e = parse("[time]\nallowed_latenes_secs = 5\n").unwrap_err().to_string();
    assert!(e.contains("allowed_latenes_secs"), "{e}");
    let e = parse("[nonsense]\n").unwrap_err().to_string();
    assert!(e.contains("nonsense"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    let e = parse("[health.bands]\nyellow = 80\n").unwrap_err().to_string();
    assert!(e.contains("health.bands.yellow"), "{e}");
    let e = parse("[health.weights]\nsupport = -1\n").unwrap_err().to_string();
    assert!(e.contains("health.weights.support"), "{e}");
    let e = parse("[metrics]\nbind = \"nowhere\"\n").unwrap_err().to_string();
    assert!(e.contains("metrics.bind"), "{e}");
    let e = parse("[processing]\nguarantee = \"maybe_once\"\n").unwrap_err().to_string();
    assert!(e.contains("maybe_once"), "{e}");
    let e = parse("[topics]\nscores = \"cs.health.alerts.v1\"\n").unwrap_err().to_string();
    assert!(e.contains("topics.scores"), "{e}");
    let e = parse("[health.segments.smb.bands]\ngreen = 30\n").unwrap_err().to_string();
    assert!(e.contains("health.segments.smb.bands.yellow"), "{e}");
    let e = parse("[output]\nformat = \"avro\"\n").unwrap_err().to_string();
    assert!(e.contains("output.format") && e.contains("schema_registry.url"), "{e}");
    let e = parse("[schema_registry]\nurl = \"localhost:8081\"\n").unwrap_err().to_string();
    assert!(e.contains("schema_registry.url"), "{e}");
    let e = parse("[input]\nusage = \"protobuf\"\n").unwrap_err().to_string();
    assert!(e.contains("protobuf"), "{e}");
}

#[test]
fn values_that_overflow_or_make_no_sense_are_refused_naming_the_key() {
    for (toml, key) in [
        ("[time]\nallowed_lateness_secs = 18446744073709551615\n", "time.allowed_lateness_secs"),
        ("[time]\nevaluation_interval_secs = 9223372036854775807\n", "time.evaluation_interval_secs"),
        ("[time]\nevaluation_interval_secs = 1\n", "time.evaluation_interval_secs"),
        ("[time]\nmax_future_secs = 9223372036854775807\n", "time.max_future_secs"),
        ("[time]\nidle_timeout_secs = 0\n", "time.idle_timeout_secs"),
        ("[time]\nmax_lateness_secs = 31536001\n", "time.max_lateness_secs"),
        ("[magic_number]\npending_ttl_secs = 9223372036854775807\n", "magic_number.pending_ttl_secs"),
        ("[health]\nwarmup_secs = 18446744073709551615\n", "health.warmup_secs"),
        ("[health.weights]\nsupport = 1e308\n", "health.weights.support"),
        ("[health.segments.smb.weights]\ntrend = 1e300\n", "health.segments.smb.weights.trend"),
        ("[limits]\nmax_teams_per_account = 0\n", "limits.max_teams_per_account"),
        ("[limits]\nmax_accounts_per_partition = 18446744073709551615\n", "limits.max_accounts_per_partition"),
        ("[processing]\ncommit_interval_ms = 18446744073709551615\n", "processing.commit_interval_ms"),
        ("[processing]\ntransaction_timeout_ms = 18446744073709551615\n", "processing.transaction_timeout_ms"),
        ("[processing]\ncommit_interval_ms = 60000\ntransaction_timeout_ms = 30000\n", "processing.commit_interval_ms"),
        ("[processing]\nmax_batch_records = 18446744073709551615\n", "processing.max_batch_records"),
    ] {
        let e = parse(toml).unwrap_err().to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
    // the largest accepted values still give an engine whose arithmetic fits
    let c = parse(
        "[time]\nallowed_lateness_secs = 31536000\nmax_future_secs = 31536000\nmax_lateness_secs = 31536000\nevaluation_interval_secs = 604800\n\
         [magic_number]\npending_ttl_secs = 31536000\n[health]\nwarmup_secs = 315360000\n\
         [health.weights]\nsupport = 1000000\nutilization = 1000000\n",
    )
    .unwrap();
    let e = crate::engine::EngineConfig::from_config(&c);
    assert_eq!(e.tick_of(crate::time::MAX_TIME_MS) % e.interval_ms, 0);
}

#[test]
fn input_formats_default_to_input_format() {
    let c = parse("[input]\nformat = \"avro\"\nteams = \"json\"\n").unwrap();
    use super::OutputFormat::{Avro, Json};
    assert_eq!(c.input.formats(), [Avro, Avro, Avro, Json]);
    assert_eq!(Config::default().input.formats(), [Json; 4]);
}

#[test]
fn segment_overrides_merge_over_globals() {
    let c = parse("[health.segments.smb.weights]\nsupport = 40\n[health.segments.smb.bands]\ngreen = 60\n").unwrap();
    let (w, b) = c.health.for_segment(Some("smb"));
    assert_eq!(w.support, 40.0);
    assert_eq!(w.utilization, 25.0);
    assert_eq!(b.green, 60.0);
    assert_eq!(b.yellow, 40.0);
    let (w, _) = c.health.for_segment(Some("enterprise"));
    assert_eq!(w.support, 20.0);
}

#[test]
fn env_overrides_file() {
    let mut c = Config::default();
    c.apply_env(|k| (k == "CS_PULSE_BOOTSTRAP_SERVERS").then(|| "127.0.0.1:19092".to_string()));
    assert_eq!(c.kafka.bootstrap_servers, "127.0.0.1:19092");
    assert_eq!(c.metrics.bind, "127.0.0.1:9464");
}

#[test]
fn log_format_and_group_from_the_environment() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    };
    let mut c = Config::default();
    c.apply_env(env(&[("CS_PULSE_LOG_FORMAT", "JSON"), ("CS_PULSE_GROUP_ID", "cs-pulse-eu")]));
    assert_eq!((c.log.format, c.kafka.group_id.as_str()), (LogFormat::Json, "cs-pulse-eu"));
    assert!(c.validate().is_ok());
    let mut c = Config::default();
    c.apply_env(env(&[("CS_PULSE_LOG_FORMAT", "yaml")]));
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("CS_PULSE_LOG_FORMAT") && err.contains("\"yaml\""), "{err}");
}

#[test]
fn effective_config_round_trips() {
    let c = parse("[adoption]\nkey_features = [\"deploys\"]\n[kafka.client]\n\"security.protocol\" = \"plaintext\"\n")
        .unwrap();
    let again = parse(&c.to_toml()).unwrap();
    assert_eq!(c, again);
}

fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
}

#[test]
fn variable_references_expand_and_dollars_escape() {
    let env = vars(&[("PW", "s3cr$t"), ("HOST", "b1:9093")]);
    assert_eq!(expand_vars("k", "${PW}", &env).unwrap(), "s3cr$t");
    assert_eq!(expand_vars("k", "${HOST},b2:9093", &env).unwrap(), "b1:9093,b2:9093");
    assert_eq!(expand_vars("k", "$$${PW}$", &env).unwrap(), "$s3cr$t$");
    assert_eq!(expand_vars("k", "a$b $ {PW}", &env).unwrap(), "a$b $ {PW}");
    let e = expand_vars("kafka.client.\"sasl.password\"", "${NOPE}", &env).unwrap_err().to_string();
    assert!(e.contains("sasl.password") && e.contains("NOPE") && e.contains("not set"), "{e}");
    let e = expand_vars("k", "${PW", &env).unwrap_err().to_string();
    assert!(e.contains("closing"), "{e}");
    let e = expand_vars("k", "${1X}", &env).unwrap_err().to_string();
    assert!(e.contains("not a variable reference"), "{e}");
}

#[test]
fn secrets_must_be_references_and_print_redacted() {
    let text = "[kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"hunter2\"\n";
    let e = Config::from_toml_with(text, "t", |_| None).unwrap_err().to_string();
    assert!(e.contains("kafka.client.\"sasl.password\"") && e.contains("environment"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    for key in ["ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret", "ssl.key.pem"] {
        let text = format!("[kafka.client]\n\"{key}\" = \"literal\"\n");
        assert!(Config::from_toml_with(&text, "t", |_| None).is_err(), "{key} accepted as a literal");
    }

    let text = "[kafka.client]\n\"sasl.username\" = \"svc\"\n\"sasl.password\" = \"${PW}\"\n\
                \"ssl.key.password\" = \"${PW}\"\n";
    let cfg = Config::from_toml_with(text, "t", vars(&[("PW", "hunter2")])).unwrap();
    assert_eq!(cfg.kafka.client["sasl.password"], "hunter2", "the client gets the value");
    let shown = cfg.to_toml();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("\"sasl.password\" = \"${PW}\""), "{shown}");
    assert!(shown.starts_with("# Secrets are redacted"), "{shown}");
    // what check-config prints loads again, to the same configuration
    let again = Config::from_toml_with(&shown, "t", vars(&[("PW", "hunter2")])).unwrap();
    assert_eq!(again, cfg);
    assert!(shown.contains("\"sasl.username\" = \"svc\""), "{shown}");
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("hunter2") && debug.contains("svc"), "{debug}");
    // a configuration built in code, with no reference, shows the placeholder
    let mut built = Config::default();
    built.kafka.client.insert("sasl.password".into(), "hunter2".into());
    let shown = built.to_toml();
    assert!(shown.contains("\"sasl.password\" = \"<redacted>\"") && !shown.contains("hunter2"), "{shown}");
}

#[test]
fn a_parse_error_names_the_key_and_never_echoes_the_line_or_the_value() {
    let text = "[kafka]\nconnect_timeout_secs = 5\n[kafka.client]\n\"sasl.password\" = \"hunter2\n";
    let e = Config::from_toml_with(text, "t", |_| None).unwrap_err().to_string();
    assert!(!e.contains("hunter2"), "{e}");
    assert!(e.contains("line 4"), "{e}");
    for text in [
        "[kafka.client]\n\"sasl.password\" = 12345678\n",
        "[kafka]\nclient = \"sasl.password=hunter2\"\n",
        "[kafka.client]\n\"sasl.password\" = [\"hunter2\"]\n",
    ] {
        let e = Config::from_toml_with(text, "t", |_| None).unwrap_err().to_string();
        assert!(!e.contains("hunter2") && !e.contains("12345678"), "{e}");
        assert!(e.contains("invalid type") && e.contains("expected"), "{e}");
    }
    assert_eq!(
        without_values("invalid type: string \"a, b\", expected a map; invalid value: integer `-1`, expected u64"),
        "invalid type: string, expected a map; invalid value: integer, expected u64"
    );
}

#[test]
fn replay_leaves_references_unexpanded_even_in_the_registry_url() {
    let dir = std::env::temp_dir().join(format!("cs-pulse-offline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("c.toml");
    std::fs::write(
        &p,
        "[kafka.client]\n\"sasl.password\" = \"${CS_PULSE_UNSET_TEST_VAR}\"\n\
         [schema_registry]\nurl = \"${CS_PULSE_UNSET_TEST_URL}\"\n",
    )
    .unwrap();
    let cfg = Config::load_offline(&p).unwrap();
    assert_eq!(cfg.schema_registry.url, "${CS_PULSE_UNSET_TEST_URL}");
    assert!(Config::load(&p).is_err(), "run and check-config need the variables");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn registry_and_bootstrap_references_expand_and_the_connect_timeout_is_bounded() {
    let text = "[kafka]\nbootstrap_servers = \"${B}\"\n[schema_registry]\nurl = \"https://${R}\"\n\
                ca_location = \"${CA}\"\n";
    let cfg =
        Config::from_toml_with(text, "t", vars(&[("B", "h:9093"), ("R", "reg:8081"), ("CA", "/ca.pem")])).unwrap();
    assert_eq!(cfg.kafka.bootstrap_servers, "h:9093");
    assert_eq!(cfg.schema_registry.url, "https://reg:8081");
    assert_eq!(cfg.schema_registry.ca_location, "/ca.pem");
    let e = parse("[kafka]\nconnect_timeout_secs = 0\n").unwrap_err().to_string();
    assert!(e.contains("kafka.connect_timeout_secs"), "{e}");
}

proptest::proptest! {
    /// Any text: expanding never panics; text without `$` is unchanged; and a text
    /// with every `$` doubled expands back to itself.
    #[test]
    fn expanding_any_text_is_total_and_doubled_dollars_are_literal(text in ".{0,40}") {
        let env = vars(&[("A", "x")]);
        let _ = expand_vars("k", &text, &env);
        if !text.contains('$') {
            proptest::prop_assert_eq!(expand_vars("k", &text, &env).unwrap(), text.clone());
        }
        let escaped = text.replace('$', "$$");
        proptest::prop_assert_eq!(expand_vars("k", &escaped, &env).unwrap(), text);
    }
}
