//! The command line: subcommands and their options, checked into typed settings. API keys come
//! from the environment or files, never from arguments (they would show in `ps`).

use crate::bench::Group;
use crate::client::Gateway;
use crate::error::Error;
use crate::runner::Stop;
use crate::scenario::{Target, Workload};
use crate::schedule::Load;
use clap::{Args, Parser, Subcommand};
use sqlgate::wire::Mode;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The local stack's gatekeeper (`make up`): port 8080 unless `SQLGATE_GATEKEEPER_PORT`
/// says otherwise, as for `local/stack.sh`.
pub fn local_url() -> String {
    let port = std::env::var("SQLGATE_GATEKEEPER_PORT").unwrap_or_else(|_| "8080".into());
    format!("https://127.0.0.1:{port}")
}

/// Whether `url` is on this machine (where the local stack's key files apply).
pub fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

const EXIT_CODES: &str = "\
Environment: GATEKEEPER_URL and API_KEY target a remote gatekeeper (ADMIN_API_KEY creates the
loadtest table there if it is missing); without them the local stack is used with the keys in
.local/keys/. SEED_GATEKEEPER_URL and SEED_API_KEY name the seed design's peer for bench's seed
group (loadtest/scripts/bench.sh starts it). LOADTEST_FONT names the TrueType font of the charts.

Exit codes: 0 done; 3 rows written and rows found differ; 64 bad arguments or settings;
65 sysbench failed; 69 gatekeeper or database unreachable; 74 file error; 77 key refused.";

#[derive(Parser, Debug)]
#[command(
    name = "loadtest",
    version,
    about = "Load generator for sqlgate: the seed benchmark, sysbench baselines, and the gateway against direct access",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Worker threads of the load generator's runtime (it shares the machine with what it loads).
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The seed benchmark: per mode, N inserts then N point reads through the gatekeeper; then the
    /// rows are counted on the manager and every worker.
    Seed(SeedArgs),
    /// Point selects (or inserts, updates, a mix) on the sysbench tables through the
    /// gatekeeper, for a fixed time.
    Select(SelectArgs),
    /// sysbench on the local cluster: oltp_read_only on each worker, oltp_read_write on the manager.
    Sysbench(SysbenchArgs),
    /// Parses a directory of sysbench reports (sysbench-<node>-<test>.txt) into JSON and CSV.
    SysbenchReport(SysbenchReportArgs),
    /// sqlgate against the database it fronts and against the seed design, by groups: reads,
    /// writes, a 90/10 mix, and the seed; writes docs/benchmarks.md.
    Bench(BenchArgs),
    /// Rewrites docs/benchmarks.md from a bench run's bench.json (after editing the notes).
    BenchDoc(BenchDocArgs),
}

#[derive(Args, Debug, Clone)]
pub struct BenchDocArgs {
    /// The run's directory (results/<timestamp>/, holding bench.json).
    pub dir: PathBuf,
    /// The document to rewrite.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub doc: PathBuf,
    /// Hand-written analysis carried into the document.
    #[arg(long, default_value = "loadtest/bench-notes.md")]
    pub notes: PathBuf,
}

/// Which gatekeeper, with which key.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Gatekeeper base URL; without it, the local stack's (http://127.0.0.1:8080, or
    /// SQLGATE_GATEKEEPER_PORT).
    #[arg(long, env = "GATEKEEPER_URL")]
    pub url: Option<String>,
    /// The CA that signed the gatekeeper's certificate (default: the local stack's
    /// `tls/ca.pem` for a gatekeeper on this machine, else the system's roots).
    #[arg(long, env = "GATEKEEPER_CA_FILE")]
    pub cacert: Option<PathBuf>,
    /// A file holding the API key (default: API_KEY, else the local stack's key file).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// The local stack's state directory (keys, pids, secrets).
    #[arg(long, env = "SQLGATE_LOCAL_DIR", default_value = ".local")]
    pub local_dir: PathBuf,
    /// Time after which a request counts as failed (`timeout`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// How the load is offered.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Closed loop: this many requests in flight, each sent when the previous one is answered.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Open loop: this many requests per second on a fixed timetable; latency runs from each
    /// request's slot, so stalls are not hidden (coordinated omission).
    #[arg(short, long, conflicts_with = "concurrency", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Open loop: most requests outstanding at once (past it, sending waits and the wait counts).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_in_flight: u32,
}

impl LoadArgs {
    pub fn load(&self) -> Load {
        match self.rate {
            Some(rate) => Load::Open {
                rate,
                max_in_flight: self.max_in_flight as usize,
            },
            None => Load::Closed {
                concurrency: self.concurrency as usize,
            },
        }
    }
}

/// Where reports go and whether to draw a progress bar.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Reports are written to <OUT>/<timestamp>/.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SeedArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Writes, then reads, per mode.
    #[arg(short = 'n', long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub requests: u64,
    /// Modes to measure, comma-separated (default: every mode the proxy offers).
    #[arg(long, value_delimiter = ',', value_parser = parse_mode)]
    pub modes: Vec<Mode>,
    /// The table the run writes to, created if missing (with ADMIN_API_KEY or the local admin key).
    #[arg(long, default_value = "app.loadtest")]
    pub table: String,
    /// How long replicas may take to show every row before the count reports a mismatch.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub verify_within: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct SelectArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The routing mode.
    #[arg(long, default_value = "random", value_parser = parse_mode)]
    pub mode: Mode,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured load first (0 for none).
    #[arg(long, default_value = "2s", value_parser = parse_duration_or_zero)]
    pub warmup: Duration,
    #[command(flatten)]
    pub sbtest: SbtestArgs,
    /// What each request does: point_select, insert (a new row above the loaded ids), update
    /// (k = k + 1) or mix (point selects and --write-percent updates); writes use the write key.
    #[arg(long, default_value = "point_select", value_parser = ["point_select", "insert", "update", "mix"])]
    pub workload: String,
    /// Point updates per 100 requests of `--workload mix`.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub write_percent: u32,
    /// The seed design's API (loadtest/seed-peer/): values inlined in the SQL, a request_id,
    /// no /ready; the key comes from API_KEY.
    #[arg(long)]
    pub seed_api: bool,
    /// Run past --duration until this many requests were sent, for at most 4× --duration (a
    /// slow server still gives enough samples).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub min_requests: Option<u64>,
}

impl SelectArgs {
    /// The workload asked for.
    pub fn workload(&self) -> Workload {
        workload(&self.workload, self.write_percent)
    }

    /// When the measured phase ends.
    pub fn stop(&self) -> Stop {
        match self.min_requests {
            None => Stop::After(self.duration),
            Some(requests) => Stop::AtLeast {
                time: self.duration,
                requests,
                cap: self.duration * 4,
            },
        }
    }
}

/// A workload by its command-line name (`mix` with its share of writes).
pub fn workload(name: &str, write_percent: u32) -> Workload {
    match name {
        "insert" => Workload::PointInsert,
        "update" => Workload::PointUpdate,
        "mix" => Workload::Mix { write_percent },
        _ => Workload::PointSelect,
    }
}

/// The sysbench tables' layout.
#[derive(Args, Debug, Clone)]
pub struct SbtestArgs {
    /// sysbench tables (sbtest.sbtest1 …).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub tables: u32,
    /// Rows per sysbench table.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub table_size: u64,
}

#[derive(Args, Debug, Clone)]
pub struct SysbenchArgs {
    /// Seconds each test runs.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub time: u64,
    /// sysbench threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    #[command(flatten)]
    pub sbtest: SbtestArgs,
    /// The local stack's state directory (for the sbtest password).
    #[arg(long, env = "SQLGATE_LOCAL_DIR", default_value = ".local")]
    pub local_dir: PathBuf,
    /// Reports are written to <OUT>/<timestamp>/.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Only make sure the tables are prepared and replicated.
    #[arg(long)]
    pub prepare_only: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SysbenchReportArgs {
    /// Directory holding sysbench-<node>-<test>.txt files; sysbench.json and .csv go there too.
    pub dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Measured seconds of each run.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub time: u64,
    /// Unmeasured seconds before each run.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
    /// Concurrencies, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: Vec<u32>,
    /// Gateway modes of the reads, comma-separated (default: every mode the proxy offers).
    #[arg(long, value_delimiter = ',', value_parser = parse_mode)]
    pub modes: Vec<Mode>,
    /// Groups to run, comma-separated: reads, writes, mixed, seed (default: all).
    #[arg(long, value_delimiter = ',', value_parser = parse_group)]
    pub groups: Vec<Group>,
    /// Point updates per 100 requests of the mixed group.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub mix_write_percent: u32,
    /// The seed design's gatekeeper (plain HTTP on this machine; its key from SEED_API_KEY).
    #[arg(long, env = "SEED_GATEKEEPER_URL")]
    pub seed_url: Option<String>,
    /// Where the mixed group's sysbench script (oltp_point_mix.lua) is.
    #[arg(long, default_value = "loadtest/sysbench")]
    pub lua_dir: PathBuf,
    #[command(flatten)]
    pub sbtest: SbtestArgs,
    /// The worker sysbench reads from directly.
    #[arg(long, default_value = "worker-1")]
    pub direct_node: String,
    /// The document to (re)write.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub doc: PathBuf,
    /// Hand-written analysis carried into the document.
    #[arg(long, default_value = "loadtest/bench-notes.md")]
    pub notes: PathBuf,
    /// A setting the services ran with, recorded in the document (repeatable).
    #[arg(long = "setting")]
    pub settings: Vec<String>,
    /// The command that ran the benchmark, recorded in the document.
    #[arg(long, default_value = "loadtest bench")]
    pub invocation: String,
    /// Reports are written to <OUT>/<timestamp>/.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
}

/// `15s`, `500ms`, `2m` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (like 15s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{s:?} must be more than 0 and at most a day"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Like [`parse_duration`], and `0` for none.
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    match s.trim().trim_end_matches(['s', 'm']) {
        "0" | "0.0" => Ok(Duration::ZERO),
        _ => parse_duration(s),
    }
}

/// A positive request rate.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1e6 => Ok(r),
        _ => Err(format!(
            "{s:?} must be a number of requests per second, above 0 and at most 1000000"
        )),
    }
}

/// A mode the proxy offers.
pub fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Mode::ALL.iter().map(|m| m.as_str()).collect();
        format!("{s:?} is not a mode: one of {}", all.join(", "))
    })
}

/// A group of `bench`.
pub fn parse_group(s: &str) -> Result<Group, String> {
    Group::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Group::ALL.iter().map(|g| g.as_str()).collect();
        format!("{s:?} is not a group: one of {}", all.join(", "))
    })
}

/// The groups asked for, or all of them, each once, in the order they run.
pub fn groups_or_all(groups: &[Group]) -> Vec<Group> {
    Group::ALL
        .into_iter()
        .filter(|g| groups.is_empty() || groups.contains(g))
        .collect()
}

/// The seed design's peer for the groups asked for: its URL (on this machine, plain HTTP as
/// the seed ran) and the key from SEED_API_KEY; None when the seed group is not asked for.
pub fn seed_target(
    groups: &[Group],
    url: Option<&str>,
    timeout: Duration,
) -> Result<Option<Target>, Error> {
    if !groups.contains(&Group::Seed) {
        return Ok(None);
    }
    let url = url
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            Error::Usage(
            "the seed group needs the seed design's peers: --seed-url (or SEED_GATEKEEPER_URL) \
             and SEED_API_KEY, which loadtest/scripts/bench.sh sets; or leave it out with \
             --groups reads,writes,mixed"
                .into(),
        )
        })?;
    if !is_loopback(url) {
        return Err(Error::Usage(format!(
            "the seed design's peer {url} must be on this machine: it speaks plain HTTP, so its \
             key would cross the network in clear"
        )));
    }
    let key = env_nonempty("SEED_API_KEY").ok_or_else(|| {
        Error::Usage("no key for the seed design's peer: set SEED_API_KEY".into())
    })?;
    Ok(Some(Target {
        gateway: Gateway::new(url, timeout, None)?,
        key,
        admin_key: None,
    }))
}

/// The modes asked for, or all of them.
pub fn modes_or_all(modes: &[Mode]) -> Vec<Mode> {
    if modes.is_empty() {
        Mode::ALL.to_vec()
    } else {
        let mut seen = Vec::new();
        for m in modes {
            if !seen.contains(m) {
                seen.push(*m);
            }
        }
        seen
    }
}

fn read_key(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Usage(format!(
            "no API key: cannot read {}: {e} (set API_KEY, or run make up to create the local keys)",
            path.display()
        ))
    })?;
    let key = text.trim().to_string();
    if key.is_empty() {
        return Err(Error::Usage(format!(
            "no API key: {} is empty",
            path.display()
        )));
    }
    Ok(key)
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl TargetArgs {
    /// The URL given, or the local stack's.
    pub fn url(&self) -> String {
        self.url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map_or_else(local_url, str::to_string)
    }

    /// The CA to trust: the one given, else the local stack's for a local gatekeeper.
    pub fn ca(&self) -> Option<PathBuf> {
        self.cacert.clone().or_else(|| {
            let local = self.local_dir.join("tls").join("ca.pem");
            (self.is_local() && local.exists()).then_some(local)
        })
    }

    /// Whether the target is on this machine, so the local stack's key files apply.
    pub fn is_local(&self) -> bool {
        is_loopback(&self.url())
    }

    /// The gatekeeper and keys: `role` names the local key file to use (`write`, `read`).
    pub fn resolve(&self, role: &str) -> Result<Target, Error> {
        let url = self.url();
        let keys = self.local_dir.join("keys");
        let key = if let Some(f) = &self.key_file {
            read_key(f)?
        } else if let Some(k) = env_nonempty("API_KEY") {
            k
        } else if self.is_local() {
            read_key(&keys.join(role))?
        } else {
            return Err(Error::Usage(format!(
                "no API key for {url}: set API_KEY (a {role} key) along with GATEKEEPER_URL"
            )));
        };
        let admin_key = env_nonempty("ADMIN_API_KEY").or_else(|| {
            self.is_local()
                .then(|| read_key(&keys.join("admin")).ok())
                .flatten()
        });
        Ok(Target {
            gateway: Gateway::new(&url, self.timeout, self.ca().as_deref())?,
            key,
            admin_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Option<Duration>, &str)] = &[
            ("15s", Some(Duration::from_secs(15)), "seconds"),
            ("500ms", Some(Duration::from_millis(500)), "milliseconds"),
            ("2m", Some(Duration::from_secs(120)), "minutes"),
            ("7", Some(Duration::from_secs(7)), "bare number is seconds"),
            ("1.5s", Some(Duration::from_millis(1500)), "fractions"),
            ("0s", None, "zero"),
            ("-1s", None, "negative"),
            ("10h", None, "unknown unit"),
            ("fast", None, "not a number"),
        ];
        for &(s, want, what) in cases {
            assert_eq!(parse_duration(s).ok(), want, "{what}: {s}");
        }
        for zero in ["0", "0s", "0ms"] {
            assert_eq!(
                parse_duration_or_zero(zero),
                Ok(Duration::ZERO),
                "warm-up {zero} is none"
            );
        }
        assert!(
            parse_duration_or_zero("-1s").is_err(),
            "negative warm-up refused"
        );
    }

    #[test]
    fn rates_and_modes() {
        assert_eq!(parse_rate("250"), Ok(250.0), "a rate");
        for bad in ["0", "-5", "inf", "NaN", "x"] {
            assert!(parse_rate(bad).is_err(), "rate {bad} refused");
        }
        assert_eq!(parse_mode("least_busy"), Ok(Mode::LeastBusy), "a mode");
        let e = parse_mode("fastest").unwrap_err();
        assert!(
            e.contains("direct, random, ping, least_busy"),
            "the error lists the modes: {e}"
        );
        assert_eq!(modes_or_all(&[]), Mode::ALL.to_vec(), "default: all modes");
        assert_eq!(
            modes_or_all(&[Mode::Ping, Mode::Ping, Mode::Direct]),
            [Mode::Ping, Mode::Direct],
            "deduplicated in order"
        );
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied()))
    }

    #[test]
    fn command_lines() {
        let cases: &[(&[&str], bool, &str)] = &[
            (&["seed"], true, "defaults"),
            (
                &["seed", "-n", "50", "-c", "4", "--modes", "direct,ping"],
                true,
                "closed loop",
            ),
            (&["seed", "--rate", "200"], true, "open loop"),
            (
                &["seed", "--rate", "200", "--concurrency", "4"],
                false,
                "open and closed at once",
            ),
            (&["seed", "--rate", "0"], false, "zero rate"),
            (&["seed", "-n", "0"], false, "zero requests"),
            (&["seed", "-c", "0"], false, "zero concurrency"),
            (&["seed", "--modes", "fastest"], false, "unknown mode"),
            (
                &["seed", "--api-key", "sk_x"],
                false,
                "keys are never arguments",
            ),
            (
                &["select", "--mode", "ping", "--duration", "5s"],
                true,
                "select",
            ),
            (
                &["bench", "--time", "5", "--concurrency", "1,16"],
                true,
                "bench",
            ),
            (
                &["bench", "--concurrency", "0"],
                false,
                "bench zero concurrency",
            ),
            (
                &[
                    "bench",
                    "--groups",
                    "reads,seed",
                    "--mix-write-percent",
                    "20",
                ],
                true,
                "bench groups",
            ),
            (&["bench", "--groups", "everything"], false, "unknown group"),
            (
                &["bench", "--mix-write-percent", "0"],
                false,
                "a mix without writes",
            ),
            (
                &["bench", "--mix-write-percent", "60"],
                false,
                "a mix mostly writes",
            ),
            (
                &["bench", "--seed-api-key", "x"],
                false,
                "the seed's key is never an argument",
            ),
            (
                &["select", "--workload", "mix", "--write-percent", "10"],
                true,
                "a mixed select",
            ),
            (
                &["select", "--workload", "update", "--seed-api"],
                true,
                "seed api",
            ),
            (
                &["select", "--workload", "delete"],
                false,
                "unknown workload",
            ),
            (&["sysbench", "--time", "10"], true, "sysbench"),
            (&["sysbench-report"], false, "report needs a directory"),
            (&["frobnicate"], false, "unknown command"),
        ];
        for &(args, ok, what) in cases {
            let r = parse(args);
            assert_eq!(
                r.is_ok(),
                ok,
                "{what}: {args:?}: {:?}",
                r.err().map(|e| e.to_string())
            );
        }
        let Command::Seed(s) = parse(&["seed", "--rate", "200"]).unwrap().command else {
            panic!("seed")
        };
        assert_eq!(
            s.load.load(),
            Load::Open {
                rate: 200.0,
                max_in_flight: 10_000
            },
            "open loop settings"
        );
        assert_eq!(s.requests, 1000, "the seed's 1,000 by default");
    }

    #[test]
    fn groups_and_workloads() {
        assert_eq!(parse_group("mixed"), Ok(Group::Mixed));
        let e = parse_group("all").unwrap_err();
        assert!(
            e.contains("reads, writes, mixed, seed"),
            "the error lists the groups: {e}"
        );
        assert_eq!(
            groups_or_all(&[]),
            Group::ALL.to_vec(),
            "default: all groups"
        );
        assert_eq!(
            groups_or_all(&[Group::Seed, Group::Reads, Group::Seed]),
            [Group::Reads, Group::Seed],
            "each once, in the order they run"
        );
        let Command::Select(s) = parse(&["select", "--workload", "mix", "--write-percent", "20"])
            .unwrap()
            .command
        else {
            panic!("select")
        };
        assert_eq!(s.workload(), Workload::Mix { write_percent: 20 });
        assert_eq!(
            s.stop(),
            Stop::After(Duration::from_secs(10)),
            "10 s by default"
        );
        let Command::Select(s) = parse(&["select", "--duration", "5s", "--min-requests", "300"])
            .unwrap()
            .command
        else {
            panic!("select")
        };
        assert_eq!(
            s.stop(),
            Stop::AtLeast {
                time: Duration::from_secs(5),
                requests: 300,
                cap: Duration::from_secs(20)
            },
            "at least 300 requests, within 4× the duration"
        );
        assert_eq!(workload("insert", 10), Workload::PointInsert);
        assert_eq!(workload("point_select", 10), Workload::PointSelect);
    }

    #[test]
    fn the_seed_peer_is_local_and_keyed_from_the_environment() {
        let t = Duration::from_secs(1);
        assert!(
            seed_target(&[Group::Reads], None, t).unwrap().is_none(),
            "no seed group, no peer needed"
        );
        let e = seed_target(&[Group::Seed], None, t).err().unwrap();
        assert!(
            matches!(&e, Error::Usage(m) if m.contains("--seed-url")),
            "the seed group without its peer: {e}"
        );
        let e = seed_target(&[Group::Seed], Some("http://seed.example.com"), t)
            .err()
            .unwrap();
        assert!(
            matches!(&e, Error::Usage(m) if m.contains("must be on this machine")),
            "a remote peer is refused: {e}"
        );
        if env_nonempty("SEED_API_KEY").is_none() {
            let e = seed_target(&[Group::Seed], Some("http://127.0.0.1:18080"), t)
                .err()
                .unwrap();
            assert!(
                matches!(&e, Error::Usage(m) if m.contains("SEED_API_KEY")),
                "no key: {e}"
            );
        }
    }

    #[test]
    fn loopback_urls() {
        let cases = [
            ("http://127.0.0.1:8080", true),
            ("http://localhost", true),
            ("http://[::1]:8080/", true),
            ("https://127.0.0.5:18080/x", true),
            ("http://gatekeeper.example.com", false),
            ("http://127.example.com", false),
        ];
        for (url, want) in cases {
            assert_eq!(is_loopback(url), want, "{url}");
        }
    }

    #[test]
    fn keys_come_from_files_for_the_local_stack() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/write"), "sk_w_secret\n").unwrap();
        let t = TargetArgs {
            url: None,
            cacert: None,
            key_file: None,
            local_dir: dir.path().to_path_buf(),
            timeout: Duration::from_secs(1),
        };
        if env_nonempty("API_KEY").is_none() {
            let target = t.resolve("write").unwrap();
            assert_eq!(target.key, "sk_w_secret", "the local write key, trimmed");
            assert_eq!(target.admin_key, None, "no admin key file, none used");
            let e = t.resolve("read").err().unwrap();
            assert!(
                e.to_string().contains("keys/read"),
                "a missing key file is named: {e}"
            );
            let remote = TargetArgs {
                url: Some("http://gatekeeper.invalid".into()),
                ..t.clone()
            };
            let e = remote.resolve("write").err().unwrap();
            assert!(
                e.to_string().contains("set API_KEY"),
                "a remote target needs API_KEY: {e}"
            );
        }
        let bad = TargetArgs {
            url: Some("ftp://x".into()),
            key_file: Some(dir.path().join("keys/write")),
            ..t
        };
        assert!(
            matches!(bad.resolve("write"), Err(Error::Usage(_))),
            "URL scheme checked"
        );
    }
}
