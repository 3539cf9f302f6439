//! The bench run's figures set against each other (gateway against direct, gateway against
//! the seed design) and against the issue's targets, each with the figures behind a miss.

use crate::bench::BenchRow;
use crate::memory::Rss;
use crate::report::ms;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Reads (mode `random`) at the high concurrency, as a share of direct.
pub const MIN_READ_RATIO: f64 = 0.35;
/// Reads at the high concurrency, as a multiple of the seed design's.
pub const MIN_SEED_MULTIPLE: f64 = 45.0;
/// Gatekeeper plus proxy CPU per read at the high concurrency, mode `random`.
pub const MAX_CPU_PER_READ_US: f64 = 40.0;
/// Latency the gateway may add to the median read at concurrency 1.
pub const MAX_ADDED_P50_MS: f64 = 0.12;
/// Writes (insert and update each) at the high concurrency, as a share of direct.
pub const MIN_WRITE_RATIO: f64 = 0.60;
/// `ping` mode's p99 at most this multiple of `random` mode's.
pub const MAX_PING_P99_RATIO: f64 = 1.5;
/// Resident memory each service must stay under.
pub const MAX_RSS_KIB: u64 = 50 * 1024;
/// Database CPU per gateway read above this multiple of per direct read is put down, in a
/// missed read target's why, to the round trips each gateway read makes.
pub const DB_CPU_RATIO_EXPLAINED: f64 = 2.0;

/// The workload of point selects, the only one older reports held.
pub const POINT_SELECT: &str = "point_select";

/// A gateway or seed run against the direct run of the same workload and concurrency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    #[serde(default = "point_select")]
    pub workload: String,
    /// `gateway` or `seed`.
    #[serde(default = "gateway")]
    pub path: String,
    pub mode: String,
    pub concurrency: usize,
    /// Its throughput / direct throughput.
    pub throughput_ratio: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub added_p50_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub added_p99_ms: f64,
}

fn point_select() -> String {
    POINT_SELECT.into()
}

fn gateway() -> String {
    "gateway".into()
}

/// JSON has no NaN: serde_json writes it as null, read back here as NaN.
pub fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One of the issue's targets and whether the run met it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetCheck {
    pub name: String,
    pub goal: String,
    pub measured: String,
    /// None when the run did not measure what the target needs.
    pub met: Option<bool>,
    /// For a missed target: the figures that explain it.
    #[serde(default)]
    pub why: Option<String>,
}

/// The run of `workload` on `path` (`direct`, `gateway`, `seed`) at concurrency `c`; `mode`
/// only for gateway runs.
pub fn find<'a>(
    rows: &'a [BenchRow],
    workload: &str,
    path: &str,
    mode: Option<&str>,
    c: usize,
) -> Option<&'a BenchRow> {
    rows.iter().find(|r| {
        r.workload == workload
            && r.path == path
            && r.concurrency == c
            && mode.is_none_or(|m| r.mode == m)
    })
}

/// CPU per request of `service` (`gatekeeper`, `proxy`) in a run: the seed design's own
/// process (`seed-gatekeeper`, `seed-proxy`) for a seed run.
pub fn service_cpu(row: &BenchRow, service: &str) -> Option<f64> {
    let key = if row.path == "seed" {
        format!("seed-{service}")
    } else {
        service.to_string()
    };
    row.cpu_us_per_request.get(&key).copied()
}

/// Gatekeeper plus proxy CPU per request, when both were measured.
pub fn cpu_sum(row: &BenchRow) -> Option<(f64, f64, f64)> {
    let (g, p) = (service_cpu(row, "gatekeeper")?, service_cpu(row, "proxy")?);
    Some((g, p, g + p))
}

/// Database CPU per request of a run, summed over the servers measured (`manager`,
/// `worker-1`, …), when any was.
pub fn db_cpu_sum(row: &BenchRow) -> Option<f64> {
    (!row.db_cpu_us_per_request.is_empty()).then(|| row.db_cpu_us_per_request.values().sum())
}

/// The database nodes measured in any of `rows`: the manager first, then the workers by
/// number, then any other name.
pub fn db_nodes(rows: &[BenchRow]) -> Vec<String> {
    let mut nodes: Vec<String> = rows
        .iter()
        .flat_map(|row| row.db_cpu_us_per_request.keys().cloned())
        .collect();
    nodes.sort_by_key(|n| {
        let worker = n
            .strip_prefix("worker-")
            .and_then(|i| i.parse::<u32>().ok());
        (n != "manager", worker.is_none(), worker, n.clone())
    });
    nodes.dedup();
    nodes
}

/// The database servers' CPU per gateway read against per direct read, for the why of a
/// missed read target; None unless both runs measured it. Past `DB_CPU_RATIO_EXPLAINED`× the
/// difference is put down to the proxy's round trips (docs/security.md, layers 2 and 3).
pub fn db_cpu_why(g: &BenchRow, d: &BenchRow) -> Option<String> {
    let (gw, direct) = (db_cpu_sum(g)?, db_cpu_sum(d)?);
    let mut why = format!(
        "the databases spent {gw:.0} µs of CPU per gateway read against {direct:.0} µs per \
         direct read"
    );
    if direct > 0.0 {
        let x = gw / direct;
        why.push_str(&format!(" ({x:.1}×)"));
        if x > DB_CPU_RATIO_EXPLAINED {
            why.push_str(
                ": each gateway read is a prepare, an execute, a connection reset and a SET \
                 re-applying the session settings, four round trips over TLS, where sysbench \
                 executes a statement it prepared once per connection",
            );
        }
    }
    Some(why)
}

/// Each gateway and seed run against the direct run of its workload and concurrency.
pub fn compare(rows: &[BenchRow]) -> Vec<Comparison> {
    rows.iter()
        .filter(|r| r.path != "direct")
        .filter_map(|g| {
            let d = find(rows, &g.workload, "direct", None, g.concurrency)?;
            Some(Comparison {
                workload: g.workload.clone(),
                path: g.path.clone(),
                mode: g.mode.clone(),
                concurrency: g.concurrency,
                throughput_ratio: ratio(g.throughput_rps, d.throughput_rps),
                added_p50_ms: g.p50_ms - d.p50_ms,
                added_p99_ms: g.p99_ms - d.p99_ms,
            })
        })
        .collect()
}

/// The comparison of `row`, if it has one.
pub fn comparison_of<'a>(cs: &'a [Comparison], row: &BenchRow) -> Option<&'a Comparison> {
    cs.iter().find(|c| {
        c.workload == row.workload
            && c.path == row.path
            && c.mode == row.mode
            && c.concurrency == row.concurrency
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// The low and high concurrencies of the reads (or of every run when there are no reads).
pub fn low_high(rows: &[BenchRow]) -> (usize, usize) {
    let reads: Vec<usize> = rows
        .iter()
        .filter(|r| r.workload == POINT_SELECT && r.path != "seed")
        .map(|r| r.concurrency)
        .collect();
    let all: Vec<usize> = if reads.is_empty() {
        rows.iter().map(|r| r.concurrency).collect()
    } else {
        reads
    };
    (
        all.iter().copied().min().unwrap_or(1),
        all.iter().copied().max().unwrap_or(16),
    )
}

fn not_measured(name: String, goal: String) -> TargetCheck {
    TargetCheck {
        name,
        goal,
        measured: "not measured".into(),
        met: None,
        why: None,
    }
}

fn check(name: String, goal: String, measured: String, met: bool, why: String) -> TargetCheck {
    TargetCheck {
        name,
        goal,
        measured,
        met: Some(met),
        why: (!met).then_some(why),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The issue's targets, judged on the measured rows. The headline gateway mode is `random`:
/// its reads go to workers, as sysbench's do. `cores` is the machine's, for the CPU budget a
/// missed throughput target leaves.
pub fn judge(rows: &[BenchRow], memory: &BTreeMap<String, Rss>, cores: usize) -> Vec<TargetCheck> {
    let (lo, hi) = low_high(rows);
    let reads_hi = find(rows, POINT_SELECT, "gateway", Some("random"), hi);
    let direct_hi = find(rows, POINT_SELECT, "direct", None, hi);
    vec![
        read_ratio(reads_hi, direct_hi, hi, cores),
        seed_multiple(
            reads_hi,
            find(rows, POINT_SELECT, "seed", None, hi),
            direct_hi,
            hi,
        ),
        cpu_per_read(
            reads_hi,
            find(rows, POINT_SELECT, "gateway", Some("random"), lo),
            lo,
            hi,
        ),
        added_p50(
            find(rows, POINT_SELECT, "gateway", Some("random"), lo),
            find(rows, POINT_SELECT, "direct", None, lo),
            lo,
        ),
        writes(rows, hi),
        resident_memory(memory),
        ping_p99(rows),
    ]
}

fn read_ratio(g: Option<&BenchRow>, d: Option<&BenchRow>, hi: usize, cores: usize) -> TargetCheck {
    let name = format!("reads at concurrency {hi}");
    let goal = format!(
        "gateway (random) ≥ {:.0}% of direct",
        MIN_READ_RATIO * 100.0
    );
    let (Some(g), Some(d)) = (g, d) else {
        return not_measured(name, goal);
    };
    if d.throughput_rps <= 0.0 {
        return not_measured(name, goal);
    }
    let r = g.throughput_rps / d.throughput_rps;
    let cores = cores.max(1) as f64;
    let per_query = cores * 1e6 / d.throughput_rps;
    let budget = cores * 1e6 / (MIN_READ_RATIO * d.throughput_rps);
    let spent = cpu_sum(g).map_or(String::new(), |(gk, px, sum)| {
        format!(
            "each read cost the gatekeeper and the proxy {sum:.0} µs of CPU ({gk:.0} + {px:.0}); "
        )
    });
    let databases = db_cpu_why(g, d).map_or(String::new(), |w| format!("; {w}"));
    let why = format!(
        "{spent}direct used {per_query:.0} µs of the machine's {cores} cores per query \
         ({cores} cores ÷ {:.0} queries/s) for sysbench and MariaDB together, and {:.0}% of direct \
         leaves {budget:.0} µs per request for the load generator, both services and \
         MariaDB{databases}",
        d.throughput_rps,
        MIN_READ_RATIO * 100.0
    );
    check(
        name,
        goal,
        format!(
            "{:.0} vs {:.0} req/s: {:.1}%",
            g.throughput_rps,
            d.throughput_rps,
            r * 100.0
        ),
        r >= MIN_READ_RATIO,
        why,
    )
}

fn seed_multiple(
    g: Option<&BenchRow>,
    s: Option<&BenchRow>,
    d: Option<&BenchRow>,
    hi: usize,
) -> TargetCheck {
    let name = format!("reads at concurrency {hi} against the seed design");
    let goal = format!("gateway (random) ≥ {MIN_SEED_MULTIPLE:.0}× the seed's throughput");
    let (Some(g), Some(s)) = (g, s) else {
        return not_measured(name, goal);
    };
    if s.throughput_rps <= 0.0 {
        return not_measured(name, goal);
    }
    let m = g.throughput_rps / s.throughput_rps;
    let need = MIN_SEED_MULTIPLE * s.throughput_rps;
    let seed_cpu = cpu_sum(s).map_or(String::new(), |(gk, px, sum)| {
        format!(
            ", spending {sum:.0} µs of CPU per read in its two Python services ({gk:.0} + {px:.0})"
        )
    });
    let of_direct = d
        .filter(|d| d.throughput_rps > 0.0)
        .map_or(String::new(), |d| {
            format!(" ({:.0}% of direct)", need / d.throughput_rps * 100.0)
        });
    let why = format!(
        "the seed served {:.0} req/s at a p50 of {} ms{seed_cpu}; {MIN_SEED_MULTIPLE:.0}× that is \
         {need:.0} req/s{of_direct}, and the gateway served {:.0}",
        s.throughput_rps,
        ms(s.p50_ms),
        g.throughput_rps
    );
    check(
        name,
        goal,
        format!(
            "{:.0} vs {:.0} req/s: {m:.1}×",
            g.throughput_rps, s.throughput_rps
        ),
        m >= MIN_SEED_MULTIPLE,
        why,
    )
}

fn cpu_per_read(
    g_hi: Option<&BenchRow>,
    g_lo: Option<&BenchRow>,
    lo: usize,
    hi: usize,
) -> TargetCheck {
    let name = "gatekeeper + proxy CPU per read".to_string();
    let goal = format!("≤ {MAX_CPU_PER_READ_US:.0} µs (both services, concurrency {hi}, random)");
    let Some((gk, px, sum)) = g_hi.and_then(cpu_sum) else {
        return not_measured(name, goal);
    };
    let (big, big_us, small, small_us) = if px >= gk {
        ("proxy", px, "gatekeeper", gk)
    } else {
        ("gatekeeper", gk, "proxy", px)
    };
    let at_lo = g_lo
        .filter(|_| lo != hi)
        .and_then(cpu_sum)
        .map_or(String::new(), |(g, p, s)| {
            format!("; at concurrency {lo} it is {s:.0} µs ({g:.0} + {p:.0})")
        });
    let why = format!(
        "{:.0} µs over: the {big} takes {big_us:.0} µs per read and the {small} {small_us:.0} µs{at_lo}",
        sum - MAX_CPU_PER_READ_US
    );
    check(
        name,
        goal,
        format!("{gk:.0} + {px:.0} = {sum:.0} µs"),
        sum <= MAX_CPU_PER_READ_US,
        why,
    )
}

fn added_p50(g: Option<&BenchRow>, d: Option<&BenchRow>, lo: usize) -> TargetCheck {
    let name = format!("added p50 at concurrency {lo}");
    let goal = format!("≤ {MAX_ADDED_P50_MS} ms (gateway random p50 − direct p50)");
    let (Some(g), Some(d)) = (g, d) else {
        return not_measured(name, goal);
    };
    if !(d.p50_ms.is_finite() && g.p50_ms.is_finite()) {
        return not_measured(name, goal);
    }
    let added = g.p50_ms - d.p50_ms;
    let why = match cpu_sum(g) {
        Some((gk, px, sum)) => {
            let busy = sum / 1000.0;
            format!(
                "at concurrency {lo} each read spent {sum:.0} µs of CPU in the gatekeeper and the \
                 proxy ({gk:.0} + {px:.0}), so about {} ms of the added {} ms is their own work and \
                 {} ms the two loopback TLS hops, the client and the threads' wake-ups",
                ms(busy.min(added)),
                ms(added),
                ms((added - busy).max(0.0))
            )
        }
        None => format!(
            "p50 {} ms through the gateway against {} ms direct",
            ms(g.p50_ms),
            ms(d.p50_ms)
        ),
    };
    check(
        name,
        goal,
        format!("{} − {} = {} ms", ms(g.p50_ms), ms(d.p50_ms), ms(added)),
        added <= MAX_ADDED_P50_MS,
        why,
    )
}

fn writes(rows: &[BenchRow], hi: usize) -> TargetCheck {
    let name = format!("writes at concurrency {hi}");
    let goal = format!(
        "gateway ≥ {:.0}% of direct (insert and update each)",
        MIN_WRITE_RATIO * 100.0
    );
    let mut parts = Vec::new();
    let mut whys = Vec::new();
    let mut met: Option<bool> = None;
    for w in ["insert", "update"] {
        let (Some(g), Some(d)) = (
            find(rows, w, "gateway", None, hi),
            find(rows, w, "direct", None, hi),
        ) else {
            continue;
        };
        let r = ratio(g.throughput_rps, d.throughput_rps);
        parts.push(format!(
            "{w} {:.0} vs {:.0} req/s: {:.1}%",
            g.throughput_rps,
            d.throughput_rps,
            r * 100.0
        ));
        let ok = r >= MIN_WRITE_RATIO;
        met = Some(met.unwrap_or(true) && ok);
        if !ok {
            let cpu = cpu_sum(g).map_or(String::new(), |(gk, px, sum)| {
                format!(", gatekeeper + proxy {sum:.0} µs of CPU per write ({gk:.0} + {px:.0})")
            });
            whys.push(format!(
                "{w}: p50 {} ms through the gateway against {} ms direct{cpu}",
                ms(g.p50_ms),
                ms(d.p50_ms)
            ));
        }
    }
    match met {
        None => not_measured(name, goal),
        Some(m) => check(name, goal, parts.join("; "), m, whys.join("; ")),
    }
}

fn resident_memory(memory: &BTreeMap<String, Rss>) -> TargetCheck {
    let name = "resident memory under load".to_string();
    let goal = format!("< {} MiB, each service", MAX_RSS_KIB / 1024);
    let mut parts = Vec::new();
    let mut over = Vec::new();
    for s in ["gatekeeper", "proxy"] {
        match memory.get(s) {
            Some(r) if r.samples > 0 => {
                parts.push(format!(
                    "{s} {} MiB (peak since start {} MiB)",
                    mib(r.max_kib),
                    mib(r.peak_kib)
                ));
                if r.max_kib >= MAX_RSS_KIB || r.peak_kib >= MAX_RSS_KIB {
                    over.push(format!(
                        "the {s} held {} MiB under load, {} MiB at its peak",
                        mib(r.max_kib),
                        mib(r.peak_kib)
                    ));
                }
            }
            _ => return not_measured(name, goal),
        }
    }
    let met = over.is_empty();
    check(name, goal, parts.join(", "), met, over.join("; "))
}

fn ping_p99(rows: &[BenchRow]) -> TargetCheck {
    let name = "ping-mode p99".to_string();
    let goal = format!("≤ {MAX_PING_P99_RATIO}× random-mode p99 at each concurrency");
    let mut cs: Vec<usize> = rows.iter().map(|r| r.concurrency).collect();
    cs.sort_unstable();
    cs.dedup();
    let mut parts = Vec::new();
    let mut whys = Vec::new();
    let mut met: Option<bool> = None;
    for c in cs {
        let (Some(p), Some(r)) = (
            find(rows, POINT_SELECT, "gateway", Some("ping"), c),
            find(rows, POINT_SELECT, "gateway", Some("random"), c),
        ) else {
            continue;
        };
        let x = if r.p99_ms > 0.0 {
            p.p99_ms / r.p99_ms
        } else {
            f64::INFINITY
        };
        parts.push(format!(
            "c={c}: {} / {} ms = {x:.2}×",
            ms(p.p99_ms),
            ms(r.p99_ms)
        ));
        let ok = x <= MAX_PING_P99_RATIO;
        met = Some(met.unwrap_or(true) && ok);
        if !ok {
            whys.push(format!(
                "c={c}: ping's slowest 1% took {} ms (max {} ms) against random's {} ms (max {} ms)",
                ms(p.p99_ms),
                ms(p.max_ms),
                ms(r.p99_ms),
                ms(r.max_ms)
            ));
        }
    }
    match met {
        None => not_measured(name, goal),
        Some(m) => check(name, goal, parts.join("; "), m, whys.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn row(
        w: &str,
        path: &str,
        mode: &str,
        c: usize,
        rps: f64,
        p50: f64,
        p99: f64,
    ) -> BenchRow {
        BenchRow {
            workload: w.into(),
            path: path.into(),
            mode: mode.into(),
            concurrency: c,
            node: String::new(),
            test: String::new(),
            count: 1000,
            errors: 0,
            throughput_rps: rps,
            avg_ms: p50,
            p50_ms: p50,
            p99_ms: p99,
            max_ms: p99 * 2.0,
            rss: BTreeMap::new(),
            cpu_us_per_request: BTreeMap::new(),
            db_cpu_us_per_request: BTreeMap::new(),
            errors_by_code: BTreeMap::new(),
            nodes: BTreeMap::new(),
            curve: Vec::new(),
            command: String::new(),
        }
    }

    fn with_cpu(mut r: BenchRow, names: [&str; 2], gk: f64, px: f64) -> BenchRow {
        r.cpu_us_per_request = BTreeMap::from([(names[0].into(), gk), (names[1].into(), px)]);
        r
    }

    fn rss(max_mib: u64) -> Rss {
        Rss {
            max_kib: max_mib * 1024,
            peak_kib: max_mib * 1024,
            samples: 10,
            cpu_s: 1.0,
        }
    }

    const SVC: [&str; 2] = ["gatekeeper", "proxy"];
    const SEED: [&str; 2] = ["seed-gatekeeper", "seed-proxy"];

    fn a_run() -> Vec<BenchRow> {
        vec![
            row(POINT_SELECT, "direct", "-", 1, 20_000.0, 0.05, 0.15),
            with_cpu(
                row(POINT_SELECT, "gateway", "random", 1, 3_000.0, 0.16, 0.60),
                SVC,
                60.0,
                70.0,
            ),
            row(POINT_SELECT, "gateway", "ping", 1, 3_000.0, 0.17, 0.80),
            row(POINT_SELECT, "direct", "-", 16, 30_000.0, 0.40, 1.50),
            with_cpu(
                row(POINT_SELECT, "gateway", "random", 16, 10_800.0, 1.50, 4.00),
                SVC,
                15.0,
                20.0,
            ),
            row(POINT_SELECT, "gateway", "ping", 16, 9_000.0, 1.50, 6.40),
            with_cpu(
                row(POINT_SELECT, "seed", "random", 16, 200.0, 40.0, 90.0),
                SEED,
                900.0,
                1500.0,
            ),
            row("insert", "direct", "-", 16, 5_000.0, 3.0, 9.0),
            with_cpu(
                row("insert", "gateway", "random", 16, 3_500.0, 4.0, 10.0),
                SVC,
                30.0,
                40.0,
            ),
            row("update", "direct", "-", 16, 6_000.0, 2.5, 8.0),
            with_cpu(
                row("update", "gateway", "random", 16, 3_000.0, 5.0, 12.0),
                SVC,
                30.0,
                45.0,
            ),
        ]
    }

    #[test]
    fn targets_are_judged_on_the_right_rows() {
        let memory = BTreeMap::from([
            ("gatekeeper".to_string(), rss(12)),
            ("proxy".to_string(), rss(20)),
            ("seed-proxy".to_string(), rss(80)),
        ]);
        let t = judge(&a_run(), &memory, 2);
        let met: Vec<(&str, Option<bool>)> = t.iter().map(|t| (t.name.as_str(), t.met)).collect();
        assert_eq!(
            met,
            [
                ("reads at concurrency 16", Some(true)),
                (
                    "reads at concurrency 16 against the seed design",
                    Some(true)
                ),
                ("gatekeeper + proxy CPU per read", Some(true)),
                ("added p50 at concurrency 1", Some(true)),
                ("writes at concurrency 16", Some(false)),
                ("resident memory under load", Some(true)),
                ("ping-mode p99", Some(false)),
            ],
            "10800/30000 = 36% met; 54× the seed met; 35 µs met; 0.11 ms met; update 50% \
             missed; the seed's 80 MiB is not the services'; 6.4/4.0 = 1.6× missed: {t:#?}"
        );
        assert!(
            t[0].measured.contains("36.0%") && t[0].why.is_none(),
            "{:?}",
            t[0]
        );
        assert!(t[1].measured.contains("54.0×"), "{}", t[1].measured);
        assert_eq!(t[2].measured, "15 + 20 = 35 µs");
        assert_eq!(t[3].measured, "0.160 − 0.050 = 0.110 ms");
        assert!(
            t[4].measured.contains("insert 3500 vs 5000 req/s: 70.0%")
                && t[4].measured.contains("update 3000 vs 6000 req/s: 50.0%"),
            "{}",
            t[4].measured
        );
        let why = t[4].why.as_deref().unwrap();
        assert!(
            why.starts_with("update: p50 5.000 ms through the gateway against 2.500 ms direct")
                && why.contains("75 µs of CPU per write")
                && !why.contains("insert"),
            "only the missed statement is explained: {why}"
        );
        assert!(
            t[6].measured.contains("c=16") && t[6].measured.contains("1.60"),
            "{}",
            t[6].measured
        );
        assert!(
            t[6].why.as_deref().unwrap().contains("c=16"),
            "{:?}",
            t[6].why
        );
    }

    #[test]
    fn a_missed_target_says_why_from_the_figures() {
        let mut rows = a_run();
        // Reads at 6000/30000 = 20%, with 80 µs of service CPU; 0.25 ms added at c=1.
        rows[4] = with_cpu(
            row(POINT_SELECT, "gateway", "random", 16, 6_000.0, 2.0, 5.0),
            SVC,
            35.0,
            45.0,
        );
        rows[1] = with_cpu(
            row(POINT_SELECT, "gateway", "random", 1, 3_000.0, 0.30, 0.60),
            SVC,
            60.0,
            90.0,
        );
        let memory = BTreeMap::from([
            ("gatekeeper".to_string(), rss(12)),
            ("proxy".to_string(), rss(60)),
        ]);
        let t = judge(&rows, &memory, 2);
        let why = |i: usize| {
            t[i].why
                .clone()
                .unwrap_or_else(|| panic!("{:?} has no why", t[i]))
        };
        assert_eq!(t[0].met, Some(false));
        assert_eq!(
            why(0),
            "each read cost the gatekeeper and the proxy 80 µs of CPU (35 + 45); direct used 67 µs \
             of the machine's 2 cores per query (2 cores ÷ 30000 queries/s) for sysbench and MariaDB \
             together, and 35% of direct leaves 190 µs per request for the load generator, both \
             services and MariaDB"
        );
        assert_eq!(t[1].met, Some(false), "6000 / 200 = 30×");
        assert!(
            why(1).contains("45× that is 9000 req/s (30% of direct), and the gateway served 6000")
                && why(1).contains("2400 µs of CPU per read"),
            "{}",
            why(1)
        );
        assert_eq!(t[2].met, Some(false));
        assert_eq!(
            why(2),
            "40 µs over: the proxy takes 45 µs per read and the gatekeeper 35 µs; at concurrency 1 \
             it is 150 µs (60 + 90)"
        );
        assert_eq!(t[3].met, Some(false), "0.25 ms added");
        assert!(
            why(3).contains("150 µs of CPU")
                && why(3).contains("about 0.150 ms of the added 0.250 ms")
                && why(3).contains("0.100 ms the two loopback TLS hops"),
            "{}",
            why(3)
        );
        assert_eq!(t[5].met, Some(false));
        assert!(why(5).contains("proxy held 60.0 MiB"), "{}", why(5));
    }

    fn with_db(mut r: BenchRow, per_node: &[(&str, f64)]) -> BenchRow {
        r.db_cpu_us_per_request = per_node.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        r
    }

    #[test]
    fn database_cpu_in_the_why_of_missed_reads() {
        let direct = with_db(
            row(POINT_SELECT, "direct", "-", 16, 30_000.0, 0.40, 1.50),
            &[("manager", 1.0), ("worker-1", 22.0), ("worker-2", 1.0)],
        );
        let gateway = with_db(
            row(POINT_SELECT, "gateway", "random", 16, 6_000.0, 2.0, 5.0),
            &[("manager", 10.0), ("worker-1", 150.0), ("worker-2", 150.0)],
        );
        assert_eq!(db_cpu_sum(&direct), Some(24.0), "summed over the nodes");
        assert_eq!(
            db_cpu_sum(&row(POINT_SELECT, "direct", "-", 1, 1.0, 0.1, 0.1)),
            None
        );
        assert_eq!(
            db_cpu_why(&gateway, &direct).as_deref(),
            Some(
                "the databases spent 310 µs of CPU per gateway read against 24 µs per direct read \
                 (12.9×): each gateway read is a prepare, an execute, a connection reset and a SET \
                 re-applying the session settings, four round trips over TLS, where sysbench \
                 executes a statement it prepared once per connection"
            ),
            "a large ratio is put down to the round trips"
        );
        let close = with_db(gateway.clone(), &[("worker-1", 40.0), ("worker-2", 8.0)]);
        assert_eq!(
            db_cpu_why(&close, &direct).as_deref(),
            Some("the databases spent 48 µs of CPU per gateway read against 24 µs per direct read (2.0×)"),
            "2× or less: the figures only"
        );
        let idle = with_db(direct.clone(), &[("worker-1", 0.0)]);
        assert_eq!(
            db_cpu_why(&gateway, &idle).as_deref(),
            Some("the databases spent 310 µs of CPU per gateway read against 0 µs per direct read"),
            "no ratio against nothing"
        );
        assert_eq!(
            db_cpu_why(
                &row(POINT_SELECT, "gateway", "random", 16, 1.0, 1.0, 1.0),
                &direct
            ),
            None,
            "not measured on one side"
        );
        let mut w10 = row("update", "gateway", "random", 16, 1.0, 1.0, 1.0);
        w10.db_cpu_us_per_request =
            BTreeMap::from([("worker-10".into(), 1.0), ("other".into(), 1.0)]);
        assert_eq!(
            db_nodes(&[gateway.clone(), w10, direct.clone()]),
            ["manager", "worker-1", "worker-2", "worker-10", "other"],
            "the manager, the workers by number, the rest"
        );
        let mut rows = a_run();
        rows[3] = direct;
        rows[4] = with_cpu(gateway, SVC, 35.0, 45.0);
        let t = judge(&rows, &BTreeMap::new(), 2);
        assert_eq!(t[0].met, Some(false));
        let why = t[0].why.as_deref().unwrap();
        assert!(
            why.starts_with("each read cost the gatekeeper and the proxy 80 µs of CPU (35 + 45)")
                && why.contains(
                    "services and MariaDB; the databases spent 310 µs of CPU per gateway read \
                     against 24 µs per direct read (12.9×): each gateway read"
                ),
            "{why}"
        );
    }

    #[test]
    fn missing_runs_are_not_measured_rather_than_met() {
        let rows = vec![row(POINT_SELECT, "direct", "-", 4, 1000.0, 0.1, 0.2)];
        let t = judge(&rows, &BTreeMap::new(), 2);
        assert!(
            t.iter().all(|t| t.met.is_none()),
            "nothing to compare: {t:#?}"
        );
        assert_eq!(t.len(), 7, "every target listed");
    }

    #[test]
    fn comparisons_pair_each_run_with_direct_of_its_workload() {
        let rows = a_run();
        let c = compare(&rows);
        assert_eq!(c.len(), 7, "every gateway and seed run: {c:#?}");
        let ins = c.iter().find(|c| c.workload == "insert").unwrap();
        assert!((ins.throughput_ratio - 0.7).abs() < 1e-9, "{ins:?}");
        assert!((ins.added_p50_ms - 1.0).abs() < 1e-9, "{ins:?}");
        let seed = c.iter().find(|c| c.path == "seed").unwrap();
        assert!(
            (seed.throughput_ratio - 200.0 / 30_000.0).abs() < 1e-9,
            "{seed:?}"
        );
        assert!(comparison_of(&c, &rows[8]).is_some_and(|x| x.workload == "insert"));
        assert!(comparison_of(&c, &rows[0]).is_none(), "direct has none");
        assert_eq!(low_high(&rows), (1, 16));
        assert_eq!(
            service_cpu(&rows[6], "proxy"),
            Some(1500.0),
            "the seed's own proxy"
        );
    }

    #[test]
    fn reports_without_the_new_fields_still_read() {
        let json = r#"{"mode":"random","concurrency":16,"throughput_ratio":0.2,"added_p50_ms":null,"added_p99_ms":1.0}"#;
        let c: Comparison = serde_json::from_str(json).unwrap();
        assert_eq!(
            (c.workload.as_str(), c.path.as_str()),
            (POINT_SELECT, "gateway")
        );
        assert!(c.added_p50_ms.is_nan());
        let t: TargetCheck =
            serde_json::from_str(r#"{"name":"x","goal":"y","measured":"z","met":true}"#).unwrap();
        assert_eq!(t.why, None);
    }
}
