//! One `r2d2` pool of MySQL connections per (node, account), set up for the flavour it finds,
//! and the two guarantees every connection keeps: it goes back to the pool clean (reset after
//! every use, session settings re-applied), and a statement the proxy gives up on is killed.

use crate::config::NodeAddr;
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};
use sqlgate::config::Secret;
use std::time::{Duration, Instant};

/// MySQL or MariaDB: a few statements differ (docs/architecture.md, Flavours).
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

    /// The session settings every statement runs under, as one statement (re-applied after
    /// each reset): autocommit on, whatever the server's default; the server's `sql_mode`
    /// without `NO_BACKSLASH_ESCAPES`, which the lexer check assumes; the server-side time
    /// limit (a backstop behind the proxy's own deadline); and the row limit.
    pub fn session_sql(
        self,
        global_sql_mode: &str,
        timeout: Duration,
        select_limit: usize,
    ) -> String {
        let mode: Vec<&str> = global_sql_mode
            .split(',')
            .filter(|m| !m.is_empty() && !m.eq_ignore_ascii_case("NO_BACKSLASH_ESCAPES"))
            .collect();
        let limit = match self {
            Flavor::MariaDb => format!("max_statement_time = {:.3}", timeout.as_secs_f64()),
            // MySQL bounds only SELECTs this way; the proxy's deadline covers the rest.
            Flavor::MySql => format!("max_execution_time = {}", timeout.as_millis()),
        };
        format!(
            "SET SESSION autocommit = 1, sql_mode = '{}', {limit}, sql_select_limit = {select_limit}",
            mode.join(",")
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::MySql => "mysql",
            Flavor::MariaDb => "mariadb",
        }
    }
}

/// How the proxy's connections to MySQL are secured (`PROXY_DB_CA`, `PROXY_DB_PLAIN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTls {
    /// TLS, the server's certificate verified against this CA file and the node's address.
    Verify(std::path::PathBuf),
    /// No TLS: only when explicitly configured.
    Plain,
}

/// Connection options for a node. `io_timeout` is the proxy's deadline for one statement: a
/// read that waits longer fails, and the statement is then killed (`PooledConn::kill`).
pub fn opts(
    node: &NodeAddr,
    user: &str,
    password: &Secret,
    tls: &DbTls,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> OptsBuilder {
    let ssl = match tls {
        // Only this CA, and the certificate must name the host as configured (IP or DNS).
        DbTls::Verify(ca) => Some(mysql::SslOpts::default().with_root_cert_path(Some(ca.clone()))),
        DbTls::Plain => None,
    };
    OptsBuilder::new()
        .ssl_opts(ssl)
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
    /// Re-applied after every reset (`Flavor::session_sql`).
    session_sql: String,
    /// To open a second connection as the same account, which may kill this one's statement
    /// without any privilege.
    opts: OptsBuilder,
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

    /// Returns the session to its configured state, whatever the last statement did: an open
    /// transaction is rolled back, locks (`GET_LOCK`, table locks) released, user and session
    /// variables, temporary tables and prepared statements dropped (COM_RESET_CONNECTION);
    /// then the session settings are applied again. A connection that cannot be reset is
    /// discarded.
    pub fn clean(&mut self) {
        if self.broken {
            return;
        }
        let outcome = self
            .conn
            .reset()
            .and_then(|()| self.conn.query_drop(&self.session_sql));
        if let Err(e) = outcome {
            log::warn!("Resetting a database connection failed, discarding it error={e}");
            self.broken = true;
        }
    }

    /// Kills this connection on the server (see `Killer`); it is then discarded.
    pub fn kill(&mut self) {
        self.broken = true;
        self.killer().kill();
    }

    /// What another thread needs to kill this connection while it is busy.
    pub fn killer(&self) -> Killer {
        Killer {
            opts: self.opts.clone(),
            id: self.conn.connection_id(),
        }
    }
}

/// Kills one server connection from a second connection as the same account (a user may kill
/// its own threads without any privilege), so a statement the proxy gave up on stops running
/// and an open transaction on it is rolled back.
pub struct Killer {
    opts: OptsBuilder,
    id: u32,
}

impl Killer {
    pub fn kill(&self) {
        let id = self.id;
        let killed = Conn::new(self.opts.clone())
            .and_then(|mut c| c.query_drop(format!("KILL CONNECTION {id}")));
        match killed {
            Ok(()) => log::warn!("Killed a statement the proxy gave up on connection_id={id}"),
            Err(e) => {
                log::error!("Killing a timed-out statement failed connection_id={id} error={e}")
            }
        }
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

/// How much later than the proxy's deadline the server's own statement time limit fires: the
/// proxy gives up first and kills the statement (answering 504); the server's limit only
/// catches what the proxy's socket deadline cannot see (rows trickling in slowly).
pub const SERVER_TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// How long an idle connection is trusted without a ping. A connection to a node that went away
/// must fail at checkout, where the failure is known to have reached no server and a read may
/// be retried elsewhere, not when its statement is sent, where it may not (docs/security.md).
/// Under load connections are reused within microseconds and never pinged; at low load a ping
/// costs one round trip.
const TRUST_IDLE: Duration = Duration::from_millis(250);

impl r2d2::ManageConnection for Manager {
    type Connection = PooledConn;
    type Error = mysql::Error;

    fn connect(&self) -> Result<PooledConn, mysql::Error> {
        let mut conn = Conn::new(self.opts.clone())?;
        self.opened.inc();
        let (version, sql_mode): (String, String) = conn
            .query_first("SELECT @@version, @@global.sql_mode")?
            .unwrap_or_default();
        let flavor = Flavor::from_version(&version);
        // The server stops sending rows past the limit, so an oversized result costs little.
        let session_sql = flavor.session_sql(
            &sql_mode,
            self.statement_timeout + SERVER_TIMEOUT_GRACE,
            self.select_limit,
        );
        conn.query_drop(&session_sql)?;
        Ok(PooledConn {
            conn,
            flavor,
            session_sql,
            opts: self.opts.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_settings_per_flavour() {
        let cases = [
            (
                Flavor::MariaDb,
                "STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES,NO_ENGINE_SUBSTITUTION",
                "SET SESSION autocommit = 1, sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION', \
                 max_statement_time = 12.000, sql_select_limit = 10001",
                "MariaDB: seconds, and the escapes mode the lexer cannot follow removed",
            ),
            (
                Flavor::MySql,
                "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,no_backslash_escapes",
                "SET SESSION autocommit = 1, sql_mode = 'ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES', \
                 max_execution_time = 12000, sql_select_limit = 10001",
                "MySQL 8.0: milliseconds (max_execution_time), any case of the mode",
            ),
            (
                Flavor::MySql,
                "",
                "SET SESSION autocommit = 1, sql_mode = '', max_execution_time = 12000, \
                 sql_select_limit = 10001",
                "an empty sql_mode stays empty",
            ),
        ];
        for (flavor, global, want, what) in cases {
            assert_eq!(
                flavor.session_sql(global, Duration::from_secs(12), 10_001),
                want,
                "{what}"
            );
        }
    }
}
