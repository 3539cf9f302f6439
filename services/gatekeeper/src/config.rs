//! The gatekeeper's configuration, read from `GATEKEEPER_*` environment variables.

use sqlgate::config::{
    get_or, millis, required, required_secret, ConfigError, Env, Secret, DEFAULT_MAX_BATCH_SETS,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_PARAMS, DEFAULT_MAX_SQL_BYTES, DEFAULT_MAX_TX_STATEMENTS,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const LISTEN: &str = "GATEKEEPER_LISTEN";
pub const ADMIN_LISTEN: &str = "GATEKEEPER_ADMIN_LISTEN";
pub const PROXY_URL: &str = "GATEKEEPER_PROXY_URL";
pub const PROXY_TOKEN: &str = "GATEKEEPER_PROXY_TOKEN";
pub const KEYS_FILE: &str = "GATEKEEPER_KEYS_FILE";
pub const MAX_BODY_BYTES: &str = "GATEKEEPER_MAX_BODY_BYTES";
pub const MAX_SQL_BYTES: &str = "GATEKEEPER_MAX_SQL_BYTES";
pub const MAX_PARAMS: &str = "GATEKEEPER_MAX_PARAMS";
pub const MAX_TX_STATEMENTS: &str = "GATEKEEPER_MAX_TX_STATEMENTS";
pub const MAX_BATCH_SETS: &str = "GATEKEEPER_MAX_BATCH_SETS";
pub const CONNECT_TIMEOUT_MS: &str = "GATEKEEPER_CONNECT_TIMEOUT_MS";
pub const TIMEOUT_MS: &str = "GATEKEEPER_TIMEOUT_MS";
pub const STREAM_TIMEOUT_MS: &str = "GATEKEEPER_STREAM_TIMEOUT_MS";
pub const RATE_LIMIT_RPS: &str = "GATEKEEPER_RATE_LIMIT_RPS";
pub const RATE_LIMIT_BURST: &str = "GATEKEEPER_RATE_LIMIT_BURST";
pub const HTTP_WORKERS: &str = "GATEKEEPER_HTTP_WORKERS";
pub const TLS_CERT: &str = "GATEKEEPER_TLS_CERT";
pub const TLS_KEY: &str = "GATEKEEPER_TLS_KEY";
pub const PLAIN_HTTP: &str = "GATEKEEPER_PLAIN_HTTP";
pub const PROXY_CA: &str = "GATEKEEPER_PROXY_CA";

// Defaults, each with the reason for its value. The limits shared with the proxy come from
// `sqlgate::config` (`DEFAULT_MAX_*`).

/// Loopback: a fresh checkout exposes nothing; the deploy sets `0.0.0.0:443`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// A second, private listener for `/metrics`, never the public one (decisions.md §6).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// The local stack's proxy (`local/stack.sh`), over HTTPS as everywhere.
pub const DEFAULT_PROXY_URL: &str = "https://127.0.0.1:5000";
/// A down proxy should give 503 fast; a connection on a private network or loopback takes
/// well under a millisecond, so one second only waits out a dropped SYN.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1000;
/// Above the proxy's `/transaction` limit (20 s), so that a transaction never commits after
/// the client was told it timed out (security.md, time limits).
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// A streamed `/query` (ndjson) is bounded by the proxy's `PROXY_STREAM_TIMEOUT_MS` (120 s),
/// which ends it with an error line; this is a little longer so the client gets that line
/// rather than a stream cut by the gatekeeper.
pub const DEFAULT_STREAM_TIMEOUT_MS: u64 = 130_000;
/// Per-key requests per second (429 beyond): more than one tenant's interactive use needs,
/// less than what lets one key starve the others. The burst defaults to the same value.
pub const DEFAULT_RATE_LIMIT_RPS: u32 = 1000;
/// How long an idle connection to the proxy is kept: longer than the gaps of steady traffic,
/// shorter than anything on the path would drop it.
pub const PROXY_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections to the proxy each HTTP worker keeps (each has its own client): more than
/// the requests a worker has in flight, so steady traffic never pays a TLS handshake again.
pub const PROXY_POOL_MAX_IDLE: usize = 256;
/// `/ready` asks the proxy's `/ready`; a load balancer's health check must not hang on it.
pub const PROXY_READY_TIMEOUT: Duration = Duration::from_secs(2);

/// One HTTP worker (an event loop on its own thread, with its own client for the proxy) per
/// core: on AWS the gatekeeper has its instance to itself, and its work per request (TLS on
/// both sides, JSON, the classifier) is CPU, so fewer workers leave cores idle and more only
/// add wake-ups. Where it shares two cores with the databases (`make up` on a small machine),
/// `local/stack.sh` sets one (decisions.md §10, §24).
pub fn default_http_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Everything the gatekeeper needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The public listener (`/query`, `/transaction`, `/health`, `/ready`).
    pub listen: SocketAddr,
    /// The private listener for `/metrics`.
    pub admin_listen: SocketAddr,
    /// Base URLs of the proxies, on the private network (`GATEKEEPER_PROXY_URL`, comma
    /// separated): requests are spread over them, and one that refuses connections is skipped.
    pub proxy_urls: Vec<String>,
    pub proxy_token: Secret,
    pub keys_file: PathBuf,
    pub max_body_bytes: usize,
    pub max_sql_bytes: usize,
    pub max_params: usize,
    pub max_tx_statements: usize,
    pub max_batch_sets: usize,
    /// How long to wait for a connection to the proxy (a down proxy gives 503 this fast).
    pub connect_timeout: Duration,
    /// How long to wait for the proxy's whole answer (then 504).
    pub timeout: Duration,
    /// How long a streamed `/query` (ndjson) may take, its last line included; past it the
    /// stream ends with an error line.
    pub stream_timeout: Duration,
    /// Requests per second per key (0 disables the limit).
    pub rate_limit_rps: u32,
    pub rate_limit_burst: u32,
    pub http_workers: usize,
    /// The HTTPS identity of the public listener; `None` only with `GATEKEEPER_PLAIN_HTTP=true`
    /// (behind a TLS-terminating load balancer).
    pub tls: Option<sqlgate::tls::Identity>,
    /// The CA the proxy's certificate must chain to (an `https://` proxy URL needs it).
    pub proxy_ca: Option<PathBuf>,
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        let proxy_urls: Vec<String> = get_or(env, PROXY_URL, DEFAULT_PROXY_URL.to_string())?
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect();
        let proxy_ca = env.get(PROXY_CA).map(PathBuf::from);
        if proxy_urls.is_empty() {
            return Err(ConfigError(format!("{PROXY_URL} names no proxy")));
        }
        for proxy_url in &proxy_urls {
            if !(proxy_url.starts_with("http://") || proxy_url.starts_with("https://")) {
                return Err(ConfigError(format!(
                    "{PROXY_URL}: {proxy_url:?} must start with http:// or https://"
                )));
            }
        }
        let addr = |s: &str| s.parse::<SocketAddr>().expect("a valid default address");
        let rate_limit_rps: u32 = get_or(env, RATE_LIMIT_RPS, DEFAULT_RATE_LIMIT_RPS)?;
        let config = Config {
            listen: get_or(env, LISTEN, addr(DEFAULT_LISTEN))?,
            admin_listen: get_or(env, ADMIN_LISTEN, addr(DEFAULT_ADMIN_LISTEN))?,
            proxy_urls,
            proxy_token: required_secret(env, PROXY_TOKEN)?,
            keys_file: PathBuf::from(required(env, KEYS_FILE)?),
            max_body_bytes: get_or(env, MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES)?,
            max_sql_bytes: get_or(env, MAX_SQL_BYTES, DEFAULT_MAX_SQL_BYTES)?,
            max_params: get_or(env, MAX_PARAMS, DEFAULT_MAX_PARAMS)?,
            max_tx_statements: get_or(env, MAX_TX_STATEMENTS, DEFAULT_MAX_TX_STATEMENTS)?,
            max_batch_sets: get_or(env, MAX_BATCH_SETS, DEFAULT_MAX_BATCH_SETS)?,
            connect_timeout: millis(env, CONNECT_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS)?,
            timeout: millis(env, TIMEOUT_MS, DEFAULT_TIMEOUT_MS)?,
            stream_timeout: millis(env, STREAM_TIMEOUT_MS, DEFAULT_STREAM_TIMEOUT_MS)?,
            rate_limit_rps,
            rate_limit_burst: get_or(env, RATE_LIMIT_BURST, rate_limit_rps.max(1))?,
            tls: sqlgate::tls::identity_from_env(env, TLS_CERT, TLS_KEY, PLAIN_HTTP)?,
            proxy_ca,
            http_workers: get_or(env, HTTP_WORKERS, default_http_workers())?,
        };
        if config.http_workers == 0 {
            return Err(ConfigError(format!("{HTTP_WORKERS} must be at least 1")));
        }
        if config.proxy_urls.iter().any(|u| u.starts_with("https://")) && config.proxy_ca.is_none()
        {
            return Err(ConfigError(format!(
                "{PROXY_CA} (the CA that signed the proxy's certificate) is required for an \
                 https:// {PROXY_URL}"
            )));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn required_and_invalid_values_are_named() {
        let base: HashMap<String, String> = [
            (PROXY_TOKEN.to_string(), "t".repeat(20)),
            (KEYS_FILE.to_string(), "/tmp/keys".to_string()),
            (
                TLS_CERT.to_string(),
                "/etc/sqlgate/gatekeeper.pem".to_string(),
            ),
            (
                TLS_KEY.to_string(),
                "/etc/sqlgate/gatekeeper-key.pem".to_string(),
            ),
            (PROXY_CA.to_string(), "/etc/sqlgate/ca.pem".to_string()),
        ]
        .into();
        let c = Config::from_env(&base).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.proxy_urls, ["https://127.0.0.1:5000"]);
        for (k, v) in [
            (PROXY_URL, "ftp://x"),
            (LISTEN, "nope"),
            (TIMEOUT_MS, "0"),
            (STREAM_TIMEOUT_MS, "0"),
            (PLAIN_HTTP, "true"),
            (PLAIN_HTTP, "yes"),
            (HTTP_WORKERS, "0"),
        ] {
            let mut e = base.clone();
            e.insert(k.to_string(), v.to_string());
            let err = Config::from_env(&e).expect_err(k);
            assert!(err.0.contains(k), "{k}: {err}");
        }
        for k in [PROXY_TOKEN, KEYS_FILE, TLS_CERT, TLS_KEY, PROXY_CA] {
            let mut e = base.clone();
            e.remove(k);
            assert!(Config::from_env(&e).expect_err(k).0.contains(k));
        }
    }
}
