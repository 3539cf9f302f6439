//! When requests start: as soon as a worker is free (closed loop), or on a fixed timetable
//! (open loop) whose slots are the start of every latency, so a stall is never hidden.

use serde::Serialize;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// How a phase offers its load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "loop", rename_all = "snake_case")]
pub enum Load {
    /// `concurrency` workers, each sending its next request when its previous one is answered.
    /// Latency runs from the actual send: a stalled server also stalls the sender, so the
    /// requests it would have sent meanwhile are never measured (coordinated omission).
    Closed { concurrency: usize },
    /// `rate` requests per second on a timetable, whatever the answers; latency runs from each
    /// request's scheduled start. At most `max_in_flight` are outstanding: past that the
    /// sender waits, and the wait counts in the latency of the requests it delays.
    Open { rate: f64, max_in_flight: usize },
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Closed { concurrency } => write!(f, "closed loop, concurrency {concurrency}"),
            Load::Open { rate, .. } => write!(f, "open loop, {rate} requests/s"),
        }
    }
}

/// An open loop's timetable: request `i` is due `i / rate` seconds after the start.
#[derive(Debug, Clone, Copy)]
pub struct Timetable {
    start: Instant,
    rate: f64,
}

impl Timetable {
    /// `rate` must be positive and finite (the command line checks it).
    pub fn new(start: Instant, rate: f64) -> Timetable {
        assert!(
            rate.is_finite() && rate > 0.0,
            "rate must be positive: {rate}"
        );
        Timetable { start, rate }
    }

    /// When request `i` (from 0) is due.
    pub fn due(&self, i: u64) -> Instant {
        self.start + self.offset(i)
    }

    /// How long after the start request `i` is due.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How many requests are due strictly before `offset` from the start.
    pub fn due_before(&self, offset: Duration) -> u64 {
        (offset.as_secs_f64() * self.rate).ceil() as u64
    }
}

/// The latency of a request the timetable had due at `due`, sent at `sent` and answered at
/// `done`. Sent late, it runs from `due`: the wait counts, as the client it stands for would
/// have waited. Sent early (the sender wakes a little ahead of a timer tick), from `sent`.
pub fn open_loop_latency(due: Instant, sent: Instant, done: Instant) -> Duration {
    done.saturating_duration_since(due.min(sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timetable_spaces_requests_evenly() {
        let start = Instant::now();
        let cases: &[(f64, u64, Duration, &str)] = &[
            (
                100.0,
                0,
                Duration::ZERO,
                "the first request is due at the start",
            ),
            (100.0, 1, Duration::from_millis(10), "100/s: every 10 ms"),
            (
                100.0,
                250,
                Duration::from_millis(2500),
                "100/s: the 251st after 2.5 s",
            ),
            (
                3.0,
                3,
                Duration::from_secs(1),
                "3/s: the 4th after one second",
            ),
            (0.5, 2, Duration::from_secs(4), "0.5/s: every 2 s"),
            (
                20_000.0,
                20_000,
                Duration::from_secs(1),
                "20k/s: one second for 20k requests",
            ),
        ];
        for &(rate, i, want, what) in cases {
            let t = Timetable::new(start, rate);
            let got = t.offset(i);
            let err = got.abs_diff(want);
            assert!(
                err < Duration::from_micros(1),
                "{what}: offset({i}) = {got:?}, want {want:?}"
            );
            assert_eq!(t.due(i), start + got, "{what}: due = start + offset");
        }
    }

    #[test]
    fn due_before_counts_the_slots_in_a_window() {
        let t = Timetable::new(Instant::now(), 100.0);
        let cases: &[(Duration, u64, &str)] = &[
            (Duration::ZERO, 0, "nothing is due before the start"),
            (Duration::from_millis(1), 1, "request 0 is due at once"),
            (
                Duration::from_millis(10),
                1,
                "request 1 is due at 10 ms, not before",
            ),
            (Duration::from_millis(11), 2, "two due before 11 ms"),
            (Duration::from_secs(10), 1000, "1000 in 10 s"),
        ];
        for &(offset, want, what) in cases {
            assert_eq!(t.due_before(offset), want, "{what}");
        }
    }

    #[test]
    fn open_loop_latency_counts_the_wait_before_sending() {
        let due = Instant::now();
        let ms = Duration::from_millis;
        let cases: &[(Duration, Duration, Duration, &str)] = &[
            (ms(0), ms(2), ms(2), "sent on time: the service time"),
            (
                ms(500),
                ms(502),
                ms(502),
                "sent 500 ms late: the wait counts",
            ),
        ];
        for &(sent, done, want, what) in cases {
            assert_eq!(
                open_loop_latency(due, due + sent, due + done),
                want,
                "{what}"
            );
        }
        let early = due + ms(1);
        assert_eq!(
            open_loop_latency(early, due, due + ms(3)),
            ms(3),
            "sent 1 ms before its slot: measured from the send, not shortened"
        );
        assert_eq!(
            open_loop_latency(due + ms(5), due + ms(5), due),
            Duration::ZERO,
            "an answer before its slot (impossible) is zero, not a panic"
        );
    }

    #[test]
    #[should_panic(expected = "rate must be positive")]
    fn zero_rate_is_refused() {
        Timetable::new(Instant::now(), 0.0);
    }
}
