//! End to end through the gatekeeper and the proxy, against a real replicated local cluster.

use serde_json::{json, Value};
use sqlgate_testkit::{Cluster, Options, Stack};
use std::collections::HashSet;
use std::time::Duration;

async fn stack() -> Stack {
    Stack::start(Cluster::shared(), Options::default())
        .await
        .expect("start the stack")
}

/// A table of its own for each test, created with the admin key.
async fn table(s: &Stack, name: &str, columns: &str) -> String {
    let t = format!("app.{name}");
    let (st, body) = s
        .query(
            &s.keys.admin,
            json!({"sql": format!("DROP TABLE IF EXISTS {t}")}),
        )
        .await;
    assert_eq!(st, 200, "drop {t}: {body}");
    let (st, body) = s
        .query(
            &s.keys.admin,
            json!({"sql": format!("CREATE TABLE {t} ({columns})")}),
        )
        .await;
    assert_eq!(st, 200, "create {t}: {body}");
    t
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn writes_go_to_the_manager_and_replicate_to_workers() {
    let s = stack().await;
    let t = table(
        &s,
        "e2e_write",
        "id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)",
    )
    .await;
    let (st, body) = s
        .query(
            &s.keys.write,
            json!({"sql": format!("INSERT INTO {t} (v) VALUES (?)"), "params": ["hello"]}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["kind"], "write");
    assert_eq!(body["node"], "manager");
    assert_eq!(body["role"], "manager");
    assert_eq!(body["rows_affected"], 1);
    assert_eq!(body["last_insert_id"], 1);
    let gtid = body["gtid"]
        .as_str()
        .expect("a write reports its GTID")
        .to_string();
    // Read-your-writes without waiting for replication: a worker serves it once it has applied
    // the write, else the manager does.
    let (st, body) = s
        .query(&s.keys.read, json!({"sql": format!("SELECT v FROM {t} WHERE id = ?"), "params": [1], "mode": "random", "after_gtid": gtid}))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body["rows"],
        json!([["hello"]]),
        "after_gtid sees the write: {body}"
    );
    let (st, body) = s
        .query(
            &s.keys.read,
            json!({"sql": "SELECT 1", "after_gtid": "0-1-2'; DROP TABLE x"}),
        )
        .await;
    assert_eq!((st, code(&body)), (400, "bad_request"), "{body}");
    Cluster::shared().wait_replicated().unwrap();
    let (st, body) = s
        .query(&s.keys.read, json!({"sql": format!("SELECT v FROM {t} WHERE id = ?"), "params": [1], "mode": "random"}))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["role"], "worker", "read back from a worker: {body}");
    assert_eq!(body["rows"], json!([["hello"]]));
    assert_eq!(body["columns"][0]["name"], "v");
}

#[tokio::test]
async fn reads_are_routed_by_mode() {
    // On loopback every worker is equally close: RTT differences are scheduling noise, which on
    // a loaded machine exceeds the default 100 µs tie tolerance for seconds at a time.
    let opts = Options {
        proxy_env: vec![("PROXY_PING_TOLERANCE_US".into(), "5000".into())],
        ..Options::default()
    };
    let s = Stack::start(Cluster::shared(), opts).await.unwrap();
    for mode in ["random", "ping", "least_busy"] {
        let mut nodes = HashSet::new();
        for _ in 0..40 {
            let (st, body) = s
                .query(
                    &s.keys.read,
                    json!({"sql": "SELECT COUNT(*) FROM sakila.actor", "mode": mode}),
                )
                .await;
            assert_eq!(st, 200, "{mode}: {body}");
            assert_eq!(
                body["role"], "worker",
                "{mode} reads only land on workers: {body}"
            );
            assert_eq!(body["rows"], json!([[200]]), "{mode}");
            assert!(body.get("fallback").is_none(), "{mode}: {body}");
            nodes.insert(body["node"].as_str().unwrap().to_string());
        }
        let want: HashSet<String> = ["worker-1", "worker-2"].map(String::from).into();
        assert_eq!(nodes, want, "{mode} uses both workers");
    }
    let (st, body) = s
        .query(&s.keys.read, json!({"sql": "SELECT 1", "mode": "direct"}))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        (body["node"].as_str(), body["kind"].as_str()),
        (Some("manager"), Some("read"))
    );
}

#[tokio::test]
async fn locking_and_session_reads_go_to_the_manager() {
    let s = stack().await;
    let cases = [
        (
            "SELECT actor_id FROM sakila.actor WHERE actor_id = 1 FOR UPDATE",
            "FOR UPDATE",
        ),
        (
            "SELECT actor_id FROM sakila.actor WHERE actor_id = 1 LOCK IN SHARE MODE",
            "LOCK IN SHARE MODE",
        ),
        ("SELECT LAST_INSERT_ID()", "LAST_INSERT_ID"),
    ];
    for (sql, what) in cases {
        let (st, body) = s
            .query(&s.keys.write, json!({"sql": sql, "mode": "random"}))
            .await;
        assert_eq!(st, 200, "{what}: {body}");
        assert_eq!(body["node"], "manager", "{what}: {body}");
        assert_eq!(body["kind"], "write", "{what}");
    }
}

#[tokio::test]
async fn params_are_bound_never_interpolated() {
    let s = stack().await;
    let t = table(&s, "e2e_params", "id INT PRIMARY KEY, v VARCHAR(100)").await;
    let evil = "x'); DROP TABLE app.e2e_params; --";
    let (st, body) = s
        .query(
            &s.keys.write,
            json!({"sql": format!("INSERT INTO {t} VALUES (?, ?)"), "params": [1, evil]}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = s
        .query(&s.keys.read, json!({"sql": format!("SELECT v FROM {t} WHERE id = ?"), "params": [1], "mode": "direct"}))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["rows"], json!([[evil]]), "stored literally");
    let (st, body) = s
        .query(&s.keys.read, json!({"sql": "SELECT ?", "params": [1, 2]}))
        .await;
    assert_eq!((st, code(&body)), (400, "invalid_params"), "{body}");
}

#[tokio::test]
async fn values_use_the_documented_json_types() {
    let s = stack().await;
    let t = table(
        &s,
        "e2e_types",
        "id INT PRIMARY KEY, big BIGINT UNSIGNED, neg BIGINT, price DECIMAL(10,2), d DATE, ts DATETIME(3), b VARBINARY(8), n INT NULL, f DOUBLE",
    )
    .await;
    let (st, body) = s
        .query(
            &s.keys.write,
            json!({"sql": format!("INSERT INTO {t} VALUES (1, 18446744073709551615, -5, 12.50, '2024-02-29', '2024-02-29 13:14:15.250', UNHEX('00FF10'), NULL, 1.5)")}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let want = json!([[
        1,
        "18446744073709551615",
        -5,
        "12.50",
        "2024-02-29",
        "2024-02-29T13:14:15.250",
        "AP8Q",
        null,
        1.5
    ]]);
    // Text protocol (no params) and binary protocol (with params) must agree.
    for (sql, params) in [
        (format!("SELECT * FROM {t}"), json!([])),
        (format!("SELECT * FROM {t} WHERE id = ?"), json!([1])),
    ] {
        let (st, body) = s
            .query(
                &s.keys.read,
                json!({"sql": sql, "params": params, "mode": "direct"}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(body["rows"], want, "{sql}");
    }
}

#[tokio::test]
async fn keys_are_required_and_checked() {
    let s = stack().await;
    let body = json!({"sql": "SELECT 1"});
    let (st, b) = s.post("/query", None, &body).await;
    assert_eq!((st, code(&b)), (401, "unauthorized"), "no key: {b}");
    let (st, b) = s
        .post("/query", Some("sk_nope_0123456789abcdef"), &body)
        .await;
    assert_eq!((st, code(&b)), (401, "unauthorized"), "wrong key: {b}");
    let mut tampered = s.keys.admin.clone();
    tampered.pop();
    tampered.push(if s.keys.admin.ends_with('0') {
        '1'
    } else {
        '0'
    });
    let (st, _) = s.post("/query", Some(&tampered), &body).await;
    assert_eq!(st, 401, "tampered key");
    // The proxy itself refuses requests without the internal token.
    let r = s
        .http
        .post(format!("{}/query", s.proxy_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "proxy without token");
}

#[tokio::test]
async fn roles_limit_what_a_key_may_run() {
    let s = stack().await;
    let t = table(&s, "e2e_roles", "id INT PRIMARY KEY").await;
    let cases = [
        (
            &s.keys.read,
            format!("INSERT INTO {t} VALUES (1)"),
            403,
            "read key writing",
        ),
        (
            &s.keys.read,
            "SELECT GET_LOCK('x', 0)".to_string(),
            403,
            "read key taking a lock",
        ),
        (
            &s.keys.write,
            format!("DROP TABLE {t}"),
            403,
            "write key DDL",
        ),
        (
            &s.keys.write,
            "CREATE TABLE app.nope (a INT)".to_string(),
            403,
            "write key CREATE",
        ),
        (
            &s.keys.write,
            format!("INSERT INTO {t} VALUES (2)"),
            200,
            "write key writing",
        ),
        (
            &s.keys.admin,
            format!("ALTER TABLE {t} ADD COLUMN b INT"),
            200,
            "admin DDL",
        ),
    ];
    for (key, sql, want, what) in cases {
        let (st, body) = s.query(key, json!({"sql": sql})).await;
        assert_eq!(st, want, "{what}: {body}");
        if want == 403 {
            assert_eq!(code(&body), "forbidden", "{what}");
        }
    }
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let s = stack().await;
    let k = Some(s.keys.admin.as_str());
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"sql": "SELECT 1; DROP TABLE sakila.actor"}),
            400,
            "invalid_sql",
            "multi-statement",
        ),
        (
            json!({"sql": "GRANT ALL ON *.* TO 'x'@'%'"}),
            400,
            "statement_denied",
            "grant",
        ),
        (
            json!({"sql": "SELECT * FROM sakila.actor INTO OUTFILE '/tmp/x'"}),
            400,
            "statement_denied",
            "outfile",
        ),
        (
            json!({"sql": "SET GLOBAL read_only = 1"}),
            400,
            "statement_denied",
            "set global",
        ),
        (json!({"sql": "USE mysql"}), 400, "statement_denied", "use"),
        (json!({"sql": "BEGIN"}), 400, "statement_denied", "begin"),
        (json!({"sql": ""}), 400, "invalid_sql", "empty"),
        (json!({"sql": 5}), 400, "bad_request", "sql not a string"),
        (
            json!({"sql": "SELECT 1", "mode": "fastest"}),
            400,
            "bad_request",
            "unknown mode",
        ),
        (
            json!({"sql": "SELECT 1", "bogus": 1}),
            400,
            "bad_request",
            "unknown field",
        ),
        (
            json!({"sql": "SELECT ?", "params": [[1]]}),
            400,
            "invalid_params",
            "array param",
        ),
        (
            json!({"sql": "SELECT 1", "request_id": "has space"}),
            400,
            "bad_request",
            "bad request id",
        ),
        (
            json!({"sql": "SELECT * FROM app.no_such_table"}),
            422,
            "sql_error",
            "missing table",
        ),
    ];
    for (body, want, want_code, what) in cases {
        let (st, b) = s.post("/query", k, &body).await;
        assert_eq!((st, code(&b)), (want, want_code), "{what}: {b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    let (_, b) = s
        .post(
            "/query",
            k,
            &json!({"sql": "SELECT * FROM app.no_such_table"}),
        )
        .await;
    assert_eq!(
        b["error"]["mysql_code"], 1146,
        "422 carries mysql_code: {b}"
    );
    assert_eq!(b["error"]["sqlstate"], "42S02");

    let big = "x".repeat(2 << 20);
    let (st, b) = s
        .post("/query", k, &json!({"sql": format!("SELECT '{big}'")}))
        .await;
    assert_eq!((st, code(&b)), (413, "payload_too_large"), "oversized body");

    let r = s
        .http
        .post(format!("{}/query", s.gatekeeper_url))
        .header("X-API-Key", &s.keys.admin)
        .header("Content-Type", "text/plain")
        .body("SELECT 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415, "non-JSON");
    let b: Value = r.json().await.unwrap();
    assert_eq!(code(&b), "unsupported_media_type");

    let r = s
        .http
        .get(format!("{}/query", s.gatekeeper_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405, "GET /query");
    let r = s
        .http
        .get(format!("{}/nope", s.gatekeeper_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test]
async fn garbage_never_gives_5xx_or_kills_a_service() {
    let s = stack().await;
    let mut garbage: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{\"sql\":null}".to_vec(),
        b"{\"sql\":\"\\u0000\"}".to_vec(),
        b"{\"sql\":\"SELECT 1\",\"params\":{\"a\":{}}}".to_vec(),
        b"{\"sql\":\"\xff\xfe\"}".to_vec(),
        vec![0xff; 300],
        "{\"sql\":\"SELECT '\u{1F600}' /*\"}".as_bytes().to_vec(),
        format!("{{\"sql\":\"{}\"}}", "(".repeat(5000)).into_bytes(),
        format!("{{\"sql\":\"SELECT {}\"}}", "-".repeat(3000)).into_bytes(),
    ];
    // A deterministic pseudo-random spray of bytes and JSON-ish fragments.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for len in [1usize, 7, 64, 500, 4000] {
        let mut v = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let alphabet = b"{}[]\":,sqlSELECT'\\ 0123\x00\xff";
            v.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        garbage.push(v);
    }
    for body in &garbage {
        for target in [&s.gatekeeper_url, &s.proxy_url] {
            let r = s
                .http
                .post(format!("{target}/query"))
                .header("X-API-Key", &s.keys.admin)
                .header("X-Sqlgate-Token", &s.proxy_token)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("service answers");
            let st = r.status().as_u16();
            assert!(
                (400..500).contains(&st),
                "{target}: garbage {:?} gave {st}",
                String::from_utf8_lossy(&body[..body.len().min(60)])
            );
            let b: Value = r.json().await.expect("JSON error body");
            assert!(b["error"]["code"].is_string(), "{b}");
        }
    }
    let (st, _) = s.query(&s.keys.read, json!({"sql": "SELECT 1"})).await;
    assert_eq!(st, 200, "still serving after the garbage");
}

#[tokio::test]
async fn transactions_commit_together_or_not_at_all() {
    let s = stack().await;
    let t = table(&s, "e2e_tx", "id INT PRIMARY KEY, v INT").await;
    let ok = json!({"statements": [
        {"sql": format!("INSERT INTO {t} VALUES (?, ?)"), "params": [1, 10]},
        {"sql": format!("UPDATE {t} SET v = v + 1 WHERE id = ?"), "params": [1]},
        {"sql": format!("SELECT v FROM {t} WHERE id = 1")}
    ]});
    let (st, body) = s.post("/transaction", Some(&s.keys.write), &ok).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["results"][2]["rows"], json!([[11]]));
    let bad = json!({"statements": [
        {"sql": format!("INSERT INTO {t} VALUES (2, 20)")},
        {"sql": format!("INSERT INTO {t} VALUES (1, 99)")}
    ]});
    let (st, body) = s.post("/transaction", Some(&s.keys.write), &bad).await;
    assert_eq!((st, code(&body)), (422, "sql_error"), "{body}");
    assert_eq!(body["error"]["statement_index"], 1);
    assert_eq!(body["error"]["mysql_code"], 1062);
    let (_, body) = s
        .query(
            &s.keys.read,
            json!({"sql": format!("SELECT COUNT(*) FROM {t}"), "mode": "direct"}),
        )
        .await;
    assert_eq!(
        body["rows"],
        json!([[1]]),
        "the failed transaction rolled back"
    );
    let denied = json!({"statements": [{"sql": format!("INSERT INTO {t} VALUES (3, 3)")}, {"sql": "COMMIT"}]});
    let (st, body) = s.post("/transaction", Some(&s.keys.write), &denied).await;
    assert_eq!(
        (st, body["error"]["statement_index"].as_u64()),
        (400, Some(1)),
        "{body}"
    );
    let (st, _) = s.post("/transaction", Some(&s.keys.read), &ok).await;
    assert_eq!(st, 403, "read key may not write in a transaction");
}

#[tokio::test]
async fn limits_give_documented_errors() {
    let opts = Options {
        proxy_env: vec![
            ("PROXY_MAX_ROWS".into(), "50".into()),
            ("PROXY_STATEMENT_TIMEOUT_MS".into(), "500".into()),
        ],
        ..Options::default()
    };
    let s = Stack::start(Cluster::shared(), opts).await.unwrap();
    let (st, body) = s
        .query(&s.keys.read, json!({"sql": "SELECT * FROM sakila.actor"}))
        .await;
    assert_eq!((st, code(&body)), (413, "result_too_large"), "{body}");
    let (st, body) = s
        .query(
            &s.keys.read,
            json!({"sql": "SELECT * FROM sakila.actor LIMIT 50"}),
        )
        .await;
    assert_eq!(st, 200, "exactly the limit is fine: {body}");
    let (st, body) = s
        .query(&s.keys.admin, json!({"sql": "SELECT SLEEP(3)"}))
        .await;
    assert_eq!(
        (st, code(&body)),
        (504, "timeout"),
        "statement timeout: {body}"
    );
    let (st, _) = s.query(&s.keys.read, json!({"sql": "SELECT 1"})).await;
    assert_eq!(st, 200, "the pool recovers after a timeout");
}

#[tokio::test]
async fn rate_limit_per_key() {
    let opts = Options {
        gatekeeper_env: vec![
            ("GATEKEEPER_RATE_LIMIT_RPS".into(), "1".into()),
            ("GATEKEEPER_RATE_LIMIT_BURST".into(), "3".into()),
        ],
        ..Options::default()
    };
    let s = Stack::start(Cluster::shared(), opts).await.unwrap();
    let mut statuses = vec![];
    for _ in 0..5 {
        statuses.push(s.query(&s.keys.read, json!({"sql": "SELECT 1"})).await.0);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let (st, _) = s.query(&s.keys.write, json!({"sql": "SELECT 1"})).await;
    assert_eq!(st, 200, "another key is not limited");
}

#[tokio::test]
async fn metrics_are_private_and_count_requests() {
    let s = stack().await;
    let (st, _) = s
        .query(&s.keys.read, json!({"sql": "SELECT 1", "mode": "random"}))
        .await;
    assert_eq!(st, 200);
    let r = s
        .http
        .get(format!("{}/metrics", s.gatekeeper_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        404,
        "no metrics on the public listener"
    );
    let text = s
        .http
        .get(format!("{}/metrics", s.admin_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "sqlgate_gatekeeper_requests_total{endpoint=\"query\",role=\"read\",status=\"200\"}"
        ),
        "{text}"
    );
    let text = s
        .http
        .get(format!("{}/metrics", s.proxy_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "sqlgate_proxy_requests_total{endpoint=\"query\",node=\"worker-",
        "sqlgate_proxy_request_duration_seconds_bucket",
        "sqlgate_proxy_pool_connections{node=\"manager\",account=\"read\",state=\"idle\"}",
        "sqlgate_proxy_node_eligible{node=\"worker-2\",role=\"worker\"} 1",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    for key in [&s.keys.read, &s.keys.write, &s.keys.admin] {
        let secret = key.rsplit('_').next().unwrap();
        assert!(!text.contains(secret), "no key in metrics");
    }
}

#[tokio::test]
async fn ready_reports_every_node() {
    let s = stack().await;
    let r = s.proxy_ready().await;
    assert_eq!(r["ready"], true, "{r}");
    let nodes = r["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        assert_eq!(n["eligible"], true, "{n}");
        assert_eq!(n["reachable"], true, "{n}");
        assert!(n["rtt_ms"].is_number(), "rtt measured: {n}");
        if n["role"] == "worker" {
            assert_eq!(n["replication_io_running"], true, "{n}");
            assert_eq!(n["lag_seconds"], 0, "{n}");
        }
    }
    let r = s
        .http
        .get(format!("{}/ready", s.gatekeeper_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b,
        json!({"ready": true}),
        "the public /ready reveals no topology"
    );
}

#[tokio::test]
async fn proxy_down_or_slow_gives_503_or_504_quickly() {
    let cluster = Cluster::shared();
    // Nothing listens on this port: connection refused.
    let dead = format!("http://127.0.0.1:{}", sqlgate_testkit::free_port());
    let s = Stack::start(
        cluster,
        Options {
            proxy_url_override: Some(dead),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let (st, body) = s.query(&s.keys.read, json!({"sql": "SELECT 1"})).await;
    assert_eq!((st, code(&body)), (503, "unavailable"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "503 quickly");
    let r = s
        .http
        .get(format!("{}/ready", s.gatekeeper_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503, "not ready without a proxy");

    // A listener that accepts and never answers: the gatekeeper times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let s = Stack::start(
        cluster,
        Options {
            proxy_url_override: Some(url),
            gatekeeper_env: vec![("GATEKEEPER_TIMEOUT_MS".into(), "500".into())],
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let (st, body) = s.query(&s.keys.read, json!({"sql": "SELECT 1"})).await;
    assert_eq!((st, code(&body)), (504, "timeout"), "{body}");
    drop(silent);
}

#[tokio::test]
async fn tcp_rtt_probe_fallback_feeds_ping_mode() {
    let opts = Options {
        proxy_env: vec![("PROXY_RTT_PROBE".into(), "tcp".into())],
        ..Options::default()
    };
    let s = Stack::start(Cluster::shared(), opts).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let ready = loop {
        let r = s.proxy_ready().await;
        if r["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["rtt_ms"].is_number())
        {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "no RTT measured: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        ready["rtt_source"]
            .as_str()
            .unwrap()
            .starts_with("tcp_connect"),
        "{ready}"
    );
    for n in ready["nodes"].as_array().unwrap() {
        assert_eq!(n["rtt_method"], "tcp", "{n}");
    }
    let (st, body) = s
        .query(&s.keys.read, json!({"sql": "SELECT 1", "mode": "ping"}))
        .await;
    assert_eq!((st, body["role"].as_str()), (200, Some("worker")), "{body}");
}

#[tokio::test]
async fn size_limits_at_both_hops() {
    let opts = Options {
        gatekeeper_env: vec![
            ("GATEKEEPER_MAX_SQL_BYTES".into(), "200".into()),
            ("GATEKEEPER_MAX_PARAMS".into(), "3".into()),
        ],
        proxy_env: vec![("PROXY_MAX_RESULT_BYTES".into(), "500".into())],
        ..Options::default()
    };
    let s = Stack::start(Cluster::shared(), opts).await.unwrap();
    let long = format!("SELECT '{}'", "y".repeat(300));
    let (st, body) = s.query(&s.keys.read, json!({"sql": long})).await;
    assert_eq!(
        (st, code(&body)),
        (400, "invalid_sql"),
        "SQL too long: {body}"
    );
    let (st, body) = s
        .query(
            &s.keys.read,
            json!({"sql": "SELECT ?, ?, ?, ?", "params": [1, 2, 3, 4]}),
        )
        .await;
    assert_eq!(
        (st, code(&body)),
        (400, "invalid_params"),
        "too many params: {body}"
    );
    let (st, body) = s
        .query(
            &s.keys.read,
            json!({"sql": "SELECT first_name FROM sakila.actor"}),
        )
        .await;
    assert_eq!(
        (st, code(&body)),
        (413, "result_too_large"),
        "result bytes: {body}"
    );
    let (st, _) = s
        .query(
            &s.keys.read,
            json!({"sql": "SELECT first_name FROM sakila.actor LIMIT 5"}),
        )
        .await;
    assert_eq!(st, 200, "a small result still fits");
}

const PROXY_OK: &str = r#"{"request_id":"r","kind":"read","mode":"random","node":"worker-1","role":"worker","columns":[],"rows":[],"rows_affected":0,"last_insert_id":null,"duration_ms":0.1}"#;

/// A fake proxy that records the raw request and answers one canned response (`head` is the
/// status line and headers, without the content length).
fn capture_one(
    listener: std::net::TcpListener,
    head: &'static str,
    body: &'static str,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = sock.read(&mut chunk).unwrap_or(0);
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some(head_end) = text.find("\r\n\r\n") {
                let len = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= head_end + 4 + len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let resp = format!(
            "{head}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(resp.as_bytes()).unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// A stack whose gatekeeper forwards to a fake proxy that answers once.
async fn with_fake_proxy(
    head: &'static str,
    body: &'static str,
) -> (Stack, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = capture_one(listener, head, body);
    let s = Stack::start(
        Cluster::shared(),
        Options {
            proxy_url_override: Some(url),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    (s, seen)
}

#[tokio::test]
async fn forwards_token_and_request_id_never_the_api_key() {
    let (s, seen) = with_fake_proxy("HTTP/1.1 200 OK\r\nx-sqlgate-node: worker-1", PROXY_OK).await;
    let (st, body) = s
        .query(
            &s.keys.read,
            json!({"sql": "SELECT ?", "params": [1], "request_id": "fwd-1"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let raw = seen.join().unwrap();
    let lower = raw.to_ascii_lowercase();
    assert!(raw.starts_with("POST /query "), "{raw}");
    assert!(
        lower.contains(&format!(
            "x-sqlgate-token: {}",
            s.proxy_token.to_ascii_lowercase()
        )),
        "token sent: {raw}"
    );
    assert!(
        lower.contains("x-request-id: fwd-1"),
        "request id sent: {raw}"
    );
    assert!(lower.contains("x-sqlgate-role: read"), "role sent: {raw}");
    assert!(!lower.contains("x-api-key"), "no API key header: {raw}");
    let secret = s.keys.read.rsplit('_').next().unwrap();
    assert!(
        !raw.contains(secret),
        "the key's secret never reaches the proxy: {raw}"
    );
    let json_start = raw.find("\r\n\r\n").unwrap() + 4;
    let forwarded: Value = serde_json::from_str(&raw[json_start..]).unwrap();
    assert_eq!(
        forwarded,
        json!({"sql": "SELECT ?", "params": [1], "request_id": "fwd-1"})
    );
}

/// The proxy receives the very bytes the gatekeeper checked (it parses them with the same
/// function and checks them again), and a request id in a header when the body has none.
#[tokio::test]
async fn forwards_the_checked_bytes_as_they_are() {
    let (s, seen) = with_fake_proxy("HTTP/1.1 200 OK\r\nx-sqlgate-node: worker-1", PROXY_OK).await;
    let sent = "{ \"params\" : [ 1 ,\"\\u0041\"],\n \"sql\":\"SELECT ?, ?\" }";
    let resp = s
        .http
        .post(format!("{}/query", s.gatekeeper_url))
        .header("X-API-Key", &s.keys.read)
        .header("Content-Type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let raw = seen.join().unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, sent, "forwarded byte for byte");
    let id = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-request-id: ")
                .map(str::to_string)
        })
        .expect("a request id header");
    assert_eq!(id.len(), 16, "a fresh id: {id}");
}

/// The proxy's 503 reaches the client with its body, status and `Retry-After`.
#[tokio::test]
async fn relays_the_proxys_errors_with_retry_after() {
    let (s, _seen) = with_fake_proxy(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 7",
        r#"{"error":{"code":"unavailable","message":"database unavailable"},"request_id":"u-1"}"#,
    )
    .await;
    let resp = s
        .http
        .post(format!("{}/query", s.gatekeeper_url))
        .header("X-API-Key", &s.keys.read)
        .json(&json!({"sql": "SELECT 1", "request_id": "u-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "7");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
}

#[tokio::test]
async fn connections_are_recycled_after_their_byte_budget() {
    for (budget, recycled) in [("1", true), ("1048576", false)] {
        let opts = Options {
            proxy_env: vec![("PROXY_CONN_RECYCLE_BYTES".into(), budget.into())],
            ..Options::default()
        };
        let s = Stack::start(Cluster::shared(), opts).await.unwrap();
        for _ in 0..20 {
            let (st, body) = s
                .query(&s.keys.read, json!({"sql": "SELECT 1", "mode": "direct"}))
                .await;
            assert_eq!(st, 200, "{body}");
        }
        let text = s
            .http
            .get(format!("{}/metrics", s.proxy_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let opened: u64 = text
            .lines()
            .find(|l| l.starts_with("sqlgate_proxy_connections_opened_total{node=\"manager\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no connections_opened for the manager in\n{text}"));
        if recycled {
            assert!(
                opened >= 20,
                "budget {budget}: every statement retires its connection ({opened} opened)"
            );
        } else {
            assert!(
                opened <= 3,
                "budget {budget}: connections are reused ({opened} opened)"
            );
        }
    }
}

/// `format: "objects"` keys each row by column name (a repeated name gets `:2`), and
/// `include_metadata: false` drops `columns`; both for `/query` and `/transaction`, refused with
/// a clear 400 when malformed. Without them, the answer is as before.
#[tokio::test]
async fn rows_come_as_objects_when_asked() {
    let s = stack().await;
    let t = table(&s, "e2e_objects", "id INT PRIMARY KEY, name VARCHAR(20)").await;
    let (st, body) = s
        .query(
            &s.keys.write,
            json!({"sql": format!("INSERT INTO {t} VALUES (1, 'ada'), (2, 'bob')")}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let sql = format!("SELECT a.id, a.name, b.id FROM {t} a JOIN {t} b ON b.id = a.id + 1");
    let (st, body) = s
        .query(
            &s.keys.read,
            json!({"sql": sql, "mode": "direct", "format": "objects"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["rows"], json!([{"id": 1, "name": "ada", "id:2": 2}]));
    assert_eq!(body["columns"][0]["name"], "id", "metadata by default");
    let (st, body) = s
        .query(
            &s.keys.read,
            json!({"sql": sql, "mode": "direct", "format": "objects", "include_metadata": false}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert!(body.get("columns").is_none(), "{body}");
    assert_eq!(body["rows"][0]["name"], "ada");
    let (st, body) = s
        .query(&s.keys.read, json!({"sql": sql, "mode": "direct"}))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body["rows"],
        json!([[1, "ada", 2]]),
        "arrays stay the default"
    );

    let (st, body) = s
        .post(
            "/transaction",
            Some(&s.keys.write),
            &json!({"format": "objects", "include_metadata": false, "statements": [
                {"sql": format!("UPDATE {t} SET name = 'cy' WHERE id = 2")},
                {"sql": format!("SELECT name FROM {t} WHERE id = ?"), "params": [2]}]}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["results"][0]["rows_affected"], 1);
    assert_eq!(body["results"][1]["rows"], json!([{"name": "cy"}]));
    assert!(body["results"][1].get("columns").is_none(), "{body}");

    for bad in [
        json!({"sql": "SELECT 1", "format": "table"}),
        json!({"sql": "SELECT 1", "format": 1}),
        json!({"sql": "SELECT 1", "include_metadata": "no"}),
    ] {
        let (st, body) = s.query(&s.keys.read, bad.clone()).await;
        assert_eq!(st, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}: {body}");
    }
}
