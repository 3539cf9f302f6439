//! sqlgate against its floor and against its starting point, in one run, by groups:
//! - `reads`: sysbench point selects straight to a worker, then the same point selects through
//!   the gatekeeper and proxy in each mode;
//! - `writes`: point UPDATE and INSERT through the gateway against sysbench `oltp_update_index`
//!   and `oltp_insert` on the manager;
//! - `mixed`: 90% point selects and 10% point updates through the gateway against the same mix
//!   run by sysbench on the manager (`loadtest/sysbench/oltp_point_mix.lua`);
//! - `seed`: the same point selects through the seed design rebuilt (`loadtest/seed-peer/`).
//!
//! Then ratios, CPU per request (of the services, and of the database servers in every run,
//! direct ones too), memory under load, and the targets judged (`crate::targets`).

use crate::error::Error;
use crate::facts::{self, Facts};
use crate::memory::{self, Rss, Sampler, Watched};
use crate::report::{ms, render_table, write_csv, write_json};
use crate::runner::{self, Stop};
use crate::scenario::{self, SelectOptions, Target, Workload};
use crate::schedule::Load;
use crate::stats::CurvePoint;
use crate::sysbench::{self, Cluster};
use crate::targets::{self, nan_if_null, Comparison, TargetCheck};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sqlgate::wire::Mode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A group of runs `bench` can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Reads,
    Writes,
    Mixed,
    Seed,
}

impl Group {
    pub const ALL: [Group; 4] = [Group::Reads, Group::Writes, Group::Mixed, Group::Seed];

    pub fn as_str(self) -> &'static str {
        match self {
            Group::Reads => "reads",
            Group::Writes => "writes",
            Group::Mixed => "mixed",
            Group::Seed => "seed",
        }
    }

    pub fn parse(s: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// Requests a seed run answers at least (it runs up to 4× `--time` for them).
pub const MIN_SEED_REQUESTS: u64 = 300;

/// The mixed workload's sysbench script, in `BenchOptions::lua_dir`.
pub const MIX_SCRIPT: &str = "oltp_point_mix.lua";

/// What `bench` does.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Measured time of each run.
    pub time: Duration,
    /// Unmeasured load before each run.
    pub warmup: Duration,
    pub concurrencies: Vec<usize>,
    /// Gateway modes of the reads (`random` is the headline "gateway" figure).
    pub modes: Vec<Mode>,
    /// The groups to run, in the order of `Group::ALL` whatever the order given.
    pub groups: Vec<Group>,
    /// Point updates per 100 requests of the mixed group.
    pub mix_write_percent: u32,
    pub tables: u32,
    pub table_size: u64,
    /// The worker sysbench reads from directly.
    pub direct_node: String,
    /// Where `oltp_point_mix.lua` is.
    pub lua_dir: PathBuf,
    /// Services whose memory and CPU are sampled: (name, pid file).
    pub watch: Vec<(String, PathBuf)>,
    /// The seed design's processes: (name, pid file, a word of their command line).
    pub seed_watch: Vec<(String, PathBuf, String)>,
    /// The local stack's state directory (`SQLGATE_LOCAL_DIR`): its database servers, whose
    /// CPU is measured in every run, are the `mariadbd` processes started with
    /// `--defaults-file=<state_dir>/db/<node>/my.cnf`.
    pub state_dir: PathBuf,
    /// Settings the services ran with, recorded as given (`GATEKEEPER_RATE_LIMIT_RPS=0`).
    pub settings: Vec<String>,
    /// The command that ran the benchmark, for the record.
    pub invocation: String,
}

/// Where each group sends its requests: the gatekeeper with a read key (reads), with a
/// write key (writes, mixed), and the seed design's gatekeeper.
#[derive(Clone)]
pub struct Targets {
    pub read: Target,
    pub write: Option<Target>,
    pub seed: Option<Target>,
}

/// One measured run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRow {
    /// `point_select`, `insert`, `update` or `mix_90_10` (`Workload::label`).
    #[serde(default = "point_select")]
    pub workload: String,
    /// `direct` (sysbench to a node), `gateway` (loadtest through gatekeeper and proxy) or
    /// `seed` (loadtest through the seed design's peers).
    pub path: String,
    /// The routing mode; `-` for direct.
    pub mode: String,
    pub concurrency: usize,
    /// The node sysbench ran on (direct runs).
    #[serde(default)]
    pub node: String,
    /// The sysbench test (direct runs).
    #[serde(default)]
    pub test: String,
    pub count: u64,
    pub errors: u64,
    pub throughput_rps: f64,
    pub avg_ms: f64,
    /// NaN (null in JSON) when sysbench printed no histogram.
    #[serde(deserialize_with = "nan_if_null")]
    pub p50_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Resident memory and CPU time of the services during the run (gateway and seed runs).
    pub rss: BTreeMap<String, Rss>,
    /// CPU time each service spent per request of the run, in microseconds.
    pub cpu_us_per_request: BTreeMap<String, f64>,
    /// CPU time each database server (by node: `manager`, `worker-1`, …) spent per request of
    /// the run, in microseconds, from the start to the end of the measured window (every path).
    #[serde(default)]
    pub db_cpu_us_per_request: BTreeMap<String, f64>,
    pub errors_by_code: BTreeMap<String, u64>,
    /// Requests (gateway, seed) or statements by kind (direct: `read`, `write`) by who served them.
    pub nodes: BTreeMap<String, u64>,
    pub curve: Vec<CurvePoint>,
    /// The command that reproduces this run alone.
    pub command: String,
}

fn point_select() -> String {
    targets::POINT_SELECT.into()
}

/// Everything `bench` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub scenario: String,
    pub started_at: String,
    pub gatekeeper: String,
    /// The seed design's gatekeeper, when the seed group ran.
    #[serde(default)]
    pub seed_gatekeeper: Option<String>,
    /// The groups run (empty in reports from before groups, which measured reads only).
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub mix_write_percent: u32,
    pub time_s: f64,
    pub warmup_s: f64,
    pub tables: u32,
    pub table_size: u64,
    pub direct_node: String,
    pub facts: Facts,
    pub settings: Vec<String>,
    pub invocation: String,
    pub rows: Vec<BenchRow>,
    pub comparisons: Vec<Comparison>,
    /// Largest resident memory per process over all runs.
    pub memory: BTreeMap<String, Rss>,
    pub targets: Vec<TargetCheck>,
    pub warnings: Vec<String>,
}

/// One step of a bench run.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// sysbench straight to `node`.
    Direct {
        workload: Workload,
        node: String,
        concurrency: usize,
    },
    /// loadtest through the gatekeeper and proxy.
    Gateway {
        workload: Workload,
        mode: Mode,
        concurrency: usize,
    },
    /// loadtest through the seed design's peers (point selects, mode random).
    Seed { concurrency: usize },
    /// Waits until every worker has applied the manager's writes, so that no replication
    /// backlog competes with the next run for the cores.
    CatchUp,
    /// Deletes the rows the insert runs added above the loaded range.
    Trim,
}

impl Step {
    /// Whether the step is a measured run.
    pub fn measured(&self) -> bool {
        matches!(
            self,
            Step::Direct { .. } | Step::Gateway { .. } | Step::Seed { .. }
        )
    }
}

/// The sysbench peer of a workload: the test (a script name, or the mix's Lua file) and its
/// own options.
pub fn direct_test(workload: Workload) -> (&'static str, Vec<String>) {
    match workload {
        Workload::PointSelect => ("oltp_point_select", vec![]),
        Workload::PointInsert => ("oltp_insert", vec![]),
        Workload::PointUpdate => ("oltp_update_index", vec![]),
        Workload::Mix { write_percent } => {
            let (reads, writes) = mix_cycle(write_percent);
            (
                "oltp_point_mix",
                vec![
                    format!("--point_selects={reads}"),
                    format!("--index_updates={writes}"),
                ],
            )
        }
    }
}

/// A mix's shortest cycle: (point selects, point updates) per cycle, e.g. (9, 1) for 10%.
pub fn mix_cycle(write_percent: u32) -> (u32, u32) {
    let w = write_percent.min(100);
    let g = gcd(100, w);
    ((100 - w) / g, w / g)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a.max(1)
    } else {
        gcd(b, a % b)
    }
}

/// The steps of a run, in order: reads, the seed design (both before any write, on
/// freshly-prepared tables), writes (update, then insert and the trim of its rows), mixed.
/// Writes and mixed runs go to the manager and are followed by a catch-up of the workers.
pub fn plan(
    groups: &[Group],
    concurrencies: &[usize],
    modes: &[Mode],
    mix_write_percent: u32,
    direct_node: &str,
    manager: &str,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if groups.contains(&Group::Reads) {
        for &c in concurrencies {
            steps.push(Step::Direct {
                workload: Workload::PointSelect,
                node: direct_node.into(),
                concurrency: c,
            });
            for &mode in modes {
                steps.push(Step::Gateway {
                    workload: Workload::PointSelect,
                    mode,
                    concurrency: c,
                });
            }
        }
    }
    if groups.contains(&Group::Seed) {
        for &c in concurrencies {
            steps.push(Step::Seed { concurrency: c });
        }
    }
    let write_pair = |steps: &mut Vec<Step>, workload: Workload, c: usize| {
        steps.push(Step::Direct {
            workload,
            node: manager.into(),
            concurrency: c,
        });
        steps.push(Step::CatchUp);
        steps.push(Step::Gateway {
            workload,
            mode: Mode::Random,
            concurrency: c,
        });
        steps.push(Step::CatchUp);
    };
    if groups.contains(&Group::Writes) {
        for workload in [Workload::PointUpdate, Workload::PointInsert] {
            for &c in concurrencies {
                write_pair(&mut steps, workload, c);
            }
        }
        steps.push(Step::Trim);
    }
    if groups.contains(&Group::Mixed) {
        let c = concurrencies.iter().copied().max().unwrap_or(16);
        write_pair(
            &mut steps,
            Workload::Mix {
                write_percent: mix_write_percent,
            },
            c,
        );
    }
    steps
}

/// The measured time a plan takes (runs and their warm-ups; setup and catch-ups not counted).
pub fn planned_time(steps: &[Step], time: Duration, warmup: Duration) -> Duration {
    let runs = u32::try_from(steps.iter().filter(|s| s.measured()).count()).unwrap_or(u32::MAX);
    (time + warmup) * runs
}

fn bar(message: String, length: Duration) -> ProgressBar {
    let p = ProgressBar::new(u64::try_from(length.as_millis()).unwrap_or(u64::MAX));
    p.set_style(
        ProgressStyle::with_template("{msg:<44} [{bar:40}] {elapsed:>4}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    p.set_message(message);
    p
}

fn sysbench_extra(concurrency: usize, time: Duration) -> Vec<String> {
    vec![
        format!("--threads={concurrency}"),
        format!("--time={}", time.as_secs().max(1)),
        "--rand-type=uniform".into(),
        "--histogram=on".into(),
        "--percentile=99".into(),
    ]
}

fn watch(opts: &BenchOptions, warnings: &mut Vec<String>) -> (Vec<Watched>, Vec<Watched>) {
    let services = opts
        .watch
        .iter()
        .filter_map(|(name, file)| match memory::from_pid_file(name, file) {
            Ok(w) => Some(w),
            Err(e) => {
                warnings.push(format!("memory of {name} not measured: {e}"));
                None
            }
        })
        .collect();
    let seed = if opts.groups.contains(&Group::Seed) {
        opts.seed_watch
            .iter()
            .filter_map(|(name, file, word)| {
                match memory::from_pid_file_running(name, file, word) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        warnings.push(format!("CPU and memory of {name} not measured: {e}"));
                        None
                    }
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    (services, seed)
}

/// The stack's database servers, each node of `nodes` not found named in a warning.
fn watch_databases(
    opts: &BenchOptions,
    nodes: &[(String, u16)],
    warnings: &mut Vec<String>,
) -> Vec<Watched> {
    match memory::database_servers(&opts.state_dir) {
        Ok(found) => {
            for (node, _) in nodes {
                if !found.iter().any(|w| &w.name == node) {
                    warnings.push(format!(
                        "database CPU of {node} not measured: no mariadbd or mysqld runs with \
                         --defaults-file={}/db/{node}/my.cnf",
                        opts.state_dir.display()
                    ));
                }
            }
            found
        }
        Err(e) => {
            warnings.push(format!("database CPU not measured: {e}"));
            Vec::new()
        }
    }
}

/// Runs the groups asked for. Raw sysbench reports are kept in `dir`.
pub async fn run(
    targets: &Targets,
    cluster: &Cluster,
    opts: &BenchOptions,
    started_at: &str,
    dir: &Path,
) -> Result<BenchReport, Error> {
    let sysbench_version = sysbench::version()?;
    let target = &targets.read;
    scenario::preflight(target).await?;
    let facts = facts::collect(cluster.server_version().ok(), Some(sysbench_version));
    let (c, tables, size) = (cluster.clone(), opts.tables, opts.table_size);
    tokio::task::spawn_blocking(move || {
        // Rows an interrupted run inserted would make prepare reload the tables.
        c.trim_sbtest(tables, size)?;
        sysbench::prepare(&c, tables, size)
    })
    .await
    .map_err(|e| Error::Tool(format!("prepare: {e}")))??;
    scenario::check_sbtest(target, opts.tables, opts.table_size).await?;
    if let (true, Some(seed)) = (opts.groups.contains(&Group::Seed), &targets.seed) {
        scenario::seed_preflight(seed, tables, size).await?;
    }
    let mut warnings = Vec::new();
    let (services, seed_processes) = watch(opts, &mut warnings);
    let databases = watch_databases(opts, &cluster.nodes, &mut warnings);
    if !databases.is_empty() {
        eprintln!(
            "loadtest: bench: database CPU from {}",
            databases
                .iter()
                .map(|w| format!("{} (pid {})", w.name, w.pid))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let steps = plan(
        &opts.groups,
        &opts.concurrencies,
        &opts.modes,
        opts.mix_write_percent,
        &opts.direct_node,
        &cluster.manager().0,
    );
    let total = steps.iter().filter(|s| s.measured()).count();
    eprintln!(
        "loadtest: bench: {} ({total} runs, {} min measured)",
        opts.groups
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        planned_time(&steps, opts.time, opts.warmup)
            .as_secs()
            .div_ceil(60)
    );
    let mut rows = Vec::new();
    let mut n = 0;
    for step in &steps {
        if step.measured() {
            n += 1;
        }
        match step {
            Step::Direct {
                workload,
                node,
                concurrency,
            } => {
                eprintln!(
                    "loadtest: bench {n}/{total}: direct sysbench {}, {} on {node}, concurrency {concurrency}",
                    direct_test(*workload).0,
                    workload.label()
                );
                rows.push(
                    direct_run(
                        cluster,
                        opts,
                        *workload,
                        node,
                        *concurrency,
                        &databases,
                        dir,
                    )
                    .await?,
                );
            }
            Step::Gateway {
                workload,
                mode,
                concurrency,
            } => {
                eprintln!(
                    "loadtest: bench {n}/{total}: gateway {}, mode {}, concurrency {concurrency}",
                    workload.label(),
                    mode.as_str()
                );
                let t = if workload.writes() {
                    targets.write.as_ref().ok_or_else(|| {
                        Error::Usage(
                            "writes need a write key (.local/keys/write or API_KEY)".into(),
                        )
                    })?
                } else {
                    target
                };
                rows.push(
                    loadtest_run(
                        t,
                        opts,
                        *workload,
                        *mode,
                        *concurrency,
                        Watching {
                            processes: &services,
                            databases: &databases,
                        },
                        "gateway",
                    )
                    .await?,
                );
            }
            Step::Seed { concurrency } => {
                eprintln!(
                    "loadtest: bench {n}/{total}: the seed design, point selects, mode random, concurrency {concurrency}"
                );
                let t = targets.seed.as_ref().ok_or_else(|| {
                    Error::Usage("the seed group needs the seed design's peers (--seed-url)".into())
                })?;
                let row = loadtest_run(
                    t,
                    opts,
                    Workload::PointSelect,
                    Mode::Random,
                    *concurrency,
                    Watching {
                        processes: &seed_processes,
                        databases: &databases,
                    },
                    "seed",
                )
                .await?;
                if row.count < MIN_SEED_REQUESTS {
                    warnings.push(format!(
                        "the seed design answered only {} requests at concurrency {concurrency} in {} s: its figures are rough",
                        row.count,
                        opts.time.as_secs() * 4
                    ));
                }
                rows.push(row);
            }
            Step::CatchUp => {
                let c = cluster.clone();
                let started = std::time::Instant::now();
                let ok =
                    tokio::task::spawn_blocking(move || c.wait_caught_up(Duration::from_secs(300)))
                        .await
                        .map_err(|e| Error::Tool(format!("catch-up: {e}")))??;
                let waited = started.elapsed();
                if waited >= Duration::from_secs(2) {
                    eprintln!(
                        "loadtest: bench: the workers caught up with the manager in {:.0} s",
                        waited.as_secs_f64()
                    );
                }
                if !ok {
                    warnings.push(
                        "a worker had not applied the manager's writes 300 s after a write run"
                            .into(),
                    );
                }
            }
            Step::Trim => {
                let c = cluster.clone();
                let deleted = tokio::task::spawn_blocking(move || {
                    let n = c.trim_sbtest(tables, size)?;
                    c.wait_caught_up(Duration::from_secs(300))?;
                    Ok::<_, Error>(n)
                })
                .await
                .map_err(|e| Error::Tool(format!("trim: {e}")))??;
                eprintln!("loadtest: bench: deleted the {deleted} rows the inserts added");
            }
        }
    }
    for r in rows.iter().filter(|r| r.errors > 0) {
        warnings.push(format!(
            "{} {} {} c={}: {} errors ({:?})",
            r.workload, r.path, r.mode, r.concurrency, r.errors, r.errors_by_code
        ));
    }
    let memory = max_memory(&rows);
    let comparisons = targets::compare(&rows);
    let judged = targets::judge(&rows, &memory, facts.cores);
    let mut groups = opts.groups.clone();
    groups.sort_by_key(|g| Group::ALL.iter().position(|x| x == g));
    Ok(BenchReport {
        scenario: "bench".into(),
        started_at: started_at.to_string(),
        gatekeeper: target.gateway.url().to_string(),
        seed_gatekeeper: targets
            .seed
            .as_ref()
            .filter(|_| groups.contains(&Group::Seed))
            .map(|s| s.gateway.url().to_string()),
        groups,
        mix_write_percent: opts.mix_write_percent,
        time_s: opts.time.as_secs_f64(),
        warmup_s: opts.warmup.as_secs_f64(),
        tables,
        table_size: size,
        direct_node: opts.direct_node.clone(),
        facts,
        settings: opts.settings.clone(),
        invocation: opts.invocation.clone(),
        rows,
        comparisons,
        memory,
        targets: judged,
        warnings,
    })
}

/// One sysbench run (after an unmeasured one as warm-up), with the CPU of `databases`
/// measured over it; its raw report kept in `dir`.
async fn direct_run(
    cluster: &Cluster,
    opts: &BenchOptions,
    workload: Workload,
    node: &str,
    conc: usize,
    databases: &[Watched],
    dir: &Path,
) -> Result<BenchRow, Error> {
    let (test, own) = direct_test(workload);
    // The mix is a script of this repository, run by path; the others are sysbench's own.
    let (script, shown) = if matches!(workload, Workload::Mix { .. }) {
        let path = opts.lua_dir.join(MIX_SCRIPT);
        let abs = std::fs::canonicalize(&path).map_err(|e| Error::io("find", &path, e))?;
        (
            abs.display().to_string(),
            // The documented command runs from .local/tls/sysbench (see command_line).
            format!("../../../{}", path.display()),
        )
    } else {
        (test.to_string(), test.to_string())
    };
    let port = cluster
        .port(node)
        .ok_or_else(|| Error::Usage(format!("no node {node} in the cluster")))?;
    let (tables, size) = (opts.tables, opts.table_size);
    let with = |time: Duration| {
        let mut v = own.clone();
        v.extend(sysbench_extra(conc, time));
        v
    };
    let measured = with(opts.time);
    let warm = (opts.warmup.as_secs() >= 1).then(|| with(opts.warmup));
    let progress = bar(
        format!("direct {} c={conc}", workload.label()),
        opts.time + opts.warmup,
    );
    let ticker = tokio::spawn(runner::follow_clock(
        progress.clone(),
        tokio::time::Instant::now(),
        opts.time + opts.warmup,
    ));
    let (c, n, s, m, dbs) = (
        cluster.clone(),
        node.to_string(),
        script.clone(),
        measured.clone(),
        databases.to_vec(),
    );
    let outcome = tokio::task::spawn_blocking(move || {
        if let Some(w) = &warm {
            sysbench::run_script(&c, &n, test, &s, tables, size, w)?;
        }
        // The measured window is the measured sysbench process, from its start to its end.
        let before = memory::cpu_snapshot(&dbs);
        let run = sysbench::run_script(&c, &n, test, &s, tables, size, &m)?;
        let db_cpu = memory::cpu_used(&before, &memory::cpu_snapshot(&dbs));
        Ok::<_, Error>((run, db_cpu))
    })
    .await
    .map_err(|e| Error::Tool(format!("sysbench: {e}")))?;
    ticker.abort();
    progress.finish_and_clear();
    let ((result, raw), db_cpu) = outcome?;
    let raw_path = dir.join(sysbench::file_name(node, &format!("{test}_c{conc}")));
    std::fs::write(&raw_path, raw).map_err(|e| Error::io("write", &raw_path, e))?;
    let mut cmd_args = measured;
    cmd_args.push("run".into());
    Ok(BenchRow {
        workload: workload.label(),
        path: "direct".into(),
        mode: "-".into(),
        concurrency: conc,
        node: node.to_string(),
        test: test.to_string(),
        count: result.queries,
        errors: result.errors,
        throughput_rps: result.qps,
        avg_ms: result.avg_ms,
        p50_ms: result.p50_ms.unwrap_or(f64::NAN),
        p99_ms: result.p99_ms.unwrap_or(f64::NAN),
        max_ms: result.max_ms,
        rss: BTreeMap::new(),
        cpu_us_per_request: BTreeMap::new(),
        db_cpu_us_per_request: memory::us_per_request(&db_cpu, result.queries),
        errors_by_code: BTreeMap::new(),
        nodes: [
            ("read", result.reads),
            ("write", result.writes),
            ("other", result.other),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (format!("{node} {k}"), n))
        .collect(),
        curve: Vec::new(),
        command: cluster.command_line(&shown, port, tables, size, &cmd_args),
    })
}

/// What a loadtest run samples: the processes serving it (memory and CPU) and the database
/// servers (CPU).
#[derive(Clone, Copy)]
struct Watching<'a> {
    processes: &'a [Watched],
    databases: &'a [Watched],
}

/// One loadtest run through a gatekeeper (`path`: `gateway` or `seed`), after an unmeasured
/// one as warm-up, with the memory and CPU of `watching.processes` sampled and the CPU of
/// `watching.databases` measured over it.
async fn loadtest_run(
    target: &Target,
    opts: &BenchOptions,
    workload: Workload,
    mode: Mode,
    conc: usize,
    watching: Watching<'_>,
    path: &str,
) -> Result<BenchRow, Error> {
    let seed_api = path == "seed";
    let sel = SelectOptions {
        mode,
        load: Load::Closed { concurrency: conc },
        stop: Stop::After(opts.warmup),
        warmup: Duration::ZERO,
        tables: opts.tables,
        table_size: opts.table_size,
        workload,
        seed_api,
    };
    if !opts.warmup.is_zero() {
        scenario::select(target, &sel, &ProgressBar::hidden()).await?;
    }
    // The seed design is slow: it runs until it has answered enough requests to give figures,
    // within a bound.
    let stop = if seed_api {
        Stop::AtLeast {
            time: opts.time,
            requests: MIN_SEED_REQUESTS,
            cap: opts.time * 4,
        }
    } else {
        Stop::After(opts.time)
    };
    let sel = SelectOptions { stop, ..sel };
    let progress = bar(
        format!("{path} {} {} c={conc}", workload.label(), mode.as_str()),
        opts.time,
    );
    let db_before = memory::cpu_snapshot(watching.databases);
    let sampler = Sampler::start(watching.processes.to_vec(), Duration::from_millis(100));
    let r = scenario::select(target, &sel, &progress).await;
    let rss = sampler.finish();
    let db_cpu = memory::cpu_used(&db_before, &memory::cpu_snapshot(watching.databases));
    progress.finish_and_clear();
    let r = r?;
    let s = r.summary();
    let ok = r.ok();
    let cpu_us_per_request = rss
        .iter()
        .filter(|_| ok > 0)
        .map(|(name, u)| (name.clone(), u.cpu_s * 1e6 / ok as f64))
        .collect();
    let program = std::env::args().next().unwrap_or_else(|| "loadtest".into());
    let mut command = format!(
        "{program} select --url {} --mode {} --concurrency {conc} --duration {}s --warmup {}s --tables {} --table-size {}",
        target.gateway.url(),
        mode.as_str(),
        opts.time.as_secs(),
        opts.warmup.as_secs(),
        opts.tables,
        opts.table_size
    );
    match workload {
        Workload::PointSelect => {}
        Workload::Mix { write_percent } => {
            command.push_str(&format!(" --workload mix --write-percent {write_percent}"));
        }
        w => command.push_str(&format!(" --workload {}", w.label())),
    }
    if seed_api {
        command = format!(
            "API_KEY=$SEED_API_KEY {command} --seed-api --min-requests {MIN_SEED_REQUESTS}"
        );
    }
    Ok(BenchRow {
        workload: workload.label(),
        path: path.into(),
        mode: mode.as_str().into(),
        concurrency: conc,
        node: String::new(),
        test: String::new(),
        count: s.count,
        errors: s.errors,
        throughput_rps: s.throughput_rps,
        avg_ms: s.avg_ms,
        p50_ms: s.p50_ms,
        p99_ms: s.p99_ms,
        max_ms: s.max_ms,
        rss,
        cpu_us_per_request,
        db_cpu_us_per_request: memory::us_per_request(&db_cpu, ok),
        errors_by_code: r.errors.clone(),
        nodes: r.nodes.clone(),
        curve: r.latencies.curve(),
        command,
    })
}

fn max_memory(rows: &[BenchRow]) -> BTreeMap<String, Rss> {
    let mut all: BTreeMap<String, Rss> = BTreeMap::new();
    for (name, rss) in rows.iter().flat_map(|r| r.rss.iter()) {
        let e = all.entry(name.clone()).or_default();
        e.max_kib = e.max_kib.max(rss.max_kib);
        e.peak_kib = e.peak_kib.max(rss.peak_kib);
        e.samples += rss.samples;
    }
    all
}

/// The results table printed at the end of `bench`.
pub fn text_table(r: &BenchReport) -> String {
    let mut out = render_table(
        &[
            "workload",
            "path",
            "mode",
            "conc",
            "req/s",
            "p50 ms",
            "p99 ms",
            "avg ms",
            "errors",
            "vs direct",
            "db µs/req",
        ],
        &table_rows(r),
    );
    out.push('\n');
    for t in &r.targets {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        out.push_str(&format!(
            "target {}: {} — {} — {verdict}\n",
            t.name, t.goal, t.measured
        ));
        if let Some(why) = &t.why {
            out.push_str(&format!("  why: {why}\n"));
        }
    }
    for w in &r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

fn table_rows(r: &BenchReport) -> Vec<Vec<String>> {
    r.rows
        .iter()
        .map(|row| {
            let vs = targets::comparison_of(&r.comparisons, row).map_or("-".to_string(), |c| {
                format!("{:.1}%", c.throughput_ratio * 100.0)
            });
            vec![
                row.workload.clone(),
                row.path.clone(),
                row.mode.clone(),
                row.concurrency.to_string(),
                format!("{:.0}", row.throughput_rps),
                ms(row.p50_ms),
                ms(row.p99_ms),
                ms(row.avg_ms),
                row.errors.to_string(),
                vs,
                targets::db_cpu_sum(row).map_or("-".to_string(), |v| format!("{v:.0}")),
            ]
        })
        .collect()
}

/// `bench.json` and `bench.csv` in `dir`.
pub fn write_files(dir: &Path, r: &BenchReport) -> Result<(), Error> {
    write_json(&dir.join("bench.json"), r)?;
    let nodes = targets::db_nodes(&r.rows);
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            let cmp = targets::comparison_of(&r.comparisons, row);
            let rss = |n: &str| {
                row.rss
                    .get(n)
                    .map_or(String::new(), |x| x.max_kib.to_string())
            };
            let cpu =
                |n: &str| targets::service_cpu(row, n).map_or(String::new(), |v| format!("{v:.1}"));
            vec![
                row.workload.clone(),
                row.path.clone(),
                row.mode.clone(),
                row.concurrency.to_string(),
                row.count.to_string(),
                row.errors.to_string(),
                format!("{:.1}", row.throughput_rps),
                ms(row.avg_ms),
                ms(row.p50_ms),
                ms(row.p99_ms),
                ms(row.max_ms),
                cmp.map_or(String::new(), |c| format!("{:.4}", c.throughput_ratio)),
                cmp.map_or(String::new(), |c| ms(c.added_p50_ms)),
                cmp.map_or(String::new(), |c| ms(c.added_p99_ms)),
                cpu("gatekeeper"),
                cpu("proxy"),
                rss("gatekeeper"),
                rss("proxy"),
            ]
            .into_iter()
            .chain(std::iter::once(
                targets::db_cpu_sum(row).map_or(String::new(), |v| format!("{v:.1}")),
            ))
            .chain(nodes.iter().map(|n| {
                row.db_cpu_us_per_request
                    .get(n)
                    .map_or(String::new(), |v| format!("{v:.1}"))
            }))
            .collect()
        })
        .collect();
    let node_columns: Vec<String> = nodes.iter().map(|n| format!("db_{n}_cpu_us")).collect();
    write_csv(
        &dir.join("bench.csv"),
        &[
            "workload",
            "path",
            "mode",
            "concurrency",
            "count",
            "errors",
            "throughput_rps",
            "avg_ms",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "throughput_ratio",
            "added_p50_ms",
            "added_p99_ms",
            "gatekeeper_cpu_us",
            "proxy_cpu_us",
            "gatekeeper_rss_kib",
            "proxy_rss_kib",
            "db_cpu_us",
        ]
        .into_iter()
        .chain(node_columns.iter().map(String::as_str))
        .collect::<Vec<_>>(),
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_name() {
        for g in Group::ALL {
            assert_eq!(Group::parse(g.as_str()), Some(g), "{g:?}");
        }
        assert_eq!(Group::parse("everything"), None);
    }

    #[test]
    fn mix_cycles_are_the_shortest() {
        assert_eq!(mix_cycle(10), (9, 1), "90/10");
        assert_eq!(mix_cycle(25), (3, 1), "75/25");
        assert_eq!(mix_cycle(30), (7, 3), "70/30");
        assert_eq!(mix_cycle(7), (93, 7), "93/7");
        assert_eq!(
            direct_test(Workload::Mix { write_percent: 10 }),
            (
                "oltp_point_mix",
                vec![
                    "--point_selects=9".to_string(),
                    "--index_updates=1".to_string()
                ]
            ),
            "the Lua script's own options"
        );
        assert_eq!(direct_test(Workload::PointUpdate).0, "oltp_update_index");
        assert_eq!(direct_test(Workload::PointInsert).0, "oltp_insert");
    }

    fn kinds(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Direct {
                    workload,
                    node,
                    concurrency,
                } => format!("direct {} {node} {concurrency}", workload.label()),
                Step::Gateway {
                    workload,
                    mode,
                    concurrency,
                } => format!(
                    "gateway {} {} {concurrency}",
                    workload.label(),
                    mode.as_str()
                ),
                Step::Seed { concurrency } => format!("seed {concurrency}"),
                Step::CatchUp => "catch-up".into(),
                Step::Trim => "trim".into(),
            })
            .collect()
    }

    #[test]
    fn a_full_plan_reads_first_and_catches_up_after_each_write_run() {
        let steps = plan(
            &Group::ALL,
            &[1, 16],
            &[Mode::Direct, Mode::Random],
            10,
            "worker-1",
            "manager",
        );
        let want = [
            "direct point_select worker-1 1",
            "gateway point_select direct 1",
            "gateway point_select random 1",
            "direct point_select worker-1 16",
            "gateway point_select direct 16",
            "gateway point_select random 16",
            "seed 1",
            "seed 16",
            "direct update manager 1",
            "catch-up",
            "gateway update random 1",
            "catch-up",
            "direct update manager 16",
            "catch-up",
            "gateway update random 16",
            "catch-up",
            "direct insert manager 1",
            "catch-up",
            "gateway insert random 1",
            "catch-up",
            "direct insert manager 16",
            "catch-up",
            "gateway insert random 16",
            "catch-up",
            "trim",
            "direct mix_90_10 manager 16",
            "catch-up",
            "gateway mix_90_10 random 16",
            "catch-up",
        ];
        assert_eq!(kinds(&steps), want);
        assert_eq!(
            planned_time(&steps, Duration::from_secs(15), Duration::from_secs(2)),
            Duration::from_secs(17 * 18),
            "18 measured runs of 15 + 2 s"
        );
    }

    #[test]
    fn a_plan_runs_only_the_groups_asked_for() {
        let all_modes = Mode::ALL;
        let reads = plan(
            &[Group::Reads],
            &[1, 16],
            &all_modes,
            10,
            "worker-1",
            "manager",
        );
        assert_eq!(
            reads.len(),
            10,
            "2 × (direct + 4 modes): {:?}",
            kinds(&reads)
        );
        assert!(
            reads.iter().all(Step::measured),
            "no catch-up without writes"
        );
        let mixed = plan(
            &[Group::Mixed],
            &[1, 4, 8],
            &all_modes,
            25,
            "worker-1",
            "manager",
        );
        assert_eq!(
            kinds(&mixed),
            [
                "direct mix_75_25 manager 8",
                "catch-up",
                "gateway mix_75_25 random 8",
                "catch-up"
            ],
            "the mix at the highest concurrency only"
        );
        let seed = plan(
            &[Group::Seed],
            &[1, 16],
            &all_modes,
            10,
            "worker-1",
            "manager",
        );
        assert_eq!(kinds(&seed), ["seed 1", "seed 16"]);
        assert!(plan(&[], &[1], &all_modes, 10, "w", "m").is_empty());
    }
}
