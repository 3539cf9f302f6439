//! Runs one measured phase: sends requests in a closed or open loop until a count or a time
//! is reached, and records every outcome.

use crate::schedule::{open_loop_latency, Load, Timetable};
use crate::stats::{Latencies, Summary, Tally};
use indicatif::ProgressBar;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::{sleep_until, Instant};

/// How far ahead of its slot the open-loop sender wakes: tokio's timer rounds a deadline up to
/// its next millisecond tick, so waking one tick early sends within a millisecond before the
/// slot instead of up to one after it (which would add timer slack to every latency). A
/// request sent early is measured from its send, so nothing is shortened either.
const LOOKAHEAD: Duration = Duration::from_millis(1);

/// When a phase ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this many requests.
    Count(u64),
    /// When this much time has passed (requests in flight then are waited for).
    After(Duration),
    /// When `time` has passed and at least `requests` were sent, or at `cap` whatever the
    /// count: a slow server still gives enough samples, within a bound.
    AtLeast {
        time: Duration,
        requests: u64,
        cap: Duration,
    },
}

impl Stop {
    /// Whether request `i` (from 0), starting `at` after the phase's start, is past the end
    /// (it is not sent).
    pub fn ends(&self, at: Duration, i: u64) -> bool {
        match *self {
            Stop::Count(n) => i >= n,
            Stop::After(d) => at >= d,
            Stop::AtLeast {
                time,
                requests,
                cap,
            } => at >= cap || (at >= time && i >= requests),
        }
    }

    /// The time a progress bar follows; None when it follows the answers.
    fn clock(&self) -> Option<Duration> {
        match *self {
            Stop::Count(_) => None,
            Stop::After(d) => Some(d),
            Stop::AtLeast { time, .. } => Some(time),
        }
    }
}

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// A short label: `http_429_rate_limited`, `timeout`, `connect`, …
    pub code: String,
    /// The statement may have run although no success came back (a timeout after sending,
    /// a 502/504): a write counted this way may or may not be in the table.
    pub maybe_executed: bool,
}

/// What one request came to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The node that served it, when the answer says.
    pub node: Option<String>,
    pub error: Option<Failure>,
}

impl Outcome {
    pub fn served_by(node: impl Into<String>) -> Outcome {
        Outcome {
            node: Some(node.into()),
            error: None,
        }
    }

    pub fn failed(code: impl Into<String>, maybe_executed: bool) -> Outcome {
        Outcome {
            node: None,
            error: Some(Failure {
                code: code.into(),
                maybe_executed,
            }),
        }
    }
}

/// Everything one phase recorded.
#[derive(Clone, Default)]
pub struct PhaseResult {
    /// Latencies of the successful requests.
    pub latencies: Latencies,
    pub sent: u64,
    /// Failures by code.
    pub errors: Tally,
    /// Failures after which the statement may still have run.
    pub maybe_executed: u64,
    /// Successful requests by the node that served them.
    pub nodes: Tally,
    /// From the phase's start to its last answer.
    pub elapsed: Duration,
}

impl PhaseResult {
    fn add(&mut self, latency: Duration, outcome: Outcome) {
        self.sent += 1;
        match outcome.error {
            None => {
                self.latencies.record(latency);
                if let Some(node) = outcome.node {
                    *self.nodes.entry(node).or_default() += 1;
                }
            }
            Some(f) => {
                *self.errors.entry(f.code).or_default() += 1;
                self.maybe_executed += u64::from(f.maybe_executed);
            }
        }
    }

    fn merge(&mut self, other: PhaseResult) {
        self.latencies.merge(&other.latencies);
        self.sent += other.sent;
        self.maybe_executed += other.maybe_executed;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in other.nodes {
            *self.nodes.entry(k).or_default() += v;
        }
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    /// Successful requests.
    pub fn ok(&self) -> u64 {
        self.latencies.count()
    }

    pub fn summary(&self) -> Summary {
        Summary::new(&self.latencies, self.sent, self.elapsed)
    }
}

/// Runs `op(i)` for i = 0, 1, … under `load` until `stop`, and returns what it recorded.
/// `progress` advances by one per answer (`Stop::Count`) or follows the clock in
/// milliseconds (`Stop::After`).
pub async fn run<F, Fut>(load: Load, stop: Stop, progress: &ProgressBar, op: F) -> PhaseResult
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let start = Instant::now();
    let ticker = stop
        .clock()
        .map(|d| tokio::spawn(follow_clock(progress.clone(), start, d)));
    let per_answer = stop.clock().is_none().then(|| progress.clone());
    let result = match load {
        Load::Closed { concurrency } => closed(concurrency, stop, start, per_answer, op).await,
        Load::Open {
            rate,
            max_in_flight,
        } => open(rate, max_in_flight, stop, start, per_answer, op).await,
    };
    if let Some(t) = ticker {
        t.abort();
    }
    result
}

/// Moves `progress` with the clock, in milliseconds since `start`, up to `length`.
pub async fn follow_clock(progress: ProgressBar, start: Instant, length: Duration) {
    loop {
        let ms = start.elapsed().min(length).as_millis();
        progress.set_position(u64::try_from(ms).unwrap_or(u64::MAX));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn closed<F, Fut>(
    concurrency: usize,
    stop: Stop,
    start: Instant,
    progress: Option<ProgressBar>,
    op: F,
) -> PhaseResult
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (op, next, progress) = (op.clone(), next.clone(), progress.clone());
            tokio::spawn(async move {
                let mut r = PhaseResult::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if stop.ends(start.elapsed(), i) {
                        break;
                    }
                    let sent = Instant::now();
                    let outcome = op(i).await;
                    let done = Instant::now();
                    r.add(done - sent, outcome);
                    r.elapsed = done - start;
                    if let Some(p) = &progress {
                        p.inc(1);
                    }
                }
                r
            })
        })
        .collect();
    let mut total = PhaseResult::default();
    for w in workers {
        total.merge(w.await.expect("a load worker panicked"));
    }
    total
}

async fn open<F, Fut>(
    rate: f64,
    max_in_flight: usize,
    stop: Stop,
    start: Instant,
    progress: Option<ProgressBar>,
    op: F,
) -> PhaseResult
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let op = Arc::new(op);
    let table = Timetable::new(start, rate);
    let max_in_flight = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let shared = Arc::new(Mutex::new(PhaseResult::default()));
    let mut i = 0u64;
    loop {
        if stop.ends(table.offset(i), i) {
            break;
        }
        let due = table.due(i);
        if due > Instant::now() + LOOKAHEAD {
            sleep_until(due - LOOKAHEAD).await;
        }
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let (op, shared, progress) = (op.clone(), shared.clone(), progress.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = op(i).await;
            let done = Instant::now();
            let mut r = shared.lock().expect("not poisoned");
            r.add(open_loop_latency(due, sent, done), outcome);
            r.elapsed = r.elapsed.max(done - start);
            drop(r);
            drop(slot);
            if let Some(p) = &progress {
                p.inc(1);
            }
        });
        i += 1;
    }
    let all = u32::try_from(max_in_flight).expect("at most MAX_PERMITS");
    let _drained = slots.acquire_many(all).await.expect("never closed");
    let r = shared.lock().expect("not poisoned").clone();
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::sleep;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A server that handles one request at a time, taking 1 ms each, except request
    /// `stall_at`, which holds it for `stall`.
    fn single_server(
        stall_at: u64,
        stall: Duration,
    ) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync + 'static
    {
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        move |i| {
            let lock = lock.clone();
            Box::pin(async move {
                let _busy = lock.lock().await;
                sleep(if i == stall_at { stall } else { ms(1) }).await;
                Outcome::served_by("worker-1")
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_sends_exactly_the_count() {
        let bar = ProgressBar::hidden();
        let load = Load::Closed { concurrency: 4 };
        let r = run(load, Stop::Count(100), &bar, |_| async {
            sleep(ms(1)).await;
            Outcome::served_by("manager")
        })
        .await;
        assert_eq!(
            (r.sent, r.ok()),
            (100, 100),
            "every request sent once and answered"
        );
        assert_eq!(
            r.nodes.get("manager"),
            Some(&100),
            "nodes tallied: {:?}",
            r.nodes
        );
        assert_eq!(bar.position(), 100, "the bar advanced once per answer");
        let s = r.summary();
        assert!(
            (1.0..1.1).contains(&s.p50_ms),
            "p50 is the 1 ms service time: {s:?}"
        );
        assert!(
            r.elapsed >= ms(25) && r.elapsed < ms(30),
            "4 workers, 100 × 1 ms: {:?}",
            r.elapsed
        );
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_keeps_to_the_timetable() {
        let bar = ProgressBar::hidden();
        let load = Load::Open {
            rate: 100.0,
            max_in_flight: 1000,
        };
        let r = run(load, Stop::Count(200), &bar, |_| async {
            sleep(ms(2)).await;
            Outcome::served_by("worker-2")
        })
        .await;
        assert_eq!((r.sent, r.ok()), (200, 200), "all sent");
        let s = r.summary();
        assert!(
            (2.0..2.1).contains(&s.p99_ms),
            "on schedule, latency is the service time: {s:?}"
        );
        assert!(
            (s.throughput_rps - 100.0).abs() < 1.0,
            "100 requests/s offered and served: {s:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_measures_what_a_stall_does_to_waiting_requests() {
        let bar = ProgressBar::hidden();
        // Request 100 stalls the server for one second: at 100/s, the next 100 requests are
        // due while it is stuck.
        let open = run(
            Load::Open {
                rate: 100.0,
                max_in_flight: 1000,
            },
            Stop::Count(300),
            &bar,
            single_server(100, Duration::from_secs(1)),
        )
        .await
        .summary();
        let closed = run(
            Load::Closed { concurrency: 1 },
            Stop::Count(300),
            &bar,
            single_server(100, Duration::from_secs(1)),
        )
        .await
        .summary();
        assert!(
            open.max_ms >= 1000.0 && closed.max_ms >= 1000.0,
            "both see the stalled request: {open:?} {closed:?}"
        );
        assert!(
            closed.p95_ms < 2.0,
            "closed loop: one slow sample among 300, p95 hides it: {closed:?}"
        );
        assert!(
            open.p95_ms > 500.0,
            "open loop: a third of the requests waited behind the stall: {open:?}"
        );
        assert!(
            open.p50_ms < 2.0,
            "open loop: the median is still the service time: {open:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_phase_stops_at_its_deadline() {
        let bar = ProgressBar::hidden();
        let r = run(
            Load::Closed { concurrency: 2 },
            Stop::After(Duration::from_secs(1)),
            &bar,
            |_| async {
                sleep(ms(10)).await;
                Outcome::served_by("worker-1")
            },
        )
        .await;
        assert!(
            (200..=202).contains(&r.sent),
            "2 workers × 1 s / 10 ms: {}",
            r.sent
        );
        let open = run(
            Load::Open {
                rate: 50.0,
                max_in_flight: 10,
            },
            Stop::After(Duration::from_secs(2)),
            &bar,
            |_| async { Outcome::served_by("worker-1") },
        )
        .await;
        assert_eq!(open.sent, 100, "50/s for 2 s");
    }

    #[test]
    fn where_each_stop_ends() {
        let s = Duration::from_secs;
        let cases = [
            (
                Stop::Count(10),
                s(100),
                9,
                false,
                "a count: the 10th request is sent",
            ),
            (Stop::Count(10), s(0), 10, true, "a count: the 11th is not"),
            (
                Stop::After(s(5)),
                s(4),
                1_000_000,
                false,
                "a time: before it",
            ),
            (Stop::After(s(5)), s(5), 0, true, "a time: at it"),
        ];
        let at_least = Stop::AtLeast {
            time: s(5),
            requests: 300,
            cap: s(20),
        };
        let more = [
            (
                at_least,
                s(4),
                1000,
                false,
                "at least: not before the time, however many",
            ),
            (
                at_least,
                s(5),
                1000,
                true,
                "at least: the time and enough requests",
            ),
            (
                at_least,
                s(6),
                299,
                false,
                "at least: too few requests, past the time",
            ),
            (
                at_least,
                s(19),
                299,
                false,
                "at least: still within the cap",
            ),
            (
                at_least,
                s(20),
                10,
                true,
                "at least: the cap ends it whatever the count",
            ),
        ];
        for (stop, at, i, want, what) in cases.into_iter().chain(more) {
            assert_eq!(stop.ends(at, i), want, "{what}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_server_is_run_longer_for_enough_samples_within_the_cap() {
        let bar = ProgressBar::hidden();
        let slow = |_| async {
            sleep(ms(100)).await;
            Outcome::served_by("worker-1")
        };
        let stop = Stop::AtLeast {
            time: Duration::from_secs(1),
            requests: 30,
            cap: Duration::from_secs(60),
        };
        let r = run(Load::Closed { concurrency: 1 }, stop, &bar, slow).await;
        assert_eq!(
            r.sent, 30,
            "10 per second: 30 needed 3 s, past the 1 s asked"
        );
        let capped = Stop::AtLeast {
            time: Duration::from_secs(1),
            requests: 1000,
            cap: Duration::from_secs(2),
        };
        let r = run(Load::Closed { concurrency: 1 }, capped, &bar, slow).await;
        assert!(
            (20..=21).contains(&r.sent),
            "the cap stops it at 2 s: {}",
            r.sent
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_counted_by_code_and_kept_out_of_latencies() {
        let bar = ProgressBar::hidden();
        let r = run(
            Load::Closed { concurrency: 3 },
            Stop::Count(100),
            &bar,
            |i| async move {
                match i % 10 {
                    0 => Outcome::failed("http_429_rate_limited", false),
                    5 => Outcome::failed("timeout", true),
                    _ => Outcome::served_by("worker-1"),
                }
            },
        )
        .await;
        assert_eq!((r.sent, r.ok()), (100, 80), "80 successes of 100");
        assert_eq!(
            r.errors.get("http_429_rate_limited"),
            Some(&10),
            "{:?}",
            r.errors
        );
        assert_eq!(r.errors.get("timeout"), Some(&10), "{:?}", r.errors);
        assert_eq!(
            r.maybe_executed, 10,
            "timeouts may have executed, 429s did not"
        );
        assert_eq!(r.summary().errors, 20, "summary counts every failure");
    }
}
