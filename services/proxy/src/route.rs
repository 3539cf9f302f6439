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
        .filter(|w| Some(w.name()) != exclude && w.health().eligible)
        .collect();
    let picked = match mode {
        Mode::Direct => unreachable!("handled above"),
        Mode::Random => eligible.choose(&mut rand::rng()).copied(),
        Mode::Ping => pick_lowest(
            &eligible,
            |n| n.health().rtt_us,
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
    let manager_health = cluster.manager.health();
    if manager_health.checked && !manager_health.reachable {
        // Reads outlive the primary (as MaxScale's error_on_write): a reachable replica whose
        // applier runs serves them, flagged as possibly stale, rather than nothing at all.
        let survivors: Vec<&Arc<Node>> = cluster
            .workers
            .iter()
            .filter(|w| {
                let h = w.health();
                Some(w.name()) != exclude && h.reachable && h.sql_running == Some(true)
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
