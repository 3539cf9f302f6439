//! The gatekeeper's configuration, read from `GATEKEEPER_*` environment variables.

use sqlgate::config::{get_or, millis, required, required_secret, ConfigError, Env, Secret};
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
pub const CONNECT_TIMEOUT_MS: &str = "GATEKEEPER_CONNECT_TIMEOUT_MS";
pub const TIMEOUT_MS: &str = "GATEKEEPER_TIMEOUT_MS";
pub const RATE_LIMIT_RPS: &str = "GATEKEEPER_RATE_LIMIT_RPS";
pub const RATE_LIMIT_BURST: &str = "GATEKEEPER_RATE_LIMIT_BURST";
pub const HTTP_WORKERS: &str = "GATEKEEPER_HTTP_WORKERS";
pub const TLS_CERT: &str = "GATEKEEPER_TLS_CERT";
pub const TLS_KEY: &str = "GATEKEEPER_TLS_KEY";
pub const PLAIN_HTTP: &str = "GATEKEEPER_PLAIN_HTTP";
pub const PROXY_CA: &str = "GATEKEEPER_PROXY_CA";

/// Everything the gatekeeper needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The public listener (`/query`, `/transaction`, `/health`, `/ready`).
    pub listen: SocketAddr,
    /// The private listener for `/metrics`.
    pub admin_listen: SocketAddr,
    /// Base URL of the proxy, on the private network.
    pub proxy_url: String,
    pub proxy_token: Secret,
    pub keys_file: PathBuf,
    pub max_body_bytes: usize,
    pub max_sql_bytes: usize,
    pub max_params: usize,
    pub max_tx_statements: usize,
    /// How long to wait for a connection to the proxy (a down proxy gives 503 this fast).
    pub connect_timeout: Duration,
    /// How long to wait for the proxy's whole answer (then 504).
    pub timeout: Duration,
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
        let proxy_url = get_or(env, PROXY_URL, "https://127.0.0.1:5000".to_string())?;
        let proxy_ca = env.get(PROXY_CA).map(PathBuf::from);
        if !(proxy_url.starts_with("http://") || proxy_url.starts_with("https://")) {
            return Err(ConfigError(format!(
                "{PROXY_URL}={proxy_url:?} must start with http:// or https://"
            )));
        }
        let rate_limit_rps: u32 = get_or(env, RATE_LIMIT_RPS, 1000)?;
        let config = Config {
            listen: get_or(env, LISTEN, "127.0.0.1:8080".parse().expect("valid"))?,
            admin_listen: get_or(env, ADMIN_LISTEN, "127.0.0.1:9090".parse().expect("valid"))?,
            proxy_url: proxy_url.trim_end_matches('/').to_string(),
            proxy_token: required_secret(env, PROXY_TOKEN)?,
            keys_file: PathBuf::from(required(env, KEYS_FILE)?),
            max_body_bytes: get_or(env, MAX_BODY_BYTES, 1 << 20)?,
            max_sql_bytes: get_or(env, MAX_SQL_BYTES, 64 << 10)?,
            max_params: get_or(env, MAX_PARAMS, 1000)?,
            max_tx_statements: get_or(env, MAX_TX_STATEMENTS, 100)?,
            connect_timeout: millis(env, CONNECT_TIMEOUT_MS, 1000)?,
            timeout: millis(env, TIMEOUT_MS, 30_000)?,
            rate_limit_rps,
            rate_limit_burst: get_or(env, RATE_LIMIT_BURST, rate_limit_rps.max(1))?,
            tls: sqlgate::tls::identity_from_env(env, TLS_CERT, TLS_KEY, PLAIN_HTTP)?,
            proxy_ca,
            http_workers: get_or(
                env,
                HTTP_WORKERS,
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )?,
        };
        if config.proxy_url.starts_with("https://") && config.proxy_ca.is_none() {
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
        assert_eq!(c.proxy_url, "https://127.0.0.1:5000");
        for (k, v) in [
            (PROXY_URL, "ftp://x"),
            (LISTEN, "nope"),
            (TIMEOUT_MS, "0"),
            (PLAIN_HTTP, "true"),
            (PLAIN_HTTP, "yes"),
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
