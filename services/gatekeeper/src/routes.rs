//! The gatekeeper's public endpoints (`/query`, `/transaction`, `/health`, `/ready`) and its
//! private one (`/metrics`).

use crate::auth::{Identity, API_KEY_HEADER};
use crate::forward::NODE_HEADER;
use crate::metrics::{EndpointLabels, RequestLabels};
use crate::{validate, State};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;
use sqlgate::{ApiError, ErrorCode};
use std::time::Instant;

pub fn public(cfg: &mut web::ServiceConfig) {
    use sqlgate::error::route;
    route(cfg, "/query", web::post().to(query));
    route(cfg, "/transaction", web::post().to(transaction));
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

/// Which endpoint a request is for, and its validation step.
#[derive(Clone, Copy)]
enum Endpoint {
    Query,
    Transaction,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Query => "query",
            Endpoint::Transaction => "transaction",
        }
    }
}

async fn query(req: HttpRequest, payload: web::Payload, state: web::Data<State>) -> HttpResponse {
    handle(Endpoint::Query, req, payload, state).await
}

async fn transaction(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    handle(Endpoint::Transaction, req, payload, state).await
}

/// Authenticates, limits, validates and forwards; logs one line whatever happens.
async fn handle(
    endpoint: Endpoint,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    let started = Instant::now();
    // The client's id once the body names a valid one; a fresh one for every error before.
    let mut request_id: Option<String> = None;
    let mut who: Option<Identity> = None;
    let mut node: Option<String> = None;
    let result = async {
        // A header that is present but not ASCII is a wrong key, not a missing one.
        let header = req
            .headers()
            .get(API_KEY_HEADER)
            .map(|v| v.to_str().unwrap_or(""));
        let id = state.keys.authenticate(header)?;
        who = Some(id.clone());
        state.limiter.check(&id.key_id)?;
        let body = sqlgate::body::read_json(&req, payload, state.config.max_body_bytes).await?;
        let (rid, forward_body) = match endpoint {
            Endpoint::Query => {
                let (q, _) = validate::query(&state, id.role, &body, &mut request_id)?;
                let rid = q.request_id.clone().unwrap_or_default();
                (rid, serde_json::to_vec(&q))
            }
            Endpoint::Transaction => {
                let t = validate::transaction(&state, id.role, &body, &mut request_id)?;
                let rid = t.request_id.clone().unwrap_or_default();
                (rid, serde_json::to_vec(&t))
            }
        };
        let forward_body = forward_body
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("encoding failed: {e}")))?;
        let up = state
            .forwarder
            .post(
                &format!("/{}", endpoint.name()),
                &rid,
                &id.key_id,
                id.role,
                forward_body,
            )
            .await?;
        node = up.node.clone();
        Ok::<_, ApiError>(up)
    }
    .await;
    let response = match result {
        Ok(up) => {
            let mut r = HttpResponse::build(up.status);
            r.content_type("application/json");
            if let Some(n) = &up.node {
                r.insert_header((NODE_HEADER, n.as_str()));
            }
            r.body(up.body)
        }
        Err(mut e) => {
            let rid = request_id.get_or_insert_with(sqlgate::wire::new_request_id);
            if e.request_id.is_none() {
                e.request_id = Some(rid.clone());
            }
            e.error_response()
        }
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let role = who.as_ref().map_or("none", |w| w.role.as_str());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint.name(),
            role,
            status,
        })
        .inc();
    state
        .metrics
        .duration
        .get_or_create(&EndpointLabels {
            endpoint: endpoint.name(),
        })
        .observe(elapsed.as_secs_f64());
    log::info!(
        "Request done endpoint={} request_id={} key_id={} role={role} status={status} node={} duration_ms={:.3}",
        endpoint.name(),
        request_id.as_deref().unwrap_or("-"),
        who.as_ref().map_or("-", |w| w.key_id.as_str()),
        node.as_deref().unwrap_or("-"),
        elapsed.as_secs_f64() * 1e3,
    );
    response
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// 200 when the proxy is reachable and ready; says no more than that (this is public).
async fn ready(state: web::Data<State>) -> HttpResponse {
    match state.forwarder.proxy_ready().await {
        Ok(true) => HttpResponse::Ok().json(json!({"ready": true})),
        Ok(false) => HttpResponse::ServiceUnavailable()
            .json(json!({"ready": false, "reason": "the proxy is not ready"})),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({"ready": false, "reason": e.detail.message})),
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
