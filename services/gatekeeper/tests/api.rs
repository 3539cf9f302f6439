//! The application developer's API, end to end through the gatekeeper over TLS against the real
//! replicated cluster: `database`, named parameters, typed values, `/batch`, and read-only and
//! isolated transactions. Each test checks what the servers hold (as root, on a fresh
//! connection), not only what the API answered, and sends bad input for every new field.

use serde_json::{json, Value};
use sqlgate_testkit::{send_json, Cluster, Options, Stack};
use std::time::{Duration, Instant};

async fn stack(opts: Options) -> Stack {
    Stack::start(Cluster::shared(), opts)
        .await
        .expect("start the stack")
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

/// A table of the test's own in `app`, created with the admin key.
async fn table(s: &Stack, name: &str, columns: &str) -> String {
    for sql in [
        format!("DROP TABLE IF EXISTS app.{name}"),
        format!("CREATE TABLE app.{name} ({columns})"),
    ] {
        let (st, body) = s.query(&s.keys.admin, json!({ "sql": sql })).await;
        assert_eq!(st, 200, "{sql}: {body}");
    }
    format!("app.{name}")
}

/// What root sees on `node` (a fresh session, batch output, no column names).
fn root(node: &str, sql: &str) -> String {
    Cluster::shared()
        .root_sql(node, sql)
        .unwrap_or_else(|e| panic!("{sql} on {node}: {e}"))
        .trim_end()
        .to_string()
}

/// POSTs `raw` bytes as they are (for bodies `serde_json::Value` cannot hold: repeated keys).
async fn post_raw(s: &Stack, path: &str, key: &str, raw: &str) -> (u16, Value) {
    let req = s
        .http
        .post(format!("{}{path}", s.gatekeeper_url))
        .header("X-API-Key", key)
        .header("Content-Type", "application/json")
        .body(raw.to_string());
    send_json(req).await.expect("gatekeeper answers")
}

#[tokio::test]
async fn database_is_the_default_schema_for_one_request_only() {
    // One pooled connection per (node, account): the request after one that chose a schema gets
    // that same session, so what it sees is what the reset left.
    let s = stack(Options {
        proxy_env: vec![("PROXY_POOL_SIZE".into(), "1".into())],
        ..Options::default()
    })
    .await;
    let t = table(&s, "api_db", "id INT PRIMARY KEY, v VARCHAR(20)").await;
    let (st, body) = s
        .query(
            &s.keys.write,
            json!({"sql": "INSERT INTO api_db VALUES (1, 'in app')", "database": "app"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(root("manager", &format!("SELECT v FROM {t}")), "in app");

    // On the manager, the same session is seen again (its id), and it has no schema.
    let session = |body: &Value| body["rows"][0][0].clone();
    let (st, body) = s
        .query(
            &s.keys.write,
            json!({"sql": "SELECT CONNECTION_ID(), DATABASE(), v FROM api_db", "database": "app"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["rows"][0][1], "app", "{body}");
    assert_eq!(body["rows"][0][2], "in app", "{body}");
    let id = session(&body);
    let (st, next) = s
        .query(
            &s.keys.write,
            json!({"sql": "SELECT CONNECTION_ID(), DATABASE()"}),
        )
        .await;
    assert_eq!(st, 200, "{next}");
    assert_eq!(session(&next), id, "the one pooled session again: {next}");
    assert_eq!(
        next["rows"][0][1],
        Value::Null,
        "a later request saw the schema another chose: {next}"
    );
    // On the workers (one session each per account).
    for _ in 0..4 {
        let (st, body) = s
            .query(&s.keys.read, json!({"sql": "SELECT DATABASE(), v FROM api_db", "database": "app", "mode": "random", "after_gtid": manager_position()}))
            .await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(body["rows"], json!([["app", "in app"]]), "{body}");
        assert_eq!(body["role"], "worker", "{body}");
        let (st, next) = s
            .query(
                &s.keys.read,
                json!({"sql": "SELECT DATABASE()", "mode": "random"}),
            )
            .await;
        assert_eq!((st, &next["rows"]), (200, &json!([[null]])), "{next}");
        let (st, body) = s
            .query(
                &s.keys.read,
                json!({"sql": "SELECT v FROM api_db", "mode": "random"}),
            )
            .await;
        assert_eq!(
            (st, code(&body)),
            (422, "sql_error"),
            "no default schema: {body}"
        );
    }

    let before = table_state(&t);
    for (database, status, want) in [
        (json!("app`; DROP TABLE app.api_db; --"), 400, "bad_request"),
        (json!(""), 400, "bad_request"),
        (json!("x".repeat(65)), 400, "bad_request"),
        (json!(7), 400, "bad_request"),
        (json!(["app"]), 400, "bad_request"),
        (json!("mysql"), 403, "forbidden"),
        (json!("INFORMATION_SCHEMA"), 403, "forbidden"),
        (json!("sbtest_not_granted"), 403, "forbidden"),
    ] {
        let (st, body) = s
            .query(
                &s.keys.admin,
                json!({"sql": "DELETE FROM api_db", "database": database}),
            )
            .await;
        assert_eq!((st, code(&body)), (status, want), "{database}: {body}");
    }
    // A read key's statement is still a read key's, whatever the schema.
    let (st, body) = s
        .query(
            &s.keys.read,
            json!({"sql": "DELETE FROM api_db", "database": "app"}),
        )
        .await;
    assert_eq!((st, code(&body)), (403, "forbidden"), "{body}");
    assert_eq!(
        table_state(&t),
        before,
        "a refused request changed the manager"
    );
    // The transaction takes it too.
    let (st, body) = s
        .post(
            "/transaction",
            Some(&s.keys.write),
            &json!({"database": "app", "statements": [
                {"sql": "UPDATE api_db SET v = 'tx' WHERE id = 1"},
                {"sql": "SELECT DATABASE(), v FROM api_db"}]}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["results"][1]["rows"], json!([["app", "tx"]]), "{body}");
    assert_eq!(root("manager", &format!("SELECT v FROM {t}")), "tx");
}

/// Checks that `gtid` (MariaDB's domain-server-sequence) is in the manager's binary log, as the
/// manager's own transaction: same domain and server, a sequence number it has reached, and the
/// binary log's position for it exists.
fn assert_committed(gtid: &str) {
    let pos = manager_position();
    let parts = |g: &str| -> (String, u64) {
        let (prefix, seq) = g.rsplit_once('-').expect("domain-server-seq");
        (prefix.to_string(), seq.parse().expect("a sequence number"))
    };
    let (prefix, seq) = parts(gtid);
    let reached = pos
        .split(',')
        .map(parts)
        .any(|(p, s)| p == prefix && s >= seq);
    assert!(reached, "{gtid} is not in the manager's position {pos}");
}

/// What a fresh session sees of table `t` on the manager: its rows and their checksum. (The
/// whole server's GTID position moves with the other tests of this file, which run alongside.)
fn table_state(t: &str) -> String {
    root(
        "manager",
        &format!("SELECT COUNT(*) FROM {t}; CHECKSUM TABLE {t} EXTENDED"),
    )
}

/// The manager's GTID position, as a read's `after_gtid`.
fn manager_position() -> String {
    root("manager", "SELECT @@gtid_binlog_pos")
}

#[tokio::test]
async fn named_params_bind_by_name_and_never_inside_literals_or_comments() {
    let s = stack(Options::default()).await;
    let t = table(&s, "api_named", "id INT PRIMARY KEY, v VARCHAR(64)").await;
    let evil = "x'); DROP TABLE app.api_named; -- :id";
    let (st, body) = s
        .query(
            &s.keys.write,
            json!({"sql": format!("INSERT INTO {t} (id, v) VALUES (:id, :v)"), "params": {"v": evil, "id": 7}}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        root("manager", &format!("SELECT id, v FROM {t}")),
        format!("7\t{evil}"),
        "bound, in the statement's order, stored literally"
    );
    let ok = [
        (
            "SELECT ':id' AS lit, :id AS bound, `:id` FROM (SELECT 1 AS `:id`) x",
            json!({"id": 5}),
            json!([[":id", 5, 1]]),
        ),
        ("SELECT :a /* :b */ -- :c\n", json!({"a": 1}), json!([[1]])),
        ("SELECT :a + :a # :a", json!({"a": 2}), json!([[4]])),
        (
            "SELECT \":x\", :_y2",
            json!({"_y2": "y"}),
            json!([[":x", "y"]]),
        ),
    ];
    for (sql, params, rows) in ok {
        let (st, body) = s
            .query(&s.keys.read, json!({"sql": sql, "params": params}))
            .await;
        assert_eq!(st, 200, "{sql}: {body}");
        assert_eq!(body["rows"], rows, "{sql}: {body}");
    }
    let refused = [
        ("SELECT :a /* :b */", json!({"a": 1, "b": 2}), "`b`"),
        ("SELECT :a, :b", json!({"a": 1}), ":b"),
        ("SELECT ?, :a", json!({"a": 1}), "mixes"),
        ("SELECT :a", json!([1]), "send params as an object"),
        ("SELECT :a", json!({"a": [1]}), "params.a"),
        ("SELECT ':a'", json!({"a": 1}), "`a`"),
    ];
    for (sql, params, says) in refused {
        let (st, body) = s
            .query(&s.keys.read, json!({"sql": sql, "params": params}))
            .await;
        assert_eq!((st, code(&body)), (400, "invalid_params"), "{sql}: {body}");
        assert!(message(&body).contains(says), "{sql}: {body}");
    }
    // One name used more often than params may be given: refused before anything is bound.
    let many = format!("SELECT 1{}", ",:a".repeat(1001));
    let (st, body) = s
        .query(
            &s.keys.read,
            json!({"sql": many, "params": {"a": "x".repeat(50_000)}}),
        )
        .await;
    assert_eq!((st, code(&body)), (400, "invalid_params"), "{body}");
    let (st, body) = post_raw(
        &s,
        "/query",
        &s.keys.read,
        r#"{"sql": "SELECT :a", "params": {"a": 1, "a": 2}}"#,
    )
    .await;
    assert_eq!(
        (st, code(&body)),
        (400, "bad_request"),
        "repeated name: {body}"
    );
    let (st, body) = s
        .query(&s.keys.read, json!({"sql": "SELECT :a", "params": "a=1"}))
        .await;
    assert_eq!((st, code(&body)), (400, "bad_request"), "{body}");
    // The policy sees the rewritten text: a read key's write is refused whatever the names.
    let (st, body) = s
        .query(
            &s.keys.read,
            json!({"sql": format!("DELETE FROM {t} WHERE id = :id"), "params": {"id": 7}}),
        )
        .await;
    assert_eq!((st, code(&body)), (403, "forbidden"), "{body}");
    assert_eq!(root("manager", &format!("SELECT COUNT(*) FROM {t}")), "1");
}

#[tokio::test]
async fn typed_values_bind_what_json_cannot_say() {
    let s = stack(Options::default()).await;
    let t = table(
        &s,
        "api_typed",
        "id INT PRIMARY KEY, d DECIMAL(30,10), b VARBINARY(16), dt DATETIME(6), dd DATE, \
         tm TIME(6), big BIGINT UNSIGNED, j TEXT",
    )
    .await;
    let typed = |ty: &str, v: Value| json!({"type": ty, "value": v});
    let (st, body) = s
        .query(
            &s.keys.write,
            json!({"sql": format!("INSERT INTO {t} VALUES (:id, :d, :b, :dt, :dd, :tm, :big, :j)"),
            "params": {
                "id": 1,
                "d": typed("decimal", json!("12345678901234567890.1234567890")),
                "b": typed("binary", json!("AP8QAA==")),
                "dt": typed("datetime", json!("2024-02-29T23:59:58.000001")),
                "dd": typed("date", json!("2024-02-29")),
                "tm": typed("time", json!("-49:02:03.5")),
                "big": typed("integer", json!("18446744073709551615")),
                "j": typed("json", json!({"k": [1, "two"]})),
            }}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        root(
            "manager",
            &format!("SELECT d, HEX(b), dt, dd, tm, big, j FROM {t} WHERE id = 1")
        ),
        "12345678901234567890.1234567890\t00FF1000\t2024-02-29 23:59:58.000001\t2024-02-29\t\
         -49:02:03.500000\t18446744073709551615\t{\"k\":[1,\"two\"]}",
        "every value exactly as sent (a double would have rounded the decimal)"
    );
    let (st, body) = s
        .query(
            &s.keys.read,
            json!({"sql": format!("SELECT d, b FROM {t} WHERE b = ?"), "mode": "direct",
                   "params": [typed("binary", json!("AP8QAA=="))]}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body["rows"],
        json!([["12345678901234567890.1234567890", "AP8QAA=="]])
    );
    let (st, body) = s
        .query(
            &s.keys.read,
            json!({"sql": "SELECT ? IS NULL", "params": [typed("date", Value::Null)]}),
        )
        .await;
    assert_eq!((st, body["rows"].clone()), (200, json!([[1]])), "{body}");

    let before = table_state(&t);
    for (value, says) in [
        (typed("decimal", json!("1e5")), "decimal"),
        (typed("decimal", json!(1.5)), "string"),
        (typed("binary", json!("not base64!")), "base64"),
        (typed("datetime", json!("2023-02-29T00:00:00")), "datetime"),
        (typed("date", json!("2024-02-29T00:00:00")), "date"),
        (typed("time", json!("839:00:00")), "time"),
        (typed("integer", json!("18446744073709551616")), "integer"),
        (typed("money", json!("1")), "unknown type"),
        (json!({"type": "decimal"}), "typed value"),
        (
            json!({"type": "decimal", "value": "1", "extra": 1}),
            "typed value",
        ),
    ] {
        let (st, body) = s
            .query(
                &s.keys.write,
                json!({"sql": format!("UPDATE {t} SET d = :d WHERE id = 1"), "params": {"d": value}}),
            )
            .await;
        assert_eq!(
            (st, code(&body)),
            (400, "invalid_params"),
            "{value}: {body}"
        );
        assert!(
            message(&body).contains("params.d") && message(&body).contains(says),
            "{value}: {body}"
        );
    }
    let (st, body) = post_raw(
        &s,
        "/query",
        &s.keys.write,
        r#"{"sql": "SELECT ?", "params": [18446744073709551616]}"#,
    )
    .await;
    assert_eq!((st, code(&body)), (400, "bad_request"), "{body}");
    assert!(message(&body).contains("integer"), "{body}");
    assert_eq!(table_state(&t), before);
}

#[tokio::test]
async fn a_batch_applies_every_set_or_none() {
    let s = stack(Options::default()).await;
    let c = Cluster::shared();
    let t = table(
        &s,
        "api_batch",
        "id INT AUTO_INCREMENT PRIMARY KEY, k INT UNIQUE, v VARCHAR(20)",
    )
    .await;
    let (st, body) = s
        .post(
            "/batch",
            Some(&s.keys.write),
            &json!({"sql": format!("INSERT INTO {t} (k, v) VALUES (?, ?)"),
                    "param_sets": [[1, "a"], [2, "b"], [3, {"type": "decimal", "value": "3.5"}]]}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["node"], "manager");
    let ids: Vec<Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["rows_affected"], 1, "{body}");
            r["last_insert_id"].clone()
        })
        .collect();
    assert_eq!(ids, [json!(1), json!(2), json!(3)], "{body}");
    let gtid = body["gtid"].as_str().expect("a batch reports its GTID");
    assert_committed(gtid);
    // Named sets, and the commit replicated as one.
    let (st, body) = s
        .post(
            "/batch",
            Some(&s.keys.write),
            &json!({"sql": "UPDATE api_batch SET v = :v WHERE k = :k", "database": "app",
                    "param_sets": [{"k": 1, "v": "A"}, {"v": "B", "k": 2}, {"k": 99, "v": "none"}]}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let affected: Vec<&Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["rows_affected"])
        .collect();
    assert_eq!(affected, [&json!(1), &json!(1), &json!(0)], "{body}");
    c.wait_replicated().unwrap();
    let want = "1\tA\n2\tB\n3\t3.5";
    for node in ["manager", "worker-1", "worker-2"] {
        assert_eq!(
            root(node, &format!("SELECT k, v FROM {t} ORDER BY k")),
            want,
            "{node}"
        );
    }

    // A set that fails rolls back the sets before it: nothing of the batch is written.
    let before = table_state(&t);
    let (st, body) = s
        .post(
            "/batch",
            Some(&s.keys.write),
            &json!({"sql": format!("INSERT INTO {t} (k, v) VALUES (?, ?)"),
                    "param_sets": [[10, "new"], [11, "new"], [1, "duplicate"]]}),
        )
        .await;
    assert_eq!((st, code(&body)), (422, "sql_error"), "{body}");
    assert_eq!(body["error"]["statement_index"], 2, "{body}");
    assert_eq!(table_state(&t), before, "a failed batch changed the table");

    let max_sets = sqlgate::config::DEFAULT_MAX_BATCH_SETS;
    let too_many: Vec<Value> = (0..=max_sets).map(|i| json!([i, "x"])).collect();
    let insert = format!("INSERT INTO {t} (k, v) VALUES (?, ?)");
    let huge = "x".repeat(1 << 20);
    let cases = [
        (
            s.keys.write.as_str(),
            json!({"sql": insert, "param_sets": too_many}),
            400,
            "bad_request",
        ),
        (
            s.keys.write.as_str(),
            json!({"sql": insert, "param_sets": []}),
            400,
            "bad_request",
        ),
        (
            s.keys.write.as_str(),
            json!({"sql": insert}),
            400,
            "bad_request",
        ),
        (
            s.keys.write.as_str(),
            json!({"sql": insert, "param_sets": [[1, "a"], [2]]}),
            400,
            "invalid_params",
        ),
        (
            s.keys.write.as_str(),
            json!({"sql": insert, "param_sets": [1, 2]}),
            400,
            "bad_request",
        ),
        (
            s.keys.write.as_str(),
            json!({"sql": insert, "param_sets": [[1, huge]]}),
            413,
            "payload_too_large",
        ),
        (
            s.keys.write.as_str(),
            json!({"sql": format!("SELECT * FROM {t} WHERE k = ?"), "param_sets": [[1]]}),
            400,
            "bad_request",
        ),
        (
            s.keys.admin.as_str(),
            json!({"sql": format!("DROP TABLE {t}"), "param_sets": [[]]}),
            400,
            "bad_request",
        ),
        (
            s.keys.read.as_str(),
            json!({"sql": insert, "param_sets": [[20, "r"]]}),
            403,
            "forbidden",
        ),
        (
            s.keys.write.as_str(),
            json!({"sql": insert, "param_sets": [[21, "x"]], "extra": 1}),
            400,
            "bad_request",
        ),
    ];
    for (key, req, status, want) in cases {
        let (st, body) = s.post("/batch", Some(key), &req).await;
        assert_eq!(
            (st, code(&body)),
            (status, want),
            "{}: {body}",
            &req.to_string()[..80.min(req.to_string().len())]
        );
    }
    let (st, body) = s
        .post(
            "/batch",
            Some(&s.keys.write),
            &json!({"sql": insert, "param_sets": [[30, "a"], [31, "b", "c"]]}),
        )
        .await;
    assert_eq!(body["error"]["statement_index"], 1, "{st} {body}");
    assert_eq!(table_state(&t), before, "a refused batch wrote");
}

#[tokio::test]
async fn read_only_transactions_run_on_workers_and_stay_read_only() {
    let s = stack(Options::default()).await;
    let t = table(&s, "api_ro", "id INT PRIMARY KEY, v INT").await;
    let (st, body) = s
        .post(
            "/transaction",
            Some(&s.keys.write),
            &json!({"statements": [{"sql": format!("INSERT INTO {t} VALUES (1, 10), (2, 20)")}]}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let gtid = body["gtid"]
        .as_str()
        .expect("a transaction reports its GTID");
    assert_committed(gtid);

    // Read-your-writes into a read-only transaction on a worker.
    let (st, body) = s
        .post(
            "/transaction",
            Some(&s.keys.read),
            &json!({"read_only": true, "mode": "random", "after_gtid": gtid, "format": "objects",
                    "statements": [{"sql": format!("SELECT SUM(v) AS total FROM {t}")},
                                   {"sql": format!("SELECT v FROM {t} WHERE id = :id"), "params": {"id": 2}}]}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["role"], "worker", "{body}");
    assert_eq!(
        body["results"][0]["rows"],
        json!([{"total": "30"}]),
        "{body}"
    );
    assert_eq!(body["results"][1]["rows"], json!([{"v": 20}]), "{body}");
    assert!(
        body.get("gtid").is_none(),
        "a read-only one wrote nothing: {body}"
    );

    // What the servers ran: the transaction's level and read-only flag, as InnoDB reports them
    // while it runs (its last statement, a sum over MariaDB's sequence engine, lasts long enough for root to look).
    for (read_only, isolation, level) in [
        (true, "read_committed", "READ COMMITTED"),
        (false, "serializable", "SERIALIZABLE"),
    ] {
        let marker = format!("api_ro_{}", isolation);
        let key = if read_only {
            &s.keys.read
        } else {
            &s.keys.write
        };
        let body = json!({"read_only": read_only, "isolation": isolation, "mode": if read_only { Some("random") } else { None },
                          "statements": [{"sql": format!("SELECT COUNT(*) FROM {t}")},
                                         {"sql": format!("SELECT SUM(seq % 7) AS {marker} FROM app.seq_1_to_40000000")}]});
        let body = if read_only {
            body
        } else {
            let mut b = body;
            b.as_object_mut().unwrap().remove("mode");
            b
        };
        let request = s.post("/transaction", Some(key), &body);
        let watch = async {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(4) {
                for node in ["manager", "worker-1", "worker-2"] {
                    let seen = root(
                        node,
                        &format!(
                            "SELECT t.trx_isolation_level, t.trx_is_read_only \
                             FROM information_schema.innodb_trx t \
                             WHERE t.trx_query LIKE '%{marker}%' AND t.trx_query NOT LIKE '%innodb_trx%'"
                        ),
                    );
                    if !seen.is_empty() {
                        return Some((node, seen));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        };
        let ((st, answer), seen) = tokio::join!(request, watch);
        assert_eq!(st, 200, "{answer}");
        let (node, seen) = seen.expect("the transaction was seen running");
        assert_eq!(
            seen,
            format!("{level}\t{}", u8::from(read_only)),
            "{isolation} on {node}"
        );
        assert_eq!(
            node == "manager",
            !read_only,
            "a read-only transaction runs on a worker ({node})"
        );
    }

    let before = table_state(&t);
    let refused = [
        (
            &s.keys.write,
            json!({"read_only": true, "statements": [{"sql": format!("UPDATE {t} SET v = 0")}]}),
            400,
            "bad_request",
        ),
        (
            &s.keys.write,
            json!({"read_only": true, "statements": [{"sql": format!("SELECT * FROM {t} FOR UPDATE")}]}),
            400,
            "bad_request",
        ),
        (
            &s.keys.read,
            json!({"statements": [{"sql": format!("SELECT * FROM {t}")}], "mode": "random"}),
            400,
            "bad_request",
        ),
        (
            &s.keys.read,
            json!({"statements": [{"sql": format!("SELECT * FROM {t}")}], "after_gtid": gtid}),
            400,
            "bad_request",
        ),
        (
            &s.keys.read,
            json!({"read_only": "yes", "statements": [{"sql": "SELECT 1"}]}),
            400,
            "bad_request",
        ),
        (
            &s.keys.read,
            json!({"read_only": true, "isolation": "chaos", "statements": [{"sql": "SELECT 1"}]}),
            400,
            "bad_request",
        ),
        (
            &s.keys.read,
            json!({"read_only": true, "after_gtid": "x'", "statements": [{"sql": "SELECT 1"}]}),
            400,
            "bad_request",
        ),
        (
            &s.keys.read,
            json!({"read_only": false, "statements": [{"sql": format!("DELETE FROM {t}")}]}),
            403,
            "forbidden",
        ),
        // SERIALIZABLE makes every SELECT a locking read: not for read keys, not read-only.
        (
            &s.keys.read,
            json!({"isolation": "serializable", "statements": [{"sql": format!("SELECT * FROM {t}")}]}),
            403,
            "forbidden",
        ),
        (
            &s.keys.write,
            json!({"read_only": true, "isolation": "serializable", "statements": [{"sql": format!("SELECT * FROM {t}")}]}),
            400,
            "bad_request",
        ),
    ];
    for (key, req, status, want) in refused {
        let (st, body) = s.post("/transaction", Some(key), &req).await;
        assert_eq!((st, code(&body)), (status, want), "{req}: {body}");
    }
    assert_eq!(table_state(&t), before, "a refused transaction wrote");
}
