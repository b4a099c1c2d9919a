//! The HTTP server: `/metrics`, `/healthz`, `/readyz`, and the read-only API that answers
//! "how healthy is this account now, and why?".
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/accounts?band=&sort=&limit=` | every account: score, band, stage, renewal_in_days |
//! | `GET /v1/accounts/{account_id}` | the account's org chart as a tree, each entity with score, band, components, metrics and 90 days of history; the latest alerts |
//! | `GET /v1/entities/{level}/{account_id}/{entity_id}` | one entity, the same fields, and its alerts |
//! | `GET /accounts/{account_id}` | the same as a page: HTML, no script, no external asset |
//!
//! Answers come from the views of the last committed batch ([`directory`]), never from
//! state being restored: an account that may be on a partition still moving gets `503`
//! with `Retry-After`. An account held by another instance of the group is asked of that
//! instance ([`peers`]). With `api.token_env` set, every route but `/healthz` and
//! `/readyz` needs `Authorization: Bearer <token>`.

pub mod directory;
mod json;
mod list;
mod page;
pub mod peers;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::model::Level;
use directory::{Coverage, Directory, Found};
use list::{parse_list_query, sort_rows, ListQuery, Sort};
use peers::{PeerAnswer, Peers, Routes, COVERAGE, FORWARDED, HOLDS, SERVED_BY};

/// What the handlers share.
pub struct Api {
    directory: Arc<Directory>,
    peers: Arc<dyn Peers>,
    token: Option<String>,
    routes: Routes,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("token", &self.token.is_some()).finish()
    }
}

impl Api {
    /// An API over `directory`, asking `peers` for what it does not hold, requiring
    /// `token` (when set) of every request but the probes.
    pub fn new(directory: Arc<Directory>, peers: Arc<dyn Peers>, token: Option<String>) -> Self {
        Self { directory, peers, token: token.filter(|t| !t.is_empty()), routes: Routes::default() }
    }
}

/// The bearer token `api.token_env` names, read from the environment. An error names the
/// key when the variable is unset or empty.
pub fn token_from_env(cfg: &crate::config::ApiConfig) -> Result<Option<String>, String> {
    let Some(name) = cfg.token_env.as_deref() else { return Ok(None) };
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
        _ => Err(format!("key api.token_env: environment variable {name} is unset or empty")),
    }
}

/// Serves `/metrics`, `/healthz`, `/readyz` and the API on `metrics.bind`, answering from
/// `directory` and asking the group's other instances (found through Kafka when `peers`)
/// for the rest. Sets `api.advertised_url` from the bound address when it was unset and
/// the bind names a host, so that the pipeline advertises where this instance is.
pub fn start(
    rt: &tokio::runtime::Runtime,
    cfg: &mut crate::config::Config,
    directory: &Arc<Directory>,
    peers: bool,
) -> Result<std::net::SocketAddr, String> {
    let bind = cfg.metrics.bind.clone();
    let addr: std::net::SocketAddr = bind.parse().map_err(|e| format!("metrics.bind '{bind}': {e}"))?;
    let token = token_from_env(&cfg.api)?;
    let listener =
        rt.block_on(tokio::net::TcpListener::bind(addr)).map_err(|e| format!("cannot serve on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    if cfg.api.advertised_url.is_none() && !local.ip().is_unspecified() {
        cfg.api.advertised_url = Some(format!("http://{local}"));
    }
    let me = cfg.api.advertised(&cfg.metrics.bind);
    let peers: Arc<dyn Peers> = match (peers, me) {
        (true, Some(me)) => {
            let client = crate::kafka::client_config(cfg)
                .set("client.id", "cs-pulse-api")
                .create()
                .map_err(|e| format!("kafka client for the API: {e}"))?;
            Arc::new(peers::KafkaPeers::new(client, cfg.kafka.group_id.clone(), me))
        }
        _ => Arc::new(peers::Alone),
    };
    let api = Arc::new(Api::new(Arc::clone(directory), peers, token));
    rt.block_on(serve_on(listener, api)).map_err(|e| format!("cannot serve on {addr}: {e}"))?;
    Ok(local)
}

/// Binds `addr` and serves until the task is dropped. Returns the bound address (useful
/// with port 0).
pub async fn serve(addr: SocketAddr, api: Arc<Api>) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_on(tokio::net::TcpListener::bind(addr).await?, api).await
}

/// Serves on a bound listener until the task is dropped.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    api: Arc<Api>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let local = listener.local_addr()?;
    let app = router(api);
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped.");
        }
    });
    Ok((local, handle))
}

fn router(api: Arc<Api>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(exposition))
        .route("/v1/accounts", get(list_accounts))
        .route("/v1/accounts/{account_id}", get(account))
        .route("/v1/entities/{level}/{account_id}/{entity_id}", get(entity))
        .route("/accounts/{account_id}", get(page))
        .route("/", get(index))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(Arc::clone(&api), authorize))
        .layer(middleware::from_fn_with_state(Arc::clone(&api), authorize_fallback));
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .merge(protected)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
}

/// A JSON error: `{"error": code, "message": ...}`.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": code, "message": message.into()}))).into_response()
}

fn unavailable(message: impl Into<String>) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Equal in time whatever the first difference.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn token_ok(api: &Api, headers: &HeaderMap) -> bool {
    let Some(token) = api.token.as_deref() else { return true };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let given = given.strip_prefix("Bearer ").or_else(|| given.strip_prefix("bearer ")).unwrap_or("");
    same_secret(given.trim().as_bytes(), token.as_bytes())
}

fn unauthorized() -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required (api.token_env)");
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"cs-pulse\""));
    r
}

async fn authorize(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    if !token_ok(&api, req.headers()) {
        return unauthorized();
    }
    next.run(req).await
}

/// Unmatched paths need the token too: without it, they would tell which paths exist.
async fn authorize_fallback(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let probe = matches!(req.uri().path(), "/healthz" | "/readyz");
    if !probe && !token_ok(&api, req.headers()) {
        return unauthorized();
    }
    next.run(req).await
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {}: try /v1/accounts, /v1/accounts/{{account_id}}, /v1/entities/{{level}}/{{account_id}}/{{entity_id}} or /accounts/{{account_id}}",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method) -> Response {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{method}: the API is read-only"));
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

async fn exposition() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::telemetry::exposition())
        .into_response()
}

async fn readyz() -> Response {
    let stopped = crate::telemetry::failed_partitions();
    if !stopped.is_empty() {
        let lines: String = stopped.iter().map(|l| format!("{l}\n")).collect();
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: input partitions stopped\n{lines}"))
            .into_response();
    }
    if crate::telemetry::is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED)
}

/// Marks an answer about an account this instance holds (whatever its status): the
/// instance that forwarded the request relays it as it is.
fn held(mut r: Response) -> Response {
    r.headers_mut().insert(HOLDS, HeaderValue::from_static("1"));
    r
}

fn with_coverage(mut r: Response, c: &Coverage) -> Response {
    if let Ok(v) = HeaderValue::from_str(&c.to_header()) {
        r.headers_mut().insert(COVERAGE, v);
    }
    r
}

/// Where an account's answer comes from.
enum Lookup {
    /// This instance holds it.
    Here(Found),
    /// Another instance answered.
    Relayed(Response),
    /// An error to answer with.
    Answer(Response),
}

/// Finds `account_id` here or, unless the request was forwarded, on another instance.
async fn lookup(api: &Arc<Api>, account_id: &str, headers: &HeaderMap, path_and_query: &str) -> Lookup {
    // One look at the directory: the account, or which partitions answered for it not
    // being here (a partition that becomes ready in between must not make a false 404).
    let mine = match api.directory.find_or_coverage(account_id) {
        Ok(found) => return Lookup::Here(found),
        Err(coverage) => coverage,
    };
    if is_forwarded(headers) {
        let r = error(StatusCode::NOT_FOUND, "not_here", format!("account {account_id} is not held by this instance"));
        return Lookup::Answer(with_coverage(r, &mine));
    }
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let others = match others(api).await {
        Ok(o) => o,
        Err(e) => return Lookup::Answer(unavailable(format!("account {account_id} is not held here; {e}"))),
    };
    // The instance that answered last time first, while it is still a member of the group.
    if let Some(url) = api.routes.get(account_id).filter(|u| others.contains(u)) {
        match ask(url.clone(), path_and_query.to_string(), auth.clone()).await {
            PeerAnswer::Found { status, content_type, body, .. } => {
                return Lookup::Relayed(relay(status, &content_type, body, &url));
            }
            _ => api.routes.forget(account_id),
        }
    }
    let asks = others.into_iter().map(|url| {
        let (p, a) = (path_and_query.to_string(), auth.clone());
        async move { (url.clone(), ask(url, p, a).await) }
    });
    let answers = futures_join_all(asks).await;
    let mut coverage = mine;
    let mut failures = Vec::new();
    for (url, answer) in answers {
        match answer {
            PeerAnswer::Found { status, content_type, body, .. } => {
                api.routes.set(account_id, &url);
                return Lookup::Relayed(relay(status, &content_type, body, &url));
            }
            PeerAnswer::NotHere(c) => coverage.merge(&c),
            PeerAnswer::Failed(e) => failures.push(e),
        }
    }
    if !failures.is_empty() {
        return Lookup::Answer(unavailable(format!(
            "account {account_id} is not held here and another instance could not be asked: {}",
            failures.join("; ")
        )));
    }
    if !coverage.is_complete() {
        return Lookup::Answer(unavailable(format!(
            "account {account_id} is not held by an instance that is ready; partitions are moving or restoring ({})",
            coverage.to_header()
        )));
    }
    Lookup::Answer(error(StatusCode::NOT_FOUND, "unknown_account", format!("no account {account_id}")))
}

/// The other instances' URLs. Describing the group is a blocking Kafka request: it runs on
/// the blocking pool, never on the server's thread.
async fn others(api: &Arc<Api>) -> Result<Vec<String>, String> {
    let peers = Arc::clone(&api.peers);
    tokio::task::spawn_blocking(move || peers.others()).await.unwrap_or_else(|e| Err(e.to_string()))
}

async fn ask(url: String, path_and_query: String, auth: Option<String>) -> PeerAnswer {
    tokio::task::spawn_blocking(move || peers::ask(&url, &path_and_query, auth.as_deref()))
        .await
        .unwrap_or_else(|e| PeerAnswer::Failed(e.to_string()))
}

/// Runs the futures concurrently and collects their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

fn relay(status: u16, content_type: &str, body: Vec<u8>, url: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut r = (status, body).into_response();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(url) {
        r.headers_mut().insert(SERVED_BY, v);
    }
    r
}

fn path_and_query(uri: &axum::http::Uri) -> String {
    uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| uri.path().to_string())
}

async fn account(
    State(api): State<Arc<Api>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    about_account(&api, &uri, &headers, path, |f| axum::Json(json::account(f)).into_response()).await
}

async fn page(
    State(api): State<Arc<Api>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    about_account(&api, &uri, &headers, path, |f| axum::response::Html(page::account_page(f)).into_response()).await
}

/// An answer about the account of the path: rendered here by `render`, or another
/// instance's, or an error.
async fn about_account(
    api: &Arc<Api>,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    render: impl FnOnce(&Found) -> Response,
) -> Response {
    let Ok(Path(account_id)) = path else { return bad_path(uri) };
    match lookup(api, &account_id, headers, &path_and_query(uri)).await {
        Lookup::Here(found) => held(render(&found)),
        Lookup::Relayed(r) | Lookup::Answer(r) => r,
    }
}

/// The level of a path, by its name in the outputs (`team`, `group`, `business_unit`,
/// `division`, `account`).
fn parse_level(s: &str) -> Option<Level> {
    Level::ALL.into_iter().find(|l| l.as_str() == s)
}

async fn entity(
    State(api): State<Arc<Api>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    path: Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>,
) -> Response {
    let Ok(Path((level, account_id, entity_id))) = path else { return bad_path(&uri) };
    let Some(level) = parse_level(&level) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_level",
            format!("no level {level}: one of team, group, business_unit, division, account"),
        );
    };
    match lookup(&api, &account_id, &headers, &path_and_query(&uri)).await {
        Lookup::Here(found) => held(match json::entity(&found, level, &entity_id) {
            Some(v) => axum::Json(v).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                "unknown_entity",
                format!("account {account_id} has no {} {entity_id}", level.as_str()),
            ),
        }),
        Lookup::Relayed(r) | Lookup::Answer(r) => r,
    }
}

fn bad_path(uri: &axum::http::Uri) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_path", format!("the path {} does not decode", uri.path()))
}

async fn list_accounts(
    State(api): State<Arc<Api>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_query", e.body_text()),
    };
    let (band, sort, limit) = match parse_list_query(&q) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let (found, mine) = api.directory.all_with_coverage();
    let mut rows: Vec<Value> =
        found.iter().map(json::summary).filter(|v| band.is_none_or(|b| v.get("band") == Some(&json!(b)))).collect();
    let mut coverage = mine.clone();
    if !is_forwarded(&headers) {
        let others = match others(&api).await {
            Ok(o) => o,
            Err(e) => return unavailable(e),
        };
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
        let pq = path_and_query(&uri);
        let asks = others.into_iter().map(|url| {
            let (p, a) = (pq.clone(), auth.clone());
            async move { (url.clone(), ask(url, p, a).await) }
        });
        for (url, answer) in futures_join_all(asks).await {
            match answer {
                PeerAnswer::Found { body, coverage: Some(c), .. } => {
                    coverage.merge(&c);
                    let theirs: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    match theirs.get("accounts").and_then(Value::as_array) {
                        Some(a) => rows.extend(a.iter().cloned()),
                        None => return unavailable(format!("{url} answered the list without accounts")),
                    }
                }
                PeerAnswer::Found { .. } => return unavailable(format!("{url} did not say which partitions it holds")),
                PeerAnswer::NotHere(_) => return unavailable(format!("{url} did not answer the list")),
                PeerAnswer::Failed(e) => return unavailable(format!("another instance could not be asked: {e}")),
            }
        }
        if !coverage.is_complete() {
            return unavailable(format!(
                "partitions are moving or restoring; the list would be incomplete ({})",
                coverage.to_header()
            ));
        }
    }
    sort_rows(&mut rows, sort);
    if let Some(n) = limit {
        rows.truncate(n);
    }
    let as_of = rows.iter().filter_map(|r| r.get("as_of_ms").and_then(Value::as_i64)).min();
    let body = json!({
        "as_of": as_of.map(crate::time::format_rfc3339),
        "as_of_ms": as_of,
        "count": rows.len(),
        "accounts": rows,
    });
    with_coverage(axum::Json(body).into_response(), &mine)
}

async fn index(State(api): State<Arc<Api>>) -> Response {
    let mut rows: Vec<Value> = api.directory.all().iter().map(json::summary).collect();
    sort_rows(&mut rows, Sort::Score);
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>cs-pulse</title></head><body><h1>cs-pulse</h1><p>Accounts held by this instance, lowest score first. The JSON API is under <code>/v1/accounts</code>.</p><ul>",
    );
    for r in rows.iter().take(500) {
        let id = r.get("account_id").and_then(Value::as_str).unwrap_or("");
        let score = r.get("score").and_then(Value::as_f64).map(|s| format!("{s:.1}")).unwrap_or_else(|| "–".into());
        let band = r.get("band").and_then(Value::as_str).unwrap_or("");
        html.push_str(&format!(
            "<li><a href=\"/accounts/{}\">{}</a> {score} {band}</li>",
            page::esc(&crate::avro::registry::encode_path(id)),
            page::esc(id)
        ));
    }
    html.push_str("</ul></body></html>");
    axum::response::Html(html).into_response()
}
