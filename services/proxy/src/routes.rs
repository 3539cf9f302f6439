//! The proxy's HTTP endpoints: `/query`, `/transaction`, `/batch`, `/health`, `/ready`, `/metrics`.

//! Handlers only parse, call and reply: the routing policy is `route`, carrying it out is
//! `execute`.

use crate::error::ProxyError;
use crate::execute;
use crate::route::Ask;
use crate::startup::State;
use crate::stream;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde_json::{json, Value as Json};
use sqlgate::request_log::{self, annotate};
use sqlgate::wire::{
    self, BatchRequest, Database, Prepared, QueryRequest, RequestId, RowShape, SetResult,
    TransactionRequest, TypedBatchResponse, TypedQueryResponse, TypedTransactionResponse,
};
use sqlgate::{ApiError, ErrorCode, Mode, Role, Route};
use std::time::Instant;
use subtle::ConstantTimeEq;

use sqlgate::wire::{KEY_ID_HEADER, NODE_HEADER, REQUEST_ID_HEADER, TOKEN_HEADER};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use sqlgate::error::route;
    route(cfg, "/query", web::post().to(query));
    route(cfg, "/transaction", web::post().to(transaction));
    route(cfg, "/batch", web::post().to(batch));
    route(cfg, "/health", web::get().to(health));
    route(cfg, "/ready", web::get().to(ready));
    route(cfg, "/metrics", web::get().to(metrics));
    cfg.default_service(web::to(sqlgate::error::not_found));
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
fn header_key_id(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(KEY_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(str::to_string)
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

/// The request id: the gatekeeper's header (the body may name its own later), else a new one.
fn start(req: &HttpRequest) -> RequestId {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| RequestId::parse(v).ok())
        .unwrap_or_default();
    annotate(req, |f| {
        f.request_id = Some(id.clone());
        f.key_id = header_key_id(req);
    });
    id
}

/// The reply: the JSON body, or the error (with what the driver said logged, never sent), and
/// the node that ran the statement in a header when there was one.
fn reply<T: serde::Serialize>(
    req: &HttpRequest,
    request_id: &RequestId,
    result: Result<T, ProxyError>,
) -> HttpResponse {
    let response = match result {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(e) => e
            .into_api(request_id.as_str())
            .with_request_id(request_id.as_str())
            .into_response(),
    };
    with_node(req, response)
}

/// `response` with the node that ran the statement in a header, when there was one.
fn with_node(req: &HttpRequest, mut response: HttpResponse) -> HttpResponse {
    let node = req
        .extensions()
        .get::<request_log::Fields>()
        .and_then(|f| f.node.clone());
    if let Some(node) = node {
        use actix_web::http::header::{HeaderName, HeaderValue};
        if let (Ok(name), Ok(v)) = (
            HeaderName::try_from(NODE_HEADER),
            HeaderValue::from_str(&node),
        ) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

/// The limits both services apply to a request's statements.
fn limits(state: &State) -> wire::Limits {
    let l = &state.config.limits;
    wire::Limits {
        max_params: l.max_params,
        max_tx_statements: l.max_tx_statements,
        max_batch_sets: l.max_batch_sets,
    }
}

/// A request's `database` must be one of the application schemas (`PROXY_APP_SCHEMAS`), the
/// ones the accounts are granted on; the servers' grants hold without this check.
fn check_database(state: &State, database: Option<&Database>) -> Result<(), ApiError> {
    match database {
        Some(db) if !state.config.app_schemas.iter().any(|s| s == db.as_str()) => {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("database `{db}` is not an application schema"),
            ))
        }
        _ => Ok(()),
    }
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

/// The body's request id, when it names one, replaces the header's.
fn body_request_id(
    req: &HttpRequest,
    id: &mut RequestId,
    given: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(given) = given {
        *id = RequestId::parse(given)?;
        annotate(req, |f| f.request_id = Some(id.clone()));
    }
    Ok(())
}

/// `/query`: the JSON answer, or with `Accept: application/x-ndjson` the streamed one. Both
/// check the request the same way and fail the same way until the statement has executed.
async fn query(req: HttpRequest, payload: web::Payload, state: web::Data<State>) -> HttpResponse {
    let started = Instant::now();
    let mut request_id = start(&req);
    let asked = match read_query(&req, payload, &state, &mut request_id).await {
        Ok(asked) => asked,
        Err(e) => return reply::<()>(&req, &request_id, Err(e)),
    };
    // Only reads stream: a write's answer is one line of counts, and a write must not outlive
    // the statement deadline (the stream's is longer).
    if sqlgate::stream::wanted(&req) && asked.prepared.route() == Route::Read {
        return stream_query(&req, &state, asked, request_id, started).await;
    }
    let result = answer_query(&req, &state, asked, &request_id, started).await;
    reply(&req, &request_id, result)
}

/// A `/query` that passed every check, ready to run.
struct Asked {
    prepared: Prepared,
    database: Option<Database>,
    mode: sqlgate::Mode,
    after_gtid: Option<String>,
    shape: RowShape,
}

/// Reads and checks a `/query`: token, body, request id, role, statement, `after_gtid`.
async fn read_query(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    request_id: &mut RequestId,
) -> Result<Asked, ProxyError> {
    let body: QueryRequest = read_body(req, payload, state).await?;
    body_request_id(req, request_id, body.request_id.as_deref())?;
    let role = header_role(req)?;
    let prepared = wire::prepare_query(&state.classifier, role, &body, &limits(state))?;
    check_database(state, body.database.as_ref())?;
    let mode = body.mode.unwrap_or(state.config.default_mode);
    annotate(req, |f| {
        f.role = Some(role);
        f.kind = Some(prepared.route());
        f.mode = Some(mode);
    });
    Ok(Asked {
        prepared,
        database: body.database,
        mode,
        after_gtid: body.after_gtid,
        shape: RowShape::new(body.format, body.include_metadata),
    })
}

/// Runs a checked `/query` and builds its JSON answer.
async fn answer_query(
    req: &HttpRequest,
    state: &State,
    asked: Asked,
    request_id: &RequestId,
    started: Instant,
) -> Result<TypedQueryResponse, ProxyError> {
    let ask = Ask {
        route: asked.prepared.route(),
        mode: asked.mode,
        after_gtid: asked.after_gtid.as_deref(),
        ping_tolerance: state.config.ping_tolerance,
    };
    let answer = execute::query(
        state,
        &asked.prepared,
        &ask,
        asked.database.as_ref(),
        &mut |n| annotate(req, |f| f.node = Some(n.to_string())),
    )
    .await?;
    Ok(TypedQueryResponse {
        request_id: request_id.to_string(),
        kind: asked.prepared.route(),
        mode: asked.mode,
        node: answer.node.name().to_string(),
        role: answer.node.role(),
        fallback: answer.fallback,
        result: asked.shape.render(answer.result),
        gtid: answer.gtid,
        duration_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// Runs a checked `/query` as a stream: a JSON error until the statement has executed, then
/// `200` with the ndjson lines as they come (`crate::stream`).
async fn stream_query(
    req: &HttpRequest,
    state: &web::Data<State>,
    asked: Asked,
    request_id: RequestId,
    started: Instant,
) -> HttpResponse {
    let request = stream::Request {
        request_id: request_id.clone(),
        work: asked.prepared,
        database: asked.database,
        mode: asked.mode,
        after_gtid: asked.after_gtid,
        shape: asked.shape,
        started,
    };
    let (opened, lines) = stream::start(state.clone(), request);
    let opened = opened.await.unwrap_or_else(|_| stream::Opened {
        node: None,
        result: Err(ProxyError::Unexpected(
            "the streaming task ended without a word".into(),
        )),
    });
    if let Some(node) = opened.node {
        annotate(req, |f| f.node = Some(node));
    }
    if let Err(e) = opened.result {
        return reply::<()>(req, &request_id, Err(e));
    }
    // The request log writes its line when this body ends; the last line tells it how.
    let body = futures_util::stream::unfold((lines, req.clone()), |(mut lines, req)| async move {
        let line = lines.recv().await?;
        if let stream::Line::Last { rows, code, .. } = &line {
            annotate(&req, |f| {
                f.rows = *rows;
                f.code = *code;
            });
        }
        Some((
            Ok::<_, std::convert::Infallible>(line.into_bytes()),
            (lines, req),
        ))
    });
    let response = HttpResponse::Ok()
        .content_type(sqlgate::stream::CONTENT_TYPE)
        .streaming(body);
    with_node(req, response)
}

async fn transaction(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    let started = Instant::now();
    let mut request_id = start(&req);
    let result = handle_transaction(&req, payload, &state, &mut request_id, started).await;
    reply(&req, &request_id, result)
}

async fn handle_transaction(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    request_id: &mut RequestId,
    started: Instant,
) -> Result<TypedTransactionResponse, ProxyError> {
    let body: TransactionRequest = read_body(req, payload, state).await?;
    body_request_id(req, request_id, body.request_id.as_deref())?;
    let role = header_role(req)?;
    let prepared = wire::prepare_transaction(&state.classifier, role, &body, &limits(state))?;
    check_database(state, body.database.as_ref())?;
    let read_only = body.read_only.unwrap_or(false);
    let (route, mode) = if read_only {
        (Route::Read, body.mode.unwrap_or(state.config.default_mode))
    } else {
        (Route::Write, Mode::Direct)
    };
    annotate(req, |f| {
        f.role = Some(role);
        f.kind = Some(route);
        f.mode = Some(mode);
    });
    let ask = Ask {
        route,
        mode,
        after_gtid: body.after_gtid.as_deref(),
        ping_tolerance: state.config.ping_tolerance,
    };
    let options = execute::TxOptions {
        database: body.database.as_ref(),
        read_only,
        isolation: body.isolation,
    };
    let answer = execute::transaction(
        state,
        &prepared,
        &options,
        &ask,
        request_id.as_str(),
        &mut |n| annotate(req, |f| f.node = Some(n.to_string())),
    )
    .await?;
    let shape = RowShape::new(body.format, body.include_metadata);
    Ok(TypedTransactionResponse {
        request_id: request_id.to_string(),
        node: answer.placed.node.name().to_string(),
        role: answer.placed.node.role(),
        fallback: answer.placed.fallback,
        results: answer
            .results
            .into_iter()
            .map(|r| shape.render(r))
            .collect(),
        gtid: answer.gtid,
        duration_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

async fn batch(req: HttpRequest, payload: web::Payload, state: web::Data<State>) -> HttpResponse {
    let started = Instant::now();
    let mut request_id = start(&req);
    let result = handle_batch(&req, payload, &state, &mut request_id, started).await;
    reply(&req, &request_id, result)
}

/// One statement per parameter set, all in one transaction on the manager.
async fn handle_batch(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    request_id: &mut RequestId,
    started: Instant,
) -> Result<TypedBatchResponse, ProxyError> {
    let body: BatchRequest = read_body(req, payload, state).await?;
    body_request_id(req, request_id, body.request_id.as_deref())?;
    let role = header_role(req)?;
    let prepared = wire::prepare_batch(&state.classifier, role, &body, &limits(state))?;
    check_database(state, body.database.as_ref())?;
    annotate(req, |f| {
        f.role = Some(role);
        f.kind = Some(Route::Write);
        f.mode = Some(Mode::Direct);
    });
    let ask = Ask {
        route: Route::Write,
        mode: Mode::Direct,
        after_gtid: None,
        ping_tolerance: state.config.ping_tolerance,
    };
    let options = execute::TxOptions {
        database: body.database.as_ref(),
        ..Default::default()
    };
    let answer = execute::transaction(
        state,
        &prepared,
        &options,
        &ask,
        request_id.as_str(),
        &mut |n| annotate(req, |f| f.node = Some(n.to_string())),
    )
    .await?;
    Ok(TypedBatchResponse {
        request_id: request_id.to_string(),
        node: answer.placed.node.name().to_string(),
        role: answer.placed.node.role(),
        results: answer
            .results
            .into_iter()
            .map(|r| SetResult {
                rows_affected: r.rows_affected,
                last_insert_id: r.last_insert_id,
            })
            .collect(),
        gtid: answer.gtid,
        duration_ms: started.elapsed().as_secs_f64() * 1e3,
    })
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
            let reason = n.reason();
            json!({
                "name": n.name(),
                "role": n.role().as_str(),
                "address": format!("{}:{}", n.addr.host, n.addr.port),
                "checked": h.checked,
                "reachable": h.reachable,
                "eligible": reason.is_none(),
                "reason": reason,
                "error": h.error,
                "flavor": h.flavor.map(|f| f.as_str()),
                "version": h.version,
                "read_only": h.read_only,
                "replicating": h.replicating,
                "replication_io_running": h.io_running,
                "replication_sql_running": h.sql_running,
                "lag_seconds": h.lag_seconds,
                "semi_sync": (n.role() == sqlgate::wire::NodeRole::Manager).then_some(h.semi_sync).flatten(),
                "rtt_ms": h.rtt_us.map(|us| (us / 10.0).round() / 100.0),
                "rtt_method": h.rtt_method,
                "in_flight": n.in_flight(),
            })
        })
        .collect();
    let manager = state.cluster.manager();
    let reason = manager.reason();
    let ready = reason.is_none();
    let tcp_fallback = state
        .cluster
        .all()
        .any(|n| n.health().rtt_method == Some("tcp"));
    let body = json!({
        "ready": ready,
        "reason": reason,
        "manager": manager.name(),
        "primary_confirmed": state.cluster.topology().confirmed(),
        "semi_sync": manager.health().semi_sync,
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
        .body(state.metrics.render(&state.cluster.stats()))
}
