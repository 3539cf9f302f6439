//! sysbench: prepares its tables on the manager (so they replicate), runs its OLTP tests on the
//! local cluster's nodes, and parses its reports (tps, qps, latency, and the latency histogram
//! for p50/p99) into the JSON and table form of the other scenarios.
//!
//! Raw reports are kept as `sysbench-<node>-<test>.txt`; `loadtest sysbench-report DIR` parses
//! a directory of them, which is how the AWS path (the Ansible role) produces the same files.

use crate::error::Error;
use crate::report::{ms, render_table, write_csv, write_json};
use mysql::prelude::Queryable;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// sysbench's figures for one test on one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SysbenchResult {
    pub node: String,
    pub test: String,
    pub threads: u32,
    pub time_s: f64,
    pub transactions: u64,
    pub tps: f64,
    pub queries: u64,
    pub qps: f64,
    /// Statements by kind, as sysbench counts them (`read`: SELECT; `write`: INSERT, UPDATE,
    /// DELETE; `other`: BEGIN, COMMIT and the rest).
    pub reads: u64,
    pub writes: u64,
    pub other: u64,
    /// Ignored errors (deadlocks and the like that sysbench retried).
    pub errors: u64,
    pub reconnects: u64,
    pub avg_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// From the latency histogram when there is one (`--histogram=on`).
    pub p50_ms: Option<f64>,
    /// From sysbench's own percentile line when it is the 95th, else from the histogram.
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The number after `label` on the first line that starts with it (after indentation).
fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .map(str::trim_start)
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
}

fn number<T: std::str::FromStr>(text: &str, label: &str) -> Result<T, String> {
    let raw = field(text, label).ok_or_else(|| format!("no {label:?} line"))?;
    let first = raw
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches('s');
    first
        .parse()
        .map_err(|_| format!("{label:?} is not a number: {raw:?}"))
}

/// The "(N per sec.)" figure of a line.
fn per_sec(text: &str, label: &str) -> Result<f64, String> {
    let raw = field(text, label).ok_or_else(|| format!("no {label:?} line"))?;
    raw.split_once('(')
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("{label:?} has no rate: {raw:?}"))
}

/// The latency histogram: (upper value in ms, count) per printed bucket.
pub fn histogram(text: &str) -> Vec<(f64, u64)> {
    let Some(start) = text.find("Latency histogram") else {
        return Vec::new();
    };
    text[start..]
        .lines()
        .skip(2)
        .map_while(|l| {
            let (value, rest) = l.split_once('|')?;
            let count = rest.split_whitespace().last()?.parse().ok()?;
            Some((value.trim().parse().ok()?, count))
        })
        .collect()
}

/// The smallest bucket value at or below which `percentile`% of the events fall.
pub fn histogram_percentile(buckets: &[(f64, u64)], percentile: f64) -> Option<f64> {
    let total: u64 = buckets.iter().map(|b| b.1).sum();
    if total == 0 {
        return None;
    }
    let rank = ((percentile / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    buckets.iter().find_map(|&(v, c)| {
        seen += c;
        (seen >= rank).then_some(v)
    })
}

/// Parses sysbench 1.0's report of a `run`.
pub fn parse(node: &str, test: &str, text: &str) -> Result<SysbenchResult, String> {
    let buckets = histogram(text);
    let own_pct = text
        .lines()
        .map(str::trim_start)
        .find_map(|l| l.split_once("th percentile:"))
        .and_then(|(p, v)| Some((p.trim().parse::<u32>().ok()?, v.trim().parse::<f64>().ok()?)));
    let from_hist = |p: f64| histogram_percentile(&buckets, p);
    let pick = |p: u32| match own_pct {
        Some((q, v)) if q == p => Some(v),
        _ => from_hist(f64::from(p)),
    };
    Ok(SysbenchResult {
        node: node.to_string(),
        test: test.to_string(),
        threads: number(text, "Number of threads:")?,
        time_s: number(text, "total time:")?,
        transactions: number(text, "transactions:")?,
        tps: per_sec(text, "transactions:")?,
        queries: number(text, "queries:")?,
        qps: per_sec(text, "queries:")?,
        reads: number(text, "read:")?,
        writes: number(text, "write:")?,
        other: number(text, "other:")?,
        errors: number(text, "ignored errors:")?,
        reconnects: number(text, "reconnects:")?,
        avg_ms: number(text, "avg:")?,
        min_ms: number(text, "min:")?,
        max_ms: number(text, "max:")?,
        p50_ms: from_hist(50.0),
        p95_ms: pick(95),
        p99_ms: pick(99),
    })
}

/// `sysbench-<node>-<test>.txt` → (node, test); tests have no `-`, nodes may.
pub fn split_file_name(name: &str) -> Option<(String, String)> {
    let stem = name.strip_prefix("sysbench-")?.strip_suffix(".txt")?;
    let (node, test) = stem.rsplit_once('-')?;
    (!node.is_empty() && !test.is_empty()).then(|| (node.to_string(), test.to_string()))
}

/// The file a node's test report is kept in.
pub fn file_name(node: &str, test: &str) -> String {
    format!("sysbench-{node}-{test}.txt")
}

/// Parses every `sysbench-*.txt` in `dir`, sorted by name.
pub fn parse_dir(dir: &Path) -> Result<Vec<SysbenchResult>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("read", dir, e))?;
    let mut files: Vec<(PathBuf, String, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            split_file_name(&name).map(|(n, t)| (e.path(), n, t))
        })
        .collect();
    if files.is_empty() {
        return Err(Error::Usage(format!(
            "no sysbench-<node>-<test>.txt files in {}",
            dir.display()
        )));
    }
    files.sort();
    files
        .into_iter()
        .map(|(path, node, test)| {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
            parse(&node, &test, &text).map_err(|e| Error::Tool(format!("{}: {e}", path.display())))
        })
        .collect()
}

/// The table printed for sysbench results.
pub fn text_table(results: &[SysbenchResult]) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), ms);
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.node.clone(),
                r.test.clone(),
                r.threads.to_string(),
                format!("{:.1}", r.time_s),
                format!("{:.2}", r.tps),
                format!("{:.2}", r.qps),
                ms(r.avg_ms),
                opt(r.p50_ms),
                opt(r.p95_ms),
                opt(r.p99_ms),
                r.errors.to_string(),
            ]
        })
        .collect();
    render_table(
        &[
            "node", "test", "threads", "time s", "tps", "qps", "avg ms", "p50 ms", "p95 ms",
            "p99 ms", "errors",
        ],
        &rows,
    )
}

/// A sysbench run's report: its settings, each result, and whether the replicas still match.
#[derive(Debug, Clone, Serialize)]
pub struct SysbenchReport {
    pub scenario: String,
    pub started_at: String,
    pub tables: u32,
    pub table_size: u64,
    pub results: Vec<SysbenchResult>,
    /// `CHECKSUM TABLE` of every sbtest table equal on the manager and every worker after the
    /// run (None when not checked, e.g. parsed from files).
    pub replicas_identical: Option<bool>,
}

/// `sysbench.json` and `sysbench.csv` in `dir`.
pub fn write_report(dir: &Path, r: &SysbenchReport) -> Result<(), Error> {
    write_json(&dir.join("sysbench.json"), r)?;
    let opt = |v: Option<f64>| v.map_or(String::new(), ms);
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|x| {
            vec![
                x.node.clone(),
                x.test.clone(),
                x.threads.to_string(),
                format!("{:.4}", x.time_s),
                x.transactions.to_string(),
                format!("{:.2}", x.tps),
                x.queries.to_string(),
                format!("{:.2}", x.qps),
                ms(x.avg_ms),
                opt(x.p50_ms),
                opt(x.p95_ms),
                opt(x.p99_ms),
                ms(x.max_ms),
                x.errors.to_string(),
            ]
        })
        .collect();
    write_csv(
        &dir.join("sysbench.csv"),
        &[
            "node",
            "test",
            "threads",
            "time_s",
            "transactions",
            "tps",
            "queries",
            "qps",
            "avg_ms",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "max_ms",
            "errors",
        ],
        &rows,
    )
}

/// The local cluster as sysbench sees it: loopback ports and the `sbtest` user.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub host: String,
    /// (name, port): the manager first, then `worker-1`, `worker-2`, …
    pub nodes: Vec<(String, u16)>,
    pub user: String,
    password: String,
    /// The local stack's TLS directory: `ca.pem` for the driver, `sysbench/` for sysbench.
    tls: PathBuf,
}

impl Cluster {
    /// The cluster `make up` runs: ports from `SQLGATE_MANAGER_PORT` and
    /// `SQLGATE_WORKER_PORTS` (as `local/cluster.sh`), the password from `secrets.env` in
    /// `local_dir` (or `SYSBENCH_PASSWORD`).
    pub fn local(local_dir: &Path) -> Result<Cluster, Error> {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        let port = |s: &str, what: &str| {
            s.parse::<u16>()
                .map_err(|_| Error::Usage(format!("{what} {s:?} is not a port")))
        };
        let mut nodes = vec![(
            "manager".to_string(),
            port(&env("SQLGATE_MANAGER_PORT", "3307"), "SQLGATE_MANAGER_PORT")?,
        )];
        for (i, p) in env("SQLGATE_WORKER_PORTS", "3308 3309")
            .split_whitespace()
            .enumerate()
        {
            nodes.push((
                format!("worker-{}", i + 1),
                port(p, "SQLGATE_WORKER_PORTS")?,
            ));
        }
        let password = match std::env::var("SYSBENCH_PASSWORD") {
            Ok(p) => p,
            Err(_) => {
                let path = local_dir.join("secrets.env");
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::Usage(format!(
                        "cannot read the sbtest password from {}: {e} (run make up, or set SYSBENCH_PASSWORD)",
                        path.display()
                    ))
                })?;
                text.lines()
                    .find_map(|l| l.strip_prefix("SBTEST_PASSWORD="))
                    .map(|p| p.trim().to_string())
                    .ok_or_else(|| {
                        Error::Usage(format!("no SBTEST_PASSWORD in {}", path.display()))
                    })?
            }
        };
        Ok(Cluster {
            host: "127.0.0.1".into(),
            nodes,
            user: "sbtest".into(),
            password,
            tls: local_dir.join("tls"),
        })
    }

    pub fn manager(&self) -> &(String, u16) {
        &self.nodes[0]
    }

    pub fn workers(&self) -> &[(String, u16)] {
        &self.nodes[1..]
    }

    pub fn port(&self, node: &str) -> Option<u16> {
        self.nodes.iter().find(|(n, _)| n == node).map(|(_, p)| *p)
    }

    fn connect(&self, port: u16) -> Result<mysql::Conn, Error> {
        let opts = mysql::OptsBuilder::new()
            .ip_or_hostname(Some(self.host.clone()))
            .tcp_port(port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .prefer_socket(false)
            .tcp_connect_timeout(Some(Duration::from_secs(3)))
            // The nodes require TLS; trust the local CA only.
            .ssl_opts(Some(
                mysql::SslOpts::default().with_root_cert_path(Some(self.tls.join("ca.pem"))),
            ));
        mysql::Conn::new(opts).map_err(|e| {
            Error::Unreachable(format!(
                "cannot connect to {}:{port} as {}: {e} (is the cluster up? make up)",
                self.host, self.user
            ))
        })
    }

    fn sql_error(&self, port: u16, e: mysql::Error) -> Error {
        Error::Tool(format!("{}:{port}: {e}", self.host))
    }

    /// Rows in `sbtest.sbtest1..=tables` on a node (None for a missing table).
    fn table_rows(&self, port: u16, tables: u32) -> Result<Vec<Option<u64>>, Error> {
        let mut c = self.connect(port)?;
        (1..=tables)
            .map(|t| {
                match c.query_first::<u64, _>(format!("SELECT COUNT(*) FROM sbtest.sbtest{t}")) {
                    Ok(n) => Ok(n),
                    Err(mysql::Error::MySqlError(e)) if e.code == 1146 => Ok(None),
                    Err(e) => Err(self.sql_error(port, e)),
                }
            })
            .collect()
    }

    /// The server's `@@version` (from the manager).
    pub fn server_version(&self) -> Result<String, Error> {
        let port = self.manager().1;
        let mut c = self.connect(port)?;
        c.query_first::<String, _>("SELECT @@version")
            .map_err(|e| self.sql_error(port, e))
            .map(Option::unwrap_or_default)
    }

    /// `CHECKSUM TABLE` of every sbtest table on a node.
    fn checksums(&self, port: u16, tables: u32) -> Result<Vec<Option<u64>>, Error> {
        let mut c = self.connect(port)?;
        let list: Vec<String> = (1..=tables).map(|t| format!("sbtest.sbtest{t}")).collect();
        let rows: Vec<(String, Option<u64>)> = c
            .query(format!("CHECKSUM TABLE {}", list.join(", ")))
            .map_err(|e| self.sql_error(port, e))?;
        Ok(rows.into_iter().map(|(_, sum)| sum).collect())
    }

    /// Waits until every worker's sbtest tables have the manager's checksums.
    pub fn wait_identical(&self, tables: u32, within: Duration) -> Result<bool, Error> {
        let started = Instant::now();
        loop {
            let want = self.checksums(self.manager().1, tables)?;
            let mut same = true;
            for (_, port) in self.workers() {
                same &= self.checksums(*port, tables)? == want;
            }
            if same {
                return Ok(true);
            }
            if started.elapsed() > within {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Deletes the rows above `table_size` that inserts added to `sbtest1..=tables` on the
    /// manager (they replicate), in chunks, so the tables hold the loaded rows again; a
    /// missing table is skipped. Returns the rows deleted.
    pub fn trim_sbtest(&self, tables: u32, table_size: u64) -> Result<u64, Error> {
        let port = self.manager().1;
        let mut c = self.connect(port)?;
        let mut deleted = 0;
        for t in 1..=tables {
            loop {
                let sql = format!(
                    "DELETE FROM sbtest.sbtest{t} WHERE id > {table_size} ORDER BY id LIMIT 20000"
                );
                match c.query_drop(sql) {
                    Ok(()) => {}
                    Err(mysql::Error::MySqlError(e)) if e.code == 1146 => break,
                    Err(e) => return Err(self.sql_error(port, e)),
                }
                let n = c.affected_rows();
                deleted += n;
                if n == 0 {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Waits until every worker has applied everything the manager has committed (MariaDB's
    /// `MASTER_GTID_WAIT`, MySQL's `WAIT_FOR_EXECUTED_GTID_SET`); false if one has not within
    /// `within`.
    pub fn wait_caught_up(&self, within: Duration) -> Result<bool, Error> {
        let port = self.manager().1;
        let mut m = self.connect(port)?;
        let version: String = m
            .query_first("SELECT @@version")
            .map_err(|e| self.sql_error(port, e))?
            .unwrap_or_default();
        let mariadb = version.contains("MariaDB");
        let position: String = m
            .query_first(if mariadb {
                "SELECT @@gtid_binlog_pos"
            } else {
                "SELECT @@gtid_executed"
            })
            .map_err(|e| self.sql_error(port, e))?
            .unwrap_or_default();
        let wait = if mariadb {
            "SELECT MASTER_GTID_WAIT(?, ?)"
        } else {
            "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)"
        };
        let started = Instant::now();
        for (_, wport) in self.workers() {
            let left = within
                .saturating_sub(started.elapsed())
                .as_secs_f64()
                .max(0.001);
            let mut w = self.connect(*wport)?;
            let r: Option<i64> = w
                .exec_first(wait, (position.as_str(), left))
                .map_err(|e| self.sql_error(*wport, e))?;
            if r != Some(0) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The `sysbench` command for `test` on `port` (password in the environment).
    pub fn command(
        &self,
        test: &str,
        port: u16,
        tables: u32,
        table_size: u64,
        extra: &[String],
    ) -> Command {
        let mut cmd = Command::new("sysbench");
        cmd.arg(test)
            .args(self.args(port, tables, table_size))
            .args(extra);
        cmd.env("MYSQL_PWD", &self.password);
        // With --mysql-ssl=on, sysbench 1.0 reads cacert.pem, client-cert.pem and
        // client-key.pem from its working directory (`local/cluster.sh` links them there).
        cmd.current_dir(self.tls.join("sysbench"));
        cmd
    }

    fn args(&self, port: u16, tables: u32, table_size: u64) -> Vec<String> {
        vec![
            "--db-driver=mysql".into(),
            format!("--mysql-host={}", self.host),
            format!("--mysql-port={port}"),
            format!("--mysql-user={}", self.user),
            "--mysql-db=sbtest".into(),
            "--mysql-ssl=on".into(),
            format!("--tables={tables}"),
            format!("--table-size={table_size}"),
        ]
    }

    /// The command line as documented: the password shown as coming from the environment.
    pub fn command_line(
        &self,
        test: &str,
        port: u16,
        tables: u32,
        table_size: u64,
        extra: &[String],
    ) -> String {
        let mut parts = vec![
            "cd .local/tls/sysbench &&".to_string(),
            "MYSQL_PWD=$SBTEST_PASSWORD".to_string(),
            "sysbench".into(),
            test.into(),
        ];
        parts.extend(self.args(port, tables, table_size));
        parts.extend(extra.iter().cloned());
        parts.join(" ")
    }
}

/// Fails with one line when sysbench is not installed; otherwise its version.
pub fn version() -> Result<String, Error> {
    let out = Command::new("sysbench")
        .arg("--version")
        .output()
        .map_err(|_| {
            Error::Usage("sysbench is not installed: make deps (apt-get install sysbench)".into())
        })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn run_checked(mut cmd: Command, what: &str) -> Result<String, Error> {
    let out = cmd
        .output()
        .map_err(|e| Error::Tool(format!("cannot run sysbench for {what}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reason = stderr
            .lines()
            .chain(stdout.lines())
            .find(|l| l.contains("FATAL"))
            .unwrap_or("no FATAL line")
            .trim()
            .to_string();
        return Err(Error::Tool(format!(
            "sysbench {what} failed ({}): {reason}",
            out.status
        )));
    }
    Ok(stdout)
}

/// Makes sure the manager holds `tables` × `table_size` rows (prepared there so that they
/// replicate; never on a worker) and every worker has the same data.
pub fn prepare(cluster: &Cluster, tables: u32, table_size: u64) -> Result<bool, Error> {
    let (_, manager) = cluster.manager().clone();
    let rows = cluster.table_rows(manager, tables)?;
    let ready = rows.iter().all(|r| *r == Some(table_size));
    if !ready {
        eprintln!(
            "loadtest: preparing {tables} sysbench tables of {table_size} rows on the manager"
        );
        if rows.iter().any(Option::is_some) {
            run_checked(
                cluster.command(
                    "oltp_common",
                    manager,
                    tables,
                    table_size,
                    &["cleanup".into()],
                ),
                "cleanup",
            )?;
        }
        run_checked(
            cluster.command(
                "oltp_common",
                manager,
                tables,
                table_size,
                &["prepare".into()],
            ),
            "prepare",
        )?;
    }
    if !cluster.wait_identical(tables, Duration::from_secs(180))? {
        return Err(Error::Tool(
            "the workers' sbtest tables still differ from the manager's after 180 s: check replication (make status)".into(),
        ));
    }
    Ok(!ready)
}

/// Runs one sysbench test on a node and parses it; the raw report is returned too.
pub fn run(
    cluster: &Cluster,
    node: &str,
    test: &str,
    tables: u32,
    table_size: u64,
    extra: &[String],
) -> Result<(SysbenchResult, String), Error> {
    run_script(cluster, node, test, test, tables, table_size, extra)
}

/// Like [`run`], for a test given as a script (`script`: a test name or the path of a Lua
/// file), reported as `test`.
pub fn run_script(
    cluster: &Cluster,
    node: &str,
    test: &str,
    script: &str,
    tables: u32,
    table_size: u64,
    extra: &[String],
) -> Result<(SysbenchResult, String), Error> {
    let port = cluster
        .port(node)
        .ok_or_else(|| Error::Usage(format!("no node {node}")))?;
    let mut args = extra.to_vec();
    args.push("run".into());
    let text = run_checked(
        cluster.command(script, port, tables, table_size, &args),
        &format!("{test} on {node}"),
    )?;
    let result = parse(node, test, &text)
        .map_err(|e| Error::Tool(format!("sysbench {test} on {node}: {e}")))?;
    Ok((result, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POINT_SELECT: &str =
        include_str!("../tests/fixtures/sysbench-worker-1-oltp_point_select.txt");
    const READ_WRITE: &str = include_str!("../tests/fixtures/sysbench-manager-oltp_read_write.txt");
    const INSERT: &str = include_str!("../tests/fixtures/sysbench-manager-oltp_insert.txt");
    const UPDATE: &str = include_str!("../tests/fixtures/sysbench-manager-oltp_update_index.txt");
    const MIX: &str = include_str!("../tests/fixtures/sysbench-manager-oltp_point_mix.txt");

    #[test]
    fn parses_a_read_write_report() {
        let r = parse("manager", "oltp_read_write", READ_WRITE).unwrap();
        let want = SysbenchResult {
            node: "manager".into(),
            test: "oltp_read_write".into(),
            threads: 4,
            time_s: 3.0033,
            transactions: 2900,
            tps: 965.37,
            queries: 58000,
            qps: 19307.37,
            reads: 40600,
            writes: 11600,
            other: 5800,
            errors: 0,
            reconnects: 0,
            avg_ms: 4.14,
            min_ms: 1.08,
            max_ms: 40.07,
            p50_ms: None,
            p95_ms: Some(9.22),
            p99_ms: None,
        };
        assert_eq!(r, want, "every figure of the report");
    }

    #[test]
    fn parses_a_point_select_report_with_its_histogram() {
        let r = parse("worker-1", "oltp_point_select", POINT_SELECT).unwrap();
        assert_eq!(
            (r.threads, r.transactions, r.queries),
            (1, 57803, 57803),
            "counts"
        );
        assert_eq!(
            r.p99_ms,
            Some(0.14),
            "sysbench's own 99th percentile line wins"
        );
        let buckets = histogram(POINT_SELECT);
        assert_eq!(
            buckets.iter().map(|b| b.1).sum::<u64>(),
            57803,
            "the histogram holds every event"
        );
        let p50 = r.p50_ms.expect("p50 from the histogram");
        // This run is bimodal (most events near 0.02 ms or 0.06 ms): p50 lands in the upper mode.
        assert_eq!(
            p50, 0.059,
            "p50 is the bucket where the 28,902nd event falls"
        );
        assert!(
            r.p95_ms.unwrap() <= r.p99_ms.unwrap(),
            "p95 from the histogram is below p99"
        );
    }

    #[test]
    fn parses_the_write_and_mix_reports_bench_runs() {
        // bench's peers: one statement per event, so events, queries and statements agree.
        let cases = [
            (INSERT, "oltp_insert", 15059, 0, 15059, 5007.20, 12.52),
            (UPDATE, "oltp_update_index", 13733, 0, 13733, 4561.09, 10.84),
            (MIX, "oltp_point_mix", 31483, 28345, 3138, 10411.30, 16.12),
        ];
        for (text, test, queries, reads, writes, qps, p99) in cases {
            let r = parse("manager", test, text).unwrap();
            assert_eq!(
                (
                    r.threads,
                    r.transactions,
                    r.queries,
                    r.reads,
                    r.writes,
                    r.other
                ),
                (16, queries, queries, reads, writes, 0),
                "{test}: counts"
            );
            assert_eq!(
                (r.qps, r.tps),
                (qps, qps),
                "{test}: one statement per event"
            );
            assert_eq!(
                r.p99_ms,
                Some(p99),
                "{test}: sysbench's own 99th percentile"
            );
            let p50 = r.p50_ms.expect("p50 from the histogram");
            assert!(p50 > 0.0 && p50 <= p99, "{test}: p50 {p50} within p99");
            assert_eq!(
                histogram(text).iter().map(|b| b.1).sum::<u64>(),
                queries,
                "{test}: the histogram holds every event"
            );
        }
        // The mix: every thread's every 10th event is an update, so at most 9 events per
        // thread (16 threads) short of a tenth.
        let m = parse("manager", "oltp_point_mix", MIX).unwrap();
        assert!(
            m.writes * 10 <= m.queries && m.writes * 10 + 16 * 9 >= m.queries,
            "a tenth are updates: {} of {}",
            m.writes,
            m.queries
        );
    }

    #[test]
    fn histogram_percentiles() {
        let b = [(1.0, 50), (2.0, 40), (10.0, 9), (100.0, 1)];
        let cases = [
            (0.0, 1.0, "p0"),
            (50.0, 1.0, "p50 is the first bucket"),
            (50.1, 2.0, "just past it"),
            (90.0, 2.0, "p90"),
            (99.0, 10.0, "p99"),
            (99.5, 100.0, "p99.5"),
            (100.0, 100.0, "p100"),
        ];
        for (p, want, what) in cases {
            assert_eq!(histogram_percentile(&b, p), Some(want), "{what}");
        }
        assert_eq!(histogram_percentile(&[], 50.0), None, "no histogram");
    }

    #[test]
    fn broken_reports_say_what_is_missing() {
        let cases = [
            ("", "Number of threads"),
            ("Number of threads: 4\n", "total time"),
            (
                "FATAL: unable to connect to MySQL server\n",
                "Number of threads",
            ),
        ];
        for (text, needle) in cases {
            let e = parse("n", "t", text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn file_names_carry_node_and_test() {
        let cases = [
            (
                "sysbench-worker-1-oltp_read_only.txt",
                Some(("worker-1", "oltp_read_only")),
            ),
            (
                "sysbench-manager-oltp_read_write.txt",
                Some(("manager", "oltp_read_write")),
            ),
            ("sysbench.json", None),
            ("sysbench--x.txt", None),
            ("other-worker-1-x.txt", None),
        ];
        for (name, want) in cases {
            let got = split_file_name(name);
            assert_eq!(
                got,
                want.map(|(a, b)| (a.to_string(), b.to_string())),
                "{name}"
            );
            if let Some((n, t)) = want {
                assert_eq!(file_name(n, t), name, "round trip of {name}");
            }
        }
    }

    #[test]
    fn a_directory_of_reports_becomes_json_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(file_name("manager", "oltp_read_write")),
            READ_WRITE,
        )
        .unwrap();
        std::fs::write(
            dir.path().join(file_name("worker-1", "oltp_point_select")),
            POINT_SELECT,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let results = parse_dir(dir.path()).unwrap();
        assert_eq!(
            results.iter().map(|r| r.node.as_str()).collect::<Vec<_>>(),
            ["manager", "worker-1"],
            "both parsed, sorted"
        );
        let report = SysbenchReport {
            scenario: "sysbench".into(),
            started_at: "x".into(),
            tables: 2,
            table_size: 100_000,
            results,
            replicas_identical: None,
        };
        write_report(dir.path(), &report).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("sysbench.csv")).unwrap();
        assert!(csv.lines().nth(1).unwrap().starts_with("manager,oltp_read_write,4,3.0033,2900,965.37,58000,19307.37,4.140,,9.220,,40.070,0"), "{csv}");
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("sysbench.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["results"][1]["p99_ms"], 0.14, "{json}");
        let table = text_table(&report.results);
        assert!(
            table.contains("965.37") && table.contains("oltp_point_select"),
            "{table}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(
            matches!(parse_dir(empty.path()), Err(Error::Usage(_))),
            "an empty directory is a usage error"
        );
    }
}
