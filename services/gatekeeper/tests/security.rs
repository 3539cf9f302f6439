//! Regression tests for the attacks that broke sqlgate's role promise (one test per finding),
//! end to end through the gatekeeper against a real cluster. Each checks the servers' state
//! (snapshots of GTID positions, checksums, schema, grants; what a fresh session sees), not only
//! the status code. The tests of one binary share a cluster, so they take turns (`serial`).

use serde_json::{json, Value};
use sqlgate::Role;
use sqlgate_testkit::{Cluster, Options, Stack};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard};

/// Snapshots compare the whole cluster: one test at a time.
async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

async fn stack(opts: Options) -> Stack {
    Stack::start(Cluster::shared(), opts)
        .await
        .expect("start the stack")
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// `app.probe` with rows 1..=3, replicated; created with the admin key.
async fn probe(s: &Stack) {
    for sql in [
        "DROP TABLE IF EXISTS app.probe",
        "CREATE TABLE app.probe (id INT PRIMARY KEY, v VARCHAR(20))",
        "INSERT INTO app.probe VALUES (1, 'a'), (2, 'b'), (3, 'c')",
    ] {
        let (st, body) = s.query(&s.keys.admin, json!({ "sql": sql })).await;
        assert_eq!(st, 200, "{sql}: {body}");
    }
}

/// Sends `sql` with `key` every way a key reaches the manager or a worker: each mode, an
/// `after_gtid` no worker has (the manager fallback), and `/transaction`. Returns each answer.
async fn every_way(s: &Stack, key: &str, sql: &str) -> Vec<(String, u16, Value)> {
    let mut out = Vec::new();
    for mode in ["direct", "random", "ping", "least_busy"] {
        let (st, body) = s.query(key, json!({"sql": sql, "mode": mode})).await;
        out.push((format!("mode {mode}"), st, body));
    }
    let (st, body) = s
        .query(key, json!({"sql": sql, "after_gtid": "0-1-999999999"}))
        .await;
    out.push(("after_gtid fallback".into(), st, body));
    let (st, body) = s
        .post(
            "/transaction",
            Some(key),
            &json!({"statements": [{"sql": "SELECT 1"}, {"sql": sql}]}),
        )
        .await;
    out.push(("transaction".into(), st, body));
    out
}

/// Asserts the cluster's durable state is what `before` recorded.
fn assert_unchanged(cluster: &Cluster, before: &[(String, String)], what: &str) {
    let after = cluster.snapshots().expect("snapshots");
    for ((node, a), (_, b)) in before.iter().zip(after.iter()) {
        assert_eq!(a, b, "{what}: the state of {node} changed");
    }
}

#[tokio::test]
async fn finding_1_executable_comments_are_refused_every_way() {
    let _turn = serial().await;
    let s = stack(Options::default()).await;
    probe(&s).await;
    let cluster = Cluster::shared();
    let before = cluster.snapshots().unwrap();
    let attacks = [
        (
            &s.keys.read,
            "/*M! DELETE FROM app.probe WHERE id = */ (SELECT 1)",
        ),
        (
            &s.keys.read,
            "/*M!100000 DELETE FROM app.probe WHERE id = */ (SELECT 1)",
        ),
        (
            &s.keys.read,
            "/*M! UPDATE app.probe SET v = 'x' WHERE id = */ (SELECT 1)",
        ),
        (
            &s.keys.read,
            "/*M! INSERT INTO app.probe VALUES (9, 'x') -- */ SELECT 1",
        ),
        (&s.keys.read, "/*M! DROP TABLE app.probe -- */ SELECT 1"),
        (&s.keys.read, "/*M! SET autocommit = 0 -- */ SELECT 1"),
        (&s.keys.read, "/*M! KILL QUERY 1 -- */ SELECT 1"),
        (&s.keys.read, "SELECT 1 /*!99999 , 2 */"),
        (
            &s.keys.write,
            "/*M! ALTER TABLE app.probe ADD COLUMN z INT -- */ SELECT 1",
        ),
        (
            &s.keys.write,
            "/*M! CREATE TABLE app.evil (a INT) -- */ SELECT 1",
        ),
    ];
    for (key, sql) in attacks {
        for (way, st, body) in every_way(&s, key, sql).await {
            assert_eq!(st, 400, "{sql} ({way}): {body}");
            assert_eq!(code(&body), "ambiguous_sql", "{sql} ({way}): {body}");
            assert!(body["request_id"].is_string(), "{sql} ({way}): {body}");
        }
    }
    assert_unchanged(cluster, &before, "executable comments");
}

#[tokio::test]
async fn prefixed_literals_cannot_blind_the_classifier() {
    let _turn = serial().await;
    let s = stack(Options::default()).await;
    probe(&s).await;
    let cluster = Cluster::shared();
    let before = cluster.snapshots().unwrap();
    // sqlparser reads `b"\"` as a byte string; the server reads `b` and one escaped string, so
    // what follows would run unseen by the classifier.
    for sql in [
        "SELECT b\"\\\" ,1 \", p.INFO FROM (SELECT 1 AS b) t, information_schema.PROCESSLIST p -- \"",
        "SELECT b\"\\\" ,1 \", GET_LOCK('blind', 0) FROM (SELECT 1 AS b) t -- \"",
        "SELECT B\"\\\" ,1 \", x.actor_id FROM (SELECT 1 AS B) t, sakila.actor x WHERE x.actor_id = 1 FOR UPDATE -- \"",
        "SELECT _utf8mb4'\\'', @@datadir -- '",
    ] {
        for (way, st, body) in every_way(&s, &s.keys.read, sql).await {
            assert_eq!(st, 400, "{sql:?} ({way}): {body}");
            assert_eq!(code(&body), "ambiguous_sql", "{sql:?} ({way}): {body}");
        }
    }
    let used = cluster
        .scalar("manager", "SELECT COALESCE(IS_USED_LOCK('blind'), 0)")
        .unwrap();
    assert_eq!(used.as_deref(), Some("0"), "the hidden GET_LOCK ran");
    assert_unchanged(cluster, &before, "prefixed literals");
}

#[tokio::test]
async fn a_transaction_past_its_deadline_commits_nothing() {
    let _turn = serial().await;
    let s = stack(Options {
        proxy_env: vec![("PROXY_TRANSACTION_TIMEOUT_MS".into(), "1500".into())],
        ..Options::default()
    })
    .await;
    probe(&s).await;
    let cluster = Cluster::shared();
    let body = json!({"statements": [
        {"sql": "INSERT INTO app.probe VALUES (500, 'late')"},
        {"sql": "SELECT SLEEP(1)"},
        {"sql": "SELECT SLEEP(1)"},
        {"sql": "SELECT SLEEP(1)"}]});
    let started = Instant::now();
    let (st, resp) = s.post("/transaction", Some(&s.keys.write), &body).await;
    assert_eq!(st, 504, "{resp}");
    assert_eq!(
        resp["error"]["message"], "transaction timed out; nothing was committed",
        "{resp}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "answered late"
    );
    // Long after the 504, the row is still not there: the transaction was rolled back, not
    // left to commit.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.wait_replicated().unwrap();
    for node in ["manager", "worker-1"] {
        let n = cluster
            .scalar(node, "SELECT COUNT(*) FROM app.probe WHERE id = 500")
            .unwrap();
        assert_eq!(
            n.as_deref(),
            Some("0"),
            "the timed-out transaction committed on {node}"
        );
        assert_eq!(
            cluster.running(node, "SLEEP(1)").unwrap(),
            0,
            "still running on {node}"
        );
    }
    // A transaction within its deadline is unaffected.
    let body = json!({"statements": [{"sql": "INSERT INTO app.probe VALUES (501, 'in time')"}]});
    let (st, resp) = s.post("/transaction", Some(&s.keys.write), &body).await;
    assert_eq!(st, 200, "{resp}");
}

#[tokio::test]
async fn the_database_holds_the_role_on_its_own() {
    let _turn = serial().await;
    let s = stack(Options::default()).await;
    probe(&s).await;
    let cluster = Cluster::shared();
    let before = cluster.snapshots().unwrap();
    // What a misread statement meets on the server: each account's own privileges.
    let denied: &[(Role, &str)] = &[
        (Role::Read, "DELETE FROM app.probe WHERE id = 1"),
        (Role::Read, "UPDATE app.probe SET v = 'x'"),
        (Role::Read, "INSERT INTO app.probe VALUES (9, 'x')"),
        (Role::Read, "CREATE TABLE app.evil (a INT)"),
        (Role::Write, "DROP TABLE app.probe"),
        (Role::Write, "ALTER TABLE app.probe ADD COLUMN z INT"),
        (Role::Write, "CREATE TABLE app.evil (a INT)"),
        (Role::Admin, "SELECT * FROM mysql.user"),
        (Role::Admin, "CREATE TABLE mysql.evil (a INT)"),
        (Role::Admin, "GRANT SELECT ON app.* TO 'sqlgate_read'@'127.0.0.1'"),
        (Role::Admin, "CREATE USER evil"),
        (Role::Admin, "SET GLOBAL read_only = 1"),
        (Role::Admin, "SELECT 1 INTO OUTFILE '/tmp/sqlgate-evil'"),
        (Role::Admin, "SELECT LOAD_FILE('/etc/passwd') IS NOT NULL FROM DUAL WHERE LOAD_FILE('/etc/passwd') IS NOT NULL"),
        (Role::Admin, "SHUTDOWN"),
    ];
    for node in ["manager", "worker-1"] {
        for (role, sql) in denied {
            let mut c = cluster.connect_as(node, *role).unwrap();
            let r = mysql::prelude::Queryable::query_drop(&mut c, sql);
            // LOAD_FILE without FILE returns NULL rather than an error: no row is the proof.
            if sql.contains("LOAD_FILE") {
                let rows: Vec<i64> = mysql::prelude::Queryable::query(&mut c, sql).unwrap();
                assert!(rows.is_empty(), "{role:?} read a file on {node}");
                continue;
            }
            assert!(r.is_err(), "{role:?} account ran {sql} on {node}");
        }
    }
    // Every statement the classifier calls a read runs as the read account, even for an admin
    // key: SCHEMA_PRIVILEGES lists the current account's grants only.
    for key in [&s.keys.read, &s.keys.write, &s.keys.admin] {
        let (st, body) = s
            .query(
                key,
                json!({"sql": "SELECT DISTINCT GRANTEE FROM information_schema.SCHEMA_PRIVILEGES", "mode": "direct"}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(
            body["rows"],
            json!([["'sqlgate_read'@'127.0.0.1'"]]),
            "{body}"
        );
    }
    // A write that is not DDL runs as the write account, even for an admin key.
    let (st, body) = s
        .query(&s.keys.admin, json!({"sql": "SELECT CURRENT_USER()"}))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["rows"], json!([["sqlgate_write@127.0.0.1"]]), "{body}");
    assert_unchanged(cluster, &before, "direct attempts as each account");
}

#[tokio::test]
async fn finding_2_a_hidden_second_statement_never_runs() {
    let _turn = serial().await;
    let s = stack(Options::default()).await;
    probe(&s).await;
    let cluster = Cluster::shared();
    let before = cluster.snapshots().unwrap();
    for sql in [
        "SELECT 1 --\u{a0} FROM (SELECT 1 AS a) d; DELETE FROM app.probe WHERE id=2",
        "SELECT 1 --\u{2003}x\n; DELETE FROM app.probe WHERE id=2",
        "SELECT 1; DELETE FROM app.probe WHERE id=2",
        "SELECT '\\''; DELETE FROM app.probe WHERE id=2; -- '",
        "SELECT 1 /* /* */ ; DELETE FROM app.probe WHERE id=2 /* */",
    ] {
        for key in [&s.keys.read, &s.keys.write] {
            for (way, st, body) in every_way(&s, key, sql).await {
                assert_eq!(st, 400, "{sql:?} ({way}): {body}");
            }
        }
    }
    assert_unchanged(cluster, &before, "hidden second statements");
}

#[tokio::test]
async fn finding_3_no_session_state_survives_a_request() {
    let _turn = serial().await;
    let s = stack(Options::default()).await;
    probe(&s).await;
    let cluster = Cluster::shared();
    // Session changes a write key may make without SET: a user variable and a named lock.
    let (st, body) = s
        .query(
            &s.keys.write,
            json!({"sql": "SELECT @leak := 42, GET_LOCK('sqlgate_leak', 0)"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["rows"], json!([[42, 1]]), "{body}");
    // The lock is free for a fresh session at once: it did not outlive its request.
    let used = cluster
        .scalar(
            "manager",
            "SELECT COALESCE(IS_USED_LOCK('sqlgate_leak'), 0)",
        )
        .unwrap();
    assert_eq!(used.as_deref(), Some("0"), "GET_LOCK outlived its request");
    // No later request, on any pooled connection, sees the variable.
    for i in 0..40 {
        let (st, body) = s
            .query(&s.keys.write, json!({"sql": "SELECT @leak, @@autocommit"}))
            .await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(
            body["rows"],
            json!([[null, 1]]),
            "request {i} saw state: {body}"
        );
    }
    // Every acknowledged write is committed: a fresh session on every node sees all of them.
    for i in 0..20 {
        let (st, body) = s
            .query(
                &s.keys.write,
                json!({"sql": "INSERT INTO app.probe VALUES (?, 'ack')", "params": [100 + i]}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
    }
    cluster.wait_replicated().unwrap();
    for node in ["manager", "worker-1", "worker-2"] {
        let n = cluster
            .scalar(node, "SELECT COUNT(*) FROM app.probe WHERE v = 'ack'")
            .unwrap();
        assert_eq!(n.as_deref(), Some("20"), "acknowledged writes on {node}");
    }
}

#[tokio::test]
async fn finding_4_transactions_are_atomic() {
    let _turn = serial().await;
    let s = stack(Options::default()).await;
    probe(&s).await;
    let cluster = Cluster::shared();
    let before = cluster.snapshots().unwrap();
    let cases: &[(&str, &[&str], u16, &str)] = &[
        (
            "a hidden COMMIT",
            &[
                "INSERT INTO app.probe VALUES (10, 'x')",
                "/*M! COMMIT -- */ SELECT 1",
                "INSERT INTO app.probe VALUES (11, 'x')",
            ],
            400,
            "ambiguous_sql",
        ),
        (
            "DDL commits implicitly",
            &[
                "INSERT INTO app.probe VALUES (10, 'x')",
                "CREATE TABLE app.split (a INT)",
                "INSERT INTO app.probe VALUES (11, 'x')",
            ],
            400,
            "statement_denied",
        ),
        (
            "a failing statement rolls everything back",
            &[
                "INSERT INTO app.probe VALUES (10, 'x')",
                "INSERT INTO app.probe VALUES (1, 'duplicate')",
            ],
            422,
            "sql_error",
        ),
    ];
    for (what, statements, status, want) in cases {
        let body =
            json!({"statements": statements.iter().map(|s| json!({"sql": s})).collect::<Vec<_>>()});
        let (st, resp) = s.post("/transaction", Some(&s.keys.admin), &body).await;
        assert_eq!(st, *status, "{what}: {resp}");
        assert_eq!(code(&resp), *want, "{what}: {resp}");
        assert!(
            resp["error"]["statement_index"].is_number(),
            "{what}: {resp}"
        );
    }
    assert_unchanged(cluster, &before, "failed transactions");
    // And a good one commits as a whole.
    let body = json!({"statements": [
        {"sql": "INSERT INTO app.probe VALUES (20, 'tx')"},
        {"sql": "UPDATE app.probe SET v = 'tx' WHERE id = 1"}]});
    let (st, resp) = s.post("/transaction", Some(&s.keys.write), &body).await;
    assert_eq!(st, 200, "{resp}");
    let n = cluster
        .scalar("manager", "SELECT COUNT(*) FROM app.probe WHERE v = 'tx'")
        .unwrap();
    assert_eq!(n.as_deref(), Some("2"));
}

#[tokio::test]
async fn finding_5_tenants_cannot_watch_each_other() {
    let _turn = serial().await;
    let s = stack(Options::default()).await;
    for key in [&s.keys.read, &s.keys.write] {
        for sql in [
            "SHOW PROCESSLIST",
            "SHOW FULL PROCESSLIST",
            "SELECT * FROM information_schema.processlist",
            "SELECT info FROM information_schema.`PROCESSLIST`",
            "SHOW GRANTS",
            "SHOW GRANTS FOR CURRENT_USER",
            "SELECT @@datadir, @@hostname",
            "SELECT @@basedir",
            "SELECT @@global.secure_file_priv",
            "SHOW VARIABLES LIKE 'datadir'",
            "SHOW GLOBAL VARIABLES",
            "SELECT variable_value FROM information_schema.GLOBAL_VARIABLES WHERE variable_name = 'DATADIR'",
            "SELECT * FROM information_schema.SYSTEM_VARIABLES",
        ] {
            let (st, body) = s.query(key, json!({"sql": sql})).await;
            assert_eq!(st, 403, "{sql}: {body}");
            assert!(
                body["request_id"].is_string(),
                "403 names the request: {body}"
            );
        }
    }
    // Behind the policy, no account has PROCESS: the read account sees no other account's
    // session even while one is open.
    let cluster = Cluster::shared();
    let _other = cluster.connect_as("manager", Role::Write).unwrap();
    let mut c = cluster.connect_as("manager", Role::Read).unwrap();
    let users: Vec<String> = mysql::prelude::Queryable::query(
        &mut c,
        "SELECT DISTINCT user FROM information_schema.processlist",
    )
    .unwrap();
    assert_eq!(
        users,
        vec!["sqlgate_read".to_string()],
        "read account sees others"
    );
}

#[tokio::test]
async fn finding_6_with_then_delete_is_a_write() {
    let _turn = serial().await;
    let s = stack(Options::default()).await;
    probe(&s).await;
    let cluster = Cluster::shared();
    let before = cluster.snapshots().unwrap();
    for sql in [
        "WITH x AS (SELECT 1) DELETE FROM app.probe",
        "WITH x AS (SELECT 1) UPDATE app.probe SET v = 'w'",
    ] {
        for (way, st, body) in every_way(&s, &s.keys.read, sql).await {
            assert_eq!(st, 403, "{sql} ({way}): {body}");
        }
    }
    assert_unchanged(cluster, &before, "WITH … DELETE");
}

#[tokio::test]
async fn finding_7_a_statement_given_up_on_is_killed_and_never_retried() {
    let _turn = serial().await;
    // The server's own limit is 2 s behind the proxy's deadline: what the processlist shows
    // right after the 504 is the proxy's doing.
    let s = stack(Options {
        proxy_env: vec![("PROXY_STATEMENT_TIMEOUT_MS".into(), "1500".into())],
        ..Options::default()
    })
    .await;
    let cluster = Cluster::shared();
    // A long read on a worker (read key), and a long non-read on the manager (write key).
    let cases = [
        (&s.keys.read, "SELECT COUNT(*) AS killme_read FROM sakila.actor a, sakila.actor b, sakila.actor c, sakila.actor d", "random"),
        (&s.keys.write, "SELECT SLEEP(20) AS killme_sleep", "direct"),
        (&s.keys.write, "SELECT BENCHMARK(1000000000000, 1) AS killme_bench", "direct"),
    ];
    for (key, sql, mode) in cases {
        let marker = sql.split(" AS ").nth(1).unwrap().split(' ').next().unwrap();
        let started = Instant::now();
        let (st, body) = s.query(key, json!({"sql": sql, "mode": mode})).await;
        let took = started.elapsed();
        assert_eq!(st, 504, "{sql}: {body}");
        assert_eq!(body["error"]["message"], "statement timed out", "{body}");
        // Not run a second time elsewhere: one deadline, not two.
        assert!(
            took < Duration::from_millis(2900),
            "{sql} took {took:?}: retried?"
        );
        for node in ["manager", "worker-1", "worker-2"] {
            assert_eq!(
                cluster.running(node, marker).unwrap(),
                0,
                "{marker} still runs on {node}"
            );
        }
    }
}

#[tokio::test]
async fn finding_8_errors_name_the_request_and_hide_internals() {
    let _turn = serial().await;
    let dead = sqlgate_testkit::free_port();
    let s = stack(Options {
        proxy_env: vec![(
            "PROXY_WORKERS".into(),
            format!("127.0.0.1:{dead},127.0.0.1:{dead}"),
        )],
        ..Options::default()
    })
    .await;
    let (st, body) = s
        .query(
            &s.keys.write,
            json!({"sql": "INSERT INTO app.nope VALUES (1)"}),
        )
        .await;
    assert_eq!(st, 422, "{body}");
    assert!(body["error"]["mysql_code"].is_number(), "{body}");
    assert!(body["error"]["sqlstate"].is_string(), "{body}");
    // Reads with every worker down: served by the manager, or a fixed message, never the
    // driver's words.
    for _ in 0..5 {
        let (st, body) = s
            .query(&s.keys.read, json!({"sql": "SELECT 1", "mode": "random"}))
            .await;
        let text = body.to_string();
        for leak in [
            "127.0.0.1",
            "DriverError",
            "CodecError",
            "os error",
            &dead.to_string(),
        ] {
            assert!(!text.contains(leak), "{st} leaks {leak}: {text}");
        }
    }
    let (st, body) = s.post("/query", None, &json!({"sql": "SELECT 1"})).await;
    assert_eq!(st, 401, "{body}");
    let (st, body) = s.post("/nope", Some(&s.keys.read), &json!({})).await;
    assert_eq!(st, 404, "{body}");
    assert!(
        body["request_id"].is_string(),
        "404 names the request: {body}"
    );
    let resp = s
        .http
        .get(format!("{}/query", s.gatekeeper_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["request_id"].is_string(),
        "405 names the request: {body}"
    );
    assert!(
        body["request_id"].is_string(),
        "401 names the request: {body}"
    );
    let (st, body) = s
        .query(&s.keys.read, json!({"sql": "DELETE FROM app.x"}))
        .await;
    assert_eq!(st, 403, "{body}");
    assert!(
        body["request_id"].is_string(),
        "403 names the request: {body}"
    );
}

#[tokio::test]
async fn finding_9_the_smaller_ones() {
    let _turn = serial().await;
    let s = stack(Options::default()).await;
    // A quoted LOAD_FILE is still LOAD_FILE.
    for sql in [
        "SELECT `LOAD_FILE`('/etc/passwd')",
        "SELECT `load_file` ('/etc/passwd')",
    ] {
        let (st, body) = s.query(&s.keys.admin, json!({ "sql": sql })).await;
        assert_eq!(st, 400, "{sql}: {body}");
        assert_eq!(code(&body), "statement_denied", "{sql}: {body}");
    }
    // Integers past i64 bind as unsigned; past u64 they are refused, not rounded.
    let (st, body) = s
        .query(
            &s.keys.read,
            json!({"sql": "SELECT CAST(? AS UNSIGNED)", "params": [u64::MAX]}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["rows"], json!([["18446744073709551615"]]), "{body}");
    let raw = r#"{"sql": "SELECT ?", "params": [18446744073709551616]}"#;
    let resp = s
        .http
        .post(format!("{}/query", s.gatekeeper_url))
        .header("X-API-Key", &s.keys.read)
        .header("Content-Type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("params[0]"),
        "{body}"
    );
    // A non-ASCII key is a wrong key, not a missing one.
    let resp = s
        .http
        .post(format!("{}/query", s.gatekeeper_url))
        .header(
            "X-API-Key",
            reqwest::header::HeaderValue::from_bytes(b"sk_\xc3\xa9_x").unwrap(),
        )
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "invalid API key", "{body}");
}

#[tokio::test]
async fn the_proxy_refuses_a_request_without_a_role() {
    let _turn = serial().await;
    let s = stack(Options::default()).await;
    for role in [None, Some("root"), Some("")] {
        let mut req = s
            .http
            .post(format!("{}/query", s.proxy_url))
            .header("X-Sqlgate-Token", &s.proxy_token)
            .json(&json!({"sql": "SELECT 1"}));
        if let Some(r) = role {
            req = req.header("X-Sqlgate-Role", r);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "role {role:?}");
    }
    // With a read role, the proxy applies the policy itself too.
    let resp = s
        .http
        .post(format!("{}/query", s.proxy_url))
        .header("X-Sqlgate-Token", &s.proxy_token)
        .header("X-Sqlgate-Role", "read")
        .json(&json!({"sql": "DELETE FROM app.probe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}
