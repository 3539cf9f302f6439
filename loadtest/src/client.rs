//! The gatekeeper client: `POST /query` with an API key, each answer turned into an outcome.

use crate::error::Error;
use crate::runner::Outcome;
use serde::Deserialize;
use serde_json::Value;
use sqlgate::wire::{Mode, QueryRequest, QueryResponse};
use std::path::Path;
use std::time::Duration;

/// A gatekeeper and the keys to use on it.
#[derive(Clone)]
pub struct Gateway {
    http: reqwest::Client,
    base: String,
    query_url: String,
}

/// What a request's failure looked like, for the setup steps that need the details.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The HTTP status, or `None` when nothing came back.
    pub status: Option<u16>,
    /// The API error code (`rate_limited`, `sql_error`, …) or the transport failure.
    pub code: String,
    pub message: String,
    /// The MySQL error number of a 422.
    pub mysql_code: Option<u16>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "{s} {}: {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

/// The part of an answer the hot path reads.
#[derive(Deserialize)]
struct Served<'a> {
    #[serde(borrow)]
    node: Option<std::borrow::Cow<'a, str>>,
    rows_affected: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
    mysql_code: Option<u16>,
}

impl Gateway {
    /// A client for the gatekeeper at `base` (`http://host:port`), with a per-request timeout.
    /// `ca`: a PEM file of the only CA trusted for an `https://` gatekeeper (the local stack's,
    /// or a deployment's); without it, the system's roots.
    pub fn new(base: &str, timeout: Duration, ca: Option<&Path>) -> Result<Gateway, Error> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Usage(format!(
                "the gatekeeper URL {base:?} must start with http:// or https://"
            )));
        }
        sqlgate::tls::install_provider();
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = ca {
            let pem = sqlgate::tls::read_ca(ca).map_err(Error::Usage)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Usage(format!("bad CA {}: {e}", ca.display())))?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Gateway {
            query_url: format!("{base}/query"),
            base,
            http,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// Fails with one clear line when the gatekeeper is down or cannot serve.
    pub async fn check_ready(&self) -> Result<(), Error> {
        let url = format!("{}/ready", self.base);
        let resp = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| {
                Error::Unreachable(format!(
                    "cannot reach the gatekeeper at {}: {} (is it running? `make up` starts the local one)",
                    self.base,
                    transport_reason(&e)
                ))
            })?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let reason = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_string))
            .unwrap_or(body);
        Err(Error::Unreachable(format!(
            "the gatekeeper at {} is not ready ({status}): {reason}",
            self.base
        )))
    }

    /// Sends one query and reduces the answer to what the load loop records. A write must
    /// report one affected row to count as acknowledged.
    pub async fn send(&self, key: &str, body: Vec<u8>, expect_one_row: bool) -> Outcome {
        let resp = match self.post(key, body).await {
            Ok(r) => r,
            Err(e) => return transport_outcome(&e),
        };
        let status = resp.status().as_u16();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return transport_outcome(&e),
        };
        if status != 200 {
            let code = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error.code)
                .unwrap_or_else(|_| "no_error_body".to_string());
            // 502 and 504 come after the statement may have reached the database.
            return Outcome::failed(format!("http_{status}_{code}"), matches!(status, 502 | 504));
        }
        match serde_json::from_slice::<Served>(&bytes) {
            Ok(s) if expect_one_row && s.rows_affected != Some(1) => {
                Outcome::failed("unexpected_rows_affected", true)
            }
            Ok(s) => Outcome {
                node: s.node.map(|n| n.into_owned()),
                error: None,
            },
            Err(_) => Outcome::failed("invalid_response", true),
        }
    }

    /// One query whose whole answer is needed (setup and verification).
    pub async fn query(&self, key: &str, req: &QueryRequest) -> Result<QueryResponse, Refusal> {
        let body = serde_json::to_vec(req).expect("a request serializes");
        let resp = self.post(key, body).await.map_err(|e| Refusal {
            status: None,
            code: transport_code(&e).to_string(),
            message: transport_reason(&e),
            mysql_code: None,
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status == 200 {
            return serde_json::from_str(&text).map_err(|e| Refusal {
                status: Some(status),
                code: "invalid_response".into(),
                message: e.to_string(),
                mysql_code: None,
            });
        }
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => Refusal {
                status: Some(status),
                code: b.error.code,
                message: b.error.message,
                mysql_code: b.error.mysql_code,
            },
            Err(_) => Refusal {
                status: Some(status),
                code: "no_error_body".into(),
                message: text.chars().take(200).collect(),
                mysql_code: None,
            },
        })
    }

    async fn post(&self, key: &str, body: Vec<u8>) -> Result<reqwest::Response, reqwest::Error> {
        self.http
            .post(&self.query_url)
            .header("X-API-Key", key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
    }
}

/// A `POST /query` body.
pub fn request(sql: impl Into<String>, params: Vec<Value>, mode: Mode) -> QueryRequest {
    QueryRequest {
        sql: sql.into(),
        params: params.into(),
        database: None,
        mode: Some(mode),
        request_id: None,
        after_gtid: None,
        format: None,
        include_metadata: None,
    }
}

fn transport_code(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
}

fn transport_outcome(e: &reqwest::Error) -> Outcome {
    // A refused connection never carried the statement; anything later may have.
    Outcome::failed(transport_code(e), !e.is_connect())
}

/// The innermost cause of a transport error ("Connection refused (os error 111)").
fn transport_reason(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if e.is_timeout() {
        "timed out".to_string()
    } else {
        cause.to_string()
    }
}
