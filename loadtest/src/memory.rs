//! Resident memory and CPU time of the services under load, from `/proc/<pid>/status` and
//! `/proc/<pid>/stat`; CPU time of the local cluster's database servers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A process to watch.
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

/// What the samples showed, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rss {
    /// Largest resident set seen while sampling.
    pub max_kib: u64,
    /// The process's own peak resident set since it started (`VmHWM`).
    pub peak_kib: u64,
    pub samples: u64,
    /// CPU time (user + system) the process used while sampled, in seconds.
    pub cpu_s: f64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// User plus system CPU ticks from a `/proc/<pid>/stat` text.
pub fn parse_stat_ticks(text: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// User plus system CPU ticks of a running process.
pub fn ticks(pid: u32) -> Option<u64> {
    parse_stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `VmRSS` and `VmHWM` of a `/proc/<pid>/status` text, in KiB.
pub fn parse_status(text: &str) -> Option<(u64, u64)> {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((kib("VmRSS:")?, kib("VmHWM:")?))
}

fn read(pid: u32) -> Option<(u64, u64)> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The process named by a pid file, when it runs the expected program (a stale pid file may
/// name an unrelated process).
pub fn from_pid_file(name: &str, pid_file: &Path) -> Result<Watched, String> {
    let text =
        std::fs::read_to_string(pid_file).map_err(|e| format!("{}: {e}", pid_file.display()))?;
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{} holds no pid", pid_file.display()))?;
    let exe =
        std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| format!("pid {pid}: {e}"))?;
    let program = exe
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !program.starts_with(name) {
        return Err(format!(
            "pid {pid} from {} runs {program}, not {name}",
            pid_file.display()
        ));
    }
    Ok(Watched {
        name: name.to_string(),
        pid,
    })
}

/// The process named by a pid file, when its command line holds `word` (an interpreter's
/// script, `gatekeeper.py`, whose program is `python3`).
pub fn from_pid_file_running(name: &str, pid_file: &Path, word: &str) -> Result<Watched, String> {
    let text =
        std::fs::read_to_string(pid_file).map_err(|e| format!("{}: {e}", pid_file.display()))?;
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{} holds no pid", pid_file.display()))?;
    let cmdline =
        std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| format!("pid {pid}: {e}"))?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if !args.iter().any(|a| a.contains(word)) {
        return Err(format!(
            "pid {pid} from {} does not run {word}",
            pid_file.display()
        ));
    }
    Ok(Watched {
        name: name.to_string(),
        pid,
    })
}

/// The command line of a process, one string per argument.
fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Programs the local cluster runs its nodes with (`local/cluster.sh`: MariaDB's `mariadbd`,
/// or `mysqld`, its old name and MySQL's).
const DATABASE_PROGRAMS: [&str; 2] = ["mariadbd", "mysqld"];

/// The state directory and node of a database server's command line, as `local/cluster.sh`
/// starts it: `mariadbd --defaults-file=<state dir>/db/<node>/my.cnf …`. None for any other
/// program or layout (`mariadb-install-db`, a shell that merely names the file).
pub fn database_node(args: &[String]) -> Option<(PathBuf, String)> {
    let program = Path::new(args.first()?).file_name()?.to_str()?;
    if !DATABASE_PROGRAMS.contains(&program) {
        return None;
    }
    args[1..].iter().find_map(|a| {
        let cnf = Path::new(a.strip_prefix("--defaults-file=")?);
        if cnf.file_name()? != "my.cnf" {
            return None;
        }
        let node_dir = cnf.parent()?;
        let node = node_dir.file_name()?.to_str()?;
        let db = node_dir.parent()?;
        if node.is_empty() || db.file_name()? != "db" {
            return None;
        }
        Some((db.parent()?.to_path_buf(), node.to_string()))
    })
}

/// The database servers of the local stack whose state directory is `state_dir`: every
/// `mariadbd` (or `mysqld`) process started with `--defaults-file=<state_dir>/db/<node>/my.cnf`,
/// named by node, in node order. Directories are compared after resolving symbolic links, so
/// a relative `SQLGATE_LOCAL_DIR` matches the absolute path `local/cluster.sh` starts them with.
pub fn database_servers(state_dir: &Path) -> Result<Vec<Watched>, String> {
    let want =
        std::fs::canonicalize(state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    let proc_dir = std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
    let mut found: BTreeMap<String, u32> = BTreeMap::new();
    for entry in proc_dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some((dir, node)) = cmdline(pid).as_deref().and_then(database_node) else {
            continue;
        };
        if std::fs::canonicalize(&dir).is_ok_and(|d| d == want) {
            // Two servers on one node's files cannot both run (InnoDB locks its data files);
            // keep the older, lower pid, should a second one be starting.
            found.entry(node).or_insert(pid);
        }
    }
    Ok(found
        .into_iter()
        .map(|(name, pid)| Watched { name, pid })
        .collect())
}

/// CPU ticks of each watched process now; a process that is gone is left out.
pub fn cpu_snapshot(watched: &[Watched]) -> BTreeMap<String, u64> {
    watched
        .iter()
        .filter_map(|w| Some((w.name.clone(), ticks(w.pid)?)))
        .collect()
}

/// CPU seconds each process used between two snapshots, for the processes in both. A process
/// whose ticks went down is not the one first sampled (it was restarted): left out.
pub fn cpu_used(
    start: &BTreeMap<String, u64>,
    end: &BTreeMap<String, u64>,
) -> BTreeMap<String, f64> {
    start
        .iter()
        .filter_map(|(name, t0)| {
            let t1 = end.get(name)?;
            (t1 >= t0).then(|| (name.clone(), (t1 - t0) as f64 / TICKS_PER_S))
        })
        .collect()
}

/// CPU microseconds per request: each process's CPU seconds divided by the requests answered
/// in the same window. Empty when none were answered.
pub fn us_per_request(cpu_s: &BTreeMap<String, f64>, requests: u64) -> BTreeMap<String, f64> {
    if requests == 0 {
        return BTreeMap::new();
    }
    cpu_s
        .iter()
        .map(|(name, s)| (name.clone(), s * 1e6 / requests as f64))
        .collect()
}

/// Samples the watched processes on a thread of its own until finished.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<BTreeMap<String, Rss>>,
}

impl Sampler {
    pub fn start(watched: Vec<Watched>, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen: BTreeMap<String, Rss> = BTreeMap::new();
            let start: Vec<Option<u64>> = watched.iter().map(|w| ticks(w.pid)).collect();
            loop {
                for w in &watched {
                    if let Some((rss, hwm)) = read(w.pid) {
                        let e = seen.entry(w.name.clone()).or_default();
                        e.max_kib = e.max_kib.max(rss);
                        e.peak_kib = e.peak_kib.max(hwm);
                        e.samples += 1;
                    }
                }
                if flag.load(Ordering::Relaxed) {
                    for (w, t0) in watched.iter().zip(start) {
                        if let (Some(t0), Some(t1), Some(e)) =
                            (t0, ticks(w.pid), seen.get_mut(&w.name))
                        {
                            e.cpu_s = t1.saturating_sub(t0) as f64 / TICKS_PER_S;
                        }
                    }
                    return seen;
                }
                std::thread::sleep(every);
            }
        });
        Sampler { stop, thread }
    }

    /// Takes a last sample and returns what was seen per process.
    pub fn finish(self) -> BTreeMap<String, Rss> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let text = "Name:\tproxy\nVmPeak:\t 1043968 kB\nVmHWM:\t   14000 kB\nVmRSS:\t   11416 kB\n";
        assert_eq!(
            parse_status(text),
            Some((11416, 14000)),
            "VmRSS and VmHWM in KiB"
        );
        assert_eq!(
            parse_status("Name:\tx\n"),
            None,
            "a kernel thread has no VmRSS"
        );
    }

    #[test]
    fn stat_cpu_ticks() {
        let cases = [
            (
                "1234 (proxy) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 18 0",
                Some(325),
                "user 250 + system 75",
            ),
            (
                "7 (actix server wo) R 1 7 7 0 -1 0 0 0 0 0 10 5 0 0",
                Some(15),
                "a name with spaces",
            ),
            ("garbage", None, "not a stat line"),
        ];
        for (text, want, what) in cases {
            assert_eq!(parse_stat_ticks(text), want, "{what}");
        }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn database_nodes_from_command_lines() {
        let cases = [
            (
                &[
                    "/usr/sbin/mariadbd",
                    "--defaults-file=/w/.local/db/worker-1/my.cnf",
                    "--skip-x",
                ][..],
                Some(("/w/.local", "worker-1")),
                "the server as cluster.sh starts it",
            ),
            (
                &["mysqld", "--defaults-file=/a b/db/manager/my.cnf"][..],
                Some(("/a b", "manager")),
                "mysqld, and a directory with a space",
            ),
            (
                &[
                    "/usr/bin/mariadb-install-db",
                    "--defaults-file=/w/.local/db/manager/my.cnf",
                ][..],
                None,
                "another program naming the file",
            ),
            (
                &[
                    "bash",
                    "-c",
                    "mariadbd --defaults-file=/w/.local/db/manager/my.cnf",
                ][..],
                None,
                "a shell",
            ),
            (
                &["/usr/sbin/mariadbd", "--defaults-file=/etc/mysql/my.cnf"][..],
                None,
                "the system's server",
            ),
            (
                &[
                    "/usr/sbin/mariadbd",
                    "--defaults-file=/w/.local/db/manager/other.cnf",
                ][..],
                None,
                "not my.cnf",
            ),
            (
                &[
                    "/usr/sbin/mariadbd",
                    "--defaults-file=/w/.local/ansible-test/db/manager/my.cnf",
                ][..],
                Some(("/w/.local/ansible-test", "manager")),
                "a stack nested in another's state directory is its own",
            ),
            (&["/usr/sbin/mariadbd"][..], None, "no defaults file"),
            (&[][..], None, "a kernel thread has no command line"),
        ];
        for (a, want, what) in cases {
            let want = want.map(|(d, n)| (PathBuf::from(d), n.to_string()));
            assert_eq!(database_node(&args(a)), want, "{what}");
        }
    }

    #[test]
    fn finds_the_stacks_servers_by_their_state_directory() {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        // A shell waiting on its stdin, whose command line looks like a node's server.
        let server = |state: &Path, node: &str| {
            Command::new("sh")
                .arg0("mariadbd")
                .args(["-c", "read x", "sh"])
                .arg(format!(
                    "--defaults-file={}/db/{node}/my.cnf",
                    state.display()
                ))
                .stdin(Stdio::piped())
                .spawn()
                .unwrap()
        };
        // worker-1 started through a symbolic link to the state directory.
        let link = other.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        std::fs::create_dir_all(dir.path().join("nested/db/worker-2")).unwrap();
        let mut children = [
            server(&link, "worker-1"),
            server(dir.path(), "manager"),
            server(other.path(), "manager"),
            // A stack of its own inside this one's state directory (as .local/ansible-test/).
            server(&dir.path().join("nested"), "worker-2"),
        ];
        let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
        // The children's command lines are theirs once they have exec'd.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut found = database_servers(dir.path());
        while found.as_ref().map_or(true, |f| f.len() < 2) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            found = database_servers(dir.path());
        }
        let via_link = database_servers(&link);
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert_eq!(
            found,
            Ok(vec![
                Watched {
                    name: "manager".into(),
                    pid: pids[1]
                },
                Watched {
                    name: "worker-1".into(),
                    pid: pids[0]
                },
            ]),
            "this stack's nodes in node order, links resolved, not the other or the nested stack's"
        );
        assert_eq!(via_link, found, "the state directory given as the link");
        assert!(
            database_servers(&dir.path().join("none")).is_err(),
            "a missing state directory"
        );
    }

    #[test]
    fn cpu_per_request_between_two_snapshots() {
        let start = BTreeMap::from([
            ("manager".to_string(), 1000),
            ("worker-1".to_string(), 500),
            ("worker-2".to_string(), 900),
            ("gone".to_string(), 7),
        ]);
        let end = BTreeMap::from([
            ("manager".to_string(), 1050),
            ("worker-1".to_string(), 800),
            ("worker-2".to_string(), 10),
            ("new".to_string(), 3),
        ]);
        let used = cpu_used(&start, &end);
        assert_eq!(
            used,
            BTreeMap::from([("manager".to_string(), 0.5), ("worker-1".to_string(), 3.0)]),
            "ticks at 100 per second; a restarted, a gone and a new process are left out"
        );
        let per = us_per_request(&used, 10_000);
        assert_eq!(
            per,
            BTreeMap::from([
                ("manager".to_string(), 50.0),
                ("worker-1".to_string(), 300.0)
            ]),
            "0.5 s over 10000 requests is 50 µs each"
        );
        assert!(
            us_per_request(&used, 0).is_empty(),
            "no requests, no figure"
        );
        let me = Watched {
            name: "self".into(),
            pid: std::process::id(),
        };
        let snap = cpu_snapshot(&[
            me,
            Watched {
                name: "gone".into(),
                pid: u32::MAX,
            },
        ]);
        assert!(
            snap.contains_key("self") && !snap.contains_key("gone"),
            "{snap:?}"
        );
    }

    #[test]
    fn samples_this_process() {
        let me = Watched {
            name: "self".into(),
            pid: std::process::id(),
        };
        let s = Sampler::start(
            vec![
                me,
                Watched {
                    name: "gone".into(),
                    pid: u32::MAX,
                },
            ],
            Duration::from_millis(5),
        );
        std::thread::sleep(Duration::from_millis(30));
        let seen = s.finish();
        let rss = seen.get("self").expect("this process sampled");
        assert!(
            rss.samples >= 2 && rss.max_kib > 0 && rss.peak_kib >= rss.max_kib,
            "{rss:?}"
        );
        assert!(
            !seen.contains_key("gone"),
            "a missing process is skipped, not an error"
        );
    }

    #[test]
    fn pid_files_must_name_the_right_program() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.pid");
        std::fs::write(&f, std::process::id().to_string()).unwrap();
        let err = from_pid_file("gatekeeper", &f).unwrap_err();
        assert!(
            err.contains("not gatekeeper"),
            "a pid running another program is refused: {err}"
        );
        std::fs::write(&f, "garbage").unwrap();
        assert!(from_pid_file("gatekeeper", &f).is_err(), "garbage refused");
        assert!(
            from_pid_file("gatekeeper", &dir.path().join("none")).is_err(),
            "missing file refused"
        );
        std::fs::write(&f, std::process::id().to_string()).unwrap();
        let me = std::env::args().next().unwrap();
        let word = std::path::Path::new(&me)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            from_pid_file_running("seed-proxy", &f, &word).map(|w| w.pid),
            Ok(std::process::id()),
            "a word of the command line names the process"
        );
        let err = from_pid_file_running("seed-proxy", &f, "proxy.py").unwrap_err();
        assert!(err.contains("does not run proxy.py"), "{err}");
    }
}
