//! The gatekeeper's public endpoints (`/query`, `/transaction`, `/batch`, `/health`, `/ready`) and its
//! private one (`/metrics`). Handlers parse, call and reply; the request log
//! (`sqlgate::request_log`, wrapped in `startup`) writes one line per request.

use crate::auth::{Identity, API_KEY_HEADER};
use crate::forward::{relay_lines, Body, Forwarder, Upstream};
use crate::startup::State;
use crate::validate::{self, Endpoint};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use sqlgate::request_log::annotate;
use sqlgate::wire::{RequestId, NODE_HEADER};
use sqlgate::{ApiError, ErrorCode};

pub fn public(cfg: &mut web::ServiceConfig) {
    use sqlgate::error::route;
    route(cfg, Endpoint::Query.path(), web::post().to(query));
    route(
        cfg,
        Endpoint::Transaction.path(),
        web::post().to(transaction),
    );
    route(cfg, Endpoint::Batch.path(), web::post().to(batch));
    route(cfg, "/health", web::get().to(health));
    route(cfg, "/ready", web::get().to(ready));
    cfg.default_service(web::to(sqlgate::error::not_found));
}

pub fn admin(cfg: &mut web::ServiceConfig) {
    use sqlgate::error::route;
    route(cfg, "/metrics", web::get().to(metrics));
    route(cfg, "/health", web::get().to(health));
    cfg.default_service(web::to(sqlgate::error::not_found));
}

async fn query(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
    proxy: web::Data<Forwarder>,
) -> Result<HttpResponse, ApiError> {
    relay(Endpoint::Query, &req, payload, &state, &proxy).await
}

async fn transaction(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
    proxy: web::Data<Forwarder>,
) -> Result<HttpResponse, ApiError> {
    relay(Endpoint::Transaction, &req, payload, &state, &proxy).await
}

async fn batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
    proxy: web::Data<Forwarder>,
) -> Result<HttpResponse, ApiError> {
    relay(Endpoint::Batch, &req, payload, &state, &proxy).await
}

/// The public path of a SQL request: who sends it, what it is, what the proxy answers. Every
/// error names a request id: the client's once its body gave a valid one, else a fresh one.
async fn relay(
    endpoint: Endpoint,
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    proxy: &Forwarder,
) -> Result<HttpResponse, ApiError> {
    let answer = async {
        let who = authenticate(req, state)?;
        annotate(req, |f| {
            f.key_id = Some(who.key_id.to_string());
            f.role = Some(who.role);
        });
        state.limiter.check(&who.key_id)?;
        let body = sqlgate::body::read_json(req, payload, state.config.max_body_bytes).await?;
        let rules = validate::Rules {
            classifier: &state.classifier,
            limits: sqlgate::wire::Limits {
                max_params: state.config.max_params,
                max_tx_statements: state.config.max_tx_statements,
                max_batch_sets: state.config.max_batch_sets,
            },
        };
        let checked = validate::check(endpoint, &rules, who.role, body)?;
        annotate(req, |f| {
            f.request_id = Some(checked.request_id().clone());
            f.kind = Some(checked.kind());
            f.mode = checked.mode();
        });
        // Only `/query` streams; `/transaction` answers JSON whatever the client accepts.
        let streamed = endpoint == Endpoint::Query && sqlgate::stream::wanted(req);
        let up = proxy
            .forward(&checked, &who, streamed)
            .await
            .map_err(|e| e.with_request_id(checked.request_id().as_str()))?;
        annotate(req, |f| {
            f.node.clone_from(&up.node);
            f.code = up.code;
        });
        Ok(reply(up, checked.request_id()))
    };
    answer.await.map_err(|e: ApiError| match e.request_id {
        Some(_) => e,
        None => e.with_request_id(RequestId::new()),
    })
}

/// Who sends the request, from its `X-API-Key`.
fn authenticate(req: &HttpRequest, state: &State) -> Result<Identity, ApiError> {
    // A header that is present but not ASCII is a wrong key, not a missing one.
    let header = req
        .headers()
        .get(API_KEY_HEADER)
        .map(|v| v.to_str().unwrap_or(""));
    state.keys.authenticate(header)
}

/// The proxy's answer, relayed: its status, body (a stream as it comes), node and
/// `Retry-After`.
fn reply(up: Upstream, request_id: &RequestId) -> HttpResponse {
    let mut r = HttpResponse::build(up.status);
    if let Some(n) = &up.node {
        r.insert_header((NODE_HEADER, n.as_str()));
    }
    if let Some(s) = up.retry_after {
        r.insert_header((actix_web::http::header::RETRY_AFTER, s));
    }
    match up.body {
        Body::Whole(body) => r.content_type("application/json").body(body),
        Body::Stream(resp) => r
            .content_type(sqlgate::stream::CONTENT_TYPE)
            .streaming(relay_lines(resp, request_id.to_string())),
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// 200 when the proxy is reachable and ready; says no more than that (this is public).
async fn ready(req: HttpRequest, proxy: web::Data<Forwarder>) -> HttpResponse {
    let (code, reason) = match proxy.proxy_ready().await {
        Ok(true) => return HttpResponse::Ok().json(json!({"ready": true})),
        Ok(false) => (ErrorCode::Unavailable, "the proxy is not ready".to_string()),
        Err(e) => (e.code(), e.detail.message),
    };
    annotate(&req, |f| f.code = Some(code));
    HttpResponse::ServiceUnavailable().json(json!({"ready": false, "reason": reason}))
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
