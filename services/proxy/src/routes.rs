//! The proxy's HTTP endpoints: `/query`, `/transaction`, `/health`, `/ready`, `/metrics`.

use crate::error::ProxyError;
use crate::execute;
use crate::node::Node;
use crate::route;
use crate::State;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::{json, Value as Json};
use sqlgate::wire::{
    self, QueryRequest, QueryResponse, StatementResult, TransactionRequest, TransactionResponse,
};
use sqlgate::{ApiError, ErrorCode, Mode, Role, Route, Statement};
use std::sync::Arc;
use std::time::Instant;
use subtle::ConstantTimeEq;

/// Header carrying the internal token shared with the gatekeeper.
pub const TOKEN_HEADER: &str = "X-Sqlgate-Token";
/// Header carrying the request id when the body has none.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";
/// Header carrying the id (never the secret) of the API key the gatekeeper authenticated.
pub const KEY_ID_HEADER: &str = "X-Sqlgate-Key-Id";

pub fn configure(cfg: &mut web::ServiceConfig) {
    use sqlgate::error::route;
    route(cfg, "/query", web::post().to(query));
    route(cfg, "/transaction", web::post().to(transaction));
    route(cfg, "/health", web::get().to(health));
    route(cfg, "/ready", web::get().to(ready));
    route(cfg, "/metrics", web::get().to(metrics));
    cfg.default_service(web::to(sqlgate::error::not_found));
}

/// What a request log line and the metrics need, filled in as the request proceeds.
struct Ctx {
    request_id: String,
    key_id: String,
    kind: &'static str,
    mode: &'static str,
    node: Option<String>,
}

fn authorize(req: &HttpRequest, state: &State) -> Result<(), ApiError> {
    let given = req
        .headers()
        .get(TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let want = state.config.token.expose().as_bytes();
    if bool::from(given.ct_eq(want)) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Unauthorized,
            "missing or invalid internal token",
        ))
    }
}

/// The key id for the log line: letters and digits only, as the gatekeeper issues them.
fn header_key_id(req: &HttpRequest) -> String {
    req.headers()
        .get(KEY_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or("-")
        .to_string()
}

/// The role of the key the gatekeeper authenticated (vouched for by the internal token).
/// Without it nothing runs: the proxy never guesses a role.
fn header_role(req: &HttpRequest) -> Result<Role, ApiError> {
    req.headers()
        .get(wire::ROLE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(Role::parse)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                format!("missing or invalid {} header", wire::ROLE_HEADER),
            )
        })
}

fn header_request_id(req: &HttpRequest) -> Option<String> {
    let id = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    wire::check_request_id(id).ok().map(|_| id.to_string())
}

/// Finishes a request: metrics, one log line, and the response.
fn finish<T: serde::Serialize>(
    state: &State,
    endpoint: &'static str,
    ctx: Ctx,
    started: Instant,
    result: Result<T, ProxyError>,
) -> HttpResponse {
    let elapsed = started.elapsed();
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.outcome(),
    };
    state
        .metrics
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            endpoint,
            node: ctx.node.clone().unwrap_or_else(|| "none".into()),
            kind: ctx.kind,
            mode: ctx.mode,
            outcome,
        })
        .inc();
    state
        .metrics
        .duration
        .get_or_create(&crate::metrics::KindLabels { kind: ctx.kind })
        .observe(elapsed.as_secs_f64());
    let mut response = match result {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(e) => e
            .into_api(&ctx.request_id)
            .with_request_id(&ctx.request_id)
            .error_response(),
    };
    if let Some(node) = ctx.node.as_deref() {
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(node) {
            response.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static("x-sqlgate-node"),
                v,
            );
        }
    }
    log::info!(
        "Request done endpoint={endpoint} request_id={} key_id={} kind={} mode={} node={} status={} outcome={outcome} duration_ms={:.3}",
        ctx.request_id,
        ctx.key_id,
        ctx.kind,
        ctx.mode,
        ctx.node.as_deref().unwrap_or("-"),
        response.status().as_u16(),
        elapsed.as_secs_f64() * 1e3,
    );
    response
}

/// What running a statement on a node gave.
enum Ran {
    Done {
        result: StatementResult,
        /// After a write: the GTID position including it.
        gtid: Option<String>,
    },
    /// The worker had not applied the read's `after_gtid` in time; nothing was executed.
    NotCaughtUp,
}

/// Runs `work` on a connection of `node` as `account`, on the blocking pool. The answer is
/// sent back as soon as `work` returns; the connection is then reset (`PooledConn::clean`) off
/// the request path, before it goes back to the pool, so no session state reaches the next
/// request whoever sent it.
///
/// With a `deadline`, a `work` still running when it passes has its connection killed (which
/// rolls back an open transaction); the answer then says what really happened: the result if
/// `work` had finished first, else `TransactionDeadline`.
async fn on_conn<T: Send + 'static>(
    node: Arc<Node>,
    account: Role,
    deadline: Option<std::time::Duration>,
    work: impl FnOnce(&mut crate::pool::PooledConn) -> Result<T, ProxyError> + Send + 'static,
) -> Result<T, ProxyError> {
    let _busy = node.begin();
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let (killer_tx, mut killer_rx) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let mut conn = match node.pool(account).get() {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Err(ProxyError::NodeUnavailable {
                    node: node.name().to_string(),
                    detail: e.to_string(),
                }));
                return;
            }
        };
        let _ = killer_tx.send(conn.killer());
        let outcome = work(&mut conn);
        if let Err(ProxyError::Exec(e)) = &outcome {
            if matches!(e, execute::ExecError::Deadline(_)) {
                // Killed before answering: the 504 means the statement no longer runs.
                conn.kill();
            }
            conn.broken |= e.breaks_connection();
        }
        let _ = tx.send(outcome);
        conn.clean();
    });
    let lost = || ProxyError::Unexpected("the database task ended without an answer".into());
    let Some(limit) = deadline else {
        return rx.await.map_err(|_| lost())?;
    };
    if let Ok(answer) = tokio::time::timeout(limit, &mut rx).await {
        return answer.map_err(|_| lost())?;
    }
    if let Ok(killer) = killer_rx.try_recv() {
        let _ = tokio::task::spawn_blocking(move || killer.kill()).await;
    }
    match rx.await.map_err(|_| lost())? {
        // COMMIT had completed before the kill: the truth is success.
        Ok(done) => Ok(done),
        Err(_) => Err(ProxyError::Exec(execute::ExecError::TransactionDeadline)),
    }
}

/// Runs one statement on `node` as `account`: first waiting for `after_gtid` (reads on a
/// worker), then the statement, then reading the GTID position (`want_gtid`, writes).
async fn run_on(
    state: &State,
    node: Arc<Node>,
    account: Role,
    sql: String,
    params: Vec<Json>,
    after_gtid: Option<String>,
    want_gtid: bool,
) -> Result<Ran, ProxyError> {
    let limits = state.config.limits.clone();
    let gtid_wait = state.config.gtid_wait;
    on_conn(node, account, None, move |conn| {
        if let Some(g) = &after_gtid {
            if !execute::wait_for_gtid(conn, g, gtid_wait)? {
                return Ok(Ran::NotCaughtUp);
            }
        }
        let done = execute::run(&mut conn.conn, &sql, &params, &limits);
        conn.touch(done.as_ref().map_or(256, |d| d.received));
        let result = done?.result;
        // The write is committed (autocommit): a failure here must not turn it into an error.
        let gtid = if want_gtid {
            execute::gtid_after_write(conn).unwrap_or_else(|e| {
                log::warn!("Reading the GTID after a write failed error={e}");
                None
            })
        } else {
            None
        };
        Ok(Ran::Done { result, gtid })
    })
    .await
}

/// Parses and checks one statement with its params, and the key's role against it again (the
/// gatekeeper did; the proxy does not rely on it).
fn prepare(state: &State, role: Role, sql: &str, params: &[Json]) -> Result<Statement, ApiError> {
    let stmt = wire::prepare(
        &state.classifier,
        sql,
        params,
        state.config.limits.max_params,
    )?;
    stmt.check_role(role)?;
    Ok(stmt)
}

async fn read_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
) -> Result<T, ApiError> {
    authorize(req, state)?;
    let body = sqlgate::body::read_json(req, payload, state.config.limits.max_body_bytes).await?;
    wire::parse_json(&body)
}

async fn query(req: HttpRequest, payload: web::Payload, state: web::Data<State>) -> HttpResponse {
    let started = Instant::now();
    let mut ctx = Ctx {
        request_id: header_request_id(&req).unwrap_or_else(wire::new_request_id),
        key_id: header_key_id(&req),
        kind: "-",
        mode: "-",
        node: None,
    };
    let result = handle_query(&req, payload, &state, &mut ctx, started).await;
    finish(&state, "query", ctx, started, result)
}

async fn handle_query(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    ctx: &mut Ctx,
    started: Instant,
) -> Result<QueryResponse, ProxyError> {
    let body: QueryRequest = read_body(req, payload, state).await?;
    if let Some(id) = &body.request_id {
        wire::check_request_id(id)?;
        ctx.request_id = id.clone();
    }
    let role = header_role(req)?;
    let stmt = prepare(state, role, &body.sql, &body.params)?;
    // The least account both the key's role and the statement allow.
    let account = stmt.account().min(role);
    let mode = body.mode.unwrap_or(state.config.default_mode);
    ctx.kind = stmt.route().as_str();
    ctx.mode = mode.as_str();
    if let Some(g) = &body.after_gtid {
        wire::check_gtid(g)?;
    }
    let tolerance = state.config.ping_tolerance;
    let route = stmt.route();
    let mut choice = route::choose(&state.cluster, route, mode, tolerance, None);
    // Only a worker needs to catch up; the manager has every committed write.
    let wait = |c: &route::Choice| match c.node.role {
        crate::node::NodeRole::Worker => body.after_gtid.clone(),
        crate::node::NodeRole::Manager => None,
    };
    let want_gtid = route == Route::Write;
    ctx.node = Some(choice.node.name().to_string());
    let mut ran = run_on(
        state,
        choice.node.clone(),
        account,
        body.sql.clone(),
        body.params.clone(),
        wait(&choice),
        want_gtid,
    )
    .await;
    if route == Route::Read && ran.as_ref().is_err_and(ProxyError::retryable_read) {
        let failed = choice.node.name().to_string();
        log::warn!(
            "Read could not get a connection, retrying on another node request_id={} node={failed} error={:?}",
            ctx.request_id,
            ran.as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        // Direct mode's manager failed: there is no other node to read from.
        if mode != Mode::Direct {
            choice = route::choose(&state.cluster, Route::Read, mode, tolerance, Some(&failed));
            ctx.node = Some(choice.node.name().to_string());
            ran = run_on(
                state,
                choice.node.clone(),
                account,
                body.sql.clone(),
                body.params.clone(),
                wait(&choice),
                false,
            )
            .await;
        }
    }
    if matches!(ran, Ok(Ran::NotCaughtUp)) {
        let lagging = choice.node.name().to_string();
        choice = route::Choice {
            node: state.cluster.manager.clone(),
            fallback: Some(format!(
                "{lagging} had not applied after_gtid within {} ms",
                state.config.gtid_wait.as_millis()
            )),
        };
        ctx.node = Some(choice.node.name().to_string());
        ran = run_on(
            state,
            choice.node.clone(),
            account,
            body.sql,
            body.params,
            None,
            false,
        )
        .await;
    }
    let (result, gtid) = match ran? {
        Ran::Done { result, gtid } => (result, gtid),
        Ran::NotCaughtUp => {
            return Err(ProxyError::Unexpected("the manager cannot lag".into()));
        }
    };
    Ok(QueryResponse {
        request_id: ctx.request_id.clone(),
        kind: stmt.route().as_str().to_string(),
        mode,
        node: choice.node.name().to_string(),
        role: choice.node.role.as_str().to_string(),
        fallback: choice.fallback,
        result,
        gtid,
        duration_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

async fn transaction(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    let started = Instant::now();
    let mut ctx = Ctx {
        request_id: header_request_id(&req).unwrap_or_else(wire::new_request_id),
        key_id: header_key_id(&req),
        kind: "write",
        mode: "direct",
        node: None,
    };
    let result = handle_transaction(&req, payload, &state, &mut ctx, started).await;
    finish(&state, "transaction", ctx, started, result)
}

async fn handle_transaction(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    ctx: &mut Ctx,
    started: Instant,
) -> Result<TransactionResponse, ProxyError> {
    let body: TransactionRequest = read_body(req, payload, state).await?;
    if let Some(id) = &body.request_id {
        wire::check_request_id(id)?;
        ctx.request_id = id.clone();
    }
    let max = state.config.limits.max_tx_statements;
    if body.statements.is_empty() || body.statements.len() > max {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("a transaction holds 1 to {max} statements"),
        )
        .into());
    }
    let role = header_role(req)?;
    let mut account = Role::Read;
    for (i, s) in body.statements.iter().enumerate() {
        let stmt = prepare(state, role, &s.sql, &s.params)
            .and_then(|stmt| Ok(stmt.check_in_transaction().map(|()| stmt)?))
            .map_err(|e| e.with_statement_index(i))?;
        account = account.max(stmt.account());
    }
    let account = account.min(role);
    let node = state.cluster.manager.clone();
    ctx.node = Some(node.name().to_string());
    let limits = state.config.limits.clone();
    let request_id = ctx.request_id.clone();
    let deadline = Some(state.config.transaction_timeout);
    let results = on_conn(node.clone(), account, deadline, move |conn| {
        let mut received = 0;
        let outcome = run_transaction(conn, &body.statements, &limits, &mut received, &request_id);
        conn.touch(received.max(256));
        outcome
    })
    .await?;
    Ok(TransactionResponse {
        request_id: ctx.request_id.clone(),
        node: node.name().to_string(),
        role: node.role.as_str().to_string(),
        results,
        duration_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// Runs `statements` in one transaction: all committed, or none. Before COMMIT the proxy checks
/// that the transaction it started is still the one open, so a statement that ended it (an
/// implicit commit the classifier missed) is reported, not mistaken for success.
fn run_transaction(
    conn: &mut crate::pool::PooledConn,
    statements: &[wire::TxStatement],
    limits: &crate::config::Limits,
    received: &mut usize,
    request_id: &str,
) -> Result<Vec<sqlgate::wire::StatementResult>, ProxyError> {
    // A failure names its statement; one of the transaction itself (START, COMMIT) does not.
    // A lost connection or a passed deadline stays as it is: `on_conn` must see it to kill the
    // statement and discard the connection.
    let fail = |index: Option<usize>, e: ProxyError| {
        if let ProxyError::Exec(x) = &e {
            if x.breaks_connection() {
                return e;
            }
        }
        let api = e.into_api(request_id);
        ProxyError::Client(match index {
            Some(i) => api.with_statement_index(i),
            None => api,
        })
    };
    let exec = |e: execute::ExecError| ProxyError::Exec(e);
    let mut tx = conn
        .conn
        .start_transaction(mysql::TxOpts::default())
        .map_err(|e| fail(None, exec(e.into())))?;
    let mut results = Vec::with_capacity(statements.len());
    for (i, s) in statements.iter().enumerate() {
        // On error `tx` drops here and rolls back.
        let done =
            execute::run(&mut tx, &s.sql, &s.params, limits).map_err(|e| fail(Some(i), exec(e)))?;
        *received += done.received;
        results.push(done.result);
        if !execute::in_transaction(&mut tx).map_err(|e| fail(Some(i), exec(e)))? {
            log::error!(
                "A statement ended its transaction request_id={request_id} statement_index={i}"
            );
            let broken = ApiError::new(
                ErrorCode::TransactionBroken,
                "this statement ended the transaction on the server; what ran before it \
                 may have been committed, nothing after it ran",
            );
            return Err(fail(Some(i), ProxyError::Client(broken)));
        }
    }
    tx.commit().map_err(|e| fail(None, exec(e.into())))?;
    Ok(results)
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Every node with its role, eligibility, reason, lag and RTT; 200 when the manager can serve.
async fn ready(state: web::Data<State>) -> HttpResponse {
    let nodes: Vec<Json> = state
        .cluster
        .all()
        .map(|n| {
            let h = n.health();
            json!({
                "name": n.name(),
                "role": n.role.as_str(),
                "address": format!("{}:{}", n.addr.host, n.addr.port),
                "checked": h.checked,
                "reachable": h.reachable,
                "eligible": h.eligible,
                "reason": h.reason,
                "error": h.error,
                "flavor": h.flavor.map(|f| f.as_str()),
                "version": h.version,
                "read_only": h.read_only,
                "replication_io_running": h.io_running,
                "replication_sql_running": h.sql_running,
                "lag_seconds": h.lag_seconds,
                "rtt_ms": h.rtt_us.map(|us| (us / 10.0).round() / 100.0),
                "rtt_method": h.rtt_method,
                "in_flight": n.in_flight(),
            })
        })
        .collect();
    let manager = state.cluster.manager.health();
    let ready = manager.eligible;
    let tcp_fallback = state
        .cluster
        .all()
        .any(|n| n.health().rtt_method == Some("tcp"));
    let body = json!({
        "ready": ready,
        "reason": if ready { None } else { Some(manager.reason.unwrap_or_else(|| "manager not checked yet".into())) },
        "default_mode": state.config.default_mode,
        "rtt_source": if tcp_fallback { "tcp_connect (ICMP not permitted or PROXY_RTT_PROBE=tcp)" } else { "icmp" },
        "nodes": nodes,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state.cluster))
}
