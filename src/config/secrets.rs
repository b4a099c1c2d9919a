//! Secrets in the configuration: which keys hold them, how they print, and the `${VAR}`
//! references to the environment they must be written as.

use std::collections::BTreeMap;

use super::{invalid, ConfigError};

/// What secrets print as.
pub const REDACTED: &str = "<redacted>";

/// Whether a librdkafka property holds a secret: a password, passphrase, client secret,
/// private key or the OAUTHBEARER configuration (which may hold any of them).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.trim().to_ascii_lowercase();
    ["password", "passphrase", "secret", "private.key", "ssl.key.pem", "ssl_key", "oauthbearer.config"]
        .iter()
        .any(|s| k.contains(s))
}

/// The pass-through properties with every secret replaced by the `${VAR}` reference it
/// came from (`references`), or by [`REDACTED`].
pub fn redacted(client: &BTreeMap<String, String>, references: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    client
        .iter()
        .map(|(k, v)| {
            let shown = match (is_secret_key(k), references.get(k)) {
                (false, _) => v.clone(),
                (true, Some(reference)) => reference.clone(),
                (true, None) => REDACTED.to_string(),
            };
            (k.clone(), shown)
        })
        .collect()
}

/// Replaces each `${NAME}` in `value` with the environment variable `NAME` (`get`); `$$`
/// is one `$`, and any other `$` stays as it is. `key` names the value in errors. An
/// unset variable is an error, never an empty string; the error never holds a value.
pub fn expand_vars(key: &str, value: &str, get: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(invalid(key, "has a `${` without its closing `}`"));
            };
            let name = &body[..end];
            if !is_variable_name(name) {
                return Err(invalid(
                    key,
                    format!("`${{{name}}}` is not a variable reference: a name is letters, digits and `_`"),
                ));
            }
            match get(name) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(invalid(key, format!("refers to the environment variable {name}, which is not set")))
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `name` can name an environment variable: letters, digits and `_`, not
/// starting with a digit.
fn is_variable_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `value` is exactly one `${NAME}` reference.
pub(super) fn is_env_reference(value: &str) -> bool {
    value.strip_prefix("${").and_then(|v| v.strip_suffix('}')).is_some_and(is_variable_name)
}

/// A TOML or serde error message without the values it quotes (`invalid type: string
/// "…", expected a map`): the value may be a secret.
pub(super) fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = ["invalid type: ", "invalid value: "].iter().filter_map(|p| rest.find(p).map(|i| (i, p))).min()
    {
        let (i, prefix) = i;
        out.push_str(&rest[..i + prefix.len()]);
        let after = &rest[i + prefix.len()..];
        // keep the kind ("integer", "string"), drop what follows up to ", expected"
        let kind_end = after.find([' ', ',']).unwrap_or(after.len());
        out.push_str(&after[..kind_end]);
        rest = match after.find(", expected") {
            Some(j) => &after[j..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}
