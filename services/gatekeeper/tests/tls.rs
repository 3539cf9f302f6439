//! Every hop is encrypted and verified: a party that trusts another CA is refused at each one
//! (client → gatekeeper, gatekeeper → proxy, proxy → MySQL, replication), and no node accepts
//! a connection without TLS. Its own cluster: the replication check rewires a worker.

use serde_json::{json, Value};
use sqlgate_testkit::{Cluster, Options, Stack};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A CA nobody in the cluster trusts, with openssl, in `dir`.
fn other_ca(dir: &Path) -> PathBuf {
    let (cert, key) = (dir.join("other-ca.pem"), dir.join("other-ca-key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=not the sqlgate CA"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cert
}

#[tokio::test]
async fn a_wrong_ca_is_refused_at_every_hop() {
    let cluster = Cluster::start(1).expect("cluster");
    let scratch = sqlgate_testkit::tempfile::tempdir().unwrap();
    let wrong = other_ca(scratch.path());
    let s = Stack::start(&cluster, Options::default()).await.unwrap();

    // The right CA: a query works end to end, over TLS on every hop.
    let (st, body) = s
        .query(&s.keys.read, json!({"sql": "SELECT 1", "mode": "direct"}))
        .await;
    assert_eq!(st, 200, "{body}");

    // Client → gatekeeper: a client that trusts another CA does not connect.
    let stranger = sqlgate_testkit::client(&wrong).unwrap();
    let r = stranger
        .post(format!("{}/query", s.gatekeeper_url))
        .header("X-API-Key", &s.keys.read)
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await;
    assert!(
        r.is_err(),
        "a client trusting another CA reached the gatekeeper"
    );
    // And the public port speaks no plain HTTP.
    let plain = reqwest::Client::new()
        .get(s.gatekeeper_url.replace("https://", "http://") + "/health")
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP served"
    );

    // Gatekeeper → proxy: a gatekeeper that trusts another CA refuses the proxy.
    let g = Stack::start(
        &cluster,
        Options {
            gatekeeper_env: vec![("GATEKEEPER_PROXY_CA".into(), wrong.display().to_string())],
            proxy_url_override: None,
            ..Options::default()
        },
    )
    .await;
    // The stack waits for the proxy's /ready directly, which uses the right CA; the gatekeeper
    // itself must refuse to forward.
    let g = g.expect("stack");
    let (st, body) = g.query(&g.keys.read, json!({"sql": "SELECT 1"})).await;
    assert!(
        st == 502 || st == 503,
        "gatekeeper forwarded to an unverified proxy: {st} {body}"
    );
    let ready = g
        .http
        .get(format!("{}/ready", g.gatekeeper_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status().as_u16(),
        503,
        "ready with an unverified proxy"
    );

    // Proxy → MySQL: a proxy that trusts another CA reaches no node.
    let p = Stack::start(
        &cluster,
        Options {
            proxy_env: vec![("PROXY_DB_CA".into(), wrong.display().to_string())],
            proxy_url_override: Some("https://127.0.0.1:9".into()),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: Value = p
            .http
            .get(format!("{}/ready", p.proxy_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let nodes = v["nodes"].as_array().unwrap();
        if nodes.iter().all(|n| n["checked"] == true) {
            assert_eq!(v["ready"], false, "{v}");
            for n in nodes {
                assert_eq!(n["reachable"], false, "{n}");
                let err = n["error"].as_str().unwrap_or("").to_ascii_lowercase();
                assert!(
                    err.contains("certificate") || err.contains("tls") || err.contains("ssl"),
                    "not refused for its certificate: {n}"
                );
            }
            break;
        }
        assert!(Instant::now() < deadline, "monitors never checked: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every node refuses a connection without TLS.
    for node in ["manager", "worker-1"] {
        let plain = mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(cluster.port(node))
            .user(Some("sqlgate_read"))
            .pass(Some(cluster.secret("READ_PASSWORD")))
            .prefer_socket(false);
        assert!(
            mysql::Conn::new(plain).is_err(),
            "{node} accepted a connection without TLS"
        );
    }

    // Replication: a worker told to trust another CA stops receiving from the manager.
    let status = |field: &str| -> String {
        cluster
            .replica_status("worker-1")
            .unwrap()
            .get(field)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(status("Master_SSL_Verify_Server_Cert"), "Yes");
    assert_eq!(status("Slave_IO_Running"), "Yes");
    cluster
        .root_sql(
            "worker-1",
            &format!(
                "STOP SLAVE; CHANGE MASTER TO MASTER_SSL_CA = '{}'; START SLAVE",
                wrong.display()
            ),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while status("Slave_IO_Running") == "Yes" {
        assert!(Instant::now() < deadline, "replication trusted another CA");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let err = status("Last_IO_Error").to_ascii_lowercase();
    assert!(
        err.contains("ssl") || err.contains("certificate") || err.contains("tls"),
        "replication stopped for another reason: {err}"
    );
}
