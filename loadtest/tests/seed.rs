//! The seed scenario end to end, against a real replicated cluster with the real proxy and
//! gatekeeper: the JSON report, the charts, and the row count on every node.

use indicatif::ProgressBar;
use loadtest::client::Gateway;
use loadtest::scenario::{self, SeedOptions, Target};
use loadtest::schedule::Load;
use loadtest::{chart, report, verify};
use sqlgate::wire::Mode;
use sqlgate_testkit::{Cluster, Options, Stack};
use std::collections::BTreeSet;
use std::time::Duration;

const REQUESTS: u64 = 40;
const TABLE: &str = "app.loadtest";

fn is_png(bytes: &[u8]) -> bool {
    // Signature, then the IHDR chunk with a non-zero width and height, and an IEND at the end.
    bytes.len() > 33
        && bytes.starts_with(b"\x89PNG\r\n\x1a\n")
        && &bytes[12..16] == b"IHDR"
        && u32::from_be_bytes(bytes[16..20].try_into().unwrap()) > 0
        && u32::from_be_bytes(bytes[20..24].try_into().unwrap()) > 0
        && bytes[bytes.len() - 8..bytes.len() - 4] == *b"IEND"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_seed_run_writes_reports_and_charts_and_counts_every_row() {
    chart::load_font()
        .expect("the charts need a font: install fonts-dejavu-core (make loadtest-deps)");
    let cluster = Cluster::shared();
    let no_limit = Options {
        gatekeeper_env: vec![("GATEKEEPER_RATE_LIMIT_RPS".into(), "0".into())],
        ..Options::default()
    };
    let stack = Stack::start(cluster, no_limit)
        .await
        .expect("start the stack");
    let target = Target {
        gateway: Gateway::new(
            &stack.gatekeeper_url,
            Duration::from_secs(30),
            Some(&stack.ca),
        )
        .unwrap(),
        key: stack.keys.write.clone(),
        admin_key: Some(stack.keys.admin.clone()),
    };
    let opts = SeedOptions {
        requests: REQUESTS,
        load: Load::Closed { concurrency: 4 },
        modes: Mode::ALL.to_vec(),
        table: TABLE.into(),
        verify_within: Duration::from_secs(30),
    };
    let r = scenario::seed(
        &target,
        &opts,
        "2026-01-01T00:00:00Z",
        &ProgressBar::hidden(),
    )
    .await
    .expect("the seed scenario runs");

    // Every mode the proxy offers, writes then reads, all answered.
    let phases: Vec<(String, String)> = r
        .rows
        .iter()
        .map(|p| (p.mode.clone(), p.kind.clone()))
        .collect();
    let want: Vec<(String, String)> = Mode::ALL
        .iter()
        .flat_map(|m| ["write", "read"].map(|k| (m.as_str().to_string(), k.to_string())))
        .collect();
    assert_eq!(phases, want, "one phase per mode and type, in order");
    for p in &r.rows {
        let s = &p.summary;
        assert_eq!(
            (s.count, s.errors),
            (REQUESTS, 0),
            "{} {}: all answered: {:?}",
            p.mode,
            p.kind,
            p.errors_by_code
        );
        assert!(
            s.p50_ms > 0.0 && s.p50_ms <= s.p95_ms && s.p95_ms <= s.p99_ms && s.p99_ms <= s.max_ms,
            "{} {}: ordered percentiles {s:?}",
            p.mode,
            p.kind
        );
        assert!(
            s.throughput_rps > 0.0,
            "{} {}: throughput {s:?}",
            p.mode,
            p.kind
        );
    }
    let direct_reads = &r.rows[1];
    assert_eq!(
        direct_reads.nodes.keys().collect::<Vec<_>>(),
        ["manager"],
        "direct reads on the manager"
    );
    let random_reads = r
        .rows
        .iter()
        .find(|p| p.mode == "random" && p.kind == "read")
        .unwrap();
    assert!(
        random_reads.nodes.keys().all(|n| n.starts_with("worker-")),
        "random reads on workers: {:?}",
        random_reads.nodes
    );

    // The row count, as the report says it and straight from each node.
    let acked = REQUESTS * Mode::ALL.len() as u64;
    assert!(
        r.verification.ok,
        "verification: {}",
        r.verification.message
    );
    assert_eq!(
        r.verification.acknowledged, acked,
        "every insert acknowledged"
    );
    let nodes: Vec<&str> = r
        .verification
        .nodes
        .iter()
        .map(|n| n.node.as_str())
        .collect();
    assert_eq!(
        nodes,
        ["manager", "worker-1", "worker-2"],
        "counted on the manager and each worker"
    );
    cluster.wait_replicated().unwrap();
    let count_sql = format!("SELECT COUNT(*) FROM {TABLE} WHERE run_id = '{}'", r.run_id);
    for node in ["manager", "worker-1", "worker-2"] {
        let n: u64 = cluster
            .scalar(node, &count_sql)
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            n, acked,
            "{node} holds every acknowledged row, counted directly"
        );
    }

    // The files: JSON with every figure, CSV, and four valid PNG charts.
    let dir = tempfile::tempdir().unwrap();
    report::write_seed(dir.path(), &r).unwrap();
    let charts = chart::seed_charts(dir.path(), &r).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("seed.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["rows"].as_array().map(Vec::len),
        Some(2 * Mode::ALL.len()),
        "a JSON row per phase"
    );
    for field in [
        "count",
        "errors",
        "avg_ms",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "throughput_rps",
    ] {
        assert!(json["rows"][0][field].is_number(), "JSON has {field}");
    }
    assert_eq!(
        json["verification"]["acknowledged"], acked,
        "JSON carries the count"
    );
    assert_eq!(
        json["verification"]["ok"], true,
        "JSON says the count matched"
    );
    let csv = std::fs::read_to_string(dir.path().join("seed.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 2 * Mode::ALL.len(),
        "a CSV line per phase: {csv}"
    );
    let names: Vec<String> = charts
        .iter()
        .map(|c| c.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "avg_latency.png",
            "p95_latency.png",
            "max_read_latency.png",
            "percentiles.png"
        ],
        "the seed's three charts and the curves"
    );
    for c in &charts {
        let bytes = std::fs::read(c).unwrap();
        assert!(
            is_png(&bytes),
            "{c:?} is a valid PNG ({} bytes)",
            bytes.len()
        );
    }

    // A replica that lost a row is reported, loudly.
    cluster
        .root_sql(
            "worker-2",
            &format!("SET SESSION sql_log_bin = 0; DELETE FROM {TABLE} WHERE run_id = '{}' ORDER BY id LIMIT 1", r.run_id),
        )
        .unwrap();
    let want = verify::Expectation {
        table: TABLE,
        run_id: &r.run_id,
        acknowledged: acked,
        maybe_executed: 0,
        workers_seen: BTreeSet::from(["worker-1".to_string(), "worker-2".to_string()]),
    };
    let v = verify::count_rows(&target.gateway, &target.key, &want, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(!v.ok, "a missing replica row is a mismatch: {}", v.message);
    assert!(
        v.message.starts_with("ROW COUNT MISMATCH")
            && v.message
                .contains(&format!("worker-2 holds {} rows", acked - 1)),
        "the mismatch names the node and its count: {}",
        v.message
    );
}
