//! `local/cluster.sh` itself: starting twice changes nothing, and a crash (SIGKILL of every
//! server) followed by a start recovers without losing or duplicating data.

use sqlgate_testkit::Cluster;
use std::path::Path;

fn pid(cluster: &Cluster, node: &str) -> i32 {
    let p = cluster.dir().join("db").join(node).join("mysqld.pid");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

fn counts(cluster: &Cluster) -> Vec<Option<String>> {
    ["manager", "worker-1", "worker-2"]
        .iter()
        .map(|n| {
            cluster
                .scalar(
                    n,
                    "SELECT CONCAT(COUNT(*), '/', COUNT(DISTINCT actor_id)) FROM sakila.actor",
                )
                .unwrap()
        })
        .collect()
}

#[test]
fn start_is_idempotent_and_survives_a_crash() {
    let cluster = Cluster::start(2).expect("cluster");
    let want = vec![Some("200/200".to_string()); 3];
    assert_eq!(counts(&cluster), want, "200 seeded actors everywhere");
    let before: Vec<i32> = ["manager", "worker-1", "worker-2"]
        .iter()
        .map(|n| pid(&cluster, n))
        .collect();

    cluster.script(&["start"]).unwrap();
    let again: Vec<i32> = ["manager", "worker-1", "worker-2"]
        .iter()
        .map(|n| pid(&cluster, n))
        .collect();
    assert_eq!(before, again, "a second start leaves running servers alone");
    assert_eq!(counts(&cluster), want, "and seeds nothing twice");

    // A write that must survive the crash: committed on the manager, replicated.
    let mut c = cluster.connect("manager").unwrap();
    use mysql::prelude::Queryable;
    c.query_drop("CREATE TABLE IF NOT EXISTS app.crash_t (id INT PRIMARY KEY)")
        .unwrap();
    c.query_drop("INSERT INTO app.crash_t VALUES (1), (2), (3)")
        .unwrap();
    drop(c);
    cluster.wait_replicated().unwrap();

    for p in &before {
        assert!(
            std::process::Command::new("kill")
                .args(["-KILL", &p.to_string()])
                .status()
                .unwrap()
                .success(),
            "kill {p}"
        );
    }
    for p in &before {
        let proc_dir = format!("/proc/{p}");
        for _ in 0..100 {
            if !Path::new(&proc_dir).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let status = cluster.script(&["status"]);
    assert!(
        status.is_err(),
        "status reports stopped nodes with a non-zero exit"
    );

    cluster.script(&["start"]).expect("start after a crash");
    assert_eq!(counts(&cluster), want, "nothing lost or duplicated");
    for node in ["manager", "worker-1", "worker-2"] {
        let n = cluster
            .scalar(node, "SELECT COUNT(*) FROM app.crash_t")
            .unwrap();
        assert_eq!(n.as_deref(), Some("3"), "committed rows survive on {node}");
    }
    let status = cluster.script(&["status"]).unwrap();
    assert_eq!(
        status.matches("Slave_SQL_Running=Yes").count(),
        2,
        "replication resumed:\n{status}"
    );
    assert_eq!(
        status.matches("Slave_IO_Running=Yes").count(),
        2,
        "replication resumed:\n{status}"
    );
}
