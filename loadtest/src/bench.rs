//! sqlgate against the floor, in one run: sysbench point selects straight to a worker, then
//! the same point selects through the gatekeeper and proxy in each mode, at each concurrency;
//! ratios, memory under load, and the targets judged.

use crate::error::Error;
use crate::facts::{self, Facts};
use crate::memory::{self, Rss, Sampler, Watched};
use crate::report::{ms, render_table, write_csv, write_json};
use crate::runner::{self, Stop};
use crate::scenario::{self, SelectOptions, Target};
use crate::schedule::Load;
use crate::stats::CurvePoint;
use crate::sysbench::{self, Cluster};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sqlgate::wire::Mode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Throughput through the gateway at the high concurrency, as a share of direct.
pub const MIN_THROUGHPUT_RATIO: f64 = 0.30;
/// Latency the gateway may add to the median at concurrency 1.
pub const MAX_ADDED_P50_MS: f64 = 0.2;
/// `ping` mode's p99 at most this multiple of `random` mode's.
pub const MAX_PING_P99_RATIO: f64 = 1.5;
/// Resident memory each service must stay under.
pub const MAX_RSS_KIB: u64 = 50 * 1024;

/// What `bench` does.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Measured time of each run.
    pub time: Duration,
    /// Unmeasured load before each run.
    pub warmup: Duration,
    pub concurrencies: Vec<usize>,
    /// Gateway modes measured (`random` is the headline "gateway" figure).
    pub modes: Vec<Mode>,
    pub tables: u32,
    pub table_size: u64,
    /// The worker sysbench reads from directly.
    pub direct_node: String,
    /// Services whose memory is sampled: (name, pid file).
    pub watch: Vec<(String, PathBuf)>,
    /// Settings the services ran with, recorded as given (`GATEKEEPER_RATE_LIMIT_RPS=0`).
    pub settings: Vec<String>,
    /// The command that ran the benchmark, for the record.
    pub invocation: String,
}

/// One measured run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRow {
    /// `direct` (sysbench to a worker) or `gateway` (loadtest through gatekeeper and proxy).
    pub path: String,
    /// The gateway's routing mode; `-` for direct.
    pub mode: String,
    pub concurrency: usize,
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
    /// Resident memory and CPU time of the services during the run (gateway runs).
    pub rss: BTreeMap<String, Rss>,
    /// CPU time each service spent per request of the run, in microseconds.
    pub cpu_us_per_request: BTreeMap<String, f64>,
    pub errors_by_code: BTreeMap<String, u64>,
    pub nodes: BTreeMap<String, u64>,
    pub curve: Vec<CurvePoint>,
    /// The command that reproduces this run alone.
    pub command: String,
}

/// A gateway run against the direct run at the same concurrency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub mode: String,
    pub concurrency: usize,
    /// Gateway throughput / direct throughput.
    pub throughput_ratio: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub added_p50_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub added_p99_ms: f64,
}

/// JSON has no NaN: serde_json writes it as null, read back here as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One of the targets and whether the run met it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetCheck {
    pub name: String,
    pub goal: String,
    pub measured: String,
    /// None when the run did not measure what the target needs.
    pub met: Option<bool>,
}

/// Everything `bench` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub scenario: String,
    pub started_at: String,
    pub gatekeeper: String,
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
    /// Largest resident memory per service over all gateway runs.
    pub memory: BTreeMap<String, Rss>,
    pub targets: Vec<TargetCheck>,
    pub warnings: Vec<String>,
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

/// Runs the comparison. Raw sysbench reports are kept in `dir`.
pub async fn run(
    target: &Target,
    cluster: &Cluster,
    opts: &BenchOptions,
    started_at: &str,
    dir: &Path,
) -> Result<BenchReport, Error> {
    let sysbench_version = sysbench::version()?;
    scenario::preflight(target).await?;
    let facts = facts::collect(cluster.server_version().ok(), Some(sysbench_version));
    let (c, tables, size) = (cluster.clone(), opts.tables, opts.table_size);
    tokio::task::spawn_blocking(move || sysbench::prepare(&c, tables, size))
        .await
        .map_err(|e| Error::Tool(format!("prepare: {e}")))??;
    scenario::check_sbtest(target, opts.tables, opts.table_size).await?;
    let direct_port = cluster
        .port(&opts.direct_node)
        .ok_or_else(|| Error::Usage(format!("no node {} in the cluster", opts.direct_node)))?;
    let mut warnings = Vec::new();
    let watched: Vec<Watched> = opts
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
    // As invoked (target/release/loadtest under make), so the recorded commands run as shown.
    let program = std::env::args().next().unwrap_or_else(|| "loadtest".into());
    let steps = opts.concurrencies.len() * (1 + opts.modes.len());
    let mut step = 0;
    let mut rows = Vec::new();
    for &conc in &opts.concurrencies {
        step += 1;
        eprintln!("loadtest: bench {step}/{steps}: direct sysbench point selects on {}, concurrency {conc}", opts.direct_node);
        let extra = sysbench_extra(conc, opts.time);
        let (c, node) = (cluster.clone(), opts.direct_node.clone());
        let warm = (opts.warmup.as_secs() >= 1).then(|| sysbench_extra(conc, opts.warmup));
        let measured = extra.clone();
        let progress = bar(format!("direct sysbench c={conc}"), opts.time + opts.warmup);
        let ticker = tokio::spawn(runner::follow_clock(
            progress.clone(),
            tokio::time::Instant::now(),
            opts.time + opts.warmup,
        ));
        let outcome = tokio::task::spawn_blocking(move || {
            if let Some(w) = &warm {
                sysbench::run(&c, &node, "oltp_point_select", tables, size, w)?;
            }
            sysbench::run(&c, &node, "oltp_point_select", tables, size, &measured)
        })
        .await
        .map_err(|e| Error::Tool(format!("sysbench: {e}")))?;
        ticker.abort();
        progress.finish_and_clear();
        let (result, raw) = outcome?;
        let raw_path = dir.join(sysbench::file_name(
            &opts.direct_node,
            &format!("oltp_point_select_c{conc}"),
        ));
        std::fs::write(&raw_path, raw).map_err(|e| Error::io("write", &raw_path, e))?;
        let mut cmd_args = extra.clone();
        cmd_args.push("run".into());
        rows.push(BenchRow {
            path: "direct".into(),
            mode: "-".into(),
            concurrency: conc,
            count: result.queries,
            errors: result.errors,
            throughput_rps: result.qps,
            avg_ms: result.avg_ms,
            p50_ms: result.p50_ms.unwrap_or(f64::NAN),
            p99_ms: result.p99_ms.unwrap_or(f64::NAN),
            max_ms: result.max_ms,
            rss: BTreeMap::new(),
            cpu_us_per_request: BTreeMap::new(),
            errors_by_code: BTreeMap::new(),
            nodes: BTreeMap::from([(opts.direct_node.clone(), result.queries)]),
            curve: Vec::new(),
            command: cluster.command_line(
                "oltp_point_select",
                direct_port,
                tables,
                size,
                &cmd_args,
            ),
        });
        for &mode in &opts.modes {
            step += 1;
            eprintln!("loadtest: bench {step}/{steps}: gateway point selects, mode {}, concurrency {conc}", mode.as_str());
            let sel = SelectOptions {
                mode,
                load: Load::Closed { concurrency: conc },
                stop: Stop::After(opts.warmup),
                warmup: Duration::ZERO,
                tables,
                table_size: size,
            };
            if !opts.warmup.is_zero() {
                scenario::select(target, &sel, &ProgressBar::hidden()).await?;
            }
            let sel = SelectOptions {
                stop: Stop::After(opts.time),
                ..sel
            };
            let progress = bar(format!("gateway {} c={conc}", mode.as_str()), opts.time);
            let sampler = Sampler::start(watched.clone(), Duration::from_millis(100));
            let r = scenario::select(target, &sel, &progress).await;
            let rss = sampler.finish();
            progress.finish_and_clear();
            let r = r?;
            let s = r.summary();
            let cpu_us_per_request = rss
                .iter()
                .filter(|_| s.count > 0)
                .map(|(name, u)| (name.clone(), u.cpu_s * 1e6 / s.count as f64))
                .collect();
            rows.push(BenchRow {
                path: "gateway".into(),
                mode: mode.as_str().into(),
                concurrency: conc,
                count: s.count,
                errors: s.errors,
                throughput_rps: s.throughput_rps,
                avg_ms: s.avg_ms,
                p50_ms: s.p50_ms,
                p99_ms: s.p99_ms,
                max_ms: s.max_ms,
                rss,
                cpu_us_per_request,
                errors_by_code: r.errors.clone(),
                nodes: r.nodes.clone(),
                curve: r.latencies.curve(),
                command: format!(
                    "{} select --url {} --mode {} --concurrency {conc} --duration {}s --warmup {}s --tables {tables} --table-size {size}",
                    program,
                    target.gateway.url(),
                    mode.as_str(),
                    opts.time.as_secs(),
                    opts.warmup.as_secs()
                ),
            });
        }
    }
    for r in rows.iter().filter(|r| r.errors > 0) {
        warnings.push(format!(
            "{} {} c={}: {} errors ({:?})",
            r.path, r.mode, r.concurrency, r.errors, r.errors_by_code
        ));
    }
    let memory = max_memory(&rows);
    let comparisons = compare(&rows);
    let targets = judge(&rows, &memory);
    Ok(BenchReport {
        scenario: "bench".into(),
        started_at: started_at.to_string(),
        gatekeeper: target.gateway.url().to_string(),
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
        targets,
        warnings,
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

fn direct_at(rows: &[BenchRow], c: usize) -> Option<&BenchRow> {
    rows.iter()
        .find(|r| r.path == "direct" && r.concurrency == c)
}

fn gateway_at<'a>(rows: &'a [BenchRow], mode: &str, c: usize) -> Option<&'a BenchRow> {
    rows.iter()
        .find(|r| r.path == "gateway" && r.mode == mode && r.concurrency == c)
}

/// Each gateway run against the direct run at its concurrency.
pub fn compare(rows: &[BenchRow]) -> Vec<Comparison> {
    rows.iter()
        .filter(|r| r.path == "gateway")
        .filter_map(|g| {
            let d = direct_at(rows, g.concurrency)?;
            Some(Comparison {
                mode: g.mode.clone(),
                concurrency: g.concurrency,
                throughput_ratio: if d.throughput_rps > 0.0 {
                    g.throughput_rps / d.throughput_rps
                } else {
                    0.0
                },
                added_p50_ms: g.p50_ms - d.p50_ms,
                added_p99_ms: g.p99_ms - d.p99_ms,
            })
        })
        .collect()
}

/// The four targets, judged on the measured rows (the headline gateway mode is
/// `random`: reads go to workers, as sysbench's do).
pub fn judge(rows: &[BenchRow], memory: &BTreeMap<String, Rss>) -> Vec<TargetCheck> {
    let concs: Vec<usize> = rows.iter().map(|r| r.concurrency).collect();
    let (lo, hi) = (
        concs.iter().copied().min().unwrap_or(1),
        concs.iter().copied().max().unwrap_or(16),
    );
    let mut out = Vec::new();
    let through = match (gateway_at(rows, "random", hi), direct_at(rows, hi)) {
        (Some(g), Some(d)) if d.throughput_rps > 0.0 => {
            let ratio = g.throughput_rps / d.throughput_rps;
            (
                format!(
                    "{:.0} vs {:.0} req/s: {:.1}%",
                    g.throughput_rps,
                    d.throughput_rps,
                    ratio * 100.0
                ),
                Some(ratio >= MIN_THROUGHPUT_RATIO),
            )
        }
        _ => ("not measured".to_string(), None),
    };
    out.push(TargetCheck {
        name: format!("throughput at concurrency {hi}"),
        goal: format!("gateway ≥ {:.0}% of direct", MIN_THROUGHPUT_RATIO * 100.0),
        measured: through.0,
        met: through.1,
    });
    let added = match (gateway_at(rows, "random", lo), direct_at(rows, lo)) {
        (Some(g), Some(d)) if d.p50_ms.is_finite() => {
            let added = g.p50_ms - d.p50_ms;
            (
                format!("{} − {} = {} ms", ms(g.p50_ms), ms(d.p50_ms), ms(added)),
                Some(added <= MAX_ADDED_P50_MS),
            )
        }
        _ => ("not measured".to_string(), None),
    };
    out.push(TargetCheck {
        name: format!("added p50 at concurrency {lo}"),
        goal: format!("≤ {MAX_ADDED_P50_MS} ms"),
        measured: added.0,
        met: added.1,
    });
    let mut ping_parts = Vec::new();
    let mut ping_met: Option<bool> = None;
    let mut cs: Vec<usize> = concs.clone();
    cs.sort_unstable();
    cs.dedup();
    for c in cs {
        if let (Some(p), Some(r)) = (gateway_at(rows, "ping", c), gateway_at(rows, "random", c)) {
            let ratio = if r.p99_ms > 0.0 {
                p.p99_ms / r.p99_ms
            } else {
                f64::INFINITY
            };
            ping_parts.push(format!(
                "c={c}: {} / {} ms = {ratio:.2}×",
                ms(p.p99_ms),
                ms(r.p99_ms)
            ));
            ping_met = Some(ping_met.unwrap_or(true) && ratio <= MAX_PING_P99_RATIO);
        }
    }
    out.push(TargetCheck {
        name: "ping-mode p99".into(),
        goal: format!("≤ {MAX_PING_P99_RATIO}× random-mode p99 at each concurrency"),
        measured: if ping_parts.is_empty() {
            "not measured".into()
        } else {
            ping_parts.join("; ")
        },
        met: ping_met,
    });
    for name in ["gatekeeper", "proxy"] {
        let (measured, met) = match memory.get(name) {
            Some(r) if r.samples > 0 => (
                format!(
                    "{:.1} MiB max under load (peak since start {:.1} MiB)",
                    r.max_kib as f64 / 1024.0,
                    r.peak_kib as f64 / 1024.0
                ),
                Some(r.max_kib < MAX_RSS_KIB && r.peak_kib < MAX_RSS_KIB),
            ),
            _ => ("not measured".to_string(), None),
        };
        out.push(TargetCheck {
            name: format!("{name} resident memory"),
            goal: format!("< {} MiB", MAX_RSS_KIB / 1024),
            measured,
            met,
        });
    }
    out
}

/// The results table printed at the end of `bench`.
pub fn text_table(r: &BenchReport) -> String {
    let mut out = render_table(
        &[
            "path",
            "mode",
            "conc",
            "req/s",
            "p50 ms",
            "p99 ms",
            "avg ms",
            "errors",
            "vs direct",
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
            let vs = r
                .comparisons
                .iter()
                .find(|c| {
                    row.path == "gateway" && c.mode == row.mode && c.concurrency == row.concurrency
                })
                .map_or("-".to_string(), |c| {
                    format!("{:.1}%", c.throughput_ratio * 100.0)
                });
            vec![
                row.path.clone(),
                row.mode.clone(),
                row.concurrency.to_string(),
                format!("{:.0}", row.throughput_rps),
                ms(row.p50_ms),
                ms(row.p99_ms),
                ms(row.avg_ms),
                row.errors.to_string(),
                vs,
            ]
        })
        .collect()
}

/// `bench.json` and `bench.csv` in `dir`.
pub fn write_files(dir: &Path, r: &BenchReport) -> Result<(), Error> {
    write_json(&dir.join("bench.json"), r)?;
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            let cmp = r.comparisons.iter().find(|c| {
                row.path == "gateway" && c.mode == row.mode && c.concurrency == row.concurrency
            });
            let rss = |n: &str| {
                row.rss
                    .get(n)
                    .map_or(String::new(), |x| x.max_kib.to_string())
            };
            vec![
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
                rss("gatekeeper"),
                rss("proxy"),
            ]
        })
        .collect();
    write_csv(
        &dir.join("bench.csv"),
        &[
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
            "gatekeeper_rss_kib",
            "proxy_rss_kib",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, mode: &str, c: usize, rps: f64, p50: f64, p99: f64) -> BenchRow {
        BenchRow {
            path: path.into(),
            mode: mode.into(),
            concurrency: c,
            count: 1000,
            errors: 0,
            throughput_rps: rps,
            avg_ms: p50,
            p50_ms: p50,
            p99_ms: p99,
            max_ms: p99 * 2.0,
            rss: BTreeMap::new(),
            cpu_us_per_request: BTreeMap::new(),
            errors_by_code: BTreeMap::new(),
            nodes: BTreeMap::new(),
            curve: Vec::new(),
            command: String::new(),
        }
    }

    fn rss(max_mib: u64) -> Rss {
        Rss {
            max_kib: max_mib * 1024,
            peak_kib: max_mib * 1024,
            samples: 10,
            cpu_s: 1.0,
        }
    }

    #[test]
    fn targets_are_judged_on_the_right_rows() {
        let rows = vec![
            row("direct", "-", 1, 20_000.0, 0.05, 0.15),
            row("gateway", "random", 1, 3_000.0, 0.24, 0.60),
            row("gateway", "ping", 1, 3_000.0, 0.24, 0.80),
            row("direct", "-", 16, 30_000.0, 0.40, 1.50),
            row("gateway", "random", 16, 9_300.0, 1.50, 4.00),
            row("gateway", "ping", 16, 9_000.0, 1.50, 6.40),
        ];
        let memory = BTreeMap::from([
            ("gatekeeper".to_string(), rss(12)),
            ("proxy".to_string(), rss(60)),
        ]);
        let t = judge(&rows, &memory);
        let met: Vec<(&str, Option<bool>)> = t.iter().map(|t| (t.name.as_str(), t.met)).collect();
        assert_eq!(
            met,
            [
                ("throughput at concurrency 16", Some(true)),
                ("added p50 at concurrency 1", Some(true)),
                ("ping-mode p99", Some(false)),
                ("gatekeeper resident memory", Some(true)),
                ("proxy resident memory", Some(false)),
            ],
            "9300/30000 = 31% met; 0.19 ms added met; 6.4/4.0 = 1.6× missed; 60 MiB missed: {t:?}"
        );
        assert!(t[0].measured.contains("31.0%"), "{}", t[0].measured);
        assert!(
            t[2].measured.contains("c=16") && t[2].measured.contains("1.60"),
            "{}",
            t[2].measured
        );
    }

    #[test]
    fn missing_runs_are_not_measured_rather_than_met() {
        let rows = vec![row("direct", "-", 4, 1000.0, 0.1, 0.2)];
        let t = judge(&rows, &BTreeMap::new());
        assert!(
            t.iter().all(|t| t.met.is_none()),
            "nothing to compare: {t:?}"
        );
    }

    #[test]
    fn comparisons_pair_each_gateway_run_with_direct() {
        let rows = vec![
            row("direct", "-", 1, 10_000.0, 0.05, 0.10),
            row("gateway", "ping", 1, 2_500.0, 0.30, 0.70),
        ];
        let c = compare(&rows);
        assert_eq!(c.len(), 1, "one gateway run");
        assert!((c[0].throughput_ratio - 0.25).abs() < 1e-9, "{c:?}");
        assert!(
            (c[0].added_p50_ms - 0.25).abs() < 1e-9 && (c[0].added_p99_ms - 0.6).abs() < 1e-9,
            "{c:?}"
        );
    }
}
