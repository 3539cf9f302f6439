//! Switchover and failover under load, each on a cluster of its own (they change which node is
//! the primary), and a proxy lost from behind a gatekeeper: nothing acknowledged is lost (checked row by row on every node), no read
//! fails, no write reaches two primaries (replication stays error-free and every node ends with
//! the same rows), and the proxy follows the new primary by itself. The figures are printed,
//! and with `SQLGATE_RELIABILITY_OUT=<file>` appended to that file as JSON lines
//! (`make reliability` renders them into docs/reliability.md).

use serde_json::{json, Value};
use sqlgate_testkit::{Cluster, Options, Stack};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The stack, watching the nodes every 200 ms so that a change is seen quickly, and holding
/// writes for up to 10 s while a primary is not confirmed.
async fn stack(cluster: &Cluster) -> Stack {
    let opts = Options {
        proxy_env: vec![
            ("PROXY_MONITOR_INTERVAL_MS".into(), "200".into()),
            ("PROXY_WRITE_WAIT_MS".into(), "10000".into()),
        ],
        ..Options::default()
    };
    Stack::start(cluster, opts).await.expect("start the stack")
}

/// What the load saw.
#[derive(Default)]
struct Seen {
    /// Ids whose INSERT was acknowledged (200), with when.
    acked: Vec<(i64, Instant)>,
    /// Failed writes: (status, code, when).
    write_failures: Vec<(u16, String, Instant)>,
    reads: u64,
    read_failures: Vec<(u16, String)>,
}

/// Writers inserting distinct ids and readers counting rows, through the gatekeeper, until
/// `stop` is set.
fn load(
    s: &Stack,
    table: &str,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Seen>>, Vec<tokio::task::JoinHandle<()>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let (http, url, key) = (
            s.http.clone(),
            s.gatekeeper_url.clone(),
            s.keys.write.clone(),
        );
        let (seen, stop, table) = (seen.clone(), stop.clone(), table.to_string());
        tasks.push(tokio::spawn(async move {
            let mut id = w;
            while !stop.load(Ordering::Relaxed) {
                id += 4;
                let body = json!({"sql": format!("INSERT INTO {table} (id, v) VALUES (?, ?)"), "params": [id, w]});
                let (st, resp) = post(&http, &url, &key, &body).await;
                if st == 200 {
                    seen.lock().unwrap().acked.push((id, Instant::now()));
                } else {
                    let code = resp["error"]["code"].as_str().unwrap_or("transport").to_string();
                    seen.lock().unwrap().write_failures.push((st, code, Instant::now()));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for _ in 0..2 {
        let (http, url, key) = (
            s.http.clone(),
            s.gatekeeper_url.clone(),
            s.keys.read.clone(),
        );
        let (seen, stop, table) = (seen.clone(), stop.clone(), table.to_string());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let body =
                    json!({"sql": format!("SELECT COUNT(*) FROM {table}"), "mode": "random"});
                let (st, resp) = post(&http, &url, &key, &body).await;
                let mut seen = seen.lock().unwrap();
                seen.reads += 1;
                if st != 200 {
                    let code = resp["error"]["code"]
                        .as_str()
                        .unwrap_or("transport")
                        .to_string();
                    seen.read_failures.push((st, code));
                }
            }
        }));
    }
    (seen, tasks)
}

async fn post(http: &reqwest::Client, url: &str, key: &str, body: &Value) -> (u16, Value) {
    let req = http
        .post(format!("{url}/query"))
        .header("X-API-Key", key)
        .json(body);
    sqlgate_testkit::send_json(req)
        .await
        .unwrap_or_else(|e| (0, json!({"error": {"code": e}})))
}

/// The ids in `table` on `node`, read as root on a fresh session.
fn ids_on(cluster: &Cluster, node: &str, table: &str) -> BTreeSet<i64> {
    cluster
        .root_sql(node, &format!("SELECT id FROM {table}"))
        .unwrap_or_else(|e| panic!("{node}: {e}"))
        .lines()
        .map(|l| l.trim().parse().expect("an id"))
        .collect()
}

/// Replication on `node` runs without error.
fn replicating_cleanly(cluster: &Cluster, node: &str) -> Result<(), String> {
    let st = cluster.replica_status(node).map_err(|e| e.to_string())?;
    let get = |k: &str| st.get(k).cloned().unwrap_or_default();
    if get("Slave_IO_Running") == "Yes" && get("Slave_SQL_Running") == "Yes" {
        Ok(())
    } else {
        Err(format!(
            "{node}: IO={} SQL={} io_error={:?} sql_error={:?}",
            get("Slave_IO_Running"),
            get("Slave_SQL_Running"),
            get("Last_IO_Error"),
            get("Last_SQL_Error")
        ))
    }
}

/// Waits until the proxy's `/ready` names `primary` as a confirmed manager.
async fn proxy_follows(s: &Stack, primary: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let ready = s.proxy_ready().await;
        if ready["manager"] == primary
            && ready["primary_confirmed"] == true
            && ready["ready"] == true
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "the proxy did not follow {primary}: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Records one scenario's figures (printed; appended to `SQLGATE_RELIABILITY_OUT` if set).
fn record(figures: Value) {
    println!("reliability: {figures}");
    if let Ok(path) = std::env::var("SQLGATE_RELIABILITY_OUT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open SQLGATE_RELIABILITY_OUT");
        writeln!(f, "{figures}").expect("write figures");
    }
}

async fn create_table(s: &Stack, table: &str) {
    for sql in [
        format!("DROP TABLE IF EXISTS {table}"),
        format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, v INT)"),
    ] {
        let (st, body) = s.query(&s.keys.admin, json!({ "sql": sql })).await;
        assert_eq!(st, 200, "{body}");
    }
}

/// Every acknowledged id is on every node named, and the nodes hold the same rows.
fn assert_nothing_lost(
    cluster: &Cluster,
    nodes: &[&str],
    table: &str,
    acked: &BTreeSet<i64>,
) -> usize {
    let mut missing_total = 0;
    let first = ids_on(cluster, nodes[0], table);
    for node in nodes {
        let ids = ids_on(cluster, node, table);
        let missing: Vec<&i64> = acked.difference(&ids).collect();
        missing_total += missing.len();
        assert!(
            missing.is_empty(),
            "{node} lost acknowledged writes: {missing:?}"
        );
        assert_eq!(ids, first, "{node} and {} hold different rows", nodes[0]);
    }
    missing_total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switchover_under_load_loses_nothing_and_fails_no_read() {
    let cluster = Cluster::start(2).expect("a cluster of its own");
    let s = stack(&cluster).await;
    let table = "app.switchover_load";
    create_table(&s, table).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, tasks) = load(&s, table, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;

    let switch_started = Instant::now();
    let c = &cluster;
    let out = tokio::task::block_in_place(|| c.script(&["switchover", "worker-1"]));
    out.expect("switchover");
    let script_took = switch_started.elapsed();
    let followed = proxy_follows(&s, "worker-1", Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    assert_eq!(
        tokio::task::block_in_place(|| cluster.script(&["primary"]))
            .unwrap()
            .trim(),
        "worker-1"
    );
    tokio::task::block_in_place(|| cluster.wait_replicated()).expect("every node catches up");
    for node in ["manager", "worker-2"] {
        replicating_cleanly(&cluster, node).unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let acked: BTreeSet<i64> = seen.acked.iter().map(|(id, _)| *id).collect();
    let after_switch = seen
        .acked
        .iter()
        .filter(|(_, t)| *t > switch_started)
        .count();
    let lost = assert_nothing_lost(
        &cluster,
        &["worker-1", "manager", "worker-2"],
        table,
        &acked,
    );
    record(json!({
        "scenario": "switchover (make switchover TO=worker-1) under load",
        "acknowledged_writes": acked.len(),
        "acknowledged_after_switch_began": after_switch,
        "failed_writes": seen.write_failures.len(),
        "reads": seen.reads,
        "failed_reads": seen.read_failures.len(),
        "lost_acknowledged_writes": lost,
        "switchover_script_s": script_took.as_secs_f64(),
        "proxy_followed_after_s": (script_took + followed).as_secs_f64(),
    }));
    assert!(
        seen.read_failures.is_empty(),
        "reads failed: {:?}",
        seen.read_failures
    );
    assert!(
        seen.write_failures.is_empty(),
        "writes failed (they are held while the primary changes): {:?}",
        seen.write_failures
            .iter()
            .map(|(st, c, _)| (st, c))
            .collect::<Vec<_>>()
    );
    assert!(
        after_switch > 0,
        "no write was acknowledged after the switch"
    );
    // The new primary takes writes, the old one refuses them on its own.
    let (st, body) = s
        .query(
            &s.keys.write,
            json!({"sql": format!("INSERT INTO {table} VALUES (-1, 0)")}),
        )
        .await;
    assert_eq!(
        (st, body["node"].as_str()),
        (200, Some("worker-1")),
        "{body}"
    );
    let refused = cluster
        .connect_as("manager", sqlgate::Role::Write)
        .and_then(|mut c| {
            use mysql::prelude::Queryable;
            Ok(c.query_drop(format!("INSERT INTO {table} VALUES (-2, 0)"))?)
        });
    assert!(refused.is_err(), "the old primary accepted a write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_after_the_manager_is_killed_loses_no_acknowledged_write() {
    let cluster = Cluster::start(2).expect("a cluster of its own");
    let s = stack(&cluster).await;
    let table = "app.failover_load";
    create_table(&s, table).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, tasks) = load(&s, table, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;

    let pid = std::fs::read_to_string(cluster.dir().join("db/manager/mysqld.pid")).unwrap();
    let killed_at = Instant::now();
    let st = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(st.success());
    // Writes are refused fast while nothing is writable.
    let refused_after = loop {
        if let Some((_, _, at)) = seen
            .lock()
            .unwrap()
            .write_failures
            .iter()
            .find(|(_, _, at)| *at > killed_at)
        {
            break at.duration_since(killed_at);
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "writes never failed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let failover_started = Instant::now();
    tokio::task::block_in_place(|| cluster.script(&["failover"])).expect("failover");
    let script_took = failover_started.elapsed();
    let primary = tokio::task::block_in_place(|| cluster.script(&["primary"]))
        .unwrap()
        .trim()
        .to_string();
    assert!(primary.starts_with("worker-"), "{primary}");
    proxy_follows(&s, &primary, Duration::from_secs(15)).await;
    let resumed_after = loop {
        if let Some((_, at)) = seen
            .lock()
            .unwrap()
            .acked
            .iter()
            .find(|(_, at)| *at > failover_started)
        {
            break at.duration_since(failover_started);
        }
        assert!(
            failover_started.elapsed() < Duration::from_secs(20),
            "writes never resumed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let other = if primary == "worker-1" {
        "worker-2"
    } else {
        "worker-1"
    };
    tokio::task::block_in_place(|| cluster.script(&["wait"])).unwrap_or_else(|e| panic!("{e}"));
    replicating_cleanly(&cluster, other).unwrap();
    let (acked, write_failures, reads, read_failures) = {
        let seen = seen.lock().unwrap();
        (
            seen.acked
                .iter()
                .map(|(id, _)| *id)
                .collect::<BTreeSet<i64>>(),
            seen.write_failures.len(),
            seen.reads,
            seen.read_failures.len(),
        )
    };
    let lost = assert_nothing_lost(&cluster, &[&primary, other], table, &acked);

    // The old manager comes back fenced and rejoins as a replica, or is reported for a rebuild
    // when it wrote something no worker received before it died.
    let rejoin = tokio::task::block_in_place(|| cluster.script(&["start"]));
    let read_only = cluster.root_sql("manager", "SELECT @@read_only").unwrap();
    assert_eq!(read_only.trim(), "1", "the old manager came back writable");
    let rejoined = match &rejoin {
        Ok(_) => {
            replicating_cleanly(&cluster, "manager").unwrap();
            assert_nothing_lost(&cluster, &[&primary, "manager"], table, &acked);
            "rejoined as a replica"
        }
        Err(e) => {
            assert!(
                e.to_string().contains("rebuild"),
                "neither rejoined nor reported: {e}"
            );
            "reported for rebuild"
        }
    };
    proxy_follows(&s, &primary, Duration::from_secs(5)).await;
    record(json!({
        "scenario": "failover (make failover) after SIGKILL of the manager under load",
        "acknowledged_writes": acked.len(),
        "failed_writes": write_failures,
        "reads": reads,
        "failed_reads": read_failures,
        "lost_acknowledged_writes": lost,
        "writes_refused_after_kill_s": refused_after.as_secs_f64(),
        "failover_script_s": script_took.as_secs_f64(),
        "writes_resumed_after_failover_began_s": resumed_after.as_secs_f64(),
        "old_manager": rejoined,
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gatekeeper_in_front_of_two_proxies_survives_losing_one() {
    let owned = Cluster::start(2).expect("a cluster of its own");
    let cluster = &owned;
    let (url_a, proxy_a) = sqlgate_testkit::start_proxy(cluster, &[]).expect("proxy a");
    let (url_b, _proxy_b) = sqlgate_testkit::start_proxy(cluster, &[]).expect("proxy b");
    let s = Stack::start(
        cluster,
        Options {
            proxy_url_override: Some(format!("{url_a},{url_b}")),
            ..Options::default()
        },
    )
    .await
    .expect("the stack");
    s.wait_ready(Duration::from_secs(30)).await.unwrap();
    let table = "app.two_proxies";
    create_table(&s, table).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, tasks) = load(&s, table, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = Instant::now();
    proxy_a.stop(false).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let acked: BTreeSet<i64> = seen.acked.iter().map(|(id, _)| *id).collect();
    let after_kill = seen.acked.iter().filter(|(_, t)| *t > killed_at).count();
    let last_failure = seen
        .write_failures
        .iter()
        .map(|(_, _, at)| at.saturating_duration_since(killed_at))
        .max();
    tokio::task::block_in_place(|| cluster.wait_replicated()).unwrap();
    let lost = assert_nothing_lost(cluster, &["manager", "worker-1", "worker-2"], table, &acked);
    record(json!({
        "scenario": "one of two proxies stopped under load (one gatekeeper in front of both)",
        "acknowledged_writes": acked.len(),
        "acknowledged_after_stop": after_kill,
        "failed_writes": seen.write_failures.len(),
        "reads": seen.reads,
        "failed_reads": seen.read_failures.len(),
        "lost_acknowledged_writes": lost,
        "last_failure_after_stop_s": last_failure.map_or(0.0, |d| d.as_secs_f64()),
    }));
    assert!(after_kill > 0, "nothing was served after the stop");
    // Requests in flight on the stopped proxy may fail; none after the gatekeeper has seen it
    // refuse a connection.
    assert!(
        last_failure.is_none_or(|d| d < Duration::from_secs(1)),
        "requests still failed {last_failure:?} after the stop: {:?}",
        seen.write_failures
            .iter()
            .map(|(st, c, _)| (st, c))
            .collect::<Vec<_>>()
    );
    assert!(
        seen.read_failures.len() <= 2,
        "reads failed: {:?}",
        seen.read_failures
    );
}
