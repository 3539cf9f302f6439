//! One `r2d2` pool of MySQL connections per node, set up for the flavour it finds.

use crate::config::NodeAddr;
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};
use sqlgate::config::Secret;
use std::time::{Duration, Instant};

/// MySQL or MariaDB: a few statements differ (DESIGN.md, Flavours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MySql,
    MariaDb,
}

impl Flavor {
    /// Reads the flavour from `@@version` (`10.11.6-MariaDB-…` or `8.0.36`).
    pub fn from_version(version: &str) -> Flavor {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        }
    }

    /// The session statement that bounds a statement's run time on the server.
    pub fn statement_timeout_sql(self, timeout: Duration) -> String {
        match self {
            Flavor::MariaDb => format!(
                "SET SESSION max_statement_time = {:.3}",
                timeout.as_secs_f64()
            ),
            // MySQL bounds only SELECTs this way; the socket read timeout covers the rest.
            Flavor::MySql => format!("SET SESSION max_execution_time = {}", timeout.as_millis()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::MySql => "mysql",
            Flavor::MariaDb => "mariadb",
        }
    }
}

/// Connection options for a node.
pub fn opts(
    node: &NodeAddr,
    user: &str,
    password: &Secret,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> OptsBuilder {
    OptsBuilder::new()
        .ip_or_hostname(Some(node.host.clone()))
        .tcp_port(node.port)
        .user(Some(user))
        .pass(Some(password.expose()))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(connect_timeout))
        .read_timeout(Some(io_timeout))
        .write_timeout(Some(io_timeout))
        .stmt_cache_size(Some(64))
}

/// A pooled connection and what the pool needs to know about it.
pub struct PooledConn {
    pub conn: Conn,
    pub flavor: Flavor,
    last_used: Instant,
    /// Bytes received on this connection, roughly (see `Manager::recycle_bytes`).
    received: usize,
    /// Set when the connection may be in an unknown state (I/O error, abandoned result).
    pub broken: bool,
}

impl PooledConn {
    /// Records a use that received about `bytes`, so the pool skips the liveness ping for a
    /// connection just used and can retire one that has received enough.
    pub fn touch(&mut self, bytes: usize) {
        self.last_used = Instant::now();
        self.received = self.received.saturating_add(bytes);
    }
}

/// Makes connections for one node's pool.
pub struct Manager {
    opts: OptsBuilder,
    statement_timeout: Duration,
    /// Rows a SELECT may return before the proxy answers 413 (plus one to detect the excess).
    select_limit: usize,
    /// A connection that has received this much is closed when it returns to the pool. The
    /// `mysql` crate reads into a 4 MiB buffer that it only rewinds once reads reach its end,
    /// so every long-lived connection ends up with all 4 MiB resident; recycling bounds that.
    recycle_bytes: usize,
    /// Counts every connection opened.
    opened: prometheus_client::metrics::counter::Counter,
}

impl Manager {
    pub fn new(
        opts: OptsBuilder,
        statement_timeout: Duration,
        max_rows: usize,
        recycle_bytes: usize,
        opened: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        Manager {
            opts,
            statement_timeout,
            select_limit: max_rows + 1,
            recycle_bytes,
            opened,
        }
    }
}

/// How long an idle connection is trusted without a ping.
const TRUST_IDLE: Duration = Duration::from_secs(2);

impl r2d2::ManageConnection for Manager {
    type Connection = PooledConn;
    type Error = mysql::Error;

    fn connect(&self) -> Result<PooledConn, mysql::Error> {
        let mut conn = Conn::new(self.opts.clone())?;
        self.opened.inc();
        let version: String = conn.query_first("SELECT @@version")?.unwrap_or_default();
        let flavor = Flavor::from_version(&version);
        conn.query_drop(flavor.statement_timeout_sql(self.statement_timeout))?;
        // The server stops sending rows past the limit, so an oversized result costs little.
        conn.query_drop(format!(
            "SET SESSION sql_select_limit = {}",
            self.select_limit
        ))?;
        Ok(PooledConn {
            conn,
            flavor,
            last_used: Instant::now(),
            received: 0,
            broken: false,
        })
    }

    fn is_valid(&self, c: &mut PooledConn) -> Result<(), mysql::Error> {
        if c.last_used.elapsed() > TRUST_IDLE {
            c.conn.ping()?;
            c.touch(0);
        }
        Ok(())
    }

    fn has_broken(&self, c: &mut PooledConn) -> bool {
        c.broken || c.received >= self.recycle_bytes
    }
}

pub type Pool = r2d2::Pool<Manager>;

/// Builds a pool that connects lazily, so the proxy starts even while a node is down.
pub fn build(manager: Manager, size: u32, checkout_timeout: Duration) -> Pool {
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(0))
        .connection_timeout(checkout_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .error_handler(Box::new(r2d2::NopErrorHandler))
        .build_unchecked(manager)
}
