//! The database nodes the proxy knows: address, pool, and the health the monitors last saw.

use crate::config::{Config, NodeAddr};
use crate::pool::{self, Flavor, Pool};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// The part a node plays in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Manager,
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
        }
    }
}

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
                let opts = pool::opts(
                    addr,
                    &account.user,
                    &account.password,
                    &config.db_tls,
                    config.connect_timeout,
                    config.statement_timeout,
                );
                let manager = pool::Manager::new(
                    opts,
                    config.statement_timeout,
                    config.limits.max_rows,
                    config.conn_recycle_bytes,
                    opened.clone(),
                );
                pool::build(manager, config.pool_size, config.connect_timeout)
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
}
