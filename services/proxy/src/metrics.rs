//! The proxy's Prometheus metrics: requests by node, kind, mode and outcome; latency; pool
//! usage; node eligibility, lag and RTT.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sqlgate::request_log::Finished;
use sqlgate::ErrorCode;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub node: String,
    pub kind: &'static str,
    pub mode: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
    pub role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub node: String,
    /// The database account the pool connects as.
    pub account: &'static str,
    pub state: &'static str,
}

/// All proxy metrics.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<KindLabels, Histogram>,
    /// Database connections opened, by node (recycling and reconnects show here).
    pub connects: Family<NodeLabels, Counter>,
    pool: Family<PoolLabels, Gauge>,
    eligible: Family<NodeLabels, Gauge>,
    lag: Family<NodeLabels, Gauge>,
    rtt: Family<NodeLabels, Gauge<f64, AtomicU64>>,
    in_flight: Family<NodeLabels, Gauge>,
    semi_sync: Family<NodeLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sqlgate_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            // 50 µs to ~26 s.
            Histogram::new(exponential_buckets(0.00005, 2.0, 20))
        });
        let pool = Family::<PoolLabels, Gauge>::default();
        let connects = Family::<NodeLabels, Counter>::default();
        let eligible = Family::<NodeLabels, Gauge>::default();
        let lag = Family::<NodeLabels, Gauge>::default();
        let rtt = Family::<NodeLabels, Gauge<f64, AtomicU64>>::default();
        let in_flight = Family::<NodeLabels, Gauge>::default();
        let semi_sync = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "connections_opened",
            "Database connections opened",
            connects.clone(),
        );
        registry.register(
            "requests",
            "Requests by node, kind, mode and outcome",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a request",
            duration.clone(),
        );
        registry.register(
            "pool_connections",
            "Pooled connections by state",
            pool.clone(),
        );
        registry.register(
            "node_eligible",
            "1 when the node may serve its role",
            eligible.clone(),
        );
        registry.register(
            "node_replication_lag_seconds",
            "Replica lag seen by the monitor",
            lag.clone(),
        );
        registry.register(
            "node_rtt_seconds",
            "Smoothed round-trip time to the node",
            rtt.clone(),
        );
        registry.register(
            "node_in_flight",
            "Statements executing on the node",
            in_flight.clone(),
        );
        registry.register(
            "semi_sync_active",
            "1 while the primary waits for a worker to acknowledge each commit (semi-sync on), \
             0 when it has fallen back to asynchronous replication",
            semi_sync.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            connects,
            pool,
            eligible,
            lag,
            rtt,
            in_flight,
            semi_sync,
        }
    }
}

impl Metrics {
    /// Counts a finished `/query`, `/transaction` or `/batch` (other routes are not counted), from what the
    /// request log recorded: one place for the log line and the metrics
    /// (`sqlgate::request_log`).
    pub fn observe(&self, done: &Finished<'_>) {
        let endpoint = match done.route {
            Some("/query") => "query",
            Some("/transaction") => "transaction",
            Some("/batch") => "batch",
            _ => return,
        };
        let f = done.fields;
        let kind = f.kind.map_or("-", |k| k.as_str());
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                node: f.node.clone().unwrap_or_else(|| "none".into()),
                kind,
                mode: f.mode.map_or("-", |m| m.as_str()),
                outcome: outcome(f.code),
            })
            .inc();
        self.duration
            .get_or_create(&KindLabels { kind })
            .observe(done.duration.as_secs_f64());
    }
}

/// The outcome label, from the error code the request was answered with (none: success).
fn outcome(code: Option<ErrorCode>) -> &'static str {
    match code {
        None => "ok",
        Some(ErrorCode::SqlError | ErrorCode::TransactionBroken) => "sql_error",
        Some(ErrorCode::Timeout) => "timeout",
        Some(ErrorCode::ResultTooLarge) => "too_large",
        Some(ErrorCode::Unavailable | ErrorCode::BadGateway) => "unavailable",
        Some(ErrorCode::Internal) => "internal",
        Some(_) => "client_error",
    }
}

/// One node's figures at the moment of a scrape (filled in by `node::Cluster::stats`, so this
/// module depends on no other of the proxy's).
pub struct NodeStats {
    pub node: String,
    pub role: &'static str,
    pub eligible: bool,
    pub lag_seconds: Option<u64>,
    pub rtt_us: Option<f64>,
    pub in_flight: usize,
    /// The primary's semi-sync state (`None` for other nodes, or not reported).
    pub semi_sync: Option<bool>,
    /// Per database account: (account, idle connections, connections in use).
    pub pools: Vec<(&'static str, usize, usize)>,
}

impl Metrics {
    /// Refreshes the node gauges from `nodes` and renders the text exposition.
    pub fn render(&self, nodes: &[NodeStats]) -> String {
        // A node's role can change (switchover, failover): series of its old role go.
        for family in [&self.eligible, &self.lag, &self.in_flight, &self.semi_sync] {
            family.clear();
        }
        self.rtt.clear();
        for n in nodes {
            let labels = NodeLabels {
                node: n.node.clone(),
                role: n.role,
            };
            self.eligible
                .get_or_create(&labels)
                .set(i64::from(n.eligible));
            if let Some(on) = n.semi_sync {
                self.semi_sync.get_or_create(&labels).set(i64::from(on));
            }
            if let Some(lag) = n.lag_seconds {
                self.lag.get_or_create(&labels).set(lag as i64);
            }
            if let Some(rtt) = n.rtt_us {
                self.rtt.get_or_create(&labels).set(rtt / 1e6);
            }
            self.in_flight
                .get_or_create(&labels)
                .set(n.in_flight as i64);
            for (account, idle, in_use) in &n.pools {
                for (s, count) in [("idle", idle), ("in_use", in_use)] {
                    self.pool
                        .get_or_create(&PoolLabels {
                            node: n.node.clone(),
                            account,
                            state: s,
                        })
                        .set(*count as i64);
                }
            }
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            log::error!("Metrics encoding failed");
        }
        out
    }
}
