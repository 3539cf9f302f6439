//! Resident memory and CPU time of the services under load, from `/proc/<pid>/status` and
//! `/proc/<pid>/stat`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
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

fn ticks(pid: u32) -> Option<u64> {
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
    }
}
