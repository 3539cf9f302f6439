//! Chooses the node for a statement from its route, the mode, and the cached node health.

use crate::node::{Cluster, Node};
use rand::seq::IndexedRandom;
use sqlgate::{Mode, Route};
use std::sync::Arc;
use std::time::Duration;

/// The node chosen, and why a read landed on the manager if it did.
pub struct Choice {
    pub node: Arc<Node>,
    pub fallback: Option<String>,
}

/// Picks a node. `exclude` names a node that just failed (for the one read retry).
pub fn choose(
    cluster: &Cluster,
    route: Route,
    mode: Mode,
    ping_tolerance: Duration,
    exclude: Option<&str>,
) -> Choice {
    let manager = || Choice {
        node: cluster.manager.clone(),
        fallback: None,
    };
    if route == Route::Write || mode == Mode::Direct {
        return manager();
    }
    let eligible: Vec<&Arc<Node>> = cluster
        .workers
        .iter()
        .filter(|w| Some(w.name()) != exclude && w.with_health(|h| h.eligible))
        .collect();
    let picked = match mode {
        Mode::Direct => unreachable!("handled above"),
        Mode::Random => eligible.choose(&mut rand::rng()).copied(),
        Mode::Ping => pick_lowest(
            &eligible,
            |n| n.with_health(|h| h.rtt_us),
            ping_tolerance.as_secs_f64() * 1e6,
        ),
        Mode::LeastBusy => pick_lowest(&eligible, |n| Some(n.in_flight() as f64), 0.0),
    };
    if let Some(node) = picked {
        return Choice {
            node: node.clone(),
            fallback: None,
        };
    }
    let reason = fallback_reason(cluster, exclude);
    if cluster.manager.with_health(|h| h.checked && !h.reachable) {
        // Reads outlive the primary (as MaxScale's error_on_write): a reachable replica whose
        // applier runs serves them, flagged as possibly stale, rather than nothing at all.
        let survivors: Vec<&Arc<Node>> = cluster
            .workers
            .iter()
            .filter(|w| {
                Some(w.name()) != exclude
                    && w.with_health(|h| h.reachable && h.sql_running == Some(true))
            })
            .collect();
        if let Some(node) = survivors.choose(&mut rand::rng()) {
            return Choice {
                node: (*node).clone(),
                fallback: Some(format!(
                    "manager unreachable: served by a replica that may be stale; {reason}"
                )),
            };
        }
    }
    Choice {
        node: cluster.manager.clone(),
        fallback: Some(reason),
    }
}

/// The candidate with the lowest score, ties (within `tolerance`) broken at random. Nodes with
/// no score yet are only used when no node has one.
fn pick_lowest<'a>(
    candidates: &[&'a Arc<Node>],
    score: impl Fn(&Node) -> Option<f64>,
    tolerance: f64,
) -> Option<&'a Arc<Node>> {
    let scored: Vec<(&Arc<Node>, f64)> = candidates
        .iter()
        .filter_map(|n| score(n).map(|s| (*n, s)))
        .collect();
    if scored.is_empty() {
        return candidates.choose(&mut rand::rng()).copied();
    }
    let best = scored.iter().map(|(_, s)| *s).fold(f64::INFINITY, f64::min);
    let ties: Vec<&Arc<Node>> = scored
        .iter()
        .filter(|(_, s)| *s <= best + tolerance)
        .map(|(n, _)| *n)
        .collect();
    ties.choose(&mut rand::rng()).copied()
}

/// Summarises why no worker can serve, e.g. `no eligible worker (worker-1: lag 9s …)`.
fn fallback_reason(cluster: &Cluster, exclude: Option<&str>) -> String {
    if cluster.workers.is_empty() {
        return "no workers configured".into();
    }
    let parts: Vec<String> = cluster
        .workers
        .iter()
        .map(|w| {
            let why = if Some(w.name()) == exclude {
                "failed during this request".to_string()
            } else {
                let h = w.health();
                match (h.checked, h.reason) {
                    (false, _) => "not checked yet".to_string(),
                    (true, Some(r)) => r,
                    (true, None) => "eligible".to_string(),
                }
            };
            format!("{}: {why}", w.name())
        })
        .collect();
    format!("no eligible worker ({})", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::{HashMap, HashSet};

    /// A cluster whose nodes are never contacted: pools connect lazily.
    fn cluster(workers: usize) -> Cluster {
        let list: Vec<String> = (0..workers)
            .map(|i| format!("127.0.0.1:{}", 1 + i))
            .collect();
        let env: HashMap<String, String> = [
            ("PROXY_TOKEN", "0123456789abcdef"),
            ("PROXY_READ_PASSWORD", "x"),
            ("PROXY_WRITE_PASSWORD", "x"),
            ("PROXY_ADMIN_PASSWORD", "x"),
            ("PROXY_MONITOR_PASSWORD", "y"),
            ("PROXY_PLAIN_HTTP", "true"),
            ("PROXY_DB_PLAIN", "true"),
            ("PROXY_WORKERS", &list.join(",")),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Cluster::new(
            &Config::from_env(&env).unwrap(),
            &crate::metrics::Metrics::default(),
        )
    }

    fn set(node: &Node, eligible: bool, rtt_us: Option<f64>) {
        node.update_health(|h| {
            h.checked = true;
            h.reachable = true;
            h.eligible = eligible;
            h.sql_running = Some(true);
            h.reason = (!eligible).then(|| "replication lag 9s exceeds max_lag 5s".to_string());
            h.rtt_us = rtt_us;
        });
    }

    fn picks(c: &Cluster, mode: Mode, tolerance_us: u64, n: usize) -> HashSet<String> {
        (0..n)
            .map(|_| {
                let ch = choose(
                    c,
                    Route::Read,
                    mode,
                    Duration::from_micros(tolerance_us),
                    None,
                );
                ch.node.name().to_string()
            })
            .collect()
    }

    fn names(v: &[&str]) -> HashSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ping_prefers_the_lowest_rtt_and_breaks_ties_at_random() {
        let c = cluster(3);
        set(&c.manager, true, Some(10.0));
        set(&c.workers[0], true, Some(500.0));
        set(&c.workers[1], true, Some(120.0));
        set(&c.workers[2], true, Some(180.0));
        assert_eq!(
            picks(&c, Mode::Ping, 50, 50),
            names(&["worker-2"]),
            "clear winner"
        );
        assert_eq!(
            picks(&c, Mode::Ping, 100, 200),
            names(&["worker-2", "worker-3"]),
            "within the tolerance both are ties, chosen at random"
        );
        set(&c.workers[1], false, Some(1.0));
        assert_eq!(
            picks(&c, Mode::Ping, 50, 50),
            names(&["worker-3"]),
            "ineligible is skipped even if fastest"
        );
    }

    #[test]
    fn random_and_least_busy_use_only_eligible_workers() {
        let c = cluster(3);
        for w in &c.workers {
            set(w, true, None);
        }
        set(&c.workers[2], false, None);
        assert_eq!(
            picks(&c, Mode::Random, 0, 200),
            names(&["worker-1", "worker-2"])
        );
        assert_eq!(
            picks(&c, Mode::Ping, 0, 200),
            names(&["worker-1", "worker-2"]),
            "no RTT yet: random"
        );
        let _busy = c.workers[0].begin();
        assert_eq!(picks(&c, Mode::LeastBusy, 0, 50), names(&["worker-2"]));
    }

    #[test]
    fn writes_and_direct_go_to_the_manager_and_fallback_says_why() {
        let c = cluster(2);
        set(&c.manager, true, None);
        set(&c.workers[0], true, None);
        set(&c.workers[1], true, None);
        for mode in Mode::ALL {
            let ch = choose(&c, Route::Write, mode, Duration::ZERO, None);
            assert_eq!(ch.node.name(), "manager", "write in {mode:?}");
        }
        assert_eq!(picks(&c, Mode::Direct, 0, 20), names(&["manager"]));
        let ch = choose(
            &c,
            Route::Read,
            Mode::Random,
            Duration::ZERO,
            Some("worker-1"),
        );
        assert_eq!(
            ch.node.name(),
            "worker-2",
            "the retry avoids the node that failed"
        );
        set(&c.workers[0], false, None);
        set(&c.workers[1], false, None);
        let ch = choose(&c, Route::Read, Mode::Random, Duration::ZERO, None);
        assert_eq!(ch.node.name(), "manager");
        let why = ch.fallback.unwrap();
        assert!(
            why.contains("worker-1: replication lag") && why.contains("worker-2"),
            "{why}"
        );
        c.manager.update_health(|h| h.reachable = false);
        let ch = choose(&c, Route::Read, Mode::Random, Duration::ZERO, None);
        assert_eq!(
            ch.node.role.as_str(),
            "worker",
            "a replica serves reads when the manager is down"
        );
        assert!(ch.fallback.unwrap().contains("may be stale"));
    }
}
