//! Facts about the machine and the software a benchmark ran on, for the record.

use serde::{Deserialize, Serialize};
use std::process::Command;

/// What a reader needs to judge a benchmark's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Facts {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
    pub kernel: String,
    pub database: String,
    pub sysbench: String,
    pub rustc: String,
    /// The commit the binaries were built from (`+dirty` with uncommitted changes).
    pub commit: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute load averages when the run started: other work
    /// on the machine competes with the benchmark.
    pub load_average: String,
}

/// The value after `key` on the first line that has it (`model name\t: Intel …`).
fn value_after(text: &str, key: &str, sep: char) -> Option<String> {
    text.lines()
        .filter(|l| l.starts_with(key))
        .find_map(|l| l.split_once(sep))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Reads what it can; a fact that cannot be found reads `unknown`.
pub fn collect(database: Option<String>, sysbench: Option<String>) -> Facts {
    let unknown = || "unknown".to_string();
    let mem_kib: f64 = value_after(&read("/proc/meminfo"), "MemTotal", ':')
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0.0);
    let commit = output("git", &["rev-parse", "--short", "HEAD"]).map(|c| {
        let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.is_empty());
        if dirty {
            format!("{c}+dirty")
        } else {
            c
        }
    });
    Facts {
        cpu: value_after(&read("/proc/cpuinfo"), "model name", ':').unwrap_or_else(unknown),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        os: value_after(&read("/etc/os-release"), "PRETTY_NAME", '=').unwrap_or_else(unknown),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        database: database.unwrap_or_else(unknown),
        sysbench: sysbench.unwrap_or_else(unknown),
        rustc: output("rustc", &["--version"]).unwrap_or_else(unknown),
        commit: commit.unwrap_or_else(unknown),
        load_average: read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_from_proc_style_text() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(
            value_after(cpuinfo, "model name", ':').as_deref(),
            Some("AMD EPYC 7B13"),
            "cpuinfo"
        );
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            value_after(os, "PRETTY_NAME", '=').as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)"),
            "os-release unquoted"
        );
        assert_eq!(value_after(os, "VERSION", '='), None, "missing key");
    }

    #[test]
    fn collect_never_fails() {
        let f = collect(None, Some("sysbench 1.0.20".into()));
        assert!(f.cores >= 1, "cores counted: {f:?}");
        assert_eq!(
            (f.database.as_str(), f.sysbench.as_str()),
            ("unknown", "sysbench 1.0.20"),
            "given facts kept"
        );
    }
}
