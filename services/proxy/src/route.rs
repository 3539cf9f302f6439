//! The routing and retry policy, as pure functions of plain data: which node serves a statement
//! (from its route, the mode and what the monitors last saw of each node), whether a failed
//! read may try another node, and where a read goes when its worker lags. `execute` carries
//! plans out; nothing here touches a connection.

use rand::seq::IndexedRandom;
use sqlgate::wire::NodeRole;
use sqlgate::{Mode, Route};
use std::time::Duration;

/// What routing knows of one node (a snapshot: `node::Cluster::view`; the name is borrowed, so
/// taking a snapshot per request copies no strings for healthy nodes).
#[derive(Debug, Clone)]
pub struct NodeView<'a> {
    /// Which node it is (`node::Cluster::get`).
    pub id: usize,
    pub name: &'a str,
    pub role: NodeRole,
    /// The monitor has completed at least one check.
    pub checked: bool,
    pub reachable: bool,
    /// May serve requests of its role (reads, for a worker).
    pub eligible: bool,
    /// A worker's replication applier runs (it still applies what it has received).
    pub applier_running: bool,
    /// Why it is not eligible, in words fit for a client.
    pub reason: Option<String>,
    pub rtt_us: Option<f64>,
    pub in_flight: usize,
}

/// Every node: index 0 is the manager, then the workers in configuration order.
#[derive(Debug, Clone)]
pub struct ClusterView<'a> {
    pub nodes: Vec<NodeView<'a>>,
}

impl<'a> ClusterView<'a> {
    fn workers(&self) -> impl Iterator<Item = (usize, &NodeView<'a>)> {
        self.nodes.iter().enumerate().skip(1)
    }
}

/// What the request asks of routing.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub route: Route,
    pub mode: Mode,
    /// Read-your-writes: a worker must have applied this GTID set before the read runs.
    pub after_gtid: Option<&'a str>,
    /// RTTs closer than this to the best one count as equal in `ping` mode.
    pub ping_tolerance: Duration,
}

/// Where to run a statement, and what to do if that fails.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Index into `ClusterView::nodes`.
    pub node: usize,
    /// Wait for this GTID set on the node before running (only ever set for a worker).
    pub wait_for: Option<String>,
    /// Why a read is not served by a healthy worker, when it is not (shown to the client).
    pub fallback: Option<String>,
    /// A read that could not get a connection here may try once on another node: only when it
    /// never reached a server (running it twice could run it twice) and there is another node
    /// the mode allows.
    pub retry_elsewhere: bool,
}

/// Chooses the node for a statement. `exclude` names a node that just failed (for the one read
/// retry).
pub fn plan(ask: &Ask<'_>, view: &ClusterView<'_>, exclude: Option<usize>) -> Plan {
    let manager = |fallback: Option<String>| Plan {
        node: 0,
        wait_for: None,
        fallback,
        retry_elsewhere: false,
    };
    if ask.route == Route::Write || ask.mode == Mode::Direct {
        return manager(None);
    }
    let eligible: Vec<(usize, &NodeView<'_>)> = view
        .workers()
        .filter(|(i, w)| Some(*i) != exclude && w.eligible)
        .collect();
    let picked = match ask.mode {
        Mode::Direct => unreachable!("handled above"),
        Mode::Random => eligible.choose(&mut rand::rng()).copied(),
        Mode::Ping => pick_lowest(
            &eligible,
            |n| n.rtt_us,
            ask.ping_tolerance.as_secs_f64() * 1e6,
        ),
        Mode::LeastBusy => pick_lowest(&eligible, |n| Some(n.in_flight as f64), 0.0),
    };
    if let Some((i, _)) = picked {
        return Plan {
            node: i,
            wait_for: ask.after_gtid.map(str::to_string),
            fallback: None,
            retry_elsewhere: exclude.is_none(),
        };
    }
    let reason = fallback_reason(view, exclude);
    let manager_down = view.nodes[0].checked && !view.nodes[0].reachable;
    if manager_down {
        // Reads outlive the primary (as MaxScale's error_on_write): a reachable replica whose
        // applier runs serves them, flagged as possibly stale, rather than nothing at all.
        let survivors: Vec<(usize, &NodeView<'_>)> = view
            .workers()
            .filter(|(i, w)| Some(*i) != exclude && w.reachable && w.applier_running)
            .collect();
        if let Some((i, _)) = survivors.choose(&mut rand::rng()) {
            return Plan {
                node: *i,
                wait_for: ask.after_gtid.map(str::to_string),
                fallback: Some(format!(
                    "manager unreachable: served by a replica that may be stale; {reason}"
                )),
                retry_elsewhere: false,
            };
        }
    }
    manager(Some(reason))
}

/// Where a read goes when its worker had not applied `after_gtid` within `waited`: the
/// manager, which has every committed write; the client is told why.
pub fn after_lag(view: &ClusterView<'_>, lagging: usize, waited: Duration) -> Plan {
    Plan {
        node: 0,
        wait_for: None,
        fallback: Some(format!(
            "{} had not applied after_gtid within {} ms",
            view.nodes[lagging].name,
            waited.as_millis()
        )),
        retry_elsewhere: false,
    }
}

/// The candidate with the lowest score, ties (within `tolerance`) broken at random. Nodes with
/// no score yet are only used when no node has one.
fn pick_lowest<'a, 'n>(
    candidates: &[(usize, &'a NodeView<'n>)],
    score: impl Fn(&NodeView<'n>) -> Option<f64>,
    tolerance: f64,
) -> Option<(usize, &'a NodeView<'n>)> {
    let scored: Vec<((usize, &NodeView<'n>), f64)> = candidates
        .iter()
        .filter_map(|c| score(c.1).map(|s| (*c, s)))
        .collect();
    if scored.is_empty() {
        return candidates.choose(&mut rand::rng()).copied();
    }
    let best = scored.iter().map(|(_, s)| *s).fold(f64::INFINITY, f64::min);
    let ties: Vec<(usize, &NodeView<'n>)> = scored
        .iter()
        .filter(|(_, s)| *s <= best + tolerance)
        .map(|(c, _)| *c)
        .collect();
    ties.choose(&mut rand::rng()).copied()
}

/// Summarises why no worker can serve, e.g. `no eligible worker (worker-1: lag 9s …)`.
fn fallback_reason(view: &ClusterView<'_>, exclude: Option<usize>) -> String {
    if view.nodes.len() < 2 {
        return "no workers configured".into();
    }
    let parts: Vec<String> = view
        .workers()
        .map(|(i, w)| {
            let why = if Some(i) == exclude {
                "failed during this request".to_string()
            } else {
                match (w.checked, &w.reason) {
                    (false, _) => "not checked yet".to_string(),
                    (true, Some(r)) => r.clone(),
                    (true, None) => "eligible".to_string(),
                }
            };
            format!("{}: {why}", w.name)
        })
        .collect();
    format!("no eligible worker ({})", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn node(
        name: &'static str,
        role: NodeRole,
        eligible: bool,
        rtt_us: Option<f64>,
    ) -> NodeView<'static> {
        NodeView {
            id: 0,
            name,
            role,
            checked: true,
            reachable: true,
            eligible,
            applier_running: true,
            reason: (!eligible).then(|| "replication lag 9s exceeds max_lag 5s".to_string()),
            rtt_us,
            in_flight: 0,
        }
    }

    /// A manager and `rtts.len()` eligible workers with these RTTs.
    fn view(rtts: &[Option<f64>]) -> ClusterView<'static> {
        const WORKERS: [&str; 3] = ["worker-1", "worker-2", "worker-3"];
        let mut nodes = vec![node("manager", NodeRole::Manager, true, Some(10.0))];
        for (name, rtt) in WORKERS.iter().zip(rtts) {
            nodes.push(node(name, NodeRole::Worker, true, *rtt));
        }
        ClusterView { nodes }
    }

    fn ask(mode: Mode, tolerance_us: u64) -> Ask<'static> {
        Ask {
            route: Route::Read,
            mode,
            after_gtid: None,
            ping_tolerance: Duration::from_micros(tolerance_us),
        }
    }

    fn picks(v: &ClusterView<'_>, a: &Ask<'_>, n: usize) -> HashSet<String> {
        (0..n)
            .map(|_| v.nodes[plan(a, v, None).node].name.to_string())
            .collect()
    }

    fn names(v: &[&str]) -> HashSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ping_prefers_the_lowest_rtt_and_breaks_ties_at_random() {
        let mut v = view(&[Some(500.0), Some(120.0), Some(180.0)]);
        assert_eq!(
            picks(&v, &ask(Mode::Ping, 50), 50),
            names(&["worker-2"]),
            "clear winner"
        );
        assert_eq!(
            picks(&v, &ask(Mode::Ping, 100), 200),
            names(&["worker-2", "worker-3"]),
            "within the tolerance both are ties, chosen at random"
        );
        v.nodes[2].eligible = false;
        v.nodes[2].rtt_us = Some(1.0);
        assert_eq!(
            picks(&v, &ask(Mode::Ping, 50), 50),
            names(&["worker-3"]),
            "ineligible is skipped even if fastest"
        );
    }

    #[test]
    fn random_and_least_busy_use_only_eligible_workers() {
        let mut v = view(&[None, None, None]);
        v.nodes[3].eligible = false;
        assert_eq!(
            picks(&v, &ask(Mode::Random, 0), 200),
            names(&["worker-1", "worker-2"])
        );
        assert_eq!(
            picks(&v, &ask(Mode::Ping, 0), 200),
            names(&["worker-1", "worker-2"]),
            "no RTT yet: random"
        );
        v.nodes[1].in_flight = 1;
        assert_eq!(
            picks(&v, &ask(Mode::LeastBusy, 0), 50),
            names(&["worker-2"])
        );
    }

    #[test]
    fn writes_and_direct_go_to_the_manager_and_fallback_says_why() {
        let mut v = view(&[None, None]);
        for mode in Mode::ALL {
            let a = Ask {
                route: Route::Write,
                ..ask(mode, 0)
            };
            let p = plan(&a, &v, None);
            assert_eq!(p.node, 0, "write in {mode:?}");
            assert!(!p.retry_elsewhere, "a write is never retried");
        }
        assert_eq!(picks(&v, &ask(Mode::Direct, 0), 20), names(&["manager"]));
        let first = plan(&ask(Mode::Random, 0), &v, None);
        assert!(first.retry_elsewhere, "a read may try another node once");
        let retry = plan(&ask(Mode::Random, 0), &v, Some(1));
        assert_eq!(retry.node, 2, "the retry avoids the node that failed");
        assert!(!retry.retry_elsewhere, "and is the last try");
        v.nodes[1].eligible = false;
        v.nodes[1].reason = Some("replication lag 9s exceeds max_lag 5s".into());
        v.nodes[2].eligible = false;
        v.nodes[2].reason = Some("unreachable".into());
        let p = plan(&ask(Mode::Random, 0), &v, None);
        assert_eq!(p.node, 0);
        let why = p.fallback.unwrap();
        assert!(
            why.contains("worker-1: replication lag") && why.contains("worker-2: unreachable"),
            "{why}"
        );
        v.nodes[0].reachable = false;
        let p = plan(&ask(Mode::Random, 0), &v, None);
        assert_eq!(
            v.nodes[p.node].role,
            NodeRole::Worker,
            "a replica serves reads when the manager is down"
        );
        assert!(p.fallback.unwrap().contains("may be stale"));
    }

    #[test]
    fn only_a_worker_waits_for_after_gtid_and_a_lagging_one_hands_over() {
        let v = view(&[None]);
        let a = Ask {
            after_gtid: Some("0-1-42"),
            ..ask(Mode::Random, 0)
        };
        let p = plan(&a, &v, None);
        assert_eq!((p.node, p.wait_for.as_deref()), (1, Some("0-1-42")));
        let direct = Ask {
            mode: Mode::Direct,
            ..a
        };
        assert_eq!(plan(&direct, &v, None).wait_for, None, "the manager has it");
        let next = after_lag(&v, 1, Duration::from_millis(1000));
        assert_eq!(next.node, 0);
        assert_eq!(
            next.fallback.as_deref(),
            Some("worker-1 had not applied after_gtid within 1000 ms")
        );
    }
}
