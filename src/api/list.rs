//! `GET /v1/accounts`: its query, and the order of its rows.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::error;
use crate::model::Band;

/// The query of `GET /v1/accounts`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    pub(super) band: Option<String>,
    pub(super) sort: Option<String>,
    pub(super) limit: Option<String>,
}

/// How the list is sorted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Sort {
    /// Lowest score first (no score last).
    Score,
    /// Highest score first.
    ScoreDesc,
    /// By account id.
    Account,
    /// Soonest renewal first (none last).
    Renewal,
}

pub(super) fn parse_list_query(q: &ListQuery) -> Result<(Option<Band>, Sort, Option<usize>), Box<Response>> {
    let band = match q.band.as_deref() {
        None | Some("") => None,
        Some("green") => Some(Band::Green),
        Some("yellow") => Some(Band::Yellow),
        Some("red") => Some(Band::Red),
        Some(b) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("band={b}: one of green, yellow, red"),
            )))
        }
    };
    let sort = match q.sort.as_deref() {
        None | Some("") | Some("account_id") => Sort::Account,
        Some("score") => Sort::Score,
        Some("-score") => Sort::ScoreDesc,
        Some("renewal") | Some("renewal_in_days") => Sort::Renewal,
        Some(s) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("sort={s}: one of score, -score, account_id, renewal"),
            )))
        }
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => None,
        Some(l) => match l.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Err(Box::new(error(StatusCode::BAD_REQUEST, "bad_query", format!("limit={l}: a whole number"))))
            }
        },
    };
    Ok((band, sort, limit))
}

pub(super) fn sort_rows(rows: &mut [Value], sort: Sort) {
    fn id(v: &Value) -> &str {
        v.get("account_id").and_then(Value::as_str).unwrap_or("")
    }
    let score = |v: &Value| v.get("score").and_then(Value::as_f64);
    let renewal = |v: &Value| v.get("renewal_in_days").and_then(Value::as_i64);
    rows.sort_by(|a, b| {
        let by = match sort {
            Sort::Account => std::cmp::Ordering::Equal,
            Sort::Score => cmp_some_first(score(a), score(b), |x, y| x.total_cmp(y)),
            Sort::ScoreDesc => cmp_some_first(score(a), score(b), |x, y| y.total_cmp(x)),
            Sort::Renewal => cmp_some_first(renewal(a), renewal(b), |x, y| x.cmp(y)),
        };
        by.then_with(|| id(a).cmp(id(b)))
    });
}

fn cmp_some_first<T>(a: Option<T>, b: Option<T>, f: impl Fn(&T, &T) -> std::cmp::Ordering) -> std::cmp::Ordering {
    match (a, b) {
        (Some(x), Some(y)) => f(&x, &y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}
