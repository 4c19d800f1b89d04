//! The percentile plot, drawn as HdrHistogram's plotter draws it: x is
//! `1/(1-percentile)` on a log scale, labelled with round percentiles
//! (`0%`, `90%`, `99%`, `99.9%`, …), and y the latency on a log scale,
//! labelled with round durations (`1 µs`, `10 µs`, `100 µs`, `1 ms`, …), so
//! the body of the distribution and its tail are both readable. One curve
//! per named histogram; the legend sits in the upper left, where a
//! percentile curve (which only rises to the right) leaves room.

use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::path::Path;

/// The fewest and most decades of `1/(1-p)` drawn: 99% … 99.9999%.
const X_DECADES: (i32, i32) = (2, 6);

/// Draws one percentile curve per `(name, histogram)` (values in ns) into
/// the SVG at `path`. Empty histograms are listed in no legend and drawn as
/// no curve.
pub fn percentiles<S: AsRef<str>>(
    path: &Path,
    lines: &[(S, &Histogram<u64>)],
) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    // (x = 1/(1-p), y = latency in ns), y at least 1 ns for the log axis.
    let series: Vec<(&str, Vec<(f64, f64)>)> = lines
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(name, h)| {
            let pts = h
                .iter_quantiles(5)
                .filter(|v| v.quantile_iterated_to() < 1.0)
                .map(|v| {
                    let x = 1.0 / (1.0 - v.quantile_iterated_to());
                    (x, (v.value_iterated_to() as f64).max(1.0))
                })
                .collect();
            (name.as_ref(), pts)
        })
        .collect();
    // x: whole decades, enough for the deepest percentile the data reaches.
    let x_top = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(x, _)| x))
        .fold(1.0f64, f64::max);
    let x_decades = (x_top.log10().ceil() as i32).clamp(X_DECADES.0, X_DECADES.1);
    let x_max = 10f64.powi(x_decades);
    let series: Vec<(&str, Vec<(f64, f64)>)> = series
        .into_iter()
        .map(|(name, pts)| (name, pts.into_iter().filter(|&(x, _)| x <= x_max).collect()))
        .collect();
    // y: whole decades around the data (1 µs … 1 ms without data).
    let all = || series.iter().flat_map(|(_, p)| p.iter().copied());
    let (y_lo, y_hi) = all().fold((f64::MAX, 0.0f64), |(lo, hi), (_, y)| {
        (lo.min(y), hi.max(y))
    });
    let (y_lo, y_hi) = if y_hi > 0.0 { (y_lo, y_hi) } else { (1e3, 1e6) };
    let y_min_decade = y_lo.log10().floor() as i32;
    let y_max_decade = (y_hi.log10().ceil() as i32).max(y_min_decade + 1);
    let (y_min, y_max) = (10f64.powi(y_min_decade), 10f64.powi(y_max_decade));

    let x_bold: Vec<f64> = (0..=x_decades).map(|d| 10f64.powi(d)).collect();
    let y_bold: Vec<f64> = (y_min_decade..=y_max_decade)
        .map(|d| 10f64.powi(d))
        .collect();
    let y_light: Vec<f64> = (y_min_decade..y_max_decade)
        .flat_map(|d| (2..10).map(move |m| f64::from(m) * 10f64.powi(d)))
        .collect();

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("quay latency by percentile", ("sans-serif", 22))
        .margin(15)
        // Room for the last x label, centred on the right edge.
        .margin_right(45)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (1.0f64..x_max).log_scale().with_key_points(x_bold),
            (y_min..y_max)
                .log_scale()
                .with_key_points(y_bold)
                .with_light_points(y_light),
        )
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("percentile (log scale of 1/(1-p))")
        .y_desc("latency (log scale)")
        .x_label_formatter(&|x| percent_label(*x))
        .y_label_formatter(&|y| duration_label(*y))
        .draw()
        .map_err(|x| e(&x))?;
    let colors = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}

/// The percentile at `x = 1/(1-p)` for a whole decade `x = 10^d`: `0%`,
/// `90%`, `99%`, `99.9%`, … (and a plain rounding anywhere else).
fn percent_label(x: f64) -> String {
    let d = x.log10().round();
    if d <= 0.0 {
        return "0%".into();
    }
    let p = 100.0 * (1.0 - 1.0 / x);
    // 10^d has d nines: two before the point, d - 2 after it.
    let decimals = (d as usize).saturating_sub(2);
    format!("{p:.decimals$}%")
}

/// A round duration for a power of ten of nanoseconds: `100 ns`, `1 µs`,
/// `10 ms`, `1 s`, ….
fn duration_label(ns: f64) -> String {
    let units = [(1e9, "s"), (1e6, "ms"), (1e3, "µs"), (1.0, "ns")];
    for (scale, unit) in units {
        if ns >= scale * 0.999 {
            return format!("{} {unit}", trim(ns / scale));
        }
    }
    format!("{} ns", trim(ns))
}

/// `v` without trailing zeros: 1, 10, 2.5.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_labels_are_round() {
        let labels: Vec<String> = (0..=6).map(|d| percent_label(10f64.powi(d))).collect();
        assert_eq!(
            labels,
            ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        );
    }

    #[test]
    fn duration_labels_are_round() {
        let labels: Vec<String> = (0..=10).map(|d| duration_label(10f64.powi(d))).collect();
        assert_eq!(
            labels,
            [
                "1 ns", "10 ns", "100 ns", "1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms",
                "1 s", "10 s"
            ]
        );
    }

    #[test]
    fn draws_named_curves_with_round_labels() {
        let mut fast = Histogram::<u64>::new(3).unwrap();
        let mut slow = Histogram::<u64>::new(3).unwrap();
        for i in 1..=10_000u64 {
            fast.record(500 + i % 700).unwrap();
            slow.record(20_000 + i * 30).unwrap();
        }
        let empty = Histogram::<u64>::new(3).unwrap();
        let path = std::env::temp_dir().join(format!("quay-plot-test-{}.svg", std::process::id()));
        let lines = [
            ("lane 0".to_string(), &fast),
            ("lane 1".to_string(), &slow),
            ("idle".to_string(), &empty),
        ];
        percentiles(&path, &lines).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        for want in [
            "lane 0", "lane 1", "0%", "90%", "99.99%", "100 ns", "1 µs", "1 ms",
        ] {
            assert!(svg.contains(want), "missing {want:?}");
        }
        assert!(!svg.contains("idle"));
        assert!(!svg.contains("0.000%"));
    }
}
