//! PNG charts drawn with plotters: the seed report's three bar charts (average and p95 per
//! mode and type, maximum read latency per mode) and a latency-percentile curve per mode.
//!
//! Text is rendered with ab_glyph from a TrueType file read at run time (DejaVu Sans from
//! Debian's `fonts-dejavu-core` by default, `LOADTEST_FONT` to choose another), so no system
//! font machinery (fontconfig) is needed.

use crate::error::Error;
use crate::report::SeedReport;
use crate::stats::CurvePoint;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable naming the TrueType font to draw text with.
pub const FONT_ENV: &str = "LOADTEST_FONT";
/// Where Debian's `fonts-dejavu-core` puts DejaVu Sans.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1000, 600);
/// Integer x coordinates per unit (plotters formats labels of integer axes with key points).
const UNIT: i32 = 1000;

fn to_x(v: f64) -> i32 {
    (v * f64::from(UNIT)).round() as i32
}

/// Loads the font once per process; every chart needs it.
pub fn load_font() -> Result<(), Error> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let path = std::env::var(FONT_ENV).unwrap_or_else(|_| DEFAULT_FONT.to_string());
            let bytes = std::fs::read(&path).map_err(|e| {
                format!(
                    "font {path}: {e}: install fonts-dejavu-core (apt-get install fonts-dejavu-core) \
                     or set {FONT_ENV} to a .ttf file"
                )
            })?;
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font(FAMILY, FontStyle::Normal, bytes)
                .map_err(|_| format!("font {path} is not a usable TrueType/OpenType file"))
        })
        .clone()
        .map_err(Error::Chart)
}

/// A fixed colour per mode, so every chart reads the same.
fn color_of(name: &str, i: usize) -> RGBColor {
    match name {
        "direct" | "write" => RGBColor(31, 119, 180),
        "random" | "read" => RGBColor(255, 127, 14),
        "ping" => RGBColor(44, 160, 44),
        "least_busy" => RGBColor(214, 39, 40),
        _ => [
            RGBColor(148, 103, 189),
            RGBColor(140, 86, 75),
            RGBColor(127, 127, 127),
        ][i % 3],
    }
}

/// One bar colour and its values, one per group.
pub struct Series {
    pub label: String,
    pub values: Vec<f64>,
}

fn chart_err(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Chart(format!("{}: {e}", path.display()))
}

/// Bars grouped by `groups` (modes), one bar per series (request types), value on top.
pub fn grouped_bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[Series],
) -> Result<(), Error> {
    load_font()?;
    draw_bars(path, title, y_desc, groups, series).map_err(chart_err(path))
}

fn draw_bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[Series],
) -> Result<(), String> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let top = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0f64, f64::max);
    let y_max = if top > 0.0 { top * 1.18 } else { 1.0 };
    let n = groups.len().max(1) as i32;
    let centers: Vec<i32> = (0..n).map(|i| i * UNIT + UNIT / 2).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 24))
        .margin(18)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0..n * UNIT).with_key_points(centers), 0f64..y_max)
        .map_err(|e| e.to_string())?;
    let label = |x: &i32| {
        usize::try_from(x / UNIT)
            .ok()
            .and_then(|i| groups.get(i))
            .cloned()
            .unwrap_or_default()
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&label)
        .y_desc(y_desc)
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(|e| e.to_string())?;
    let width = 0.8 / series.len().max(1) as f64;
    let value_style =
        TextStyle::from((FAMILY, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (j, s) in series.iter().enumerate() {
        let color = color_of(&s.label, j);
        let bars = s.values.iter().enumerate().map(|(i, &v)| {
            let x0 = i as f64 + 0.1 + j as f64 * width;
            Rectangle::new(
                [(to_x(x0), 0.0), (to_x(x0 + width * 0.92), v)],
                color.filled(),
            )
        });
        chart
            .draw_series(bars)
            .map_err(|e| e.to_string())?
            .label(s.label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        let values = s.values.iter().enumerate().map(|(i, &v)| {
            let x = i as f64 + 0.1 + (j as f64 + 0.46) * width;
            Text::new(
                format!("{v:.2}"),
                (to_x(x), v + y_max * 0.005),
                value_style.clone(),
            )
        });
        chart.draw_series(values).map_err(|e| e.to_string())?;
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FAMILY, 15))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// "Nines" of a percentile: 90 → 1, 99 → 2, 99.9 → 3; the x of a percentile plot.
fn nines(percentile: f64, cap: f64) -> f64 {
    if percentile >= 100.0 {
        cap
    } else {
        (-(1.0 - percentile / 100.0).log10()).min(cap)
    }
}

fn nines_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{p:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Ticks at 1, 2 and 5 times each power of ten within `lo..=hi` (a log axis's usual labels).
fn one_two_five(lo: f64, hi: f64) -> Vec<f64> {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    (first..=last)
        .flat_map(|d| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(d)))
        .filter(|v| (lo..=hi).contains(v))
        .collect()
}

/// One line per mode: latency (log scale) against percentile, tails spread out.
pub struct Curve {
    pub label: String,
    pub points: Vec<CurvePoint>,
    /// Requests behind the curve: percentiles past 1 - 1/count are all the maximum.
    pub count: u64,
}

/// Panels side by side, one per (title, curves).
pub fn percentile_curves(
    path: &Path,
    title: &str,
    panels: &[(String, Vec<Curve>)],
) -> Result<(), Error> {
    load_font()?;
    draw_curves(path, title, panels).map_err(chart_err(path))
}

fn draw_curves(path: &Path, title: &str, panels: &[(String, Vec<Curve>)]) -> Result<(), String> {
    let root = BitMapBackend::new(path, (1200, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, (FAMILY, 24))
        .map_err(|e| e.to_string())?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for ((panel_title, curves), area) in panels.iter().zip(areas) {
        let cap = curves
            .iter()
            .map(|c| (c.count.max(10) as f64).log10())
            .fold(1.0f64, f64::max)
            .min(5.0);
        let values = curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.latency_ms))
            .filter(|v| *v > 0.0);
        let lo = values.clone().fold(f64::INFINITY, f64::min);
        let hi = values.fold(0.0f64, f64::max);
        let (lo, hi) = if lo.is_finite() && hi > 0.0 {
            (lo * 0.8, hi * 1.25)
        } else {
            (0.01, 1.0)
        };
        let keys: Vec<i32> = (0..=cap.floor() as i32).map(|k| k * UNIT).collect();
        let mut y_ticks = one_two_five(lo, hi);
        if y_ticks.len() < 2 {
            y_ticks = vec![lo, (lo * hi).sqrt(), hi];
        }
        let mut chart = ChartBuilder::on(&area)
            .caption(panel_title, (FAMILY, 18))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (0..to_x(cap)).with_key_points(keys),
                (lo..hi).log_scale().with_key_points(y_ticks),
            )
            .map_err(|e| e.to_string())?;
        let x_label = |x: &i32| nines_label(f64::from(*x) / f64::from(UNIT));
        let y_label = |y: &f64| {
            let t = format!("{y:.3}");
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        };
        chart
            .configure_mesh()
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .x_desc("percentile")
            .y_desc("latency (ms, log scale)")
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, c) in curves.iter().enumerate() {
            let color = color_of(&c.label, i);
            let own_cap = (c.count.max(10) as f64).log10().min(cap);
            // Percentiles past the cap all land on it: keep the last (largest) of them.
            let mut pts: Vec<(i32, f64)> = Vec::new();
            for p in c.points.iter().filter(|p| p.latency_ms > 0.0) {
                let point = (to_x(nines(p.percentile, own_cap)), p.latency_ms);
                match pts.last_mut() {
                    Some(last) if last.0 == point.0 => *last = point,
                    _ => pts.push(point),
                }
            }
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(c.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FAMILY, 14))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// The seed report's charts in `dir`: `avg_latency.png`, `p95_latency.png`,
/// `max_read_latency.png` and `percentiles.png`.
pub fn seed_charts(dir: &Path, r: &SeedReport) -> Result<Vec<PathBuf>, Error> {
    let mut modes: Vec<String> = Vec::new();
    for row in &r.rows {
        if !modes.contains(&row.mode) {
            modes.push(row.mode.clone());
        }
    }
    let pick = |kind: &str, f: &dyn Fn(&crate::stats::Summary) -> f64| Series {
        label: kind.to_string(),
        values: modes
            .iter()
            .map(|m| {
                r.rows
                    .iter()
                    .find(|row| &row.mode == m && row.kind == kind)
                    .map_or(0.0, |row| f(&row.summary))
            })
            .collect(),
    };
    let n = r.requests_per_phase;
    let files = [
        dir.join("avg_latency.png"),
        dir.join("p95_latency.png"),
        dir.join("max_read_latency.png"),
        dir.join("percentiles.png"),
    ];
    grouped_bars(
        &files[0],
        &format!("Average end-to-end latency ({n} writes and {n} reads per mode)"),
        "average latency (ms)",
        &modes,
        &[pick("write", &|s| s.avg_ms), pick("read", &|s| s.avg_ms)],
    )?;
    grouped_bars(
        &files[1],
        &format!("95th percentile latency ({n} writes and {n} reads per mode)"),
        "p95 latency (ms)",
        &modes,
        &[pick("write", &|s| s.p95_ms), pick("read", &|s| s.p95_ms)],
    )?;
    grouped_bars(
        &files[2],
        &format!("Maximum read latency ({n} reads per mode)"),
        "maximum latency (ms)",
        &modes,
        &[pick("read", &|s| s.max_ms)],
    )?;
    let panel = |kind: &str| {
        let curves = r
            .rows
            .iter()
            .filter(|row| row.kind == kind)
            .map(|row| Curve {
                label: row.mode.clone(),
                points: row.curve.clone(),
                count: row.summary.count - row.summary.errors,
            })
            .collect();
        (format!("{kind}s"), curves)
    };
    percentile_curves(
        &files[3],
        &format!("Latency by percentile, per mode ({})", r.load),
        &[panel("read"), panel("write")],
    )?;
    Ok(files.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_spread_the_tail() {
        let cases = [
            (0.0, 0.0, "p0"),
            (90.0, 1.0, "p90"),
            (99.0, 2.0, "p99"),
            (99.9, 3.0, "p99.9"),
            (100.0, 3.0, "p100 sits at the cap"),
            (99.999, 3.0, "beyond the cap"),
        ];
        for (p, want, what) in cases {
            assert!(
                (nines(p, 3.0) - want).abs() < 1e-9,
                "{what}: {}",
                nines(p, 3.0)
            );
        }
        let labels = [
            (0.0, "0%"),
            (1.0, "90%"),
            (2.0, "99%"),
            (3.0, "99.9%"),
            (4.0, "99.99%"),
        ];
        for (x, want) in labels {
            assert_eq!(nines_label(x), want, "axis label at {x}");
        }
    }

    #[test]
    fn log_axis_ticks() {
        let got = one_two_five(0.3, 12.0);
        assert_eq!(
            got,
            [0.5, 1.0, 2.0, 5.0, 10.0],
            "1-2-5 ticks inside the range"
        );
        assert_eq!(
            one_two_five(0.03, 0.04),
            Vec::<f64>::new(),
            "none inside a narrow range"
        );
    }

    #[test]
    fn charts_are_png_files() {
        if load_font().is_err() {
            eprintln!("skipped: no font at {DEFAULT_FONT} (install fonts-dejavu-core)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let bars = dir.path().join("bars.png");
        let groups: Vec<String> = ["direct", "random", "ping"].map(String::from).to_vec();
        grouped_bars(
            &bars,
            "test",
            "ms",
            &groups,
            &[
                Series {
                    label: "write".into(),
                    values: vec![1.0, 2.0, 3.0],
                },
                Series {
                    label: "read".into(),
                    values: vec![0.5, 0.0, 9.0],
                },
            ],
        )
        .unwrap();
        let curve = dir.path().join("curve.png");
        let points = |scale: f64| {
            crate::stats::CURVE_PERCENTILES
                .iter()
                .map(|&p| CurvePoint {
                    percentile: p,
                    latency_ms: scale * (1.0 + p / 10.0),
                })
                .collect()
        };
        percentile_curves(
            &curve,
            "test",
            &[(
                "reads".into(),
                vec![
                    Curve {
                        label: "random".into(),
                        points: points(1.0),
                        count: 1000,
                    },
                    Curve {
                        label: "ping".into(),
                        points: points(2.0),
                        count: 1000,
                    },
                ],
            )],
        )
        .unwrap();
        for f in [bars, curve] {
            let bytes = std::fs::read(&f).unwrap();
            assert_eq!(
                &bytes[..8],
                b"\x89PNG\r\n\x1a\n",
                "{f:?} starts with the PNG signature"
            );
        }
    }
}
