//! Attacks on the guarantees the proxy's move to `mysql_async` + `deadpool` could have weakened
//! (docs/security.md, layers 3 and "Time limits and retries"; docs/architecture.md): a request
//! cancelled mid-statement (the client went away), statements and transactions past their
//! deadlines, the transaction check now read from the server's status flags, the write's GTID
//! now read from its OK packet, the pool's accounting after bursts of timeouts and
//! cancellations, a node that hangs, and TLS to MySQL. Each test asserts the guarantee against
//! the servers' real state (processlist as root, rows seen by a fresh session, locks), not only
//! status codes. The tests share one cluster and some pause nodes or change server globals, so
//! they take turns (`serial`).

use serde_json::{json, Value};
use sqlgate_testkit::{send_json, Cluster, Options, Stack};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard};

async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

fn env(pairs: &[(&str, &str)]) -> Options {
    Options {
        proxy_env: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Options::default()
    }
}

async fn stack(opts: Options) -> Stack {
    Stack::start(Cluster::shared(), opts)
        .await
        .expect("start the stack")
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// Runs `sql` with the admin key and requires 200.
async fn admin(s: &Stack, sql: &str) -> Value {
    let (st, body) = s.query(&s.keys.admin, json!({ "sql": sql })).await;
    assert_eq!(st, 200, "{sql}: {body}");
    body
}

/// A fresh table of the test's own, `id INT PRIMARY KEY, v VARCHAR(40)`.
async fn table(s: &Stack, name: &str) -> String {
    let t = format!("app.{name}");
    admin(s, &format!("DROP TABLE IF EXISTS {t}")).await;
    admin(
        s,
        &format!("CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(40))"),
    )
    .await;
    t
}

/// POSTs straight to the proxy as the gatekeeper would (internal token and role).
async fn to_proxy(
    url: String,
    token: String,
    http: reqwest::Client,
    path: &str,
    role: &str,
    body: Value,
) -> Result<(u16, Value), String> {
    let req = http
        .post(format!("{url}{path}"))
        .header("X-Sqlgate-Token", token)
        .header("X-Sqlgate-Role", role)
        .json(&body);
    send_json(req).await
}

/// POSTs to the gatekeeper with `key`, like `Stack::post`, but as an owned future a test can
/// spawn and abort (the client going away).
async fn to_gatekeeper(
    url: String,
    http: reqwest::Client,
    path: &str,
    key: String,
    body: Value,
) -> Result<(u16, Value), String> {
    let req = http
        .post(format!("{url}{path}"))
        .header("X-API-Key", key)
        .json(&body);
    send_json(req).await
}

/// Whether a fresh session sees the named lock held by anyone.
fn lock_used(cluster: &Cluster, name: &str) -> bool {
    cluster
        .scalar(
            "manager",
            &format!("SELECT COALESCE(IS_USED_LOCK('{name}'), 0)"),
        )
        .unwrap()
        .as_deref()
        != Some("0")
}

fn count(cluster: &Cluster, node: &str, sql: &str) -> i64 {
    cluster
        .scalar(node, sql)
        .unwrap()
        .unwrap_or_default()
        .parse()
        .unwrap()
}

/// Polls `f` every 50 ms until it is true or `within` passed; returns how long it took.
async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if f() {
            return Some(started.elapsed());
        }
        if started.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One pool gauge from the proxy's `/metrics`:
/// `sqlgate_proxy_pool_connections{node, account, state}`.
async fn pool_gauge(s: &Stack, node: &str, account: &str, state: &str) -> i64 {
    let text = s
        .http
        .get(format!("{}/metrics", s.proxy_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let want = format!("node=\"{node}\",account=\"{account}\",state=\"{state}\"");
    text.lines()
        .find(|l| l.starts_with("sqlgate_proxy_pool_connections{") && l.contains(&want))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Pauses a node's server process (SIGSTOP) until dropped (SIGCONT): a node that hangs, with
/// its TCP port still accepting connections.
struct Frozen(String);

impl Frozen {
    fn new(cluster: &Cluster, node: &str) -> Frozen {
        let pid = std::fs::read_to_string(cluster.dir().join("db").join(node).join("mysqld.pid"))
            .expect("pid file")
            .trim()
            .to_string();
        let st = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
        assert!(st.success(), "SIGSTOP {node}");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}

/// Sets server globals as root on a node for the guard's lifetime.
struct Globals {
    node: &'static str,
    restore: String,
}

impl Globals {
    fn set(node: &'static str, vars: &[(&str, &str)]) -> Globals {
        let cluster = Cluster::shared();
        let mut restore = Vec::new();
        for (name, _) in vars {
            let v = cluster
                .root_sql(node, &format!("SELECT @@GLOBAL.{name}"))
                .unwrap();
            restore.push(format!("{name} = {}", v.trim()));
        }
        let set: Vec<String> = vars.iter().map(|(n, v)| format!("{n} = {v}")).collect();
        cluster
            .root_sql(node, &format!("SET GLOBAL {}", set.join(", ")))
            .unwrap();
        Globals {
            node,
            restore: format!("SET GLOBAL {}", restore.join(", ")),
        }
    }
}

impl Drop for Globals {
    fn drop(&mut self) {
        let _ = Cluster::shared().root_sql(self.node, &self.restore);
    }
}

/// Starts a request in the background, waits until its statement (`marker`) runs on `node`,
/// then drops it: the client goes away mid-statement. Returns when it was dropped.
async fn cancel_mid_statement(
    cluster: &Cluster,
    node: &str,
    marker: &str,
    request: impl std::future::Future<Output = Result<(u16, Value), String>> + Send + 'static,
) -> Instant {
    let task = tokio::spawn(request);
    let seen = eventually(Duration::from_secs(5), || {
        cluster.running(node, marker).unwrap() > 0
    })
    .await;
    if seen.is_none() {
        let out = if task.is_finished() {
            format!("{:?}", task.await)
        } else {
            "still waiting".to_string()
        };
        panic!("{marker} never ran on {node}: {out}");
    }
    task.abort();
    let _ = task.await;
    Instant::now()
}

// ---------------------------------------------------------------------------------------------
// 1. Cancelled requests: nothing survives; the statement is killed.
// ---------------------------------------------------------------------------------------------

/// An HTTP answer (status, body) or why there was none, as an owned future.
type Answer =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(u16, Value), String>> + Send>>;

/// A request to the proxy (`via_gatekeeper == false`, as the gatekeeper sends it) or to the
/// gatekeeper, as an owned future.
fn request(
    s: &Stack,
    via_gatekeeper: bool,
    path: &'static str,
    role: &'static str,
    body: Value,
) -> Answer {
    if via_gatekeeper {
        let key = match role {
            "admin" => s.keys.admin.clone(),
            "read" => s.keys.read.clone(),
            _ => s.keys.write.clone(),
        };
        Box::pin(to_gatekeeper(
            s.gatekeeper_url.clone(),
            s.http.clone(),
            path,
            key,
            body,
        ))
    } else {
        Box::pin(to_proxy(
            s.proxy_url.clone(),
            s.proxy_token.clone(),
            s.http.clone(),
            path,
            role,
            body,
        ))
    }
}

/// Waits until nothing runs `marker` on the manager and no connection of the write pool is
/// in use (whatever became of the cancelled requests), at most `within`.
async fn settle(s: &Stack, marker: &str, within: Duration) {
    let cluster = Cluster::shared();
    let gone = eventually(within, || cluster.running("manager", marker).unwrap() == 0).await;
    assert!(gone.is_some(), "{marker} still runs after {within:?}");
    for _ in 0..40 {
        if pool_gauge(s, "manager", "write", "in_use").await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("write connections stay in use after {marker}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_goes_away_leaves_no_session_state() {
    let _turn = serial().await;
    // Two connections per pool: the requests after the cancellations reuse what they used.
    let s = stack(env(&[("PROXY_POOL_SIZE", "2")])).await;
    let cluster = Cluster::shared();
    let t = table(&s, "ac_gone").await;
    // The client goes away mid-statement: straight to the proxy (the gatekeeper's hop closed)
    // and through the gatekeeper, /query and /transaction; a named lock, a user variable and
    // an open transaction with a row in it are in the session at that moment.
    let cases = [
        (
            false,
            "/query",
            json!({"sql": "SELECT GET_LOCK('ac_gone_a', 0), @ac_gone := 1, SLEEP(1) AS ac_gone_1"}),
            "ac_gone_1",
        ),
        (
            true,
            "/query",
            json!({"sql": "SELECT GET_LOCK('ac_gone_b', 0), @ac_gone := 2, SLEEP(1) AS ac_gone_2"}),
            "ac_gone_2",
        ),
        (
            false,
            "/transaction",
            json!({"statements": [
            {"sql": format!("INSERT INTO {t} VALUES (1, 'tx')")},
            {"sql": "SELECT GET_LOCK('ac_gone_c', 0), @ac_gone := 3"},
            {"sql": "SELECT SLEEP(1) AS ac_gone_3"}]}),
            "ac_gone_3",
        ),
        (
            true,
            "/transaction",
            json!({"statements": [
            {"sql": format!("INSERT INTO {t} VALUES (2, 'tx')")},
            {"sql": "SELECT GET_LOCK('ac_gone_d', 0), @ac_gone := 4"},
            {"sql": "SELECT SLEEP(1) AS ac_gone_4"}]}),
            "ac_gone_4",
        ),
    ];
    for (via_gatekeeper, path, body, marker) in cases {
        cancel_mid_statement(
            cluster,
            "manager",
            marker,
            request(&s, via_gatekeeper, path, "write", body),
        )
        .await;
    }
    settle(&s, "ac_gone_", Duration::from_secs(3)).await;
    for lock in ["ac_gone_a", "ac_gone_b", "ac_gone_c", "ac_gone_d"] {
        assert!(
            !lock_used(cluster, lock),
            "{lock} outlived its cancelled request"
        );
    }
    // The next requests, on the same two connections, see nothing of those sessions.
    for i in 0..6 {
        let (st, body) = s
            .query(
                &s.keys.admin,
                json!({"sql": "SELECT @ac_gone, @@autocommit, @@in_transaction, \
                    IS_USED_LOCK('ac_gone_a'), IS_USED_LOCK('ac_gone_c'), @@sql_mode, \
                    @@session.session_track_system_variables"}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        let row = &body["rows"][0];
        assert_eq!(
            (&row[0], &row[1], &row[2], &row[3], &row[4], &row[6]),
            (
                &Value::Null,
                &json!(1),
                &json!(0),
                &Value::Null,
                &Value::Null,
                &json!("last_gtid")
            ),
            "request {i} after the cancellations saw their state: {body}"
        );
        assert!(
            !row[5]
                .as_str()
                .unwrap_or("")
                .contains("NO_BACKSLASH_ESCAPES"),
            "{body}"
        );
    }
    // Their rows are not locked by a transaction left open: a fresh session writes over them.
    let mut c = cluster.connect_as("manager", sqlgate::Role::Write).unwrap();
    mysql::prelude::Queryable::query_drop(&mut c, "SET SESSION innodb_lock_wait_timeout = 1")
        .unwrap();
    mysql::prelude::Queryable::query_drop(
        &mut c,
        format!("REPLACE INTO {t} VALUES (1, 'fresh'), (2, 'fresh')"),
    )
    .expect("rows of a cancelled transaction are still locked");
    // Both connections of the write pool still serve side by side.
    let both: Vec<_> = (0..2)
        .map(|_| {
            request(
                &s,
                true,
                "/query",
                "write",
                json!({"sql": "SELECT SLEEP(0.3)"}),
            )
        })
        .collect();
    for r in futures_like_join(both).await {
        let (st, body) = r.unwrap();
        assert_eq!(st, 200, "the write pool lost capacity: {body}");
    }
}

/// actix-web keeps a handler running after its client half-closes the connection unless told
/// not to (`h1_allow_half_closed`, true by default): the handler future would never be dropped,
/// `pool::Lease`'s kill would never run, the statement would run to its end and an abandoned
/// /transaction would commit. Both services refuse half-closed connections (their `startup`);
/// this test fails if either stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_goes_away_has_its_statement_killed() {
    let _turn = serial().await;
    let s = stack(Options::default()).await;
    let cluster = Cluster::shared();
    let t = table(&s, "ac_kill").await;
    // docs/architecture.md: "A statement that passes its time limit is killed on the server;
    // so is one whose request was cancelled mid-statement (the client went away)."
    let cases = [
        (
            "/query to the proxy",
            false,
            "/query",
            json!({"sql": "SELECT GET_LOCK('ac_kill_a', 0), SLEEP(2.5) AS ac_kill_1"}),
            "ac_kill_1",
        ),
        (
            "/transaction through the gatekeeper",
            true,
            "/transaction",
            json!({"statements": [
            {"sql": format!("INSERT INTO {t} VALUES (1, 'client gone')")},
            {"sql": "SELECT SLEEP(2.5) AS ac_kill_2"}]}),
            "ac_kill_2",
        ),
    ];
    let started = Instant::now();
    let mut failures = Vec::new();
    for (what, via_gatekeeper, path, body, marker) in cases {
        cancel_mid_statement(
            cluster,
            "manager",
            marker,
            request(&s, via_gatekeeper, path, "write", body),
        )
        .await;
        let gone = eventually(Duration::from_millis(1200), || {
            cluster.running("manager", marker).unwrap() == 0
        })
        .await;
        if gone.is_none() {
            failures.push(format!(
                "{what}: still running on the manager 1.2 s after the client went away"
            ));
        }
    }
    if lock_used(cluster, "ac_kill_a") {
        failures.push("the cancelled /query still holds its GET_LOCK".into());
    }
    // Past the point where the abandoned transaction would have finished on its own.
    tokio::time::sleep(Duration::from_millis(3000).saturating_sub(started.elapsed())).await;
    settle(&s, "ac_kill_", Duration::from_secs(3)).await;
    let n = count(cluster, "manager", &format!("SELECT COUNT(*) FROM {t}"));
    if n != 0 {
        failures.push(format!(
            "the transaction whose client went away mid-statement committed ({n} row)"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The proxy's own state, as `startup` builds it, for driving `execute` without HTTP.
fn proxy_state(cluster: &Cluster, extra: &[(&str, &str)]) -> proxy::startup::State {
    let path = |f: &str| cluster.tls(f).display().to_string();
    let mut env: std::collections::HashMap<String, String> = [
        ("PROXY_TOKEN", cluster.secret("PROXY_TOKEN")),
        (
            "PROXY_MANAGER",
            format!("127.0.0.1:{}", cluster.manager_port),
        ),
        (
            "PROXY_WORKERS",
            format!("127.0.0.1:{}", cluster.port("worker-1")),
        ),
        ("PROXY_READ_PASSWORD", cluster.secret("READ_PASSWORD")),
        ("PROXY_WRITE_PASSWORD", cluster.secret("WRITE_PASSWORD")),
        ("PROXY_ADMIN_PASSWORD", cluster.secret("ADMIN_PASSWORD")),
        ("PROXY_MONITOR_PASSWORD", cluster.secret("MONITOR_PASSWORD")),
        ("PROXY_TLS_CERT", path("proxy.pem")),
        ("PROXY_TLS_KEY", path("proxy-key.pem")),
        ("PROXY_DB_CA", path("ca.pem")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = proxy::config::Config::from_env(&env).expect("config");
    let metrics = std::sync::Arc::new(proxy::metrics::Metrics::default());
    let nodes = std::sync::Arc::new(proxy::node::Cluster::new(&config, &metrics));
    proxy::startup::State {
        classifier: sqlgate::Classifier::new(config.limits.max_sql_bytes, 64),
        config,
        cluster: nodes,
        metrics,
    }
}

/// Runs one write-account statement on the manager through `execute::query`.
async fn exec_write(state: &proxy::startup::State, sql: &str) -> Result<Value, String> {
    let work = sqlgate::wire::prepare_for(
        &state.classifier,
        sqlgate::Role::Admin,
        sql,
        &Default::default(),
        100,
    )
    .map_err(|e| e.to_string())?;
    let ask = proxy::route::Ask {
        route: sqlgate::Route::Write,
        mode: sqlgate::Mode::Direct,
        after_gtid: None,
        ping_tolerance: Duration::from_micros(100),
    };
    match proxy::execute::query(state, &work, &ask, None, &mut |_| {}).await {
        Ok(a) => Ok(json!(a.result.rows)),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_dropped_mid_statement_is_killed_and_its_connection_discarded() {
    let _turn = serial().await;
    let cluster = Cluster::shared();
    // One connection per pool: whatever the next request gets is what the dropped one left.
    let state = proxy_state(cluster, &[("PROXY_POOL_SIZE", "1")]);
    let s = stack(Options::default()).await;
    let t = table(&s, "ac_drop").await;
    let pool = state.cluster.manager().pool(sqlgate::Role::Write);
    let started = Instant::now();

    // `execute::query` dropped mid-statement (what actix does to a handler it cancels).
    let q = "SELECT GET_LOCK('ac_drop_a', 0), @ac_drop := 1, SLEEP(2) AS ac_drop_1";
    let dropped = tokio::time::timeout(Duration::from_millis(700), exec_write(&state, q)).await;
    assert!(
        dropped.is_err(),
        "finished before it was dropped: {dropped:?}"
    );
    let killed = eventually(Duration::from_millis(1000), || {
        cluster.running("manager", "ac_drop_1").unwrap() == 0
    })
    .await;
    assert!(
        killed.is_some(),
        "a dropped /query's statement was not killed"
    );
    assert!(!lock_used(cluster, "ac_drop_a"), "its lock is held");

    // `execute::transaction` dropped mid-statement, with a row written before.
    let stmts: Vec<sqlgate::wire::Prepared> = [
        format!("INSERT INTO {t} VALUES (1, 'dropped')"),
        "SELECT GET_LOCK('ac_drop_b', 0), @ac_drop := 2".to_string(),
        "SELECT SLEEP(2) AS ac_drop_2".to_string(),
    ]
    .iter()
    .map(|sql| {
        sqlgate::wire::prepare_for(
            &state.classifier,
            sqlgate::Role::Write,
            sql,
            &Default::default(),
            100,
        )
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
    .collect();
    let ask = proxy::route::Ask {
        route: sqlgate::Route::Write,
        mode: sqlgate::Mode::Direct,
        after_gtid: None,
        ping_tolerance: Duration::from_micros(100),
    };
    let options = proxy::execute::TxOptions::default();
    let mut seen = |_: &str| {};
    let tx = proxy::execute::transaction(&state, &stmts, &options, &ask, "ac-drop", &mut seen);
    let dropped = tokio::time::timeout(Duration::from_millis(700), tx).await;
    assert!(dropped.is_err(), "finished before it was dropped");
    let killed = eventually(Duration::from_millis(1000), || {
        cluster.running("manager", "ac_drop_2").unwrap() == 0
    })
    .await;
    assert!(
        killed.is_some(),
        "a dropped /transaction's statement was not killed"
    );
    assert!(!lock_used(cluster, "ac_drop_b"), "its lock is held");

    // The single pooled connection that serves next is clean, and the pool whole.
    for i in 0..3 {
        let rows = exec_write(
            &state,
            "SELECT @ac_drop, @@autocommit, @@in_transaction, IS_USED_LOCK('ac_drop_a')",
        )
        .await
        .expect("the pool serves after the drops");
        assert_eq!(
            rows,
            json!([[null, 1, 0, null]]),
            "request {i} saw a dropped one's state"
        );
    }
    // (The last use is reset in the background, after its answer.)
    let mut st = pool.status();
    for _ in 0..40 {
        if st.available == st.size {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        st = pool.status();
    }
    assert!(
        st.size <= 1 && st.available == st.size,
        "pool accounting: {st:?}"
    );
    // The dropped transaction never commits, even after its SLEEP would have ended.
    tokio::time::sleep(Duration::from_millis(2300).saturating_sub(started.elapsed())).await;
    let n = count(cluster, "manager", &format!("SELECT COUNT(*) FROM {t}"));
    assert_eq!(n, 0, "a dropped transaction committed");
}

/// Runs futures concurrently (spawned) and collects their outputs in order.
async fn futures_like_join<F, T>(futs: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 2. Deadlines: a /transaction answered 504 committed nothing, one answered 200 committed.
// ---------------------------------------------------------------------------------------------

/// Killing the connection while COMMIT is already on the server does not stop the COMMIT: the
/// answer would be 504 "nothing was committed" for a committed row (as the first async build,
/// and the sync proxy before it, answered). COMMIT, once sent, is never killed on the
/// transaction's deadline (`execute::transaction`); whatever the answer, it must match the
/// database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_answered_504_committed_nothing_even_when_commit_was_in_flight() {
    let _turn = serial().await;
    let s = stack(env(&[("PROXY_TRANSACTION_TIMEOUT_MS", "600")])).await;
    let cluster = Cluster::shared();
    let t = table(&s, "ac_commit").await;
    // COMMIT takes 1.5 s on the manager (binary log group commit waits for company), so the
    // transaction's deadline passes while its COMMIT is in flight: the case the proxy must
    // answer truthfully ("If COMMIT had already completed, it answers 200").
    let slow = Globals::set(
        "manager",
        &[
            ("binlog_commit_wait_count", "100"),
            ("binlog_commit_wait_usec", "1500000"),
        ],
    );
    let mut outcomes = Vec::new();
    for id in 1..=2 {
        let body = json!({"statements": [{"sql": format!("INSERT INTO {t} VALUES ({id}, 'tx')")}]});
        let started = Instant::now();
        let (st, resp) = s.post("/transaction", Some(&s.keys.write), &body).await;
        outcomes.push((id, st, resp, started.elapsed()));
    }
    drop(slow);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (id, st, resp, took) in outcomes {
        let n = count(
            cluster,
            "manager",
            &format!("SELECT COUNT(*) FROM {t} WHERE id = {id}"),
        );
        eprintln!("transaction {id}: {st} after {took:?}, committed rows {n}: {resp}");
        match st {
            504 => assert_eq!(
                n, 0,
                "answered 504 ({}) but the transaction committed",
                resp["error"]["message"]
            ),
            200 => assert_eq!(n, 1, "answered 200 but nothing was committed"),
            other => panic!("unexpected {other}: {resp}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statements_past_their_deadline_are_killed_in_a_transaction_too() {
    let _turn = serial().await;
    let s = stack(env(&[
        ("PROXY_STATEMENT_TIMEOUT_MS", "700"),
        ("PROXY_TRANSACTION_TIMEOUT_MS", "5000"),
    ]))
    .await;
    let cluster = Cluster::shared();
    let t = table(&s, "ac_deadline").await;
    let lock_free = || !lock_used(cluster, "ac_lock_dl");
    // A statement of a transaction passes the statement deadline: killed, 504, rolled back.
    let body = json!({"statements": [
        {"sql": format!("INSERT INTO {t} VALUES (1, 'x')")},
        {"sql": "SELECT GET_LOCK('ac_lock_dl', 0)"},
        {"sql": "SELECT SLEEP(5) AS ac_dl_tx"}]});
    let started = Instant::now();
    let (st, resp) = s.post("/transaction", Some(&s.keys.write), &body).await;
    let took = started.elapsed();
    assert_eq!(st, 504, "{resp}");
    assert!(
        // Far sooner than the 5 s the statement would sleep; slack for a slow machine.
        took < Duration::from_millis(4000),
        "answered after {took:?}"
    );
    assert_eq!(
        cluster.running("manager", "ac_dl_tx").unwrap(),
        0,
        "still running after 504"
    );
    assert!(lock_free(), "the killed transaction's lock is held");
    // A /query write past its deadline: killed too, its lock released.
    let (st, resp) = s
        .query(
            &s.keys.write,
            json!({"sql": "SELECT GET_LOCK('ac_lock_dl', 0), SLEEP(5) AS ac_dl_q"}),
        )
        .await;
    assert_eq!(st, 504, "{resp}");
    assert_eq!(
        cluster.running("manager", "ac_dl_q").unwrap(),
        0,
        "still running after 504"
    );
    assert!(lock_free(), "the killed statement's lock is held");
    let n = count(cluster, "manager", &format!("SELECT COUNT(*) FROM {t}"));
    assert_eq!(n, 0, "a transaction answered 504 committed");
}

// ---------------------------------------------------------------------------------------------
// 3. /transaction is atomic: the server's IN_TRANS flag, against statements of every kind.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_is_all_or_nothing_whatever_its_statements() {
    let _turn = serial().await;
    let s = stack(env(&[("PROXY_MAX_ROWS", "150")])).await;
    let cluster = Cluster::shared();
    let t = table(&s, "ac_tx").await;
    admin(&s, &format!("INSERT INTO {t} VALUES (0, 'seed')")).await;
    // Each case runs [INSERT a, <statement>, INSERT b]. Whatever the answer, the database must
    // agree with it: 200 means both rows, an error means neither, except `transaction_broken`,
    // which says that what ran before may have been committed (and nothing after it ran).
    let middles: &[&str] = &[
        // Results of every size and shape: the flag arrives with the result's last packet.
        "SELECT * FROM sakila.actor ORDER BY actor_id LIMIT 120",
        "SELECT a.actor_id, b.actor_id FROM sakila.actor a JOIN sakila.actor b LIMIT 140",
        "SELECT * FROM sakila.actor",
        // An error after rows were sent: row 101 makes the subquery return two rows.
        "SELECT a.actor_id, (SELECT b.actor_id FROM sakila.actor b \
         WHERE b.actor_id IN (a.actor_id, 150) AND a.actor_id > 100) FROM sakila.actor a",
        "SELECT CAST(actor_id AS CHAR) FROM sakila.actor WHERE actor_id < 3 \
         UNION ALL SELECT (SELECT actor_id FROM sakila.actor)",
        // Locking reads, session functions, the other query forms.
        "SELECT * FROM app.ac_tx FOR UPDATE",
        "SELECT * FROM app.ac_tx LOCK IN SHARE MODE",
        "SELECT GET_LOCK('ac_tx_lock', 0), RELEASE_ALL_LOCKS()",
        "SELECT 1 INTO @ac_x",
        "VALUES (1), (2)",
        "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
        "(SELECT 1) UNION (SELECT 2)",
        "DESCRIBE app.ac_tx",
        "EXPLAIN SELECT * FROM app.ac_tx",
        "SHOW CREATE TABLE app.ac_tx",
        "SHOW WARNINGS",
        "SHOW TABLE STATUS FROM app",
        // DML of every form, and DML that fails.
        "REPLACE INTO app.ac_tx VALUES (0, 'replaced')",
        "INSERT INTO app.ac_tx SELECT id + 100000, v FROM app.ac_tx WHERE id = 0",
        "UPDATE app.ac_tx SET v = 'updated' WHERE id = 0",
        "DELETE FROM app.ac_tx WHERE id = 99999",
        "INSERT INTO app.ac_tx VALUES (0, 'duplicate')",
        "INSERT INTO app.ac_nowhere VALUES (1)",
        "INSERT IGNORE INTO app.ac_tx VALUES (0, 'ignored')",
        // Statements that end a transaction on the server: refused, or noticed.
        "COMMIT",
        "BEGIN",
        "ROLLBACK",
        "SAVEPOINT s1",
        "SET autocommit = 1",
        "SET STATEMENT max_statement_time = 10 FOR SELECT 1",
        "LOCK TABLES app.ac_tx WRITE",
        "UNLOCK TABLES",
        "XA END 'x'",
        "DO SLEEP(0)",
        "CALL mysql.ac_nothing()",
        "ANALYZE TABLE app.ac_tx",
        "OPTIMIZE TABLE app.ac_tx",
        "ANALYZE SELECT 1",
        "TRUNCATE app.ac_tx",
        "FLUSH TABLES",
        "HANDLER app.ac_tx OPEN",
        "PREPARE p FROM 'COMMIT'",
        "SELECT 1; COMMIT",
    ];
    // Run them all, then read what the database holds once.
    let mut next_id = 1000;
    let mut ran = Vec::new();
    for middle in middles {
        for (role, key) in [("write", &s.keys.write), ("admin", &s.keys.admin)] {
            let (a, b) = (next_id, next_id + 1);
            next_id += 2;
            let body = json!({"statements": [
                {"sql": format!("INSERT INTO {t} VALUES ({a}, 'first')")},
                {"sql": middle},
                {"sql": format!("INSERT INTO {t} VALUES ({b}, 'last')")}]});
            let (st, resp) = s.post("/transaction", Some(key), &body).await;
            ran.push((middle, role, a, b, st, resp));
        }
    }
    let present = cluster
        .root_sql("manager", &format!("SELECT id FROM {t} WHERE id >= 1000"))
        .unwrap();
    let present: std::collections::HashSet<i64> = present
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (middle, role, a, b, st, resp) in ran {
        let (first, last) = (present.contains(&a), present.contains(&b));
        report.push(format!(
            "{role:5} {st} {:18} {}{} {middle}",
            code(&resp),
            u8::from(first),
            u8::from(last)
        ));
        let ok = match (st, code(&resp)) {
            (200, _) => first && last,
            (_, "transaction_broken") => !last,
            _ => !first && !last,
        };
        if !ok {
            failures.push(format!(
                "{middle} ({role}): answered {st} but committed first={first} last={last}: {resp}"
            ));
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        !lock_used(cluster, "ac_tx_lock"),
        "a transaction's lock outlived it"
    );
}

/// A write to a MyISAM table is not rolled back, yet the answer would say the transaction was
/// (found in review: an admin key could create such tables). The servers refuse every
/// non-transactional engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_transaction_leaves_nothing_in_a_non_transactional_table() {
    let _turn = serial().await;
    let s = stack(Options::default()).await;
    let cluster = Cluster::shared();
    // "On any error the whole transaction is rolled back" (docs/security.md, Transactions) holds
    // only if every table is transactional: the servers refuse to create any other kind, for
    // every key, however it is asked (local/cluster.sh; on AWS the Ansible node config).
    for engine in ["MyISAM", "MEMORY", "Aria", "CSV", "myisam"] {
        let sql = format!(
            "CREATE TABLE app.ac_{} (id INT PRIMARY KEY) ENGINE = {engine}",
            engine.to_lowercase()
        );
        let (st, resp) = s
            .post("/query", Some(&s.keys.admin), &json!({"sql": sql}))
            .await;
        assert_ne!(
            st, 200,
            "{sql}: a non-transactional table was created: {resp}"
        );
    }
    let (st, resp) = s
        .post(
            "/query",
            Some(&s.keys.admin),
            &json!({"sql": "CREATE TABLE app.ac_engine (id INT PRIMARY KEY)"}),
        )
        .await;
    assert_eq!(st, 200, "{resp}");
    let (st, resp) = s
        .post(
            "/query",
            Some(&s.keys.admin),
            &json!({"sql": "ALTER TABLE app.ac_engine ENGINE = MyISAM"}),
        )
        .await;
    assert_ne!(st, 200, "an InnoDB table was turned into MyISAM: {resp}");
    let engines = count(
        cluster,
        "manager",
        "SELECT COUNT(*) FROM information_schema.tables \
         WHERE table_schema IN ('app', 'sakila', 'sbtest') AND engine <> 'InnoDB'",
    );
    assert_eq!(engines, 0, "an application table is not InnoDB");
    admin(&s, "DROP TABLE IF EXISTS app.ac_engine").await;
}

// ---------------------------------------------------------------------------------------------
// 4. The write's GTID comes from its OK packet: it is the write's own, and read-your-writes holds.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writes_gtid_is_its_own_and_a_read_after_it_sees_it() {
    let _turn = serial().await;
    let s = stack(Options::default()).await;
    let cluster = Cluster::shared();
    let t = table(&s, "ac_gtid").await;
    let binlog_pos = || {
        cluster
            .root_sql("manager", "SELECT @@gtid_binlog_pos")
            .unwrap()
            .trim()
            .to_string()
    };
    // Writes one after another: each reports the position the manager's binary log is at right
    // after it (nothing else writes meanwhile), and a read with it on a worker sees the row.
    for id in 1..=8 {
        let (st, body) = s
            .query(
                &s.keys.write,
                json!({"sql": format!("INSERT INTO {t} VALUES (?, 'w')"), "params": [id]}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        let gtid = body["gtid"]
            .as_str()
            .expect("a write reports its GTID")
            .to_string();
        assert_eq!(
            gtid,
            binlog_pos(),
            "write {id} reported another GTID: {body}"
        );
        let (st, body) = s
            .query(
                &s.keys.read,
                json!({"sql": format!("SELECT v FROM {t} WHERE id = ?"), "params": [id],
                       "mode": "random", "after_gtid": gtid}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(
            body["rows"],
            json!([["w"]]),
            "read after write {id} missed it: {body}"
        );
    }
    // DDL reports its own GTID too.
    let body = admin(&s, &format!("ALTER TABLE {t} ADD COLUMN n INT")).await;
    assert_eq!(
        body["gtid"].as_str(),
        Some(binlog_pos().as_str()),
        "DDL: {body}"
    );

    // Statements that write nothing, and reads, report no GTID: never an older one.
    let before = binlog_pos();
    for (key, sql) in [
        (
            &s.keys.write,
            format!("UPDATE {t} SET v = 'x' WHERE id = -1"),
        ),
        (&s.keys.write, format!("DELETE FROM {t} WHERE id = -1")),
        (
            &s.keys.write,
            format!("INSERT IGNORE INTO {t} (id, v) VALUES (1, 'dup')"),
        ),
        (
            &s.keys.write,
            format!("SELECT * FROM {t} WHERE id = 1 FOR UPDATE"),
        ),
        (
            &s.keys.write,
            "SELECT GET_LOCK('ac_gtid', 0), RELEASE_LOCK('ac_gtid')".to_string(),
        ),
        (&s.keys.read, format!("SELECT COUNT(*) FROM {t}")),
    ] {
        for mode in ["direct", "random"] {
            let (st, body) = s.query(key, json!({"sql": sql, "mode": mode})).await;
            assert_eq!(st, 200, "{sql}: {body}");
            assert!(
                body.get("gtid").is_none_or(Value::is_null),
                "{sql} ({mode}) wrote nothing yet reports a GTID: {body}"
            );
        }
    }
    assert_eq!(binlog_pos(), before, "the statements above wrote");

    // No key can change what the session reports (session tracking) or the GTID domain.
    for sql in [
        "SET session_track_system_variables = '*'",
        "SET @@session.session_track_system_variables = ''",
        "SET SESSION gtid_domain_id = 7",
        "SET STATEMENT session_track_system_variables = '' FOR INSERT INTO app.ac_gtid (id, v) VALUES (900, 's')",
        "SET STATEMENT gtid_seq_no = 5 FOR INSERT INTO app.ac_gtid (id, v) VALUES (901, 's')",
        "set/**/session_track_system_variables='*'",
        "`SET` session_track_system_variables = '*'",
        "DO (SELECT @@session_track_system_variables := '*')",
    ] {
        for key in [&s.keys.write, &s.keys.admin] {
            let (st, body) = s.query(key, json!({"sql": sql})).await;
            // Refused by the policy, or (a quoted keyword) a syntax error on the server.
            assert!(
                (400..500).contains(&st),
                "{sql}: ran: {st} {body}"
            );
        }
    }
    assert_eq!(binlog_pos(), before, "a refused statement wrote");
    for id in 50..54 {
        let (st, body) = s
            .query(
                &s.keys.write,
                json!({"sql": format!("INSERT INTO {t} (id, v) VALUES (?, 'after')"), "params": [id]}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(
            body["gtid"].as_str(),
            Some(binlog_pos().as_str()),
            "after the SETs: {body}"
        );
    }

    // Concurrent writers, each reading its own write right after it, on workers.
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (url, http, wk, rk, t) = (
                s.gatekeeper_url.clone(),
                s.http.clone(),
                s.keys.write.clone(),
                s.keys.read.clone(),
                t.clone(),
            );
            async move {
                for i in 0..4 {
                    let id = 100 + w * 10 + i;
                    let (st, body) = to_gatekeeper(
                        url.clone(),
                        http.clone(),
                        "/query",
                        wk.clone(),
                        json!({"sql": format!("INSERT INTO {t} (id, v) VALUES (?, 'c')"), "params": [id]}),
                    )
                    .await
                    .unwrap();
                    assert_eq!(st, 200, "{body}");
                    let gtid = body["gtid"].as_str().expect("gtid").to_string();
                    let (st, body) = to_gatekeeper(
                        url.clone(),
                        http.clone(),
                        "/query",
                        rk.clone(),
                        json!({"sql": format!("SELECT v FROM {t} WHERE id = ?"), "params": [id],
                               "mode": "least_busy", "after_gtid": gtid}),
                    )
                    .await
                    .unwrap();
                    assert_eq!(st, 200, "{body}");
                    assert_eq!(body["rows"], json!([["c"]]), "missed own write {id} ({gtid}): {body}");
                }
            }
        })
        .collect();
    futures_like_join(writers).await;
}

// ---------------------------------------------------------------------------------------------
// 5. The pool after bursts of timeouts and cancellations; a node that hangs.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pool_recovers_from_bursts_of_timeouts_and_cancellations() {
    let _turn = serial().await;
    let (pool, stmt_ms, connect_ms) = (4usize, 700u64, 400u64);
    let s = stack(env(&[
        ("PROXY_POOL_SIZE", &pool.to_string()),
        ("PROXY_STATEMENT_TIMEOUT_MS", &stmt_ms.to_string()),
        ("PROXY_CONNECT_TIMEOUT_MS", &connect_ms.to_string()),
        ("PROXY_TRANSACTION_TIMEOUT_MS", "1000"),
    ]))
    .await;
    let cluster = Cluster::shared();
    // The longest a request may take: wait for a connection, the deadline, the kill, the wait
    // after the kill.
    let bound = Duration::from_millis(stmt_ms + 3 * connect_ms + 600);
    for round in 0..2 {
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (purl, token, gurl, http, key) = (
                s.proxy_url.clone(),
                s.proxy_token.clone(),
                s.gatekeeper_url.clone(),
                s.http.clone(),
                s.keys.write.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                let sleep = json!({"sql": "SELECT SLEEP(3) AS ac_burst"});
                let tx = json!({"statements": [{"sql": "SELECT SLEEP(3) AS ac_burst"}]});
                let out = match i % 4 {
                    // Cancelled by the client at various points (before, during the statement).
                    0 => {
                        let cut = Duration::from_millis(50 + 60 * i as u64);
                        let r = tokio::time::timeout(
                            cut,
                            to_proxy(purl, token, http, "/query", "write", sleep),
                        )
                        .await;
                        return (i, r.ok().map(|r| r.map(|(st, _)| st)), started.elapsed());
                    }
                    1 => to_gatekeeper(gurl, http, "/transaction", key, tx).await,
                    _ => to_gatekeeper(gurl, http, "/query", key, sleep).await,
                };
                (i, Some(out.map(|(st, _)| st)), started.elapsed())
            }));
        }
        for t in tasks {
            let (i, out, took) = t.await.unwrap();
            if let Some(out) = out {
                let st = out.unwrap_or_else(|e| panic!("round {round} request {i}: {e}"));
                assert!(
                    st == 503 || st == 504,
                    "round {round} request {i}: {st} (want 503 or 504)"
                );
                assert!(
                    took < bound,
                    "round {round} request {i}: answered after {took:?}"
                );
            }
        }
        // Every statement of the burst was killed or never ran.
        let gone = eventually(Duration::from_secs(2), || {
            cluster.running("manager", "ac_burst").unwrap() == 0
        })
        .await;
        assert!(gone.is_some(), "round {round}: burst statements still run");
        // The gauges settle at nothing in use, never more than the pool's size.
        let mut settled = false;
        for _ in 0..40 {
            let in_use = pool_gauge(&s, "manager", "write", "in_use").await;
            let idle = pool_gauge(&s, "manager", "write", "idle").await;
            assert!(
                in_use + idle <= pool as i64,
                "round {round}: gauges past the pool size: {in_use} in use, {idle} idle"
            );
            if in_use == 0 {
                settled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            settled,
            "round {round}: connections stay in use after the burst"
        );
        // Full capacity at once: `pool` statements of 0.5 s side by side (a lost slot makes one
        // wait past the checkout timeout: 503).
        let started = Instant::now();
        let all: Vec<_> = (0..pool)
            .map(|_| {
                to_gatekeeper(
                    s.gatekeeper_url.clone(),
                    s.http.clone(),
                    "/query",
                    s.keys.write.clone(),
                    json!({"sql": "SELECT SLEEP(0.5)"}),
                )
            })
            .collect();
        for r in futures_like_join(all).await {
            let (st, body) = r.unwrap();
            assert_eq!(st, 200, "round {round}: the pool lost capacity: {body}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "round {round}: recovery took {:?}",
            started.elapsed()
        );
    }
}

/// deadpool bounds each step of a checkout (`wait`, `create`, `recycle`), not the whole of it,
/// and a checkout tries every idle connection in turn: against a node that hangs, the first
/// request would wait `idle connections x PROXY_CONNECT_TIMEOUT_MS` before its 503 (or its
/// retry elsewhere), outside the statement deadline. `Node::lease` bounds the whole checkout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_hangs_gives_503_or_504_within_the_deadlines() {
    let _turn = serial().await;
    let cluster = Cluster::shared();
    // A pool of 16: unbounded, the first checkout would wait 16 x 400 ms for the idle
    // connections' pings alone, well past the bound below even on a slow machine.
    let (pool, stmt_ms, connect_ms) = (16usize, 1000u64, 400u64);
    // One worker, so reads go to it until the monitor sees it hang.
    let s = stack(env(&[
        (
            "PROXY_WORKERS",
            &format!("127.0.0.1:{}", cluster.port("worker-1")),
        ),
        ("PROXY_POOL_SIZE", &pool.to_string()),
        ("PROXY_STATEMENT_TIMEOUT_MS", &stmt_ms.to_string()),
        ("PROXY_CONNECT_TIMEOUT_MS", &connect_ms.to_string()),
    ]))
    .await;
    // The checkout, the deadline, the kill and the wait after it, plus a slow machine's slack.
    let bound = Duration::from_millis(stmt_ms + 2 * connect_ms + 2000);
    // One `/query` through the gatekeeper with `key`, timed.
    let timed = |key: &str, body: Value| {
        let (url, http, key) = (s.gatekeeper_url.clone(), s.http.clone(), key.to_string());
        async move {
            let started = Instant::now();
            let r = to_gatekeeper(url, http, "/query", key, body).await;
            (r, started.elapsed())
        }
    };
    let read = |mode: &'static str| {
        timed(
            &s.keys.read,
            json!({"sql": "SELECT COUNT(*) FROM sakila.actor a, sakila.actor b", "mode": mode}),
        )
    };
    let write = || timed(&s.keys.write, json!({"sql": "SELECT SLEEP(0.2)"}));
    // Warm the pools: `pool` connections open on the worker (read) and the manager (write).
    for r in futures_like_join((0..pool).map(|_| read("random")).collect()).await {
        assert_eq!(r.0.as_ref().unwrap().0, 200, "{:?}", r.0);
    }
    for r in futures_like_join((0..pool).map(|_| write()).collect()).await {
        assert_eq!(r.0.as_ref().unwrap().0, 200, "{:?}", r.0);
    }
    let idle_reads = pool_gauge(&s, "worker-1", "read", "idle").await;
    let idle_writes = pool_gauge(&s, "manager", "write", "idle").await;
    eprintln!("warm: {idle_reads} idle read connections on worker-1, {idle_writes} idle write connections on the manager");
    // Idle long enough to be pinged at checkout.
    tokio::time::sleep(Duration::from_millis(400)).await;

    let mut failures = Vec::new();
    {
        let _frozen = Frozen::new(cluster, "worker-1");
        // One read alone, then a burst.
        let (r, took) = read("random").await;
        eprintln!(
            "worker-1 hung: first read {:?} after {took:?}",
            r.as_ref().map(|x| x.0)
        );
        let st = r.map(|x| x.0).unwrap_or(0);
        if !(matches!(st, 200 | 503 | 504) && took < bound) {
            failures.push(format!("worker hung: first read {st} after {took:?}"));
        }
        for (r, took) in futures_like_join((0..6).map(|_| read("random")).collect()).await {
            let st = r.map(|x| x.0).unwrap_or(0);
            if !(matches!(st, 200 | 503 | 504) && took < bound) {
                failures.push(format!("worker hung: burst read {st} after {took:?}"));
            }
        }
    }
    // Recovered: the worker serves again within a few seconds.
    let mut back = false;
    for _ in 0..60 {
        let (r, _) = read("random").await;
        if let Ok((200, body)) = &r {
            if body["node"] == "worker-1" {
                back = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "worker-1 never served again after it resumed");
    tokio::time::sleep(Duration::from_millis(400)).await;
    {
        let _frozen = Frozen::new(cluster, "manager");
        let (r, took) = write().await;
        eprintln!(
            "manager hung: first write {:?} after {took:?}",
            r.as_ref().map(|x| x.0)
        );
        let st = r.map(|x| x.0).unwrap_or(0);
        if !(matches!(st, 503 | 504) && took < bound) {
            failures.push(format!("manager hung: first write {st} after {took:?}"));
        }
        for (r, took) in futures_like_join((0..4).map(|_| write()).collect()).await {
            let st = r.map(|x| x.0).unwrap_or(0);
            if !(matches!(st, 503 | 504) && took < bound) {
                failures.push(format!("manager hung: burst write {st} after {took:?}"));
            }
        }
    }
    // The manager serves again, and no connection is left in use.
    let mut ok = false;
    for _ in 0..60 {
        if let (Ok((200, _)), _) = write().await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the manager never served again after it resumed");
    assert!(
        failures.is_empty(),
        "answers past the bound of {bound:?} (statement deadline + kill + wait) or not 503/504:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 6. TLS to MySQL: only the configured CA.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_trusts_only_the_configured_ca_for_mysql() {
    let _turn = serial().await;
    let cluster = Cluster::shared();
    let addr = proxy::config::NodeAddr {
        name: "manager".into(),
        host: "127.0.0.1".into(),
        port: cluster.manager_port,
    };
    let ca = cluster.tls("ca.pem");
    let opts = proxy::pool::opts(
        &addr,
        "sqlgate_read",
        &sqlgate::config::Secret::new("x"),
        &proxy::pool::DbTls::Verify(ca.clone()),
    );
    let ssl = opts.ssl_opts().expect("TLS is on");
    assert!(
        ssl.disable_built_in_roots(),
        "the public web PKI roots are trusted too"
    );
    assert_eq!(ssl.root_certs().len(), 1, "only the configured CA");
    assert!(!ssl.accept_invalid_certs() && !ssl.skip_domain_validation());
    // A proxy given the system's public roots as its CA (what built-in roots would add)
    // reaches no node.
    let public = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists());
    let Some(public) = public else {
        eprintln!("no public CA bundle on this machine; functional part skipped");
        return;
    };
    let s = Stack::start(
        cluster,
        Options {
            proxy_env: vec![("PROXY_DB_CA".into(), public.into())],
            proxy_url_override: Some("https://127.0.0.1:9".into()),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ready = s.proxy_ready().await;
    for n in ready["nodes"].as_array().unwrap() {
        assert_eq!(
            n["reachable"], false,
            "reached a node with the public roots: {n}"
        );
    }
    let (st, body) = to_proxy(
        s.proxy_url.clone(),
        s.proxy_token.clone(),
        s.http.clone(),
        "/query",
        "read",
        json!({"sql": "SELECT 1", "mode": "direct"}),
    )
    .await
    .unwrap();
    assert_eq!(st, 503, "{body}");
}

// ---------------------------------------------------------------------------------------------
// 1b'. Why a gone client's statement is not killed, and that the fix works: actix-web keeps a
// handler running when its client half-closes (`h1_allow_half_closed`, default true), so the
// proxy's drop-kills-the-statement path (`pool::Lease`) never runs for an HTTP/1 disconnect.
// The same routes and state, served with half-closed connections refused, kill it.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusing_half_closed_connections_makes_a_gone_client_kill_its_statement() {
    let _turn = serial().await;
    let cluster = Cluster::shared();
    let state = actix_web::web::Data::new(proxy_state(cluster, &[]));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .configure(proxy::routes::configure)
    })
    .workers(1)
    .h1_allow_half_closed(false)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    let fut = to_proxy(
        url,
        cluster.secret("PROXY_TOKEN"),
        sqlgate_testkit::client(&cluster.tls("ca.pem")).unwrap(),
        "/query",
        "write",
        json!({"sql": "SELECT GET_LOCK('ac_half', 0), SLEEP(3) AS ac_half_1"}),
    );
    cancel_mid_statement(cluster, "manager", "ac_half_1", fut).await;
    let killed = eventually(Duration::from_millis(1200), || {
        cluster.running("manager", "ac_half_1").unwrap() == 0
    })
    .await;
    handle.stop(false).await;
    assert!(
        killed.is_some(),
        "not killed even with half-closed connections refused"
    );
    assert!(!lock_used(cluster, "ac_half"), "its lock is held");
}

/// A read-only transaction stays read-only on the servers even when a write reaches it (the
/// gatekeeper's and the proxy's checks bypassed, as a fooled classifier would): the read account
/// runs it, inside `START TRANSACTION READ ONLY`, on a `read_only` worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_transaction_cannot_write_whatever_its_statements_say() {
    let _turn = serial().await;
    let cluster = Cluster::shared();
    let state = proxy_state(cluster, &[]);
    let s = stack(Options::default()).await;
    let t = table(&s, "ac_ro").await;
    admin(&s, &format!("INSERT INTO {t} VALUES (1, 'kept')")).await;
    cluster.wait_replicated().unwrap();
    let write = sqlgate::wire::prepare_for(
        &state.classifier,
        sqlgate::Role::Write,
        &format!("UPDATE {t} SET v = 'written' WHERE id = 1"),
        &Default::default(),
        100,
    )
    .unwrap();
    for mode in [sqlgate::Mode::Direct, sqlgate::Mode::Random] {
        let ask = proxy::route::Ask {
            route: sqlgate::Route::Read,
            mode,
            after_gtid: None,
            ping_tolerance: Duration::from_micros(100),
        };
        let options = proxy::execute::TxOptions {
            read_only: true,
            ..Default::default()
        };
        let mut seen = |_: &str| {};
        let outcome = proxy::execute::transaction(
            &state,
            std::slice::from_ref(&write),
            &options,
            &ask,
            "ac-ro",
            &mut seen,
        )
        .await;
        let e = match outcome {
            Ok(a) => panic!(
                "{mode:?}: a write ran in a read-only transaction on {}",
                a.placed.node.name()
            ),
            Err(e) => e.into_api("ac-ro"),
        };
        assert_eq!(e.code(), sqlgate::ErrorCode::SqlError, "{mode:?}: {e}");
    }
    cluster.wait_replicated().unwrap();
    for node in ["manager", "worker-1", "worker-2"] {
        let v = cluster
            .root_sql(node, &format!("SELECT v FROM {t} WHERE id = 1"))
            .unwrap();
        assert_eq!(v.trim(), "kept", "{node}");
    }
}
