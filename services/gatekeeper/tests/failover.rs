//! Node failures against a cluster of its own: workers stopped, replication broken, the
//! manager down. Reads keep succeeding where any node can serve them; writes are never retried.

use serde_json::{json, Value};
use sqlgate_testkit::{Cluster, Options, Stack};
use std::time::{Duration, Instant};

async fn read(s: &Stack, mode: &str) -> (u16, Value) {
    s.query(
        &s.keys.read,
        json!({"sql": "SELECT COUNT(*) FROM sakila.actor", "mode": mode}),
    )
    .await
}

/// Polls the proxy's `/ready` until `node` has `eligible == want`.
async fn wait_eligible(s: &Stack, node: &str, want: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.proxy_ready().await;
        let n = r["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == node)
            .cloned()
            .unwrap();
        if n["eligible"] == want {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "{node} never became eligible={want}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_failures() {
    let cluster = Cluster::start(2).expect("cluster");

    // 0. Replicas that apply 3 s late (still within max_lag): a plain read is stale, a read
    // with the write's after_gtid is not, and says which worker lagged.
    {
        let opts = Options {
            proxy_env: vec![
                ("PROXY_MAX_LAG_S".into(), "60".into()),
                ("PROXY_GTID_WAIT_MS".into(), "300".into()),
            ],
            ..Options::default()
        };
        let s = Stack::start(&cluster, opts).await.unwrap();
        let t = "app.ryw";
        let (st, body) = s
            .query(
                &s.keys.admin,
                json!({"sql": format!("CREATE TABLE {t} (id INT PRIMARY KEY)")}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        cluster.wait_replicated().unwrap();
        for w in ["worker-1", "worker-2"] {
            cluster
                .root_sql(
                    w,
                    "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 3; START SLAVE",
                )
                .unwrap();
        }
        let (st, body) = s
            .query(
                &s.keys.write,
                json!({"sql": format!("INSERT INTO {t} VALUES (1)")}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        let gtid = body["gtid"].as_str().unwrap().to_string();
        let count = json!({"sql": format!("SELECT COUNT(*) FROM {t}"), "mode": "random"});
        let (st, body) = s.query(&s.keys.read, count.clone()).await;
        assert_eq!((st, body["role"].as_str()), (200, Some("worker")), "{body}");
        assert_ne!(
            body["rows"],
            json!([[1]]),
            "a delayed replica is stale without after_gtid: {body}"
        );
        let mut with_gtid = count.clone();
        with_gtid["after_gtid"] = json!(gtid);
        let (st, body) = s.query(&s.keys.read, with_gtid).await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(body["rows"], json!([[1]]), "read-your-writes: {body}");
        assert_eq!(body["node"], "manager", "{body}");
        assert!(
            body["fallback"]
                .as_str()
                .unwrap_or_default()
                .contains("after_gtid"),
            "{body}"
        );
        for w in ["worker-1", "worker-2"] {
            cluster
                .root_sql(
                    w,
                    "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE",
                )
                .unwrap();
        }
        cluster.wait_replicated().unwrap();
    }

    // 1. The monitor has not noticed yet (long interval): a read that fails to connect to the
    // stopped worker is retried once on the other one, so every read succeeds.
    {
        let opts = Options {
            proxy_env: vec![("PROXY_MONITOR_INTERVAL_MS".into(), "600000".into())],
            ..Options::default()
        };
        let s = Stack::start(&cluster, opts).await.unwrap();
        for _ in 0..10 {
            assert_eq!(read(&s, "random").await.0, 200, "warm both pools");
        }
        cluster.stop_node("worker-2").unwrap();
        for i in 0..12 {
            let (st, body) = read(&s, "random").await;
            assert_eq!(st, 200, "read {i} after worker-2 stopped: {body}");
            assert_eq!(
                body["node"], "worker-1",
                "read {i} served by the survivor: {body}"
            );
        }
        cluster.restart_stopped().unwrap();
    }

    // 2. With the monitor running: a stopped worker is excluded, reads go to the other.
    let s = Stack::start(&cluster, Options::default()).await.unwrap();
    cluster.stop_node("worker-2").unwrap();
    let n = wait_eligible(&s, "worker-2", false).await;
    assert!(n["reason"].as_str().unwrap().contains("unreachable"), "{n}");
    for mode in ["random", "ping", "least_busy"] {
        for _ in 0..8 {
            let (st, body) = read(&s, mode).await;
            assert_eq!(st, 200, "{mode}: {body}");
            assert_eq!(body["node"], "worker-1", "{mode}: {body}");
        }
    }

    // 3. The other worker's replication SQL thread stops: no worker is eligible, reads fall
    // back to the manager and say why.
    cluster
        .root_sql("worker-1", "STOP SLAVE SQL_THREAD")
        .unwrap();
    let n = wait_eligible(&s, "worker-1", false).await;
    assert!(n["reason"].as_str().unwrap().contains("SQL thread"), "{n}");
    let (st, body) = read(&s, "random").await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["node"], "manager", "{body}");
    let why = body["fallback"].as_str().unwrap_or_default();
    assert!(
        why.contains("worker-1") && why.contains("worker-2"),
        "fallback says why: {body}"
    );

    // 4. Everything comes back.
    cluster
        .root_sql("worker-1", "START SLAVE SQL_THREAD")
        .unwrap();
    cluster.restart_stopped().unwrap();
    wait_eligible(&s, "worker-1", true).await;
    wait_eligible(&s, "worker-2", true).await;
    let (st, body) = read(&s, "random").await;
    assert_eq!((st, body["role"].as_str()), (200, Some("worker")), "{body}");

    // 5. The manager stops: writes fail with 503 (never retried elsewhere), the proxy is not
    // ready, and reads still work from the workers.
    let t = "app.failover_t";
    let (st, body) = s
        .query(
            &s.keys.admin,
            json!({"sql": format!("CREATE TABLE {t} (id INT PRIMARY KEY)")}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    cluster.wait_replicated().unwrap();
    cluster.stop_node("manager").unwrap();
    let (st, body) = s
        .query(
            &s.keys.write,
            json!({"sql": format!("INSERT INTO {t} VALUES (1)")}),
        )
        .await;
    assert_eq!(st, 503, "write with the manager down: {body}");
    assert_eq!(body["error"]["code"], "unavailable");
    wait_eligible(&s, "manager", false).await;
    let r = s
        .http
        .get(format!("{}/ready", s.proxy_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        503,
        "proxy not ready without a manager"
    );
    // Once the workers notice (IO thread reconnecting), reads are served as possibly stale.
    wait_eligible(&s, "worker-1", false).await;
    for _ in 0..5 {
        let (st, body) = read(&s, "random").await;
        assert_eq!((st, body["role"].as_str()), (200, Some("worker")), "{body}");
        let why = body["fallback"].as_str().unwrap_or_default();
        assert!(
            why.contains("manager unreachable"),
            "flagged as stale: {body}"
        );
    }
    cluster.restart_stopped().unwrap();
    wait_eligible(&s, "manager", true).await;
    let (st, body) = s
        .query(
            &s.keys.write,
            json!({"sql": format!("INSERT INTO {t} VALUES (1)")}),
        )
        .await;
    assert_eq!(st, 200, "writes work again: {body}");
    cluster.wait_replicated().unwrap();
    for node in ["manager", "worker-1", "worker-2"] {
        let n = cluster
            .scalar(node, &format!("SELECT COUNT(*) FROM {t}"))
            .unwrap();
        assert_eq!(
            n.as_deref(),
            Some("1"),
            "exactly one row on {node}: the failed write was not applied"
        );
    }
}
