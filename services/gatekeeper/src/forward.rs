//! Forwards a validated request to the proxy over a pooled keep-alive connection, with the
//! internal token and the request id, never the API key.

use crate::config::Config;
use actix_web::http::StatusCode;
use sqlgate::{ApiError, ErrorCode};

/// Header names shared with the proxy.
pub const TOKEN_HEADER: &str = "X-Sqlgate-Token";
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";
pub const NODE_HEADER: &str = "X-Sqlgate-Node";
/// The authenticated key's id (never the key), so the proxy's log can name it too.
pub const KEY_ID_HEADER: &str = "X-Sqlgate-Key-Id";

/// What the proxy answered.
pub struct Upstream {
    pub status: StatusCode,
    pub body: actix_web::web::Bytes,
    /// The node that executed the statement, when the proxy says.
    pub node: Option<String>,
}

/// The client for the proxy.
#[derive(Clone)]
pub struct Forwarder {
    client: reqwest::Client,
    base: String,
    token: sqlgate::config::Secret,
}

impl Forwarder {
    pub fn new(config: &Config) -> anyhow::Result<Forwarder> {
        sqlgate::tls::install_provider();
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = &config.proxy_ca {
            // The deployment's CA only: no public CA can vouch for the proxy.
            let pem = sqlgate::tls::read_ca(ca).map_err(|e| anyhow::anyhow!(e))?;
            builder = builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem)?);
        }
        let client = builder
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        Ok(Forwarder {
            client,
            base: config.proxy_url.clone(),
            token: config.proxy_token.clone(),
        })
    }

    /// POSTs `body` (JSON) to the proxy's `path`.
    pub async fn post(
        &self,
        path: &str,
        request_id: &str,
        key_id: &str,
        role: sqlgate::Role,
        body: Vec<u8>,
    ) -> Result<Upstream, ApiError> {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header(TOKEN_HEADER, self.token.expose())
            .header(REQUEST_ID_HEADER, request_id)
            .header(KEY_ID_HEADER, key_id)
            .header(sqlgate::wire::ROLE_HEADER, role.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(upstream_error)?;
        let status =
            StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let node = resp
            .headers()
            .get(NODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.bytes().await.map_err(upstream_error)?;
        if status == StatusCode::UNAUTHORIZED {
            log::error!("Proxy refused the internal token: check GATEKEEPER_PROXY_TOKEN");
            return Err(ApiError::new(
                ErrorCode::BadGateway,
                "the proxy refused the gatekeeper",
            ));
        }
        if status.is_server_error()
            && serde_json::from_slice::<sqlgate::error::ErrorBody>(&body).is_err()
        {
            return Err(ApiError::new(
                ErrorCode::BadGateway,
                format!("the proxy answered {status} without an error body"),
            ));
        }
        Ok(Upstream { status, body, node })
    }

    /// True when the proxy says it can serve (its `/ready` is 200).
    pub async fn proxy_ready(&self) -> Result<bool, ApiError> {
        let resp = self
            .client
            .get(format!("{}/ready", self.base))
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await
            .map_err(upstream_error)?;
        Ok(resp.status().is_success())
    }
}

fn upstream_error(e: reqwest::Error) -> ApiError {
    if e.is_timeout() {
        ApiError::new(ErrorCode::Timeout, "the proxy did not answer in time")
    } else if e.is_connect() {
        ApiError::new(ErrorCode::Unavailable, "the proxy is unreachable").with_retry_after(1)
    } else {
        ApiError::new(ErrorCode::BadGateway, "the proxy connection failed")
    }
}
