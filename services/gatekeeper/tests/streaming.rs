//! Streamed `/query` answers (`Accept: application/x-ndjson`, docs/api.md "Streaming"), through
//! the gatekeeper over TLS against real servers: a result past the JSON limits arrives whole
//! (checked against what a fresh root session computes), rows keep the JSON form's shapes,
//! failures before the first row are the JSON form's errors, a stream past its time limit ends
//! with an error line and its statement killed, a client that goes away mid-stream has its
//! statement killed, and `/transaction` ignores the Accept.

use serde_json::{json, Value};
use sqlgate_testkit::{Cluster, Options, Stack};
use std::time::{Duration, Instant};

const NDJSON: &str = "application/x-ndjson";

/// Rows in each test's table.
const ROWS: usize = 500;

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

/// Runs `sql` with the admin key as JSON and requires 200.
async fn admin(s: &Stack, sql: &str) -> Value {
    let (st, body) = s.query(&s.keys.admin, json!({ "sql": sql })).await;
    assert_eq!(st, 200, "{sql}: {body}");
    body
}

/// A fresh table `app.<name>` (`id INT PRIMARY KEY, v VARCHAR(40)`) with `ROWS` rows of varying
/// text, replicated to every worker.
async fn table(s: &Stack, name: &str) -> String {
    let t = format!("app.{name}");
    admin(s, &format!("DROP TABLE IF EXISTS {t}")).await;
    admin(
        s,
        &format!("CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(40))"),
    )
    .await;
    let values: Vec<String> = (1..=ROWS)
        .map(|i| format!("({i}, '{}')", "r".repeat(i % 37 + 1)))
        .collect();
    admin(s, &format!("INSERT INTO {t} VALUES {}", values.join(","))).await;
    Cluster::shared().wait_replicated().expect("replicated");
    t
}

/// What a streamed request got: status, content type, and the body's lines as JSON.
struct Streamed {
    status: u16,
    content_type: String,
    lines: Vec<Value>,
    /// The whole body, for messages.
    text: String,
}

impl Streamed {
    fn header(&self) -> &Value {
        &self.lines[0]
    }

    fn rows(&self) -> &[Value] {
        &self.lines[1..self.lines.len().saturating_sub(1)]
    }

    fn last(&self) -> &Value {
        self.lines.last().expect("a line")
    }
}

/// POSTs `body` to the gatekeeper's `path` with `key` and `Accept: application/x-ndjson`.
async fn streamed(s: &Stack, path: &str, key: &str, body: &Value) -> Streamed {
    let resp = s
        .http
        .post(format!("{}{path}", s.gatekeeper_url))
        .header("X-API-Key", key)
        .header("Accept", NDJSON)
        .json(body)
        .send()
        .await
        .expect("gatekeeper answers");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.expect("the body");
    let lines = if content_type.starts_with(NDJSON) {
        assert!(
            text.ends_with('\n'),
            "every line ends with a newline: {text}"
        );
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: line {l:?}")))
            .collect()
    } else {
        vec![serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))]
    };
    Streamed {
        status,
        content_type,
        lines,
        text,
    }
}

/// Count, sum of ids and sum of text lengths of `rows` (arrays `[id, v]`).
fn checksum(rows: &[Value]) -> (i64, i64, i64) {
    rows.iter().fold((0, 0, 0), |(n, ids, len), r| {
        let id = r[0].as_i64().unwrap_or_else(|| panic!("an id: {r}"));
        let v = r[1].as_str().unwrap_or_else(|| panic!("a text: {r}"));
        (n + 1, ids + id, len + v.len() as i64)
    })
}

/// The same, as a fresh root session on `node` computes it.
fn checksum_on(node: &str, t: &str) -> (i64, i64, i64) {
    let out = Cluster::shared()
        .root_sql(
            node,
            &format!("SELECT COUNT(*), SUM(id), SUM(LENGTH(v)) FROM {t}"),
        )
        .expect("root query");
    let n: Vec<i64> = out
        .split_whitespace()
        .map(|x| x.parse().expect("a number"))
        .collect();
    (n[0], n[1], n[2])
}

/// Polls `f` every 50 ms until it is true or `within` passed.
async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if f() {
            return true;
        }
        if started.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sessions running `marker` on any worker.
fn on_workers(marker: &str) -> usize {
    let cluster = Cluster::shared();
    ["worker-1", "worker-2"]
        .iter()
        .map(|w| cluster.running(w, marker).expect("processlist"))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_result_past_the_json_limits_streams_whole() {
    let s = stack(env(&[
        ("PROXY_MAX_ROWS", "50"),
        ("PROXY_MAX_RESULT_BYTES", "2048"),
    ]))
    .await;
    let t = table(&s, "st_big").await;
    let sql = format!("SELECT id, v FROM {t} ORDER BY id");
    let (st, body) = s.query(&s.keys.read, json!({ "sql": sql })).await;
    assert_eq!(st, 413, "the JSON form keeps the limits: {body}");
    assert_eq!(body["error"]["code"], "result_too_large", "{body}");

    let got = streamed(&s, "/query", &s.keys.read, &json!({ "sql": sql })).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.content_type, NDJSON);
    let header = got.header();
    assert_eq!(header["kind"], "read", "{header}");
    assert_eq!(header["role"], "worker", "{header}");
    assert!(header["request_id"].is_string(), "{header}");
    assert_eq!(
        header["columns"],
        json!([{"name": "id", "type": "LONG"}, {"name": "v", "type": "VAR_STRING"}]),
        "{header}"
    );
    let done = got.last();
    assert_eq!(done["done"], true, "the stream is complete: {done}");
    let node = header["node"].as_str().expect("a node");
    let want = checksum_on(node, &t);
    assert_eq!(want.0, ROWS as i64, "the table has every row");
    assert_eq!(
        checksum(got.rows()),
        want,
        "every row, as the server has them"
    );
    assert_eq!(done["row_count"], want.0, "{done}");
    assert!(done.get("gtid").is_none(), "a read has no gtid: {done}");
    let ids: Vec<i64> = got.rows().iter().map(|r| r[0].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in the order asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streamed_rows_keep_the_json_forms_shapes() {
    let s = stack(Options::default()).await;
    let t = table(&s, "st_shape").await;
    let sql = format!("SELECT id, v, id FROM {t} WHERE id <= 3 ORDER BY id");
    let (st, json_form) = s
        .query(&s.keys.read, json!({"sql": sql, "format": "objects"}))
        .await;
    assert_eq!(st, 200, "{json_form}");
    let cases = [
        (json!({"sql": sql, "format": "objects"}), true, "objects"),
        (
            json!({"sql": sql, "format": "objects", "include_metadata": false}),
            false,
            "objects without metadata",
        ),
        (
            json!({"sql": sql, "include_metadata": false}),
            false,
            "arrays without metadata",
        ),
    ];
    for (body, metadata, what) in cases {
        let got = streamed(&s, "/query", &s.keys.read, &body).await;
        assert_eq!(got.status, 200, "{what}: {}", got.text);
        assert_eq!(
            got.header().get("columns").is_some(),
            metadata,
            "{what}: {}",
            got.header()
        );
        assert_eq!(got.last()["row_count"], 3, "{what}: {}", got.text);
        let rows = got.rows();
        if body["format"] == "objects" {
            assert_eq!(rows, json_form["rows"].as_array().unwrap(), "{what}");
            assert_eq!(rows[0], json!({"id": 1, "v": "rr", "id:2": 1}), "{what}");
        } else {
            assert_eq!(rows[2], json!([3, "rrrr", 3]), "{what}");
        }
    }
    // A write is answered as JSON whatever the Accept (only reads stream): one object with
    // what it changed, within the statement deadline.
    let got = streamed(
        &s,
        "/query",
        &s.keys.write,
        &json!({"sql": format!("UPDATE {t} SET v = 'changed' WHERE id <= 7")}),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.lines.len(), 1, "one JSON answer: {}", got.text);
    let answer = &got.lines[0];
    assert_eq!(answer["kind"], "write", "{}", got.text);
    assert_eq!(answer["rows_affected"], 7, "{}", got.text);
    assert!(answer["gtid"].is_string(), "{}", got.text);
    let changed = Cluster::shared()
        .root_sql(
            "manager",
            &format!("SELECT COUNT(*) FROM {t} WHERE v = 'changed'"),
        )
        .unwrap();
    assert_eq!(changed.trim(), "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_before_the_first_row_are_json_errors() {
    let s = stack(Options::default()).await;
    let t = table(&s, "st_err").await;
    let cases = [
        (
            json!({"sql": "SELECT * FROM app.st_no_such_table"}),
            &s.keys.read,
            422,
            "sql_error",
            "the server refuses the statement",
        ),
        (
            json!({"sql": format!("DELETE FROM {t}")}),
            &s.keys.read,
            403,
            "forbidden",
            "a write with a read key",
        ),
        (
            json!({"sql": "SELECT 1", "nope": 1}),
            &s.keys.read,
            400,
            "bad_request",
            "an unknown field",
        ),
        (
            json!({"sql": "SELECT 1", "params": [1]}),
            &s.keys.read,
            400,
            "invalid_params",
            "params without placeholders",
        ),
    ];
    for (body, key, status, code, what) in cases {
        let got = streamed(&s, "/query", key, &body).await;
        assert_eq!(got.status, status, "{what}: {}", got.text);
        assert_eq!(got.content_type, "application/json", "{what}");
        assert_eq!(got.lines.len(), 1, "{what}: {}", got.text);
        assert_eq!(got.lines[0]["error"]["code"], code, "{what}: {}", got.text);
    }
    let rows = Cluster::shared()
        .root_sql("manager", &format!("SELECT COUNT(*) FROM {t}"))
        .unwrap();
    assert_eq!(rows.trim(), ROWS.to_string(), "nothing was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_past_its_time_limit_ends_with_an_error_and_its_statement_killed() {
    let s = stack(env(&[("PROXY_STREAM_TIMEOUT_MS", "1500")])).await;
    // 4,000 rows spread over some 25 s of scanning (MariaDB's sequence engine), on the
    // manager; rows big enough that the server sends them as they come. (Only reads stream.)
    const SLOW_ROWS: usize = 4000;
    let sql = "SELECT seq AS id, REPEAT('x', 4000) AS st_slow_marker \
               FROM app.seq_1_to_400000000 WHERE seq % 100000 = 0";
    let started = Instant::now();
    let got = streamed(
        &s,
        "/query",
        &s.keys.read,
        &json!({ "sql": sql, "mode": "direct" }),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(
        got.status,
        200,
        "{}",
        got.text.chars().take(500).collect::<String>()
    );
    assert!(!got.rows().is_empty(), "some rows came before the deadline");
    assert!(
        got.rows().len() < SLOW_ROWS,
        "the stream was cut: {} rows",
        got.rows().len()
    );
    let last = got.last();
    assert_eq!(last["error"]["code"], "timeout", "{last}");
    assert!(
        !got.lines.iter().any(|l| l.get("done").is_some()),
        "no done line"
    );
    assert!(
        took < Duration::from_secs(15),
        "ended near its limit: {took:?}"
    );
    let gone = eventually(Duration::from_secs(5), || {
        Cluster::shared()
            .running("manager", "st_slow_marker")
            .unwrap()
            == 0
    })
    .await;
    assert!(gone, "the statement still runs on the manager");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_goes_away_mid_stream_has_its_statement_killed() {
    let s = stack(Options::default()).await;
    let t = table(&s, "st_gone").await;
    // 250,000 rows of 1 KB: far more than the client reads before it goes away.
    let sql = format!("SELECT a.id, b.v, REPEAT('y', 1000) AS st_gone_marker FROM {t} a, {t} b");
    let mut resp = s
        .http
        .post(format!("{}/query", s.gatekeeper_url))
        .header("X-API-Key", &s.keys.read)
        .header("Accept", NDJSON)
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .expect("gatekeeper answers");
    assert_eq!(resp.status().as_u16(), 200);
    let mut read = 0;
    while read < 64 << 10 {
        let chunk = resp.chunk().await.expect("a chunk").expect("more body");
        read += chunk.len();
    }
    let running = eventually(Duration::from_secs(5), || on_workers("st_gone_marker") > 0).await;
    assert!(
        running,
        "the statement runs on a worker while the client reads"
    );
    drop(resp);
    let gone = eventually(Duration::from_secs(10), || {
        on_workers("st_gone_marker") == 0
    })
    .await;
    assert!(
        gone,
        "the statement still runs on a worker after its client went away"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_goes_away_before_the_first_row_has_its_statement_killed() {
    let s = stack(Options::default()).await;
    // One row, computed for many seconds (MariaDB's sequence engine): no line is due while it
    // runs, so only the response being dropped can tell the proxy the client left.
    let sql = "SELECT SUM(seq % 7) AS st_early_marker FROM app.seq_1_to_400000000";
    let request = s
        .http
        .post(format!("{}/query", s.gatekeeper_url))
        .header("X-API-Key", &s.keys.read)
        .header("Accept", NDJSON)
        .json(&json!({ "sql": sql }))
        .send();
    let client = tokio::spawn(request);
    let running = eventually(Duration::from_secs(5), || on_workers("st_early_marker") > 0).await;
    assert!(running, "the statement runs on a worker");
    client.abort();
    let gone = eventually(Duration::from_secs(5), || {
        on_workers("st_early_marker") == 0
    })
    .await;
    assert!(
        gone,
        "the statement still runs after its client went away before the first row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_answers_json_whatever_the_accept() {
    let s = stack(Options::default()).await;
    let t = table(&s, "st_tx").await;
    let body = json!({"statements": [
        {"sql": format!("UPDATE {t} SET v = 'tx' WHERE id = 1")},
        {"sql": format!("SELECT v FROM {t} WHERE id = 1")}]});
    let got = streamed(&s, "/transaction", &s.keys.write, &body).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.content_type, "application/json");
    assert_eq!(got.lines.len(), 1, "one JSON document");
    assert_eq!(
        got.lines[0]["results"][1]["rows"],
        json!([["tx"]]),
        "{}",
        got.text
    );
}
