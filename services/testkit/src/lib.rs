//! Test support: starts a real local cluster (through `local/cluster.sh`) and the real proxy
//! and gatekeeper in-process on free ports, and tears them down.
#![forbid(unsafe_code)]

use anyhow::{bail, Context};
use mysql::prelude::Queryable;
use serde_json::Value;
use sqlgate::Role;
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
pub use tempfile;

/// The repository root (where `local/cluster.sh` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("repo root")
        .to_path_buf()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

/// A running local cluster in a temporary directory. Stopped on drop, and by a watcher when
/// the test process exits (statics are never dropped).
pub struct Cluster {
    dir: tempfile::TempDir,
    pub manager_port: u16,
    pub worker_ports: Vec<u16>,
    secrets: HashMap<String, String>,
}

impl Cluster {
    /// Starts a manager and `workers` replicas on free ports.
    pub fn start(workers: usize) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("sqlgate-test-").tempdir()?;
        let manager_port = free_port();
        let worker_ports: Vec<u16> = (0..workers).map(|_| free_port()).collect();
        let mut c = Cluster {
            dir,
            manager_port,
            worker_ports,
            secrets: HashMap::new(),
        };
        c.script(&["start"])?;
        let text = std::fs::read_to_string(c.dir.path().join("secrets.env"))?;
        c.secrets = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(c)
    }

    /// One cluster shared by every test of this test binary.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(|| Cluster::start(2).expect("start the shared test cluster"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cluster's TLS material: `ca.pem`, and `<name>.pem` / `<name>-key.pem` for every node,
    /// `proxy`, `gatekeeper` and `client` (made by `local/cluster.sh`).
    pub fn tls(&self, file: &str) -> PathBuf {
        self.dir.path().join("tls").join(file)
    }

    /// Runs `local/cluster.sh` with this cluster's settings.
    pub fn script(&self, args: &[&str]) -> anyhow::Result<String> {
        let ports: Vec<String> = self.worker_ports.iter().map(u16::to_string).collect();
        let out = Command::new(repo_root().join("local/cluster.sh"))
            .args(args)
            .env("SQLGATE_LOCAL_DIR", self.dir.path())
            .env("SQLGATE_MANAGER_PORT", self.manager_port.to_string())
            .env("SQLGATE_WORKER_PORTS", ports.join(" "))
            .env("SQLGATE_WATCH_PID", std::process::id().to_string())
            .env("SQLGATE_WATCH_CLEANUP", "1")
            .output()
            .context("run local/cluster.sh")?;
        if !out.status.success() {
            bail!(
                "local/cluster.sh {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn secret(&self, key: &str) -> String {
        self.secrets.get(key).cloned().unwrap_or_default()
    }

    /// The port of `manager` or `worker-N`.
    pub fn port(&self, node: &str) -> u16 {
        if node == "manager" {
            return self.manager_port;
        }
        let n: usize = node
            .strip_prefix("worker-")
            .and_then(|n| n.parse().ok())
            .expect("node name");
        self.worker_ports[n - 1]
    }

    /// A fresh direct connection to a node as the admin account (for checks behind the proxy:
    /// what a new session sees).
    pub fn connect(&self, node: &str) -> anyhow::Result<mysql::Conn> {
        self.connect_as(node, Role::Admin)
    }

    /// A fresh direct connection to a node as the account of `role`.
    pub fn connect_as(&self, node: &str, role: Role) -> anyhow::Result<mysql::Conn> {
        let (user, secret) = match role {
            Role::Read => ("sqlgate_read", "READ_PASSWORD"),
            Role::Write => ("sqlgate_write", "WRITE_PASSWORD"),
            Role::Admin => ("sqlgate_admin", "ADMIN_PASSWORD"),
        };
        let opts = mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(self.port(node))
            .user(Some(user))
            .pass(Some(self.secret(secret)))
            .prefer_socket(false)
            // The nodes require TLS; verify them against the cluster's CA like the proxy does.
            .ssl_opts(Some(
                mysql::SslOpts::default().with_root_cert_path(Some(self.tls("ca.pem"))),
            ));
        Ok(mysql::Conn::new(opts)?)
    }

    /// Runs a query directly on a node and returns the first column of the first row.
    pub fn scalar(&self, node: &str, sql: &str) -> anyhow::Result<Option<String>> {
        Ok(self.connect(node)?.query_first::<String, _>(sql)?)
    }

    /// Waits until every worker has applied all the manager has committed.
    pub fn wait_replicated(&self) -> anyhow::Result<()> {
        self.script(&["wait"]).map(|_| ())
    }

    /// Runs SQL as root on a node over its unix socket, with the flavour's command-line client;
    /// the output in batch form, without column names.
    pub fn root_sql(&self, node: &str, sql: &str) -> anyhow::Result<String> {
        self.root_client(node, &["--skip-column-names", "-e", sql])
    }

    /// Sessions on `node` (seen as root) whose statement text contains `marker`: whether a
    /// statement the proxy gave up on still runs on the server.
    pub fn running(&self, node: &str, marker: &str) -> anyhow::Result<usize> {
        let sql = format!(
            "SELECT COUNT(*) FROM information_schema.processlist \
             WHERE info LIKE '%{marker}%' AND info NOT LIKE '%processlist%'"
        );
        Ok(self.root_sql(node, &sql)?.trim().parse()?)
    }

    /// Runs the flavour's command-line client as root on `node`'s socket in batch mode.
    fn root_client(&self, node: &str, args: &[&str]) -> anyhow::Result<String> {
        let client = ["mariadb", "mysql"]
            .into_iter()
            .find(|c| Command::new(c).arg("--version").output().is_ok())
            .context("no mariadb or mysql client")?;
        let sock = self.dir.path().join("db").join(node).join("mysqld.sock");
        let out = Command::new(client)
            .arg("--no-defaults")
            .arg(format!("--socket={}", sock.display()))
            .args(["-uroot", "--batch"])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "{args:?} on {node}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// What a fresh session sees of a node's durable state, as text to compare: its GTID
    /// position, every table of the application schemas with its checksum and columns, the
    /// schemas, and the accounts with their grants. Two equal snapshots mean nothing was
    /// written, created, dropped or granted in between.
    pub fn snapshot(&self, node: &str) -> anyhow::Result<String> {
        let mut out = self.root_sql(
            node,
            "SELECT 'gtid', @@gtid_current_pos; \
             SELECT 'schema', schema_name FROM information_schema.schemata ORDER BY 1, 2; \
             SELECT 'column', table_schema, table_name, column_name, column_type \
               FROM information_schema.columns \
               WHERE table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') \
               ORDER BY 2, 3, ordinal_position; \
             SELECT 'user', user, host FROM mysql.user ORDER BY 2, 3; \
             SELECT 'db_grant', db, user, host FROM mysql.db ORDER BY 2, 3, 4;",
        )?;
        let tables = self.root_sql(
            node,
            "SELECT CONCAT('`', table_schema, '`.`', table_name, '`') FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1",
        )?;
        let tables: Vec<&str> = tables.lines().filter(|l| !l.is_empty()).collect();
        if !tables.is_empty() {
            out.push_str(&self.root_sql(node, &format!("CHECKSUM TABLE {}", tables.join(", ")))?);
        }
        for user in ["sqlgate_read", "sqlgate_write", "sqlgate_admin"] {
            out.push_str(&self.root_sql(node, &format!("SHOW GRANTS FOR '{user}'@'127.0.0.1'"))?);
        }
        Ok(out)
    }

    /// `snapshot` of the manager and every worker, after the workers caught up.
    pub fn snapshots(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.wait_replicated()?;
        let mut nodes = vec!["manager".to_string()];
        nodes.extend((1..=self.worker_ports.len()).map(|i| format!("worker-{i}")));
        nodes
            .into_iter()
            .map(|n| self.snapshot(&n).map(|s| (n, s)))
            .collect()
    }

    /// A worker's `SHOW SLAVE STATUS`, by column name (empty when it is not a replica).
    pub fn replica_status(&self, node: &str) -> anyhow::Result<HashMap<String, String>> {
        let text = self.root_client(node, &["-e", "SHOW SLAVE STATUS"])?;
        let mut lines = text.lines();
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return Ok(HashMap::new());
        };
        Ok(names
            .split('\t')
            .zip(values.split('\t'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Stops one node (`manager`, `worker-N`).
    pub fn stop_node(&self, node: &str) -> anyhow::Result<()> {
        self.script(&["stop-node", node]).map(|_| ())
    }

    /// Starts whatever is stopped again.
    pub fn restart_stopped(&self) -> anyhow::Result<()> {
        self.script(&["start"]).map(|_| ())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.script(&["stop"]);
    }
}

fn path(p: PathBuf) -> String {
    p.display().to_string()
}

/// An HTTP client that trusts only the CA in `ca` (a PEM file).
/// Sends `req` and reads the answer: its status, and its body as JSON (a body that is not JSON
/// comes back as a string). Fails when the request or the body's read does.
pub async fn send_json(req: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

pub fn client(ca: &Path) -> anyhow::Result<reqwest::Client> {
    sqlgate::tls::install_provider();
    let pem = std::fs::read(ca)?;
    Ok(reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem)?)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// An API key made for the test stack.
#[derive(Clone)]
pub struct Keys {
    pub read: String,
    pub write: String,
    pub admin: String,
}

/// Knobs a test may turn on the services.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra environment for the proxy (`PROXY_*`).
    pub proxy_env: Vec<(String, String)>,
    /// Extra environment for the gatekeeper (`GATEKEEPER_*`).
    pub gatekeeper_env: Vec<(String, String)>,
    /// Point the gatekeeper at this URL instead of the proxy (to test a dead or slow proxy).
    pub proxy_url_override: Option<String>,
}

/// Starts a proxy in-process in front of `cluster` (with `extra` environment over the test
/// defaults) on a free port; returns its URL and the handle that stops it.
pub fn start_proxy(
    cluster: &Cluster,
    extra: &[(String, String)],
) -> anyhow::Result<(String, actix_web::dev::ServerHandle)> {
    start_proxy_on(cluster, extra, TcpListener::bind("127.0.0.1:0")?)
}

/// `start_proxy` on a listener the caller bound: a proxy restarted on the port its
/// predecessor had, so the gatekeeper in front of it keeps its URL.
pub fn start_proxy_on(
    cluster: &Cluster,
    extra: &[(String, String)],
    plistener: TcpListener,
) -> anyhow::Result<(String, actix_web::dev::ServerHandle)> {
    let workers: Vec<String> = cluster
        .worker_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let mut penv: HashMap<String, String> = [
        ("PROXY_TOKEN", cluster.secret("PROXY_TOKEN")),
        (
            "PROXY_MANAGER",
            format!("127.0.0.1:{}", cluster.manager_port),
        ),
        ("PROXY_WORKERS", workers.join(",")),
        ("PROXY_READ_PASSWORD", cluster.secret("READ_PASSWORD")),
        ("PROXY_WRITE_PASSWORD", cluster.secret("WRITE_PASSWORD")),
        ("PROXY_ADMIN_PASSWORD", cluster.secret("ADMIN_PASSWORD")),
        ("PROXY_MONITOR_PASSWORD", cluster.secret("MONITOR_PASSWORD")),
        ("PROXY_MONITOR_INTERVAL_MS", "200".to_string()),
        ("PROXY_PING_INTERVAL_MS", "200".to_string()),
        ("PROXY_HTTP_WORKERS", "2".to_string()),
        ("PROXY_TLS_CERT", path(cluster.tls("proxy.pem"))),
        ("PROXY_TLS_KEY", path(cluster.tls("proxy-key.pem"))),
        ("PROXY_DB_CA", path(cluster.tls("ca.pem"))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    penv.extend(extra.iter().cloned());
    let pconfig = proxy::config::Config::from_env(&penv).map_err(|e| anyhow::anyhow!(e))?;
    let papp = proxy::startup::Application::with_listener(pconfig, plistener)?;
    let url = format!("https://127.0.0.1:{}", papp.port());
    let handle = papp.handle();
    tokio::spawn(papp.run_until_stopped());
    Ok((url, handle))
}

/// The real proxy and gatekeeper, in-process, in front of a cluster.
pub struct Stack {
    pub gatekeeper_url: String,
    pub admin_url: String,
    pub proxy_url: String,
    pub proxy_token: String,
    pub keys: Keys,
    /// An HTTP client that trusts the cluster's CA and nothing else.
    pub http: reqwest::Client,
    /// The cluster's CA file.
    pub ca: PathBuf,
    /// Stops both servers.
    stop: Box<dyn Fn() + Send + Sync>,
    _keys_dir: tempfile::TempDir,
}

impl Stack {
    /// Starts both services against `cluster` and waits until the gatekeeper is ready.
    pub async fn start(cluster: &Cluster, opts: Options) -> anyhow::Result<Stack> {
        let token = cluster.secret("PROXY_TOKEN");
        let (proxy_url, phandle) = start_proxy(cluster, &opts.proxy_env)?;

        let keys_dir = tempfile::tempdir()?;
        let mk = |role| gatekeeper::auth::generate(role, None).map_err(|e| anyhow::anyhow!(e));
        let (r, w, a) = (mk(Role::Read)?, mk(Role::Write)?, mk(Role::Admin)?);
        let keys_file = keys_dir.path().join("keys");
        std::fs::write(&keys_file, format!("{}\n{}\n{}\n", r.line, w.line, a.line))?;
        let mut genv: HashMap<String, String> = [
            (
                "GATEKEEPER_PROXY_URL",
                opts.proxy_url_override.clone().unwrap_or(proxy_url.clone()),
            ),
            ("GATEKEEPER_PROXY_TOKEN", token.clone()),
            ("GATEKEEPER_KEYS_FILE", keys_file.display().to_string()),
            ("GATEKEEPER_HTTP_WORKERS", "2".to_string()),
            ("GATEKEEPER_TLS_CERT", path(cluster.tls("gatekeeper.pem"))),
            (
                "GATEKEEPER_TLS_KEY",
                path(cluster.tls("gatekeeper-key.pem")),
            ),
            ("GATEKEEPER_PROXY_CA", path(cluster.tls("ca.pem"))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        genv.extend(opts.gatekeeper_env.iter().cloned());
        let gconfig =
            gatekeeper::config::Config::from_env(&genv).map_err(|e| anyhow::anyhow!(e))?;
        let gapp = gatekeeper::startup::Application::with_listeners(
            gconfig,
            TcpListener::bind("127.0.0.1:0")?,
            TcpListener::bind("127.0.0.1:0")?,
        )?;
        let gatekeeper_url = format!("https://127.0.0.1:{}", gapp.port());
        let admin_url = format!("http://127.0.0.1:{}", gapp.admin_port());
        let ghandles = gapp.handles();
        tokio::spawn(gapp.run_until_stopped());

        // `stop` sends the command at once; the returned future only awaits completion.
        let stop = Box::new(move || {
            drop(phandle.stop(false));
            for h in &ghandles {
                drop(h.stop(false));
            }
        });
        let stack = Stack {
            gatekeeper_url,
            admin_url,
            proxy_url,
            proxy_token: token,
            keys: Keys {
                read: r.key,
                write: w.key,
                admin: a.key,
            },
            http: client(&cluster.tls("ca.pem"))?,
            ca: cluster.tls("ca.pem"),
            stop,
            _keys_dir: keys_dir,
        };
        if opts.proxy_url_override.is_none() {
            stack.wait_ready(Duration::from_secs(30)).await?;
        }
        Ok(stack)
    }

    /// Waits until the proxy's monitors have seen every node.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = self
                .http
                .get(format!("{}/ready", self.proxy_url))
                .send()
                .await
            {
                if let Ok(v) = r.json::<Value>().await {
                    let all_checked = v["nodes"]
                        .as_array()
                        .is_some_and(|n| n.iter().all(|n| n["checked"] == true));
                    if v["ready"] == true && all_checked {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("the stack did not become ready in {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// POSTs JSON to the gatekeeper with `key` (None: no header).
    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.gatekeeper_url))
            .json(body);
        if let Some(k) = key {
            req = req.header("X-API-Key", k);
        }
        send_json(req).await.expect("gatekeeper answers")
    }

    /// `POST /query` with `key`.
    pub async fn query(&self, key: &str, body: Value) -> (u16, Value) {
        self.post("/query", Some(key), &body).await
    }

    /// The proxy's `/ready` document.
    pub async fn proxy_ready(&self) -> Value {
        self.http
            .get(format!("{}/ready", self.proxy_url))
            .send()
            .await
            .expect("proxy answers")
            .json()
            .await
            .expect("json")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        (self.stop)();
    }
}
