//! The database nodes the proxy knows: address, pool, and the health the monitors last saw.

use crate::config::{Config, NodeAddr};
use crate::pool::{self, Flavor, Lease, Pool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// The part a node plays in the cluster (the wire's type: responses name it).
pub use sqlgate::wire::NodeRole;

/// What the background monitors last observed about a node.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// The monitor has completed at least one check.
    pub checked: bool,
    pub reachable: bool,
    /// May serve requests of its role (reads, for a worker).
    pub eligible: bool,
    /// Why it is not eligible, in words fit for a client (`unreachable`, `lag 9s …`).
    pub reason: Option<String>,
    /// The last connection error, for operators only (the proxy's `/ready` and log).
    pub error: Option<String>,
    pub version: Option<String>,
    pub flavor: Option<Flavor>,
    pub read_only: Option<bool>,
    pub io_running: Option<bool>,
    pub sql_running: Option<bool>,
    pub lag_seconds: Option<u64>,
    pub last_check: Option<Instant>,
    /// Smoothed round-trip time in microseconds.
    pub rtt_us: Option<f64>,
    /// `icmp` or `tcp`: how the RTT was measured.
    pub rtt_method: Option<&'static str>,
}

/// One database node.
pub struct Node {
    pub addr: NodeAddr,
    pub role: NodeRole,
    /// One pool per database account: `read`, `write`, `admin` (see `pool`).
    pools: [Pool; 3],
    health: RwLock<Health>,
    /// Statements currently executing on this node (for `least_busy`).
    in_flight: AtomicUsize,
}

impl Node {
    /// The pool of connections as `account` (`Role::Read` runs as the read account…).
    pub fn pool(&self, account: sqlgate::Role) -> &Pool {
        &self.pools[account as usize]
    }

    /// A connection as `account`, checked alive (see `pool::Manager::recycle`). The error is the
    /// pool's (no free connection in time, the node refused or did not answer); nothing was
    /// sent to the server.
    pub async fn lease(
        &self,
        account: sqlgate::Role,
        kill_limit: std::time::Duration,
    ) -> Result<Lease, String> {
        // The pool bounds each step of a checkout (waiting, opening, pinging) but not their
        // sum, and pings idle connections one after another: on a node that hangs, that
        // would be the connect timeout times the idle connections.
        match tokio::time::timeout(kill_limit, self.pool(account).get()).await {
            Ok(Ok(obj)) => Ok(Lease::new(obj, kill_limit)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no connection within {} ms",
                kill_limit.as_millis()
            )),
        }
    }

    /// Every pool with its account, for metrics.
    pub fn pools(&self) -> impl Iterator<Item = (sqlgate::Role, &Pool)> {
        [
            sqlgate::Role::Read,
            sqlgate::Role::Write,
            sqlgate::Role::Admin,
        ]
        .into_iter()
        .zip(self.pools.iter())
    }

    pub fn name(&self) -> &str {
        &self.addr.name
    }

    pub fn health(&self) -> Health {
        self.health
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads one field of the health without cloning the rest (the request path's use).
    pub fn with_health<T>(&self, f: impl FnOnce(&Health) -> T) -> T {
        f(&self.health.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn update_health(&self, f: impl FnOnce(&mut Health)) {
        let mut h = self.health.write().unwrap_or_else(|e| e.into_inner());
        f(&mut h);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a statement as running until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// Decrements the node's in-flight count when dropped.
pub struct InFlight(Arc<Node>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The manager and the workers.
pub struct Cluster {
    pub manager: Arc<Node>,
    pub workers: Vec<Arc<Node>>,
}

impl Cluster {
    pub fn new(config: &Config, metrics: &crate::metrics::Metrics) -> Cluster {
        let make = |addr: &NodeAddr, role: NodeRole| {
            let opened = metrics
                .connects
                .get_or_create(&crate::metrics::NodeLabels {
                    node: addr.name.clone(),
                    role: role.as_str(),
                })
                .clone();
            let pool_for = |level: sqlgate::Role| {
                let account = config.accounts.get(level);
                let opts = pool::opts(addr, &account.user, &account.password, &config.db_tls);
                let manager = pool::Manager::new(
                    opts,
                    config.statement_timeout,
                    config.limits.max_rows,
                    config.conn_recycle_bytes,
                    opened.clone(),
                );
                pool::build(manager, config.pool_size as usize, config.connect_timeout)
            };
            Arc::new(Node {
                addr: addr.clone(),
                role,
                pools: [
                    pool_for(sqlgate::Role::Read),
                    pool_for(sqlgate::Role::Write),
                    pool_for(sqlgate::Role::Admin),
                ],
                health: RwLock::new(Health::default()),
                in_flight: AtomicUsize::new(0),
            })
        };
        Cluster {
            manager: make(&config.manager, NodeRole::Manager),
            workers: config
                .workers
                .iter()
                .map(|w| make(w, NodeRole::Worker))
                .collect(),
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Node>> {
        std::iter::once(&self.manager).chain(self.workers.iter())
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Node>> {
        self.all().find(|n| n.name() == name)
    }

    /// Every node's figures for a metrics scrape.
    pub fn stats(&self) -> Vec<crate::metrics::NodeStats> {
        self.all()
            .map(|n| {
                let h = n.health();
                crate::metrics::NodeStats {
                    node: n.name().to_string(),
                    role: n.role.as_str(),
                    eligible: h.eligible,
                    lag_seconds: h.lag_seconds,
                    rtt_us: h.rtt_us,
                    in_flight: n.in_flight(),
                    pools: n
                        .pools()
                        .map(|(account, pool)| {
                            let s = pool.status();
                            (account.as_str(), s.available, s.size - s.available)
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The node `route::plan` named: 0 is the manager, then the workers in order.
    pub fn get(&self, index: usize) -> &Arc<Node> {
        match index {
            0 => &self.manager,
            i => &self.workers[i - 1],
        }
    }

    /// What routing needs to know of every node now, as plain data (`route::plan` is a pure
    /// function of it).
    pub fn view(&self) -> crate::route::ClusterView<'_> {
        crate::route::ClusterView {
            nodes: self
                .all()
                .map(|n| {
                    n.with_health(|h| crate::route::NodeView {
                        name: n.name(),
                        role: n.role,
                        checked: h.checked,
                        reachable: h.reachable,
                        eligible: h.eligible,
                        applier_running: h.sql_running == Some(true),
                        reason: h.reason.clone(),
                        rtt_us: h.rtt_us,
                        in_flight: n.in_flight(),
                    })
                })
                .collect(),
        }
    }
}
