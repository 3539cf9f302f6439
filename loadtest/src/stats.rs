//! Latency statistics: an HDR histogram per measured phase, and the figures reported from it.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Largest latency the histogram holds exactly (2 minutes); longer ones are clamped to it.
pub const MAX_TRACKED_US: u64 = 120_000_000;

/// Significant decimal digits the histogram keeps: values are exact to within 0.1%.
const SIGNIFICANT_DIGITS: u8 = 3;

/// The percentiles drawn on a latency-percentile curve (the HDR "classic" plot's abscissae).
pub const CURVE_PERCENTILES: [f64; 22] = [
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 97.5, 99.0,
    99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

/// The latencies of one phase's successful requests, in microseconds.
#[derive(Clone)]
pub struct Latencies {
    hist: Histogram<u64>,
    /// Exact sum and maximum: the histogram's own are rounded to its buckets.
    sum_us: u128,
    max_us: u64,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            hist: Histogram::new_with_bounds(1, MAX_TRACKED_US, SIGNIFICANT_DIGITS)
                .expect("valid histogram bounds"),
            sum_us: 0,
            max_us: 0,
        }
    }
}

impl Latencies {
    /// Records one latency (sub-microsecond ones count as 1 µs, the histogram's floor).
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.record_us(us);
    }

    pub fn record_us(&mut self, us: u64) {
        let us = us.max(1);
        self.hist.saturating_record(us.min(MAX_TRACKED_US));
        self.sum_us += u128::from(us);
        self.max_us = self.max_us.max(us);
    }

    /// Adds another phase's latencies (each worker of a closed loop keeps its own).
    pub fn merge(&mut self, other: &Latencies) {
        self.hist
            .add(&other.hist)
            .expect("histograms with equal bounds");
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The latency at `percentile` (0 to 100) in milliseconds; 0 when nothing was recorded.
    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.count() == 0 {
            return 0.0;
        }
        if percentile >= 100.0 {
            return self.max_ms();
        }
        // The histogram answers with its bucket's highest value, which may pass the maximum.
        us_to_ms(self.hist.value_at_percentile(percentile).min(self.max_us))
    }

    pub fn mean_ms(&self) -> f64 {
        match self.count() {
            0 => 0.0,
            n => self.sum_us as f64 / n as f64 / 1e3,
        }
    }

    pub fn max_ms(&self) -> f64 {
        us_to_ms(self.max_us)
    }

    /// Points of the latency-percentile curve, one per [`CURVE_PERCENTILES`] entry.
    pub fn curve(&self) -> Vec<CurvePoint> {
        CURVE_PERCENTILES
            .iter()
            .map(|&p| CurvePoint {
                percentile: p,
                latency_ms: self.percentile_ms(p),
            })
            .collect()
    }
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1e3
}

/// One point of a latency-percentile curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub percentile: f64,
    pub latency_ms: f64,
}

/// The figures reported for one phase (a mode and a request type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Requests sent.
    pub count: u64,
    /// Requests that did not succeed (any status but 200, or no answer).
    pub errors: u64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Successful requests per second of the phase's wall time.
    pub throughput_rps: f64,
    pub elapsed_s: f64,
}

impl Summary {
    /// The figures of a phase whose successes took `latencies`, out of `count` sent in `elapsed`.
    pub fn new(latencies: &Latencies, count: u64, elapsed: Duration) -> Summary {
        let secs = elapsed.as_secs_f64();
        let ok = latencies.count();
        Summary {
            count,
            errors: count.saturating_sub(ok),
            avg_ms: latencies.mean_ms(),
            p50_ms: latencies.percentile_ms(50.0),
            p95_ms: latencies.percentile_ms(95.0),
            p99_ms: latencies.percentile_ms(99.0),
            max_ms: latencies.max_ms(),
            throughput_rps: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
            elapsed_s: secs,
        }
    }
}

/// Counts per label (error codes, nodes that served).
pub type Tally = BTreeMap<String, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    fn from_values(values: impl IntoIterator<Item = u64>) -> Latencies {
        let mut l = Latencies::default();
        for v in values {
            l.record_us(v);
        }
        l
    }

    /// Within the histogram's precision (0.1%) plus one microsecond of bucket rounding.
    fn close(got_ms: f64, want_ms: f64) -> bool {
        (got_ms - want_ms).abs() <= want_ms * 1e-3 + 1e-3
    }

    #[test]
    fn percentiles_of_known_distributions() {
        // Uniform 1..=100_000 µs: the p-th percentile is p% of 100 ms.
        let uniform = from_values(1..=100_000);
        // Exponential with a mean of 1 ms, by inverse transform on an even grid: the p-th
        // percentile is -ln(1 - p) ms.
        let n = 100_000u64;
        let exponential = from_values((0..n).map(|i| {
            let u = (i as f64 + 0.5) / n as f64;
            (-(1.0 - u).ln() * 1000.0).round() as u64
        }));
        // Bimodal: 99% at 1 ms, 1% at 250 ms (a stall that p95 hides and p99.9 shows).
        let bimodal = from_values((0..10_000).map(|i| if i % 100 == 0 { 250_000 } else { 1_000 }));
        let constant = from_values(std::iter::repeat_n(420, 1000));
        let cases: Vec<(&str, &Latencies, f64, f64)> = vec![
            ("uniform p50", &uniform, 50.0, 50.0),
            ("uniform p95", &uniform, 95.0, 95.0),
            ("uniform p99", &uniform, 99.0, 99.0),
            ("uniform p0 is the minimum", &uniform, 0.0, 0.001),
            ("uniform p100 is the maximum", &uniform, 100.0, 100.0),
            ("exponential p50 = ln 2", &exponential, 50.0, 2f64.ln()),
            ("exponential p95 = ln 20", &exponential, 95.0, 20f64.ln()),
            ("exponential p99 = ln 100", &exponential, 99.0, 100f64.ln()),
            ("bimodal p95 hides the stall", &bimodal, 95.0, 1.0),
            ("bimodal p99 still the fast mode", &bimodal, 99.0, 1.0),
            ("bimodal p99.9 shows the stall", &bimodal, 99.9, 250.0),
            ("constant p50", &constant, 50.0, 0.42),
            ("constant p99", &constant, 99.0, 0.42),
        ];
        for (what, l, p, want) in cases {
            let got = l.percentile_ms(p);
            assert!(close(got, want), "{what}: p{p} = {got} ms, want {want} ms");
        }
        assert!(
            close(uniform.mean_ms(), 50.0005),
            "uniform mean: {}",
            uniform.mean_ms()
        );
        assert!(
            close(exponential.mean_ms(), 1.0),
            "exponential mean: {}",
            exponential.mean_ms()
        );
        assert!(
            close(bimodal.mean_ms(), 0.99 + 2.5),
            "bimodal mean: {}",
            bimodal.mean_ms()
        );
    }

    #[test]
    fn summary_counts_errors_and_throughput() {
        let l = from_values([1_000, 2_000, 3_000, 4_000]);
        let s = Summary::new(&l, 5, Duration::from_secs(2));
        assert_eq!((s.count, s.errors), (5, 1), "5 sent, 4 succeeded: {s:?}");
        assert!(close(s.avg_ms, 2.5), "mean of 1..4 ms: {s:?}");
        assert!(close(s.max_ms, 4.0), "max is exact: {s:?}");
        assert!(close(s.throughput_rps, 2.0), "4 successes in 2 s: {s:?}");
        let empty = Summary::new(&Latencies::default(), 0, Duration::ZERO);
        assert_eq!(
            (empty.p99_ms, empty.throughput_rps),
            (0.0, 0.0),
            "nothing recorded: {empty:?}"
        );
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let (mut a, b) = (from_values(1..=500), from_values(501..=1000));
        a.merge(&b);
        let all = from_values(1..=1000);
        for p in [50.0, 90.0, 99.0, 100.0] {
            assert_eq!(a.percentile_ms(p), all.percentile_ms(p), "merged p{p}");
        }
        assert_eq!(
            (a.count(), a.mean_ms()),
            (all.count(), all.mean_ms()),
            "merged count and mean"
        );
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let l = from_values([0, MAX_TRACKED_US * 10]);
        assert_eq!(l.count(), 2, "both recorded");
        assert_eq!(l.percentile_ms(0.0), 0.001, "zero counts as the 1 µs floor");
        assert_eq!(
            l.max_ms(),
            (MAX_TRACKED_US * 10) as f64 / 1e3,
            "the exact maximum is kept"
        );
    }

    #[test]
    fn curve_is_monotonic_and_ends_at_the_maximum() {
        let l = from_values((1..=10_000).map(|i| i * 3));
        let c = l.curve();
        assert_eq!(c.len(), CURVE_PERCENTILES.len(), "one point per percentile");
        assert!(
            c.windows(2).all(|w| w[0].latency_ms <= w[1].latency_ms),
            "monotonic: {c:?}"
        );
        assert_eq!(
            c.last().map(|p| p.latency_ms),
            Some(30.0),
            "ends at the maximum"
        );
    }
}
