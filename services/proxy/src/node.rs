//! The database nodes the proxy knows: address, pool, and the health the monitors last saw.

use crate::config::{Config, NodeAddr};
use crate::pool::{self, Flavor, Lease, Pool};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Why it may not serve as the manager, in words fit for a client (`unreachable`,
    /// `read_only`…); `None` when it may.
    pub not_manager: Option<String>,
    /// Why it may not serve reads as a worker (`lag 9s …`); `None` when it may.
    pub not_worker: Option<String>,
    /// It has a replication source configured (a replica status row): never the primary.
    pub replicating: bool,
    /// As a primary: whether semi-synchronous replication is on and waiting for workers
    /// (`Rpl_semi_sync_master_status`); `None` when not known or not a primary.
    pub semi_sync: Option<bool>,
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

/// Which node is the primary, as the monitors last agreed (`Cluster::elect`).
#[derive(Debug)]
pub struct Topology {
    /// Index into `Cluster::nodes` of the primary, or of the last one while none is confirmed.
    primary: AtomicUsize,
    /// Exactly one node is writable and not replicating, and it is `primary`. False while a
    /// switchover or failover is under way (no writable node) or, never expected, when two
    /// are writable: writes then wait a bounded time, and are refused rather than sent to a
    /// node that is not the one primary.
    confirmed: AtomicBool,
}

impl Topology {
    pub fn primary(&self) -> usize {
        self.primary.load(Ordering::Acquire)
    }

    pub fn confirmed(&self) -> bool {
        self.confirmed.load(Ordering::Acquire)
    }
}

/// One database node.
pub struct Node {
    pub addr: NodeAddr,
    /// Its index in `Cluster::nodes`.
    index: usize,
    topology: Arc<Topology>,
    /// One pool per database account: `read`, `write`, `admin` (see `pool`).
    pools: [Pool; 3],
    health: RwLock<Health>,
    /// Statements currently executing on this node (for `least_busy`).
    in_flight: AtomicUsize,
}

impl Node {
    /// Its current part: the manager while it is the primary the monitors agreed on.
    pub fn role(&self) -> NodeRole {
        if self.topology.primary() == self.index {
            NodeRole::Manager
        } else {
            NodeRole::Worker
        }
    }

    /// Its index in `Cluster::nodes` (what `ClusterView` entries name as `id`).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Why it may not serve its current role now, in words fit for a client; `None` when it
    /// may. The manager also needs the topology confirmed (one writable node).
    pub fn reason(&self) -> Option<String> {
        self.with_health(|h| self.reason_in(h))
    }

    /// `reason`, from health already read.
    fn reason_in(&self, h: &Health) -> Option<String> {
        if !h.checked {
            return Some("not checked yet".into());
        }
        match self.role() {
            NodeRole::Manager if !self.topology.confirmed() => {
                Some("no single writable primary (a switchover or failover is under way)".into())
            }
            NodeRole::Manager => h.not_manager.clone(),
            NodeRole::Worker => h.not_worker.clone(),
        }
    }

    /// May serve requests of its current role (reads, for a worker).
    pub fn eligible(&self) -> bool {
        self.reason().is_none()
    }

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

/// Every database node; which one is the manager is the `Topology`'s to say.
pub struct Cluster {
    /// `PROXY_MANAGER` first (the primary until the monitors say otherwise), then
    /// `PROXY_WORKERS`, in order.
    nodes: Vec<Arc<Node>>,
    topology: Arc<Topology>,
}

impl Cluster {
    pub fn new(config: &Config, metrics: &crate::metrics::Metrics) -> Cluster {
        let topology = Arc::new(Topology {
            primary: AtomicUsize::new(0),
            confirmed: AtomicBool::new(true),
        });
        let make = |index: usize, addr: &NodeAddr| {
            let opened = metrics
                .connects
                .get_or_create(&crate::metrics::NodeLabels {
                    node: addr.name.clone(),
                    role: "any",
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
                index,
                topology: topology.clone(),
                pools: [
                    pool_for(sqlgate::Role::Read),
                    pool_for(sqlgate::Role::Write),
                    pool_for(sqlgate::Role::Admin),
                ],
                health: RwLock::new(Health::default()),
                in_flight: AtomicUsize::new(0),
            })
        };
        let nodes = std::iter::once(&config.manager)
            .chain(config.workers.iter())
            .enumerate()
            .map(|(i, addr)| make(i, addr))
            .collect();
        Cluster { nodes, topology }
    }

    /// The primary (the last one, while the topology is not confirmed).
    pub fn manager(&self) -> &Arc<Node> {
        &self.nodes[self.topology.primary()]
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Every node, in configuration order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.nodes.iter()
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Node>> {
        self.all().find(|n| n.name() == name)
    }

    /// Decides which node is the primary from what the monitors last saw: the one node that is
    /// reachable, writable (`read_only` off) and replicates from nobody. Until every node has
    /// been checked once, the configured manager stands. No such node (the primary fenced or
    /// lost), or more than one: nothing is confirmed, and writes are held or refused.
    pub fn elect(&self) {
        let seen: Vec<Health> = self.nodes.iter().map(|n| n.health()).collect();
        if seen.iter().any(|h| !h.checked) {
            return;
        }
        let writable: Vec<usize> = seen
            .iter()
            .enumerate()
            .filter(|(_, h)| h.reachable && h.read_only == Some(false) && !h.replicating)
            .map(|(i, _)| i)
            .collect();
        let before = (self.topology.primary(), self.topology.confirmed());
        match writable[..] {
            [one] => {
                self.topology.primary.store(one, Ordering::Release);
                self.topology.confirmed.store(true, Ordering::Release);
            }
            [] => self.topology.confirmed.store(false, Ordering::Release),
            _ => {
                self.topology.confirmed.store(false, Ordering::Release);
                if before.1 {
                    let names: Vec<&str> = writable.iter().map(|i| self.nodes[*i].name()).collect();
                    log::error!(
                        "Several writable nodes: no writes until one is fenced nodes={}",
                        names.join(",")
                    );
                }
            }
        }
        let after = (self.topology.primary(), self.topology.confirmed());
        if before != after {
            let name = self.nodes[after.0].name();
            if after.1 {
                log::warn!("Primary confirmed node={name}");
            } else {
                log::warn!("No single writable primary: writes held, then refused last={name}");
            }
        }
    }

    /// Every node's figures for a metrics scrape.
    pub fn stats(&self) -> Vec<crate::metrics::NodeStats> {
        self.all()
            .map(|n| {
                let h = n.health();
                crate::metrics::NodeStats {
                    node: n.name().to_string(),
                    role: n.role().as_str(),
                    eligible: n.eligible(),
                    lag_seconds: h.lag_seconds,
                    rtt_us: h.rtt_us,
                    in_flight: n.in_flight(),
                    semi_sync: (n.role() == NodeRole::Manager)
                        .then_some(h.semi_sync)
                        .flatten(),
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

    /// The node `route::plan` named in `view` (the view's order is not the cluster's).
    pub fn get(&self, view: &crate::route::ClusterView<'_>, index: usize) -> &Arc<Node> {
        &self.nodes[view.nodes[index].id]
    }

    /// What routing needs to know of every node now, as plain data (`route::plan` is a pure
    /// function of it): the manager first, then the other nodes in configuration order.
    pub fn view(&self) -> crate::route::ClusterView<'_> {
        let primary = self.topology.primary();
        let order = std::iter::once(primary).chain((0..self.nodes.len()).filter(|i| *i != primary));
        crate::route::ClusterView {
            nodes: order
                .map(|id| {
                    let n = &self.nodes[id];
                    n.with_health(|h| {
                        let reason = n.reason_in(h);
                        crate::route::NodeView {
                            id,
                            name: n.name(),
                            role: n.role(),
                            checked: h.checked,
                            reachable: h.reachable,
                            eligible: reason.is_none(),
                            applier_running: h.sql_running == Some(true),
                            reason,
                            rtt_us: h.rtt_us,
                            in_flight: n.in_flight(),
                        }
                    })
                })
                .collect(),
        }
    }
}
