//! [`Config::validate`]: the ranges of values and the rules that span keys.

use super::*;

impl Config {
    /// Checks values and the rules that span keys. The error names the key and says why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(v) = &self.log.bad_env_format {
            return Err(invalid("CS_PULSE_LOG_FORMAT", format!("is {v:?}; it must be \"human\" or \"json\"")));
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err(invalid("kafka.bootstrap_servers", "must not be empty"));
        }
        if self.kafka.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "must not be empty"));
        }
        in_range("kafka.connect_timeout_secs", self.kafka.connect_timeout_secs, 1, 3600, "seconds")?;
        let t = &self.topics;
        let topics = [
            ("topics.usage", &t.usage),
            ("topics.support", &t.support),
            ("topics.accounts", &t.accounts),
            ("topics.teams", &t.teams),
            ("topics.alerts", &t.alerts),
            ("topics.scores", &t.scores),
            ("topics.deadletter", &t.deadletter),
            ("topics.changelog", &self.changelog_topic()),
        ];
        for (i, (key, name)) in topics.iter().enumerate() {
            if name.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
            if let Some((other, _)) = topics[..i].iter().find(|(_, n)| n == name) {
                return Err(invalid(key, format!("names the same topic '{name}' as `{other}`")));
            }
        }
        let t = &self.time;
        in_range("time.evaluation_interval_secs", t.evaluation_interval_secs, 60, 7 * DAY_SECS, "seconds")?;
        in_range("time.idle_timeout_secs", t.idle_timeout_secs, 1, DAY_SECS, "seconds")?;
        in_range("time.allowed_lateness_secs", t.allowed_lateness_secs, 0, 365 * DAY_SECS, "seconds")?;
        in_range("time.max_future_secs", t.max_future_secs, 0, 365 * DAY_SECS, "seconds")?;
        in_range("time.max_lateness_secs", t.max_lateness_secs, 0, 365 * DAY_SECS, "seconds")?;
        in_range("magic_number.pending_ttl_secs", self.magic_number.pending_ttl_secs, 1, 365 * DAY_SECS, "seconds")?;
        in_range("health.warmup_secs", self.health.warmup_secs, 0, 10 * 365 * DAY_SECS, "seconds")?;
        let l = &self.limits;
        for (key, v) in [
            ("limits.max_accounts_per_partition", l.max_accounts_per_partition),
            ("limits.max_teams_per_account", l.max_teams_per_account),
            ("limits.max_users_per_account", l.max_users_per_account),
            ("limits.max_teams_per_partition", l.max_teams_per_partition),
            ("limits.max_users_per_partition", l.max_users_per_partition),
            ("limits.max_tickets_per_partition", l.max_tickets_per_partition),
            ("limits.max_changes_per_partition", l.max_changes_per_partition),
            ("limits.max_tickets_per_account", l.max_tickets_per_account),
            ("limits.max_changes_per_account", l.max_changes_per_account),
        ] {
            in_range(key, v, 1, MAX_LIMIT, "")?;
        }
        if self.magic_number.pending_ttl_secs < self.time.allowed_lateness_secs {
            return Err(invalid(
                "magic_number.pending_ttl_secs",
                format!(
                    "{} is shorter than time.allowed_lateness_secs ({}): a pending half would expire before its partner may still arrive",
                    self.magic_number.pending_ttl_secs, self.time.allowed_lateness_secs
                ),
            ));
        }
        if self.adoption.key_features.len() > 1_000 {
            return Err(invalid(
                "adoption.key_features",
                format!("lists {} features; at most 1000", self.adoption.key_features.len()),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.adoption.key_features {
            if f.is_empty() {
                return Err(invalid("adoption.key_features", "holds an empty feature name"));
            }
            if !seen.insert(f) {
                return Err(invalid("adoption.key_features", format!("lists '{f}' twice")));
            }
        }
        check_weights("health.weights", &self.health.weights)?;
        check_bands("health.bands", &self.health.bands)?;
        for name in self.health.segments.keys() {
            let (w, b) = self.health.for_segment(Some(name));
            check_weights(&format!("health.segments.{name}.weights"), &w)?;
            check_bands(&format!("health.segments.{name}.bands"), &b)?;
        }
        let p = &self.processing;
        in_range("processing.commit_interval_ms", p.commit_interval_ms, 1, 60_000, "ms")?;
        in_range("processing.max_batch_records", p.max_batch_records as u64, 1, 1_000_000, "")?;
        // The broker refuses a transaction timeout above its transaction.max.timeout.ms
        // (15 minutes by default).
        in_range("processing.transaction_timeout_ms", p.transaction_timeout_ms, 1_000, 900_000, "ms")?;
        if p.commit_interval_ms >= p.transaction_timeout_ms {
            return Err(invalid(
                "processing.commit_interval_ms",
                format!(
                    "{} is not shorter than processing.transaction_timeout_ms ({}): every transaction would time out",
                    p.commit_interval_ms, p.transaction_timeout_ms
                ),
            ));
        }
        if self.processing.instance_id.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("processing.instance_id", "must not be empty"));
        }
        let url = self.schema_registry.url.trim();
        // `replay` leaves references unexpanded: such a URL is not checked.
        let unexpanded = url.contains("${");
        if !(url.is_empty() || unexpanded || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("schema_registry.url", format!("'{url}' is not an http:// or https:// URL")));
        }
        if self.output.format == OutputFormat::Avro && url.is_empty() {
            return Err(invalid(
                "output.format",
                "avro output needs schema_registry.url: consumers find the alert schema by the id cs-pulse registers",
            ));
        }
        self.metrics
            .bind
            .parse::<SocketAddr>()
            .map_err(|e| invalid("metrics.bind", format!("'{}' is not HOST:PORT ({e})", self.metrics.bind)))?;
        if let Some(u) = self.api.advertised_url.as_deref().filter(|u| !u.is_empty()) {
            let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                return Err(invalid("api.advertised_url", format!("'{u}' is not an http:// or https:// URL")));
            }
        }
        if let Some(name) = self.api.token_env.as_deref() {
            let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(invalid("api.token_env", format!("'{name}' is not an environment variable name")));
            }
        }
        Ok(())
    }
}

/// Seconds in a day, for the ranges of durations.
const DAY_SECS: u64 = 86_400;
/// The largest weight: weights are relative, and a sum of seven stays exact in `f64`.
pub const MAX_WEIGHT: f64 = 1_000_000.0;
/// The largest cap of `[limits]`.
pub const MAX_LIMIT: u64 = 1_000_000_000;

/// Refuses `v` outside `lo..=hi`, naming the key, the value and the range.
fn in_range(key: &str, v: u64, lo: u64, hi: u64, unit: &str) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&v) {
        return Ok(());
    }
    let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
    Err(invalid(key, format!("{v}{unit} is out of range: it must be within {lo}..={hi}{unit}")))
}

fn check_weights(key: &str, w: &Weights) -> Result<(), ConfigError> {
    for (name, v) in w.entries() {
        if !v.is_finite() || !(0.0..=MAX_WEIGHT).contains(&v) {
            return Err(invalid(&format!("{key}.{name}"), format!("{v} must be a number within 0..={MAX_WEIGHT}")));
        }
    }
    if w.entries().iter().all(|(_, v)| *v == 0.0) {
        return Err(invalid(key, "all weights are 0: no component would count"));
    }
    Ok(())
}

fn check_bands(key: &str, b: &Bands) -> Result<(), ConfigError> {
    for (name, v) in [("green", b.green), ("yellow", b.yellow), ("hysteresis", b.hysteresis)] {
        if !v.is_finite() || !(0.0..=100.0).contains(&v) {
            return Err(invalid(&format!("{key}.{name}"), format!("{v} must be within 0..=100")));
        }
    }
    if b.yellow >= b.green {
        return Err(invalid(&format!("{key}.yellow"), format!("{} must be below green ({})", b.yellow, b.green)));
    }
    Ok(())
}
