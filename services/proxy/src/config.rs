//! The proxy's configuration, read from `PROXY_*` environment variables.

use sqlgate::config::{get_or, millis, required_secret, ConfigError, Env, Secret};
use sqlgate::Mode;
use std::net::SocketAddr;
use std::time::Duration;

pub const LISTEN: &str = "PROXY_LISTEN";
pub const TOKEN: &str = "PROXY_TOKEN";
pub const MANAGER: &str = "PROXY_MANAGER";
pub const WORKERS: &str = "PROXY_WORKERS";
pub const READ_USER: &str = "PROXY_READ_USER";
pub const READ_PASSWORD: &str = "PROXY_READ_PASSWORD";
pub const WRITE_USER: &str = "PROXY_WRITE_USER";
pub const WRITE_PASSWORD: &str = "PROXY_WRITE_PASSWORD";
pub const ADMIN_USER: &str = "PROXY_ADMIN_USER";
pub const ADMIN_PASSWORD: &str = "PROXY_ADMIN_PASSWORD";
pub const APP_SCHEMAS: &str = "PROXY_APP_SCHEMAS";
pub const TLS_CERT: &str = "PROXY_TLS_CERT";
pub const TLS_KEY: &str = "PROXY_TLS_KEY";
pub const PLAIN_HTTP: &str = "PROXY_PLAIN_HTTP";
pub const DB_CA: &str = "PROXY_DB_CA";
pub const DB_PLAIN: &str = "PROXY_DB_PLAIN";
pub const MONITOR_USER: &str = "PROXY_MONITOR_USER";
pub const MONITOR_PASSWORD: &str = "PROXY_MONITOR_PASSWORD";
pub const DEFAULT_MODE: &str = "PROXY_DEFAULT_MODE";
pub const MAX_LAG_S: &str = "PROXY_MAX_LAG_S";
pub const MONITOR_INTERVAL_MS: &str = "PROXY_MONITOR_INTERVAL_MS";
pub const PING_INTERVAL_MS: &str = "PROXY_PING_INTERVAL_MS";
pub const PING_TOLERANCE_US: &str = "PROXY_PING_TOLERANCE_US";
pub const POOL_SIZE: &str = "PROXY_POOL_SIZE";
pub const CONNECT_TIMEOUT_MS: &str = "PROXY_CONNECT_TIMEOUT_MS";
pub const STATEMENT_TIMEOUT_MS: &str = "PROXY_STATEMENT_TIMEOUT_MS";
pub const TRANSACTION_TIMEOUT_MS: &str = "PROXY_TRANSACTION_TIMEOUT_MS";
pub const STREAM_TIMEOUT_MS: &str = "PROXY_STREAM_TIMEOUT_MS";
pub const MAX_BODY_BYTES: &str = "PROXY_MAX_BODY_BYTES";
pub const MAX_SQL_BYTES: &str = "PROXY_MAX_SQL_BYTES";
pub const MAX_PARAMS: &str = "PROXY_MAX_PARAMS";
pub const MAX_ROWS: &str = "PROXY_MAX_ROWS";
pub const MAX_RESULT_BYTES: &str = "PROXY_MAX_RESULT_BYTES";
pub const MAX_TX_STATEMENTS: &str = "PROXY_MAX_TX_STATEMENTS";
pub const MAX_BATCH_SETS: &str = "PROXY_MAX_BATCH_SETS";
pub const HTTP_WORKERS: &str = "PROXY_HTTP_WORKERS";
pub const RTT_PROBE: &str = "PROXY_RTT_PROBE";
pub const CONN_RECYCLE_BYTES: &str = "PROXY_CONN_RECYCLE_BYTES";
pub const GTID_WAIT_MS: &str = "PROXY_GTID_WAIT_MS";
pub const WRITE_WAIT_MS: &str = "PROXY_WRITE_WAIT_MS";

/// Defaults, each with the reason for its value.
pub mod defaults {
    use std::time::Duration;

    /// Loopback: the local stack; on AWS the proxy listens on its private address.
    pub const LISTEN: &str = "127.0.0.1:5000";
    /// The local cluster's ports (`local/cluster.sh`).
    pub const MANAGER: &str = "127.0.0.1:3307";
    pub const WORKERS: &str = "127.0.0.1:3308,127.0.0.1:3309";
    /// Reads spread over the workers without a measurement to trust first.
    pub const MODE: &str = "random";
    /// A replica further behind than this serves stale data worth a detour to the manager.
    pub const MAX_LAG: Duration = Duration::from_secs(5);
    /// Health and RTT are at most a second old: fast enough to leave a failed node within a
    /// second or two, cheap enough (one query per node per second) to be invisible.
    pub const MONITOR_INTERVAL: Duration = Duration::from_secs(1);
    pub const PING_INTERVAL: Duration = Duration::from_secs(1);
    /// ICMP RTTs on one network differ by tens of µs from jitter alone; within this, nodes tie.
    pub const PING_TOLERANCE: Duration = Duration::from_micros(100);
    /// Connections per (node, account): 16 keeps a 2-core MariaDB busy without queueing
    /// inside it (its throughput peaks near 2–4 connections per core, docs/benchmarks.md).
    pub const POOL_SIZE: u32 = 16;
    /// After this much received, a connection is replaced, so no connection keeps the read
    /// buffer of one large result forever. About 40,000 point selects per connection: the
    /// reconnect (TLS, authentication) is then a negligible share of the work. (With the sync
    /// driver, whose every connection kept a 4 MiB buffer, this was 256 KiB: decision 9.)
    pub const CONN_RECYCLE_BYTES: usize = 16 << 20;
    /// A node on the same network answers a connect in well under a millisecond: a second
    /// means it is gone, and a read can still be retried elsewhere within a client's patience.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// An OLTP statement longer than this is a mistake or an attack on the pool; the
    /// gatekeeper's own limit (`GATEKEEPER_TIMEOUT_MS`, 30 s) is longer so the proxy answers.
    pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
    /// With a COMMIT's own statement deadline after it (10 s), below the gatekeeper's limit
    /// (30 s), so a transaction never commits after the client was told it timed out.
    pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15);
    /// A streamed `/query` (ndjson) may run this long, first row to last: long enough to read
    /// millions of rows to a client on a slow link, short enough that a forgotten or stalled
    /// stream gives its connection back. Below the gatekeeper's `GATEKEEPER_STREAM_TIMEOUT_MS`
    /// (130 s), so the client gets the proxy's error line rather than a cut stream.
    pub const STREAM_TIMEOUT: Duration = Duration::from_secs(120);
    /// Replicas on one network apply a write within milliseconds; a second means this one lags
    /// and the manager should serve the read.
    pub const GTID_WAIT: Duration = Duration::from_secs(1);
    /// How long a write is held while a switchover or failover is under way (the old primary
    /// fenced, the new one not yet confirmed): a scripted switchover takes a second or two
    /// including a monitor interval to notice each step, and a client would rather wait that
    /// long than retry. Past it: 503.
    pub const WRITE_WAIT: Duration = Duration::from_secs(5);
    /// Rows one result may have before the client is told to add a LIMIT.
    pub const MAX_ROWS: usize = 10_000;
    /// A response the gatekeeper and the client can hold comfortably in memory.
    pub const MAX_RESULT_BYTES: usize = 16 << 20;
    /// The schemas the local accounts are granted on.
    pub const APP_SCHEMAS: &str = "sakila,app";
}

/// How the proxy's connections to MySQL are secured (`PROXY_DB_CA`, `PROXY_DB_PLAIN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTls {
    /// TLS, the server's certificate verified against this CA file and the node's address.
    Verify(std::path::PathBuf),
    /// No TLS: only when explicitly configured.
    Plain,
}

/// A database account the proxy connects as.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: String,
    pub password: Secret,
}

/// One account per access level: `read` (SELECT, SHOW VIEW), `write` (also INSERT, UPDATE,
/// DELETE), `admin` (also DDL), all on the application schemas only.
#[derive(Debug, Clone)]
pub struct Accounts {
    pub read: Account,
    pub write: Account,
    pub admin: Account,
}

impl Accounts {
    pub fn get(&self, level: sqlgate::Role) -> &Account {
        match level {
            sqlgate::Role::Read => &self.read,
            sqlgate::Role::Write => &self.write,
            sqlgate::Role::Admin => &self.admin,
        }
    }
}

/// How the `ping` mode measures round-trip times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RttProbe {
    /// ICMP echo, falling back to TCP connect where ICMP sockets are not permitted.
    Auto,
    /// Always time a TCP connect to the node's MySQL port.
    Tcp,
}

/// A database node as configured: `name=host:port` or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl NodeAddr {
    /// Parses `host:port` or `name=host:port`; `default_name` is used without a name.
    pub fn parse(s: &str, default_name: &str) -> Result<NodeAddr, String> {
        let s = s.trim();
        let (name, addr) = match s.split_once('=') {
            Some((n, a)) => (n.trim().to_string(), a.trim()),
            None => (default_name.to_string(), s),
        };
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} must be host:port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("{s:?} has an invalid port"))?;
        if host.is_empty() || name.is_empty() {
            return Err(format!("{s:?} must be [name=]host:port"));
        }
        Ok(NodeAddr {
            name,
            host: host.trim_matches(['[', ']']).to_string(),
            port,
        })
    }
}

/// Size and time limits of one request.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_sql_bytes: usize,
    pub max_params: usize,
    pub max_rows: usize,
    pub max_result_bytes: usize,
    pub max_tx_statements: usize,
    pub max_batch_sets: usize,
}

/// Everything the proxy needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Shared with the gatekeeper; every `/query` and `/transaction` must carry it.
    pub token: Secret,
    pub manager: NodeAddr,
    pub workers: Vec<NodeAddr>,
    /// The database accounts statements run as, one per access level (see `account`).
    pub accounts: Accounts,
    /// The application schemas the accounts are granted on (shown in `/ready`).
    pub app_schemas: Vec<String>,
    /// The HTTPS identity the proxy serves with; `None` only with `PROXY_PLAIN_HTTP=true`.
    pub tls: Option<sqlgate::tls::Identity>,
    /// How connections to MySQL are secured.
    pub db_tls: DbTls,
    pub monitor_user: String,
    pub monitor_password: Secret,
    pub default_mode: Mode,
    /// A worker lagging more than this is not read from.
    pub max_lag: Duration,
    pub monitor_interval: Duration,
    pub ping_interval: Duration,
    /// RTTs closer than this to the best one count as equal in `ping` mode.
    pub ping_tolerance: Duration,
    pub pool_size: u32,
    /// Bytes a database connection receives before it is replaced (bounds its buffer memory).
    pub conn_recycle_bytes: usize,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    /// A whole `/transaction`'s limit: past it, its connection is killed and nothing commits.
    /// Keep it below the gatekeeper's `GATEKEEPER_TIMEOUT_MS`, so that a transaction never
    /// commits after the client was told it timed out.
    pub transaction_timeout: Duration,
    /// A whole streamed `/query` (ndjson), execution and every row: past it the statement is
    /// killed and the stream ends with an error line. The row and byte limits do not apply.
    pub stream_timeout: Duration,
    /// How long a worker may take to reach a read's `after_gtid` before the manager serves it.
    pub gtid_wait: Duration,
    /// How long a write waits for a primary to be confirmed (`PROXY_WRITE_WAIT_MS`).
    pub write_wait: Duration,
    pub limits: Limits,
    pub http_workers: usize,
    pub rtt_probe: RttProbe,
}

/// A default duration as the milliseconds `millis` takes.
fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        let listen = get_or(env, LISTEN, defaults::LISTEN.parse().expect("valid"))?;
        let token = required_secret(env, TOKEN)?;
        if token.expose().len() < 16 {
            return Err(ConfigError(format!(
                "{TOKEN} must be at least 16 characters"
            )));
        }
        let manager = NodeAddr::parse(
            &get_or(env, MANAGER, defaults::MANAGER.to_string())?,
            "manager",
        )
        .map_err(|e| ConfigError(format!("{MANAGER}: {e}")))?;
        let workers_raw = get_or(env, WORKERS, defaults::WORKERS.to_string())?;
        let workers = workers_raw
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .enumerate()
            .map(|(i, s)| NodeAddr::parse(s, &format!("worker-{}", i + 1)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError(format!("{WORKERS}: {e}")))?;
        let mode_raw = get_or(env, DEFAULT_MODE, defaults::MODE.to_string())?;
        let default_mode = Mode::parse(&mode_raw).ok_or_else(|| {
            ConfigError(format!(
                "{DEFAULT_MODE}={mode_raw:?} is not one of direct, random, ping, least_busy"
            ))
        })?;
        let pool_size: u32 = get_or(env, POOL_SIZE, defaults::POOL_SIZE)?;
        if pool_size == 0 {
            return Err(ConfigError(format!("{POOL_SIZE} must be greater than 0")));
        }
        Ok(Config {
            listen,
            token,
            manager,
            workers,
            accounts: Accounts {
                read: Account {
                    user: get_or(env, READ_USER, "sqlgate_read".to_string())?,
                    password: required_secret(env, READ_PASSWORD)?,
                },
                write: Account {
                    user: get_or(env, WRITE_USER, "sqlgate_write".to_string())?,
                    password: required_secret(env, WRITE_PASSWORD)?,
                },
                admin: Account {
                    user: get_or(env, ADMIN_USER, "sqlgate_admin".to_string())?,
                    password: required_secret(env, ADMIN_PASSWORD)?,
                },
            },
            tls: sqlgate::tls::identity_from_env(env, TLS_CERT, TLS_KEY, PLAIN_HTTP)?,
            db_tls: match (env.get(DB_CA), env.get(DB_PLAIN).as_deref()) {
                (Some(ca), None | Some("false")) => DbTls::Verify(ca.into()),
                (None, Some("true")) => DbTls::Plain,
                _ => {
                    return Err(ConfigError(format!(
                        "{DB_CA} (the CA that signed the MySQL servers' certificates) is \
                         required, or {DB_PLAIN}=true to connect without TLS"
                    )))
                }
            },
            app_schemas: get_or(env, APP_SCHEMAS, defaults::APP_SCHEMAS.to_string())?
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            monitor_user: get_or(env, MONITOR_USER, "sqlgate_monitor".to_string())?,
            monitor_password: required_secret(env, MONITOR_PASSWORD)?,
            default_mode,
            max_lag: Duration::from_secs(get_or(env, MAX_LAG_S, defaults::MAX_LAG.as_secs())?),
            monitor_interval: millis(env, MONITOR_INTERVAL_MS, ms(defaults::MONITOR_INTERVAL))?,
            ping_interval: millis(env, PING_INTERVAL_MS, ms(defaults::PING_INTERVAL))?,
            ping_tolerance: Duration::from_micros(get_or(
                env,
                PING_TOLERANCE_US,
                defaults::PING_TOLERANCE.as_micros() as u64,
            )?),
            pool_size,
            conn_recycle_bytes: get_or(env, CONN_RECYCLE_BYTES, defaults::CONN_RECYCLE_BYTES)?,
            connect_timeout: millis(env, CONNECT_TIMEOUT_MS, ms(defaults::CONNECT_TIMEOUT))?,
            statement_timeout: millis(env, STATEMENT_TIMEOUT_MS, ms(defaults::STATEMENT_TIMEOUT))?,
            transaction_timeout: millis(
                env,
                TRANSACTION_TIMEOUT_MS,
                ms(defaults::TRANSACTION_TIMEOUT),
            )?,
            stream_timeout: millis(env, STREAM_TIMEOUT_MS, ms(defaults::STREAM_TIMEOUT))?,
            gtid_wait: millis(env, GTID_WAIT_MS, ms(defaults::GTID_WAIT))?,
            write_wait: millis(env, WRITE_WAIT_MS, ms(defaults::WRITE_WAIT))?,
            limits: Limits {
                max_body_bytes: get_or(env, MAX_BODY_BYTES, 1 << 20)?,
                max_sql_bytes: get_or(env, MAX_SQL_BYTES, 64 << 10)?,
                max_params: get_or(env, MAX_PARAMS, 1000)?,
                max_rows: get_or(env, MAX_ROWS, defaults::MAX_ROWS)?,
                max_result_bytes: get_or(env, MAX_RESULT_BYTES, defaults::MAX_RESULT_BYTES)?,
                max_tx_statements: get_or(env, MAX_TX_STATEMENTS, 100)?,
                max_batch_sets: get_or(
                    env,
                    MAX_BATCH_SETS,
                    sqlgate::config::DEFAULT_MAX_BATCH_SETS,
                )?,
            },
            rtt_probe: match get_or(env, RTT_PROBE, "auto".to_string())?.as_str() {
                "auto" => RttProbe::Auto,
                "tcp" => RttProbe::Tcp,
                other => {
                    return Err(ConfigError(format!(
                        "{RTT_PROBE}={other:?} is not one of auto, tcp"
                    )))
                }
            },
            http_workers: get_or(
                env,
                HTTP_WORKERS,
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )?,
        })
    }

    /// The variables that have no default and must be set.
    pub fn required_vars() -> [&'static str; 5] {
        [
            TOKEN,
            READ_PASSWORD,
            WRITE_PASSWORD,
            ADMIN_PASSWORD,
            MONITOR_PASSWORD,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const BASE: &[(&str, &str)] = &[
        (TOKEN, "0123456789abcdef0123"),
        (READ_PASSWORD, "pw"),
        (WRITE_PASSWORD, "pw"),
        (ADMIN_PASSWORD, "pw"),
        (MONITOR_PASSWORD, "pw2"),
        (TLS_CERT, "/etc/sqlgate/proxy.pem"),
        (TLS_KEY, "/etc/sqlgate/proxy-key.pem"),
        (DB_CA, "/etc/sqlgate/ca.pem"),
    ];

    #[test]
    fn defaults_suit_the_local_cluster() {
        let c = Config::from_env(&env(BASE)).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.manager.port, 3307);
        let names: Vec<_> = c.workers.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["worker-1", "worker-2"]);
        assert_eq!(c.default_mode, Mode::Random);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: &[(&str, &str)] = &[
            (WORKERS, "localhost"),
            (MANAGER, "h:notaport"),
            (DEFAULT_MODE, "fastest"),
            (POOL_SIZE, "0"),
            (MAX_LAG_S, "-1"),
            (TOKEN, "short"),
            (RTT_PROBE, "udp"),
            (PLAIN_HTTP, "true"),
            (PLAIN_HTTP, "maybe"),
            (DB_PLAIN, "true"),
        ];
        for (k, v) in cases {
            let mut e = env(BASE);
            e.insert(k.to_string(), v.to_string());
            let err = Config::from_env(&e).expect_err(k);
            assert!(err.0.contains(k), "{k}={v}: {err}");
        }
        for k in Config::required_vars()
            .into_iter()
            .chain([TLS_CERT, TLS_KEY, DB_CA])
        {
            let mut e = env(BASE);
            e.remove(k);
            let err = Config::from_env(&e).expect_err(k);
            assert!(err.0.contains(k), "missing {k}: {err}");
        }
    }

    #[test]
    fn node_addresses() {
        let a = NodeAddr::parse("replica-a=10.0.1.5:3306", "x").unwrap();
        assert_eq!(
            (a.name.as_str(), a.host.as_str(), a.port),
            ("replica-a", "10.0.1.5", 3306)
        );
        let b = NodeAddr::parse("[::1]:3306", "w").unwrap();
        assert_eq!((b.name.as_str(), b.host.as_str()), ("w", "::1"));
        assert!(NodeAddr::parse(":3306", "w").is_err());
    }
}
