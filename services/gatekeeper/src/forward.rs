//! Forwards a checked request to the proxy over a pooled keep-alive HTTPS connection, with the
//! internal token, the key's id and role and the request id; never the API key. The body goes
//! as it was checked, not re-encoded (docs/decisions.md §24). A streamed `/query` (ndjson)
//! gets its own time limit and its body is relayed as it comes, never collected.

use crate::auth::Identity;
use crate::config::{Config, PROXY_POOL_IDLE_TIMEOUT, PROXY_POOL_MAX_IDLE, PROXY_READY_TIMEOUT};
use crate::validate::{Checked, Endpoint};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;
use sqlgate::error::ErrorBody;
use sqlgate::stream as ndjson;
use sqlgate::wire::{KEY_ID_HEADER, NODE_HEADER, REQUEST_ID_HEADER, ROLE_HEADER, TOKEN_HEADER};
use sqlgate::{ApiError, ErrorCode};

/// What the proxy answered, to be relayed as it is.
pub struct Upstream {
    pub status: StatusCode,
    pub body: Body,
    /// The node that executed the statement, when the proxy says.
    pub node: Option<String>,
    /// The proxy's `Retry-After`, on 429 and 503.
    pub retry_after: Option<u64>,
    /// The error code of an error answer, for the request log.
    pub code: Option<ErrorCode>,
}

/// The body of the proxy's answer.
pub enum Body {
    /// A JSON answer or error, read whole.
    Whole(Bytes),
    /// A streamed answer (`200`, ndjson): the response, its body not yet read.
    Stream(reqwest::Response),
}

/// The client for the proxy, with its pool of keep-alive connections. Each HTTP worker has its
/// own (`startup`): a connection's driver then runs on the thread of the requests that use it,
/// instead of waking another worker's thread for every request.
#[derive(Clone)]
pub struct Forwarder {
    client: reqwest::Client,
    /// Every proxy, shared by the workers' forwarders.
    proxies: std::sync::Arc<[Proxy]>,
    /// Where the next request starts looking (requests are spread round robin).
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// `X-Sqlgate-Token`'s value, built once and marked sensitive (never printed by `http`).
    token: HeaderValue,
    /// The limit of a streamed `/query`, instead of the client's own (`Config::timeout`).
    stream_timeout: std::time::Duration,
}

/// One proxy: its endpoints, and until when it is skipped after refusing a connection.
struct Proxy {
    query: Url,
    transaction: Url,
    batch: Url,
    ready: Url,
    /// Milliseconds since `EPOCH` until which requests try the other proxies first.
    skip_until: std::sync::atomic::AtomicU64,
}

/// How long a proxy that refused a connection is tried last: it is down, or restarting, and
/// every request would otherwise pay a failed connect first.
const SKIP_DOWN_PROXY: std::time::Duration = std::time::Duration::from_secs(1);

/// The clock `Proxy::skip_until` counts from.
static EPOCH: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

impl Proxy {
    fn new(base: &str) -> anyhow::Result<Proxy> {
        let url = |path: &str| {
            Url::parse(&format!("{base}{path}"))
                .map_err(|e| anyhow::anyhow!("GATEKEEPER_PROXY_URL: {base:?} is not a URL: {e}"))
        };
        Ok(Proxy {
            query: url(Endpoint::Query.path())?,
            transaction: url(Endpoint::Transaction.path())?,
            batch: url(Endpoint::Batch.path())?,
            ready: url("/ready")?,
            skip_until: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn url(&self, endpoint: Endpoint) -> &Url {
        match endpoint {
            Endpoint::Query => &self.query,
            Endpoint::Transaction => &self.transaction,
            Endpoint::Batch => &self.batch,
        }
    }

    fn skipped(&self) -> bool {
        self.skip_until.load(std::sync::atomic::Ordering::Relaxed) > now_ms()
    }
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
            .pool_idle_timeout(PROXY_POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(PROXY_POOL_MAX_IDLE)
            .tcp_nodelay(true)
            .build()?;
        let proxies = config
            .proxy_urls
            .iter()
            .map(|u| Proxy::new(u))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut token = HeaderValue::from_str(config.proxy_token.expose())
            .map_err(|_| anyhow::anyhow!("GATEKEEPER_PROXY_TOKEN must be printable ASCII"))?;
        token.set_sensitive(true);
        Ok(Forwarder {
            client,
            proxies: proxies.into(),
            next: Default::default(),
            token,
            stream_timeout: config.stream_timeout,
        })
    }

    /// Sends `checked` to the proxy for `who`; `streamed` asks for the ndjson form (a `/query`
    /// whose client asked for it).
    pub async fn forward(
        &self,
        checked: &Checked,
        who: &Identity,
        streamed: bool,
    ) -> Result<Upstream, ApiError> {
        let resp = self
            .to_a_proxy(|proxy| {
                let mut req = self.client.post(proxy.url(checked.endpoint()).clone());
                if streamed {
                    req = req
                        .header(ACCEPT, HeaderValue::from_static(ndjson::CONTENT_TYPE))
                        .timeout(self.stream_timeout);
                }
                req.header(TOKEN_HEADER, self.token.clone())
                    .header(REQUEST_ID_HEADER, checked.request_id().as_str())
                    .header(KEY_ID_HEADER, &*who.key_id)
                    .header(ROLE_HEADER, HeaderValue::from_static(who.role.as_str()))
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(checked.body().clone())
            })
            .await
            .map_err(upstream_error)?;
        let status =
            StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let node = resp
            .headers()
            .get(NODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        if status == StatusCode::OK && is_ndjson(&resp) {
            return Ok(Upstream {
                status,
                body: Body::Stream(resp),
                node,
                retry_after,
                code: None,
            });
        }
        let body = resp.bytes().await.map_err(upstream_error)?;
        if status == StatusCode::UNAUTHORIZED {
            log::error!("Proxy refused the internal token: check GATEKEEPER_PROXY_TOKEN");
            return Err(ApiError::new(
                ErrorCode::BadGateway,
                "the proxy refused the gatekeeper",
            ));
        }
        let code = if status.is_success() {
            None
        } else {
            match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(b) => Some(b.error.code),
                Err(_) if status.is_server_error() => {
                    return Err(ApiError::new(
                        ErrorCode::BadGateway,
                        format!("the proxy answered {status} without an error body"),
                    ))
                }
                Err(_) => None,
            }
        };
        Ok(Upstream {
            status,
            body: Body::Whole(body),
            node,
            retry_after,
            code,
        })
    }

    /// Sends the request `build` makes for a proxy: to the next proxy in turn, and when that
    /// one refuses the connection (nothing was sent: safe for writes too) to the next, each
    /// once. A proxy that refused is tried last for `SKIP_DOWN_PROXY`.
    async fn to_a_proxy(
        &self,
        build: impl Fn(&Proxy) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let n = self.proxies.len();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        let mut order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
        order.sort_by_key(|i| self.proxies[*i].skipped());
        let mut last = None;
        for i in order {
            let proxy = &self.proxies[i];
            match build(proxy).send().await {
                Err(e) if e.is_connect() => {
                    proxy.skip_until.store(
                        now_ms() + SKIP_DOWN_PROXY.as_millis() as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    log::warn!(
                        "A proxy refused the connection, trying another url={}",
                        proxy.ready
                    );
                    last = Some(e);
                }
                done => return done,
            }
        }
        Err(last.expect("at least one proxy"))
    }

    /// True when a proxy says it can serve (its `/ready` is 200).
    pub async fn proxy_ready(&self) -> Result<bool, ApiError> {
        let resp = self
            .to_a_proxy(|proxy| {
                self.client
                    .get(proxy.ready.clone())
                    .timeout(PROXY_READY_TIMEOUT)
            })
            .await
            .map_err(upstream_error)?;
        Ok(resp.status().is_success())
    }
}

/// Whether the proxy answered with a stream.
fn is_ndjson(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(ndjson::CONTENT_TYPE))
}

/// A streamed answer's body as it comes from the proxy. If the proxy's stream fails (it went
/// away, the stream's time limit passed), the stream ends with an error line of the
/// gatekeeper's own, after a newline if the failure cut a line: no done line, so the client
/// knows it is incomplete.
pub fn relay_lines(
    resp: reqwest::Response,
    request_id: String,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    use futures_util::StreamExt;
    let chunks = Box::pin(resp.bytes_stream());
    futures_util::stream::unfold(Some((chunks, true)), move |state| {
        let request_id = request_id.clone();
        async move {
            let (mut chunks, at_line_start) = state?;
            match chunks.next().await? {
                Ok(chunk) => {
                    let ends_line = chunk.last().map_or(at_line_start, |b| *b == b'\n');
                    Some((Ok(chunk), Some((chunks, ends_line))))
                }
                Err(e) => {
                    log::warn!("Proxy stream failed request_id={request_id} error={e}");
                    let body = upstream_error(e).with_request_id(request_id).body();
                    let mut last = if at_line_start {
                        Vec::new()
                    } else {
                        b"\n".to_vec()
                    };
                    last.extend_from_slice(&ndjson::error_line(&body));
                    Some((Ok(Bytes::from(last)), None))
                }
            }
        }
    })
}

/// The transport's failure as the client sees it: the kind of failure decides the code, never
/// the message.
fn upstream_error(e: reqwest::Error) -> ApiError {
    if e.is_timeout() {
        ApiError::new(ErrorCode::Timeout, "the proxy did not answer in time")
    } else if e.is_connect() {
        ApiError::new(ErrorCode::Unavailable, "the proxy is unreachable").with_retry_after(1)
    } else {
        ApiError::new(ErrorCode::BadGateway, "the proxy connection failed")
    }
}
