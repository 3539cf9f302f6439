//! The reports: the table printed at the end, and JSON and CSV files of every figure under
//! `results/<timestamp>/`.

use crate::error::Error;
use crate::runner::PhaseResult;
use crate::schedule::Load;
use crate::stats::{CurvePoint, Summary, Tally};
use crate::verify::Verification;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The figures of one phase: a mode and a request type.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRow {
    pub mode: String,
    /// `write` or `read`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub summary: Summary,
    pub errors_by_code: Tally,
    pub maybe_executed: u64,
    /// Successful requests by the node that served them.
    pub nodes: Tally,
    pub curve: Vec<CurvePoint>,
}

impl PhaseRow {
    pub fn new(mode: &str, kind: &str, r: &PhaseResult) -> PhaseRow {
        PhaseRow {
            mode: mode.to_string(),
            kind: kind.to_string(),
            summary: r.summary(),
            errors_by_code: r.errors.clone(),
            maybe_executed: r.maybe_executed,
            nodes: r.nodes.clone(),
            curve: r.latencies.curve(),
        }
    }

    /// Requests the gatekeeper refused with 429.
    pub fn rate_limited(&self) -> u64 {
        self.errors_by_code
            .iter()
            .filter(|(c, _)| c.starts_with("http_429"))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Everything a `seed` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    pub scenario: String,
    /// UTC, ISO 8601.
    pub started_at: String,
    pub gatekeeper: String,
    pub run_id: String,
    pub table: String,
    pub requests_per_phase: u64,
    pub load: Load,
    pub rows: Vec<PhaseRow>,
    pub verification: Verification,
    pub warnings: Vec<String>,
}

/// A UTC time as `2026-01-31T12:34:56Z` and as the directory stamp `20260131T123456Z`.
pub fn utc(t: SystemTime) -> (String, String) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (y, mo, d) = civil_from_days(days as i64);
    (
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
    )
}

/// Days since 1970-01-01 to a (year, month, day) of the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Creates `base/stamp/` (or `base/stamp-2/`, … when it exists) and returns it.
pub fn create_results_dir(base: &Path, stamp: &str) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(base).map_err(|e| Error::io("create", base, e))?;
    for n in 1.. {
        let dir = if n == 1 {
            base.join(stamp)
        } else {
            base.join(format!("{stamp}-{n}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create", &dir, e)),
        }
    }
    unreachable!("some suffix is free")
}

/// A plain-text table: the first column left-aligned, the others right-aligned.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if i < 2 {
                let _ = write!(s, "{cell:<w$}");
            } else {
                let _ = write!(s, "{cell:>w$}");
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Milliseconds with three decimals (microseconds).
pub fn ms(v: f64) -> String {
    format!("{v:.3}")
}

/// The figures' column names, shared by the table and the CSV.
pub const SUMMARY_COLUMNS: [&str; 10] = [
    "mode",
    "type",
    "count",
    "errors",
    "avg_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "throughput_rps",
];

fn summary_cells(mode: &str, kind: &str, s: &Summary) -> Vec<String> {
    vec![
        mode.to_string(),
        kind.to_string(),
        s.count.to_string(),
        s.errors.to_string(),
        ms(s.avg_ms),
        ms(s.p50_ms),
        ms(s.p95_ms),
        ms(s.p99_ms),
        ms(s.max_ms),
        format!("{:.1}", s.throughput_rps),
    ]
}

/// A message framed so that it cannot be missed in a terminal or a CI log.
pub fn banner(message: &str) -> String {
    let bar = "#".repeat(message.len().min(100) + 4);
    format!("{bar}\n# {message}\n{bar}\n")
}

/// The table printed at the end of `seed`, with errors, nodes, warnings and the row count.
pub fn seed_text(r: &SeedReport) -> String {
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|p| summary_cells(&p.mode, &p.kind, &p.summary))
        .collect();
    let headers = [
        "mode", "type", "count", "errors", "avg ms", "p50 ms", "p95 ms", "p99 ms", "max ms",
        "req/s",
    ];
    let mut out = format!(
        "seed: {} requests per mode and type, {}, gatekeeper {}\n\n",
        r.requests_per_phase, r.load, r.gatekeeper
    );
    out.push_str(&render_table(&headers, &rows));
    for p in &r.rows {
        if !p.errors_by_code.is_empty() {
            let _ = writeln!(
                out,
                "errors {} {}: {}",
                p.mode,
                p.kind,
                tally_text(&p.errors_by_code)
            );
        }
    }
    for p in r.rows.iter().filter(|p| p.kind == "read") {
        let _ = writeln!(out, "reads served ({}): {}", p.mode, tally_text(&p.nodes));
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if r.verification.ok {
        let _ = writeln!(out, "{}", r.verification.message);
    } else {
        out.push_str(&banner(&r.verification.message));
    }
    out
}

fn tally_text(t: &Tally) -> String {
    t.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes `value` as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).expect("reports serialize");
    std::fs::write(path, text + "\n").map_err(|e| Error::io("write", path, e))
}

/// Reads a JSON report written by [`write_json`].
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Usage(format!(
            "{} is not a report of this kind: {e}",
            path.display()
        ))
    })
}

/// One CSV record (RFC 4180 quoting where needed).
pub fn csv_record(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes a CSV file with a header line.
pub fn write_csv(path: &Path, header: &[&str], rows: &[Vec<String>]) -> Result<(), Error> {
    let mut text = csv_record(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    text.push('\n');
    for r in rows {
        text.push_str(&csv_record(r));
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| Error::io("write", path, e))
}

/// `seed.json`, `seed.csv` (the table), `percentiles.csv` (the curves), `errors.csv` and
/// `rows.csv` (the count per node) in `dir`.
pub fn write_seed(dir: &Path, r: &SeedReport) -> Result<Vec<PathBuf>, Error> {
    let mut written = Vec::new();
    let mut file = |name: &str| {
        let p = dir.join(name);
        written.push(p.clone());
        p
    };
    write_json(&file("seed.json"), r)?;
    let table: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|p| summary_cells(&p.mode, &p.kind, &p.summary))
        .collect();
    write_csv(&file("seed.csv"), &SUMMARY_COLUMNS, &table)?;
    let curves: Vec<Vec<String>> = r
        .rows
        .iter()
        .flat_map(|p| {
            p.curve.iter().map(|c| {
                vec![
                    p.mode.clone(),
                    p.kind.clone(),
                    c.percentile.to_string(),
                    ms(c.latency_ms),
                ]
            })
        })
        .collect();
    write_csv(
        &file("percentiles.csv"),
        &["mode", "type", "percentile", "latency_ms"],
        &curves,
    )?;
    let errors: Vec<Vec<String>> = r
        .rows
        .iter()
        .flat_map(|p| {
            p.errors_by_code
                .iter()
                .map(|(c, n)| vec![p.mode.clone(), p.kind.clone(), c.clone(), n.to_string()])
        })
        .collect();
    write_csv(
        &file("errors.csv"),
        &["mode", "type", "code", "count"],
        &errors,
    )?;
    let v = &r.verification;
    let counts: Vec<Vec<String>> = v
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.node.clone(),
                n.role.clone(),
                n.rows.to_string(),
                v.acknowledged.to_string(),
                v.maybe_executed.to_string(),
                v.ok.to_string(),
            ]
        })
        .collect();
    write_csv(
        &file("rows.csv"),
        &[
            "node",
            "role",
            "rows",
            "acknowledged",
            "maybe_executed",
            "ok",
        ],
        &counts,
    )?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latencies;
    use crate::verify::NodeCount;
    use std::time::Duration;

    #[test]
    fn utc_formatting() {
        let at = |secs| utc(UNIX_EPOCH + Duration::from_secs(secs));
        let cases = [
            (0, "1970-01-01T00:00:00Z", "19700101T000000Z", "the epoch"),
            (
                951_782_400,
                "2000-02-29T00:00:00Z",
                "20000229T000000Z",
                "a leap day",
            ),
            (
                1_767_225_599,
                "2025-12-31T23:59:59Z",
                "20251231T235959Z",
                "the last second of 2025",
            ),
            (
                4_107_542_400,
                "2100-03-01T00:00:00Z",
                "21000301T000000Z",
                "2100 is not a leap year",
            ),
        ];
        for (secs, iso, stamp, what) in cases {
            assert_eq!(at(secs), (iso.to_string(), stamp.to_string()), "{what}");
        }
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let cases = [
            (vec!["a", "b"], "a,b", "plain"),
            (vec!["a,b", "c"], "\"a,b\",c", "comma"),
            (vec!["say \"hi\""], "\"say \"\"hi\"\"\"", "quotes doubled"),
            (vec!["two\nlines"], "\"two\nlines\"", "newline"),
        ];
        for (fields, want, what) in cases {
            let f: Vec<String> = fields.into_iter().map(String::from).collect();
            assert_eq!(csv_record(&f), want, "{what}");
        }
    }

    #[test]
    fn table_aligns_columns() {
        let t = render_table(
            &["mode", "type", "n"],
            &[
                vec!["direct".into(), "write".into(), "1000".into()],
                vec!["ping".into(), "read".into(), "7".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "header, rule, two rows: {t}");
        assert_eq!(
            lines[2], "direct  write  1000",
            "text left, numbers right: {t}"
        );
        assert_eq!(
            lines[3], "ping    read      7",
            "numbers right-aligned: {t}"
        );
    }

    fn sample_report(ok: bool) -> SeedReport {
        let mut r = PhaseResult::default();
        let mut l = Latencies::default();
        for us in [500, 700, 900] {
            l.record_us(us);
        }
        r.latencies = l;
        r.sent = 4;
        r.errors.insert("http_429_rate_limited".into(), 1);
        r.nodes.insert("worker-1".into(), 3);
        r.elapsed = Duration::from_secs(1);
        let rows = vec![
            PhaseRow::new("random", "write", &r),
            PhaseRow::new("random", "read", &r),
        ];
        SeedReport {
            scenario: "seed".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            gatekeeper: "http://127.0.0.1:8080".into(),
            run_id: "run".into(),
            table: "app.loadtest".into(),
            requests_per_phase: 4,
            load: Load::Closed { concurrency: 1 },
            rows,
            verification: Verification {
                ok,
                acknowledged: 3,
                maybe_executed: 0,
                nodes: vec![NodeCount {
                    node: "manager".into(),
                    role: "manager".into(),
                    rows: 3,
                }],
                message: if ok {
                    "rows: all equal".into()
                } else {
                    "ROW COUNT MISMATCH: worker-1 holds 2".into()
                },
                waited_s: 0.1,
            },
            warnings: vec!["1 requests were rate-limited".into()],
        }
    }

    #[test]
    fn seed_files_hold_every_figure() {
        let dir = tempfile::tempdir().unwrap();
        let report = sample_report(true);
        let files = write_seed(dir.path(), &report).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "seed.json",
                "seed.csv",
                "percentiles.csv",
                "errors.csv",
                "rows.csv"
            ],
            "files written"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
        let row = &json["rows"][0];
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
            assert!(row[field].is_number(), "JSON row has {field}: {row}");
        }
        assert_eq!(row["type"], "write", "type field named as in the table");
        assert_eq!(
            (row["count"].as_u64(), row["errors"].as_u64()),
            (Some(4), Some(1)),
            "count and errors"
        );
        assert_eq!(
            json["load"],
            serde_json::json!({"loop": "closed", "concurrency": 1}),
            "load described"
        );
        assert_eq!(json["verification"]["ok"], true, "verification in the JSON");
        let csv = std::fs::read_to_string(&files[1]).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], SUMMARY_COLUMNS.join(","), "CSV header");
        assert_eq!(
            lines[1], "random,write,4,1,0.700,0.700,0.900,0.900,0.900,3.0",
            "CSV row: {csv}"
        );
        let curves = std::fs::read_to_string(&files[2]).unwrap();
        assert_eq!(
            curves.lines().count(),
            1 + 2 * crate::stats::CURVE_PERCENTILES.len(),
            "a curve per phase"
        );
        let errors = std::fs::read_to_string(&files[3]).unwrap();
        assert!(
            errors.contains("random,write,http_429_rate_limited,1"),
            "errors by code: {errors}"
        );
    }

    #[test]
    fn the_text_report_says_a_mismatch_loudly() {
        let good = seed_text(&sample_report(true));
        assert!(
            good.contains("rows: all equal") && !good.contains("####"),
            "quiet when equal: {good}"
        );
        assert!(
            good.contains("warning: 1 requests were rate-limited"),
            "warnings shown: {good}"
        );
        assert!(
            good.contains("errors random write: http_429_rate_limited 1"),
            "errors shown: {good}"
        );
        let bad = seed_text(&sample_report(false));
        assert!(
            bad.contains("#####\n# ROW COUNT MISMATCH"),
            "banner on mismatch: {bad}"
        );
    }

    #[test]
    fn results_dirs_never_collide() {
        let base = tempfile::tempdir().unwrap();
        let a = create_results_dir(base.path(), "20260101T000000Z").unwrap();
        let b = create_results_dir(base.path(), "20260101T000000Z").unwrap();
        assert_ne!(a, b, "same second, two directories");
        assert!(b.ends_with("20260101T000000Z-2"), "{b:?}");
    }
}
