//! The gatekeeper binary as operators run it: keygen, configuration errors, and its request log,
//! which must carry the key id and never a secret.

use serde_json::json;
use sqlgate_testkit::{free_port, Cluster, Options, Stack};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gatekeeper");

#[test]
fn keygen_prints_a_key_once_and_its_hash_line() {
    let out = Command::new(BIN)
        .args(["keygen", "--role", "write", "--id", "ci1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 2, "{text}");
    let secret = lines[0].strip_prefix("sk_ci1_").expect("key format");
    assert!(secret.len() >= 32, "at least 128 bits of hex");
    assert!(lines[1].starts_with("ci1 write "), "{}", lines[1]);
    assert!(
        !lines[1].contains(secret),
        "the keys-file line holds only the hash"
    );
    for bad in [
        vec!["keygen"],
        vec!["keygen", "--role", "root"],
        vec!["serve"],
    ] {
        let out = Command::new(BIN).args(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{bad:?}");
    }
}

#[test]
fn bad_configuration_exits_64_with_one_line() {
    let dir = sqlgate_testkit::tempfile::tempdir().unwrap();
    let empty = dir.path().join("keys");
    std::fs::write(&empty, "# no keys yet\n").unwrap();
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![], "GATEKEEPER_PROXY_TOKEN"),
        (
            vec![("GATEKEEPER_PROXY_TOKEN", "x".repeat(20))],
            "GATEKEEPER_KEYS_FILE",
        ),
        (
            vec![
                ("GATEKEEPER_PROXY_TOKEN", "x".repeat(20)),
                ("GATEKEEPER_KEYS_FILE", empty.display().to_string()),
                ("GATEKEEPER_PROXY_CA", "/nonexistent/ca.pem".to_string()),
            ],
            "GATEKEEPER_TLS_CERT",
        ),
        (
            vec![
                ("GATEKEEPER_PROXY_TOKEN", "x".repeat(20)),
                ("GATEKEEPER_KEYS_FILE", empty.display().to_string()),
                ("GATEKEEPER_PLAIN_HTTP", "true".to_string()),
            ],
            "GATEKEEPER_PROXY_CA",
        ),
        (
            vec![
                ("GATEKEEPER_PROXY_TOKEN", "x".repeat(20)),
                ("GATEKEEPER_KEYS_FILE", empty.display().to_string()),
                ("GATEKEEPER_PLAIN_HTTP", "true".to_string()),
                ("GATEKEEPER_PROXY_URL", "http://127.0.0.1:9".to_string()),
                ("GATEKEEPER_LISTEN", format!("127.0.0.1:{}", free_port())),
                (
                    "GATEKEEPER_ADMIN_LISTEN",
                    format!("127.0.0.1:{}", free_port()),
                ),
            ],
            "no keys",
        ),
    ];
    for (env, want) in cases {
        let out = Command::new(BIN).env_clear().envs(env).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{want}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{want}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[tokio::test]
async fn request_log_names_the_key_id_never_a_secret() {
    let cluster = Cluster::shared();
    let stack = Stack::start(cluster, Options::default()).await.unwrap();
    let dir = sqlgate_testkit::tempfile::tempdir().unwrap();
    let key = gatekeeper::auth::generate(sqlgate::Role::Read, Some("logtest")).unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("{}\n", key.line)).unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("RUST_LOG", "debug")
        .env("GATEKEEPER_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "GATEKEEPER_ADMIN_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("GATEKEEPER_PROXY_URL", &stack.proxy_url)
        .env("GATEKEEPER_PROXY_TOKEN", &stack.proxy_token)
        .env("GATEKEEPER_KEYS_FILE", &keys)
        .env("GATEKEEPER_TLS_CERT", cluster.tls("gatekeeper.pem"))
        .env("GATEKEEPER_TLS_KEY", cluster.tls("gatekeeper-key.pem"))
        .env("GATEKEEPER_PROXY_CA", cluster.tls("ca.pem"))
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while stack
        .http
        .get(format!("{url}/health"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "gatekeeper binary did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cmdline =
        std::fs::read_to_string(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
    assert!(
        !cmdline.contains(&stack.proxy_token),
        "no secret in the process list"
    );

    let secret = key.key.rsplit('_').next().unwrap().to_string();
    let wrong = format!("sk_logtest_{}", "0".repeat(64));
    for k in [key.key.as_str(), wrong.as_str()] {
        let r = stack
            .http
            .post(format!("{url}/query"))
            .header("X-API-Key", k)
            .json(&json!({"sql": "SELECT 1", "request_id": "log-check-1"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().as_u16() == 200 || r.status().as_u16() == 401);
    }
    child.kill().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    child.wait().unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("request_id=log-check-1") && l.contains("status=200"))
        .unwrap_or_else(|| panic!("no request line in\n{log}"));
    for field in [
        "method=POST",
        "path=/query",
        "key_id=logtest",
        "role=read",
        "kind=read",
        "node=",
        "duration_ms=",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    let refused = log
        .lines()
        .find(|l| l.contains("path=/query") && l.contains("status=401"))
        .unwrap_or_else(|| panic!("no line for the refused key in\n{log}"));
    for field in ["key_id=-", "code=unauthorized", "source=client"] {
        assert!(refused.contains(field), "{field} in {refused}");
    }
    for s in [secret.as_str(), stack.proxy_token.as_str(), &"0".repeat(64)] {
        assert!(!log.contains(s), "a secret leaked into the log:\n{log}");
    }
}
