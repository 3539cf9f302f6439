//! One pool of `mysql_async` connections per (node, account), set up for the flavour it finds,
//! and the two guarantees every connection keeps: it goes back to the pool clean (reset after
//! every use, session settings re-applied), and a statement the proxy gives up on is killed.
//!
//! The pool is `deadpool`'s, not `mysql_async`'s own: the proxy needs hooks that one does not
//! offer (a connection's flavour and session settings found when it opens, a count of opened
//! connections, retiring a connection after a byte budget; docs/decisions.md, entry 22).

use crate::config::NodeAddr;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
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
    /// limit (a backstop behind the proxy's own deadline); the row limit; and the session
    /// tracking that puts a write's own GTID in the OK packet acknowledging it.
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
        let (limit, track) = match self {
            Flavor::MariaDb => (
                format!("max_statement_time = {:.3}", timeout.as_secs_f64()),
                "session_track_system_variables = 'last_gtid'",
            ),
            // MySQL bounds only SELECTs this way; the proxy's deadline covers the rest.
            Flavor::MySql => (
                format!("max_execution_time = {}", timeout.as_millis()),
                "session_track_gtids = OWN_GTID",
            ),
        };
        format!(
            "SET SESSION autocommit = 1, sql_mode = '{}', {limit}, sql_select_limit = {select_limit}, {track}",
            mode.join(",")
        )
    }

    /// The settings a streamed statement runs under instead, for this request only (the
    /// reset after it applies `session_sql` again): no row limit, and the server's own time
    /// limit as a backstop behind the stream's `timeout`.
    pub fn stream_sql(self, timeout: Duration) -> String {
        let limit = match self {
            Flavor::MariaDb => format!("max_statement_time = {:.3}", timeout.as_secs_f64()),
            Flavor::MySql => format!("max_execution_time = {}", timeout.as_millis()),
        };
        format!("SET SESSION {limit}, sql_select_limit = DEFAULT")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::MySql => "mysql",
            Flavor::MariaDb => "mariadb",
        }
    }
}

/// How the proxy's connections to MySQL are secured (defined with the configuration).
pub use crate::config::DbTls;

/// Connection options for a node, as `user`. `mysql_async` has no connect timeout of its own:
/// the pool's create timeout bounds connecting (`build`), and the monitor its own checks.
pub fn opts(node: &NodeAddr, user: &str, password: &Secret, tls: &DbTls) -> Opts {
    let ssl = match tls {
        // Only this CA (not the public web roots the driver would add), and the certificate
        // must name the host as configured (IP or DNS).
        DbTls::Verify(ca) => Some(
            mysql_async::SslOpts::default()
                .with_root_certs(vec![ca.clone().into()])
                .with_disable_built_in_roots(true),
        ),
        DbTls::Plain => None,
    };
    OptsBuilder::default()
        .ssl_opts(ssl)
        .ip_or_hostname(node.host.clone())
        .tcp_port(node.port)
        .user(Some(user))
        .pass(Some(password.expose()))
        .prefer_socket(false)
        .tcp_nodelay(true)
        .stmt_cache_size(STATEMENT_CACHE)
        .into()
}

/// Prepared statements kept per connection. The cache is emptied by every reset, so it only
/// serves statements run more than once in one request (a `/transaction`'s repeats).
const STATEMENT_CACHE: usize = 32;

/// A pooled connection and what the pool needs to know about it.
pub struct PooledConn {
    pub conn: Conn,
    pub flavor: Flavor,
    /// Re-applied after every reset (`Flavor::session_sql`).
    session_sql: String,
    last_used: Instant,
    /// Bytes received on this connection, roughly (see `Manager::recycle_bytes`).
    received: usize,
    /// Set when the connection may be in an unknown state (I/O error, abandoned result, killed).
    pub broken: bool,
    /// Set when a request has used the connection; only a successful `clean` clears it, and the
    /// pool never hands out a dirty connection (`Manager::recycle`), whatever happened to the
    /// task that was to clean it.
    dirty: bool,
    /// Set when a request chose a default schema (`db::use_database`): COM_RESET_CONNECTION
    /// keeps it, so `clean` uses COM_CHANGE_USER, which also clears it.
    pub schema_selected: bool,
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
    /// variables, temporary tables and prepared statements dropped (COM_RESET_CONNECTION, or
    /// COM_CHANGE_USER after a request chose a default schema); then the session settings are
    /// applied again. A connection that cannot be reset is
    /// marked broken, and the pool discards it.
    /// The reset gets at most `limit`: a node that stops answering costs this connection, not a
    /// connection stuck in cleaning forever.
    pub async fn clean(&mut self, limit: Duration) {
        if self.broken {
            return;
        }
        let reset = async {
            let supported = if self.schema_selected {
                // Logs in again as the same account: everything a reset does, and the default
                // schema cleared.
                self.conn
                    .change_user(Default::default())
                    .await
                    .map(|()| true)
            } else {
                self.conn.reset().await
            };
            match supported {
                Ok(true) => self.conn.query_drop(&self.session_sql).await.map(|()| true),
                Ok(false) => Ok(false),
                Err(e) => Err(e),
            }
        };
        match tokio::time::timeout(limit, reset).await {
            Ok(Ok(true)) => {
                self.dirty = false;
                self.schema_selected = false;
            }
            Ok(Ok(false)) => {
                log::error!("The server does not support COM_RESET_CONNECTION; discarding");
                self.broken = true;
            }
            Ok(Err(e)) => {
                log::warn!("Resetting a database connection failed, discarding it error={e}");
                self.broken = true;
            }
            Err(_) => {
                log::warn!(
                    "Resetting a database connection got no answer within {} ms, discarding it",
                    limit.as_millis()
                );
                self.broken = true;
            }
        }
    }

    /// What is needed to kill this connection's statement from another connection.
    pub fn killer(&self) -> Killer {
        Killer {
            opts: self.conn.opts().clone(),
            id: self.conn.id(),
        }
    }
}

/// Kills one server connection from a second connection as the same account (a user may kill
/// its own threads without any privilege), so a statement the proxy gave up on stops running
/// and an open transaction on it is rolled back.
#[derive(Clone)]
pub struct Killer {
    opts: Opts,
    id: u32,
}

impl Killer {
    /// Kills the connection, waiting at most `limit` (the node may be the reason it hangs).
    pub async fn kill(&self, limit: Duration) {
        let id = self.id;
        let kill = async {
            let mut c = Conn::new(self.opts.clone()).await?;
            c.query_drop(format!("KILL CONNECTION {id}")).await?;
            c.disconnect().await
        };
        match tokio::time::timeout(limit, kill).await {
            Ok(Ok(())) => log::warn!("Killed a statement the proxy gave up on connection_id={id}"),
            Ok(Err(e)) => {
                log::error!("Killing a timed-out statement failed connection_id={id} error={e}")
            }
            Err(_) => log::error!(
                "Killing a timed-out statement got no answer connection_id={id} limit_ms={}",
                limit.as_millis()
            ),
        }
    }
}

/// Makes connections for one (node, account) pool.
pub struct Manager {
    opts: Opts,
    statement_timeout: Duration,
    /// Rows a SELECT may return before the proxy answers 413 (plus one to detect the excess).
    select_limit: usize,
    /// A connection that has received this much is closed when it would be reused, so no
    /// connection keeps the buffers of one large result forever.
    recycle_bytes: usize,
    /// Counts every connection opened.
    opened: prometheus_client::metrics::counter::Counter,
}

impl Manager {
    pub fn new(
        opts: Opts,
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
/// catches what the proxy cannot see.
pub const SERVER_TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// How long an idle connection is trusted without a ping. A connection to a node that went away
/// must fail at checkout, where the failure is known to have reached no server and a read may
/// be retried elsewhere, not when its statement is sent, where it may not (docs/security.md).
/// Under load connections are reused within microseconds and never pinged; at low load a ping
/// costs one round trip.
const TRUST_IDLE: Duration = Duration::from_millis(250);

/// An idle connection older than this is closed (by `retire_idle`, from the node's monitor), so
/// a burst's connections do not stay open on the server forever.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl managed::Manager for Manager {
    type Type = PooledConn;
    type Error = mysql_async::Error;

    async fn create(&self) -> Result<PooledConn, mysql_async::Error> {
        let mut conn = Conn::new(self.opts.clone()).await?;
        self.opened.inc();
        let (version, sql_mode): (String, String) = conn
            .query_first("SELECT @@version, @@global.sql_mode")
            .await?
            .unwrap_or_default();
        let flavor = Flavor::from_version(&version);
        // The server stops sending rows past the limit, so an oversized result costs little.
        let session_sql = flavor.session_sql(
            &sql_mode,
            self.statement_timeout + SERVER_TIMEOUT_GRACE,
            self.select_limit,
        );
        conn.query_drop(&session_sql).await?;
        Ok(PooledConn {
            conn,
            flavor,
            session_sql,
            last_used: Instant::now(),
            received: 0,
            broken: false,
            dirty: false,
            schema_selected: false,
        })
    }

    async fn recycle(&self, c: &mut PooledConn, _: &Metrics) -> RecycleResult<mysql_async::Error> {
        if c.broken || c.dirty {
            return Err(RecycleError::message(
                "broken, or not reset after its last use",
            ));
        }
        if c.received >= self.recycle_bytes {
            return Err(RecycleError::message("byte budget spent"));
        }
        if c.last_used.elapsed() > TRUST_IDLE {
            c.conn.ping().await?;
            c.touch(0);
        }
        Ok(())
    }
}

pub type Pool = managed::Pool<Manager>;
pub type Object = managed::Object<Manager>;

/// Builds a pool that connects lazily, so the proxy starts even while a node is down. Waiting
/// for a free connection, opening one and pinging one are each bounded by `checkout_timeout`.
pub fn build(manager: Manager, size: usize, checkout_timeout: Duration) -> Pool {
    managed::Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(checkout_timeout))
        .create_timeout(Some(checkout_timeout))
        .recycle_timeout(Some(checkout_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .expect("a pool with a runtime and a non-zero size builds")
}

/// Closes the pool's connections idle for longer than `IDLE_TIMEOUT`.
pub fn retire_idle(pool: &Pool) {
    pool.retain(|_, m| m.last_used() < IDLE_TIMEOUT);
}

/// A connection on loan for one request. However the request ends, the connection is
/// cleaned before anyone else gets it: `Drop` hands it to a background task that resets it
/// (after the answer is sent, off the request path), or — if a statement was still running
/// (the request was cancelled mid-statement, the client went away) — kills that statement and
/// discards the connection.
pub struct Lease {
    obj: Option<Object>,
    /// A statement has been sent and its answer not fully read.
    busy: bool,
    kill_limit: Duration,
}

impl Lease {
    pub fn new(mut obj: Object, kill_limit: Duration) -> Lease {
        obj.dirty = true;
        Lease {
            obj: Some(obj),
            busy: false,
            kill_limit,
        }
    }

    pub fn conn(&mut self) -> &mut PooledConn {
        self.obj
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }

    /// Marks a statement as in progress (`true`) or finished (`false`).
    pub fn set_busy(&mut self, busy: bool) {
        self.busy = busy;
    }

    pub fn kill_limit(&self) -> Duration {
        self.kill_limit
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(obj) = self.obj.take() else {
            return;
        };
        let busy = self.busy;
        let limit = self.kill_limit;
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime (shutting down): never return it to the pool.
            let _ = Object::take(obj);
            return;
        };
        // Held by the task from the start: if the task is dropped before it finishes (even
        // before it first runs, as when the runtime shuts down), the connection leaves the pool.
        let guard = Unfinished(Some(obj));
        rt.spawn(async move {
            let mut guard = guard;
            let obj = guard.0.as_mut().expect("just set");
            if busy {
                obj.broken = true;
                let killer = obj.killer();
                killer.kill(limit).await;
            } else {
                obj.clean(limit).await;
            }
            let obj = guard.0.take().expect("still held");
            if obj.broken {
                // Out of the pool; dropping the connection closes it.
                drop(Object::take(obj));
            }
            // Otherwise dropping the object returns it to the pool, clean.
        });
    }
}

/// A connection on its way back to the pool; dropped unfinished, it is taken out instead.
struct Unfinished(Option<Object>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(obj) = self.0.take() {
            drop(Object::take(obj));
        }
    }
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
                 max_statement_time = 12.000, sql_select_limit = 10001, \
                 session_track_system_variables = 'last_gtid'",
                "MariaDB: seconds, the escapes mode the lexer cannot follow removed, last_gtid tracked",
            ),
            (
                Flavor::MySql,
                "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,no_backslash_escapes",
                "SET SESSION autocommit = 1, sql_mode = 'ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES', \
                 max_execution_time = 12000, sql_select_limit = 10001, \
                 session_track_gtids = OWN_GTID",
                "MySQL 8.0: milliseconds (max_execution_time), any case of the mode, own GTID tracked",
            ),
            (
                Flavor::MySql,
                "",
                "SET SESSION autocommit = 1, sql_mode = '', max_execution_time = 12000, \
                 sql_select_limit = 10001, session_track_gtids = OWN_GTID",
                "an empty sql_mode stays empty",
            ),
        ];
        assert_eq!(
            Flavor::MariaDb.stream_sql(Duration::from_millis(122_500)),
            "SET SESSION max_statement_time = 122.500, sql_select_limit = DEFAULT"
        );
        assert_eq!(
            Flavor::MySql.stream_sql(Duration::from_millis(122_500)),
            "SET SESSION max_execution_time = 122500, sql_select_limit = DEFAULT"
        );
        for (flavor, global, want, what) in cases {
            assert_eq!(
                flavor.session_sql(global, Duration::from_secs(12), 10_001),
                want,
                "{what}"
            );
        }
    }
}
