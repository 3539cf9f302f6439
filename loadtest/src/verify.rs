//! Counts a run's rows on the manager and on each worker, through the gateway (so it works
//! wherever the gatekeeper is), and compares them with the inserts it acknowledged.

use crate::client::{request, Gateway};
use crate::error::Error;
use serde::Serialize;
use serde_json::Value;
use sqlgate::wire::Mode;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The rows one node holds for the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeCount {
    pub node: String,
    pub role: String,
    pub rows: u64,
}

/// The outcome of the count.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Every node holds exactly what was acknowledged (or, with ambiguous failures, what the
    /// manager holds within the possible range).
    pub ok: bool,
    /// Inserts the gateway answered 200 with one affected row.
    pub acknowledged: u64,
    /// Inserts that failed in a way that leaves them possibly executed (timeouts, 502/504).
    pub maybe_executed: u64,
    pub nodes: Vec<NodeCount>,
    /// One line: what was found.
    pub message: String,
    /// How long the replicas took to show the manager's count.
    pub waited_s: f64,
}

/// What to count and what to expect.
pub struct Expectation<'a> {
    pub table: &'a str,
    pub run_id: &'a str,
    pub acknowledged: u64,
    pub maybe_executed: u64,
    /// Nodes other than the manager that served reads during the run.
    pub workers_seen: BTreeSet<String>,
}

/// Counts on the manager (`direct` mode), then asks in `random` mode until every worker seen
/// has answered with the manager's count, or `within` has passed.
pub async fn count_rows(
    gateway: &Gateway,
    key: &str,
    want: &Expectation<'_>,
    within: Duration,
) -> Result<Verification, Error> {
    let sql = format!("SELECT COUNT(*) FROM {} WHERE run_id = ?", want.table);
    let params = vec![Value::from(want.run_id)];
    let started = Instant::now();
    let on_manager = gateway
        .query(key, &request(&sql, params.clone(), Mode::Direct))
        .await
        .map_err(|r| Error::Unreachable(format!("cannot count the rows on the manager: {r}")))?;
    let manager = NodeCount {
        rows: first_count(&on_manager.result.rows),
        node: on_manager.node.clone(),
        role: on_manager.role.clone(),
    };
    let mut workers: BTreeSet<String> = want.workers_seen.clone();
    workers.remove(&manager.node);
    let mut counts: BTreeMap<String, NodeCount> = BTreeMap::new();
    let min_probes = 4 + 4 * workers.len().max(2);
    let mut probes = 0;
    loop {
        probes += 1;
        if let Ok(r) = gateway
            .query(key, &request(&sql, params.clone(), Mode::Random))
            .await
        {
            if r.role == "worker" {
                workers.insert(r.node.clone());
                counts.insert(
                    r.node.clone(),
                    NodeCount {
                        rows: first_count(&r.result.rows),
                        node: r.node,
                        role: r.role,
                    },
                );
            }
        }
        let converged = !workers.is_empty()
            && workers
                .iter()
                .all(|w| counts.get(w).is_some_and(|c| c.rows == manager.rows));
        if (converged && probes >= min_probes) || started.elapsed() > within {
            break;
        }
        if !converged {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(judge(want, manager, &workers, counts, started.elapsed()))
}

/// Compares the counts with the expectation and words the verdict.
pub fn judge(
    want: &Expectation<'_>,
    manager: NodeCount,
    workers: &BTreeSet<String>,
    mut counts: BTreeMap<String, NodeCount>,
    waited: Duration,
) -> Verification {
    let (lo, hi) = (want.acknowledged, want.acknowledged + want.maybe_executed);
    let mut problems = Vec::new();
    if !(lo..=hi).contains(&manager.rows) {
        problems.push(if lo == hi {
            format!(
                "{} holds {} rows, {lo} were acknowledged",
                manager.node, manager.rows
            )
        } else {
            format!(
                "{} holds {} rows, expected {lo} to {hi}",
                manager.node, manager.rows
            )
        });
    }
    if workers.is_empty() {
        problems.push("no worker served a read, so no replica could be counted".to_string());
    }
    let mut nodes = vec![manager.clone()];
    for w in workers {
        match counts.remove(w) {
            Some(c) => {
                if c.rows != manager.rows {
                    problems.push(format!(
                        "{} holds {} rows, the manager {} (after {:.1} s)",
                        c.node,
                        c.rows,
                        manager.rows,
                        waited.as_secs_f64()
                    ));
                }
                nodes.push(c);
            }
            None => problems.push(format!("{w} never answered the count")),
        }
    }
    let listing = nodes
        .iter()
        .map(|n| format!("{} {}", n.node, n.rows))
        .collect::<Vec<_>>()
        .join(", ");
    let ambiguous = if want.maybe_executed > 0 {
        format!(" (+{} possibly executed)", want.maybe_executed)
    } else {
        String::new()
    };
    let ok = problems.is_empty();
    let message = if ok {
        format!(
            "rows: {} acknowledged{ambiguous}; found {listing}: all equal",
            want.acknowledged
        )
    } else {
        format!(
            "ROW COUNT MISMATCH: {}; acknowledged {}{ambiguous}; found {listing}",
            problems.join("; "),
            want.acknowledged
        )
    };
    Verification {
        ok,
        acknowledged: want.acknowledged,
        maybe_executed: want.maybe_executed,
        nodes,
        message,
        waited_s: waited.as_secs_f64(),
    }
}

fn first_count(rows: &[Vec<Value>]) -> u64 {
    rows.first()
        .and_then(|r| r.first())
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(node: &str, rows: u64) -> NodeCount {
        let role = if node == "manager" {
            "manager"
        } else {
            "worker"
        };
        NodeCount {
            node: node.into(),
            role: role.into(),
            rows,
        }
    }

    /// A verdict case: what was acknowledged and found, and what the message must say.
    struct Case {
        what: &'static str,
        acked: u64,
        maybe: u64,
        on_manager: u64,
        on_workers: &'static [(&'static str, u64)],
        ok: bool,
        says: &'static str,
    }

    #[test]
    fn verdicts() {
        let both: BTreeSet<String> = ["worker-1", "worker-2"].map(String::from).into();
        let case = |what, acked, maybe, on_manager, on_workers, ok, says| Case {
            what,
            acked,
            maybe,
            on_manager,
            on_workers,
            ok,
            says,
        };
        let cases = [
            case(
                "all equal",
                4000,
                0,
                4000,
                &[("worker-1", 4000), ("worker-2", 4000)],
                true,
                "all equal",
            ),
            case(
                "a replica behind",
                4000,
                0,
                4000,
                &[("worker-1", 4000), ("worker-2", 3998)],
                false,
                "worker-2 holds 3998 rows",
            ),
            case(
                "a lost write",
                4000,
                0,
                3999,
                &[("worker-1", 3999), ("worker-2", 3999)],
                false,
                "manager holds 3999 rows, 4000 were acknowledged",
            ),
            case(
                "an extra row",
                4000,
                0,
                4001,
                &[("worker-1", 4001), ("worker-2", 4001)],
                false,
                "4000 were acknowledged",
            ),
            case(
                "a timed-out write landed",
                4000,
                2,
                4001,
                &[("worker-1", 4001), ("worker-2", 4001)],
                true,
                "+2 possibly executed",
            ),
            case(
                "a worker never answered",
                10,
                0,
                10,
                &[("worker-1", 10)],
                false,
                "worker-2 never answered",
            ),
        ];
        for c in cases {
            let want = Expectation {
                table: "app.loadtest",
                run_id: "r",
                acknowledged: c.acked,
                maybe_executed: c.maybe,
                workers_seen: both.clone(),
            };
            let counts = c
                .on_workers
                .iter()
                .map(|(n, r)| (n.to_string(), count(n, *r)))
                .collect();
            let v = judge(
                &want,
                count("manager", c.on_manager),
                &both,
                counts,
                Duration::from_secs(1),
            );
            assert_eq!(v.ok, c.ok, "{}: {}", c.what, v.message);
            assert!(
                v.message.contains(c.says),
                "{}: {:?} should say {:?}",
                c.what,
                v.message,
                c.says
            );
            assert!(
                c.ok || v.message.starts_with("ROW COUNT MISMATCH"),
                "{}: a mismatch is said loudly",
                c.what
            );
        }
    }

    #[test]
    fn no_worker_is_a_failure_not_a_pass() {
        let want = Expectation {
            table: "t.t",
            run_id: "r",
            acknowledged: 5,
            maybe_executed: 0,
            workers_seen: BTreeSet::new(),
        };
        let v = judge(
            &want,
            count("manager", 5),
            &BTreeSet::new(),
            BTreeMap::new(),
            Duration::ZERO,
        );
        assert!(!v.ok && v.message.contains("no worker"), "{}", v.message);
    }

    #[test]
    fn counts_read_as_numbers_or_strings() {
        assert_eq!(first_count(&[vec![Value::from(42)]]), 42, "JSON number");
        assert_eq!(
            first_count(&[vec![Value::from("42")]]),
            42,
            "beyond 2^53 the API sends strings"
        );
        assert_eq!(first_count(&[]), 0, "no row");
    }
}
