//! Background health checks, one task per node: reachability, replication threads and lag.
//! Requests only ever read the cached result (docs/architecture.md: never probe on the request path).

use crate::config::Config;
use crate::node::{Cluster, Node, NodeRole};
use crate::pool::{self, Flavor};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one check found.
#[derive(Debug, Default)]
struct Observation {
    version: String,
    read_only: bool,
    /// `None` when the node is not a replica at all.
    replica: Option<ReplicaStatus>,
    /// As a primary: semi-synchronous replication on and waiting for workers; `None` when the
    /// server does not report it.
    semi_sync: Option<bool>,
}

/// The replication fields we need, found by column name in either flavour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub io_running: bool,
    pub sql_running: bool,
    pub lag_seconds: Option<u64>,
    pub last_error: Option<String>,
}

impl ReplicaStatus {
    /// Reads a `SHOW REPLICA STATUS` / `SHOW SLAVE STATUS` row by column name.
    pub fn from_row(row: &Row) -> ReplicaStatus {
        let get = |names: &[&str]| -> Option<String> {
            let cols = row.columns_ref();
            names.iter().find_map(|n| {
                let i = cols.iter().position(|c| c.name_str() == *n)?;
                match row.as_ref(i)? {
                    mysql_async::Value::NULL => None,
                    v => Some(mysql_async::from_value_opt::<String>(v.clone()).ok()?),
                }
            })
        };
        let yes = |v: Option<String>| v.is_some_and(|s| s.eq_ignore_ascii_case("yes"));
        let last_error = [
            get(&["Last_IO_Error", "Last_IO_Error_Message"]),
            get(&["Last_SQL_Error"]),
        ]
        .into_iter()
        .flatten()
        .find(|e| !e.is_empty());
        ReplicaStatus {
            io_running: yes(get(&["Replica_IO_Running", "Slave_IO_Running"])),
            sql_running: yes(get(&["Replica_SQL_Running", "Slave_SQL_Running"])),
            lag_seconds: get(&["Seconds_Behind_Source", "Seconds_Behind_Master"])
                .and_then(|s| s.parse().ok()),
            last_error,
        }
    }
}

/// Decides eligibility from an observation, for a node in `role`: the rules of
/// docs/architecture.md in one place. A node is judged for both roles, since a switchover or a
/// failover may change its role before its next check.
fn judge(role: NodeRole, obs: &Observation, max_lag: Duration) -> Result<(), String> {
    match role {
        NodeRole::Manager if obs.replica.is_some() => {
            Err("replicating from another node: not a primary".into())
        }
        NodeRole::Manager if obs.read_only => Err("manager is read_only".into()),
        NodeRole::Manager => Ok(()),
        NodeRole::Worker => {
            let Some(r) = &obs.replica else {
                return Err("not replicating (no replica status)".into());
            };
            let detail = r
                .last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            if !r.io_running {
                return Err(format!("replication IO thread not running{detail}"));
            }
            if !r.sql_running {
                return Err(format!("replication SQL thread not running{detail}"));
            }
            match r.lag_seconds {
                None => Err("replication lag unknown".into()),
                Some(lag) if lag > max_lag.as_secs() => Err(format!(
                    "replication lag {lag}s exceeds max_lag {}s",
                    max_lag.as_secs()
                )),
                Some(_) => Ok(()),
            }
        }
    }
}

async fn observe(conn: &mut Conn) -> Result<Observation, mysql_async::Error> {
    let (version, read_only): (String, i64) = conn
        .query_first("SELECT @@version, @@read_only")
        .await?
        .unwrap_or_default();
    let flavor = Flavor::from_version(&version);
    let (status_sql, semi_sync_var) = match flavor {
        Flavor::MariaDb => ("SHOW SLAVE STATUS", "Rpl_semi_sync_master_status"),
        Flavor::MySql => ("SHOW REPLICA STATUS", "Rpl_semi_sync_source_status"),
    };
    let rows: Vec<Row> = conn.query(status_sql).await?;
    let semi_sync: Option<(String, String)> = conn
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{semi_sync_var}'"))
        .await?;
    Ok(Observation {
        version,
        read_only: read_only != 0,
        replica: rows.first().map(ReplicaStatus::from_row),
        semi_sync: semi_sync.map(|(_, v)| v.eq_ignore_ascii_case("ON")),
    })
}

/// One check on `conn` (opened first when there is none), bounded by `limit`.
async fn check(
    conn: &mut Option<Conn>,
    opts: &Opts,
    limit: Duration,
) -> Result<Observation, String> {
    let attempt = async {
        if conn.is_none() {
            *conn = Some(Conn::new(opts.clone()).await?);
        }
        let c = conn.as_mut().expect("opened above");
        observe(c).await
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(obs)) => Ok(obs),
        Ok(Err(e)) => {
            *conn = None;
            Err(e.to_string())
        }
        Err(_) => {
            // Mid-exchange: the connection's state is unknown, so it is not reused.
            *conn = None;
            Err(format!("no answer within {} ms", limit.as_millis()))
        }
    }
}

/// Polls one node forever, keeping one monitor connection open between checks; also closes
/// the node's pooled connections idle for too long.
async fn watch(
    cluster: Arc<Cluster>,
    node: Arc<Node>,
    opts: Opts,
    interval: Duration,
    limit: Duration,
    max_lag: Duration,
) {
    let mut conn: Option<Conn> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = check(&mut conn, &opts, limit).await;
        for (_, p) in node.pools() {
            pool::retire_idle(p);
        }
        let before = (node.role(), node.eligible(), node.health().checked);
        node.update_health(|h| {
            h.checked = true;
            h.last_check = Some(Instant::now());
            match &outcome {
                Ok(obs) => {
                    h.reachable = true;
                    h.error = None;
                    h.version = Some(obs.version.clone());
                    h.flavor = Some(Flavor::from_version(&obs.version));
                    h.read_only = Some(obs.read_only);
                    h.io_running = obs.replica.as_ref().map(|r| r.io_running);
                    h.sql_running = obs.replica.as_ref().map(|r| r.sql_running);
                    h.lag_seconds = obs.replica.as_ref().and_then(|r| r.lag_seconds);
                    h.replicating = obs.replica.is_some();
                    h.semi_sync = obs.semi_sync;
                    h.not_manager = judge(NodeRole::Manager, obs, max_lag).err();
                    h.not_worker = judge(NodeRole::Worker, obs, max_lag).err();
                }
                Err(detail) => {
                    h.reachable = false;
                    // The reason reaches clients (a read's `fallback`): a fixed word. What the
                    // driver said stays on the proxy's private `/ready` and in its log.
                    h.not_manager = Some("unreachable".to_string());
                    h.not_worker = Some("unreachable".to_string());
                    h.semi_sync = None;
                    h.error = Some(detail.clone());
                    h.io_running = None;
                    h.sql_running = None;
                    h.lag_seconds = None;
                }
            }
        });
        cluster.elect();
        let after = (node.role(), node.eligible());
        if (before.0, before.1) != after || !before.2 {
            let role = after.0.as_str();
            if after.1 {
                log::info!("Node eligible node={} role={role}", node.name());
            } else {
                let h = node.health();
                log::warn!(
                    "Node not eligible node={} role={role} reason={:?} error={:?}",
                    node.name(),
                    node.reason().unwrap_or_default(),
                    h.error.as_deref().unwrap_or("")
                );
            }
        }
    }
}

/// Starts one monitor task per node on the current tokio runtime.
pub fn spawn(cluster: &Arc<Cluster>, config: &Config) -> Vec<tokio::task::JoinHandle<()>> {
    cluster
        .all()
        .map(|node| {
            let opts = pool::opts(
                &node.addr,
                &config.monitor_user,
                &config.monitor_password,
                &config.db_tls,
            );
            // A check may take as long as the interval, and never less than 2 s.
            let limit = config.monitor_interval.max(Duration::from_secs(2));
            tokio::spawn(watch(
                cluster.clone(),
                node.clone(),
                opts,
                config.monitor_interval,
                limit,
                config.max_lag,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(io: bool, sql: bool, lag: Option<u64>) -> Observation {
        Observation {
            version: "10.11.6-MariaDB".into(),
            read_only: true,
            semi_sync: None,
            replica: Some(ReplicaStatus {
                io_running: io,
                sql_running: sql,
                lag_seconds: lag,
                last_error: None,
            }),
        }
    }

    #[test]
    fn eligibility_rules() {
        let max = Duration::from_secs(5);
        let cases: &[(Observation, bool, &str)] = &[
            (replica(true, true, Some(0)), true, "healthy replica"),
            (replica(true, true, Some(5)), true, "lag at the limit"),
            (replica(true, true, Some(6)), false, "lag over the limit"),
            (replica(false, true, Some(0)), false, "IO thread stopped"),
            (replica(true, false, Some(0)), false, "SQL thread stopped"),
            (replica(true, true, None), false, "lag unknown"),
            (Observation::default(), false, "not a replica"),
        ];
        for (obs, ok, what) in cases {
            assert_eq!(judge(NodeRole::Worker, obs, max).is_ok(), *ok, "{what}");
        }
        let rw = Observation::default();
        assert!(judge(NodeRole::Manager, &rw, max).is_ok());
        let replicating = Observation {
            read_only: false,
            ..replica(true, true, Some(0))
        };
        assert!(
            judge(NodeRole::Manager, &replicating, max).is_err(),
            "a writable replica is not a primary"
        );
        let ro = Observation {
            read_only: true,
            ..Observation::default()
        };
        assert!(judge(NodeRole::Manager, &ro, max).is_err());
    }
}
