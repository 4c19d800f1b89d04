//! The percentile plot, drawn as HdrHistogram's plotter draws it: x is
//! `1/(1-percentile)` on a log scale (0% … 99.999%), y the latency.

use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::path::Path;

const X_MAX: f64 = 100_000.0; // 99.999%

pub fn percentiles(path: &Path, lines: &[(&str, &Histogram<u64>)]) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let series: Vec<(&str, Vec<(f64, f64)>)> = lines
        .iter()
        .map(|(name, h)| {
            let pts = h
                .iter_quantiles(5)
                .filter(|v| v.quantile_iterated_to() < 1.0)
                .map(|v| {
                    let x = 1.0 / (1.0 - v.quantile_iterated_to());
                    (x.min(X_MAX), v.value_iterated_to() as f64 / 1_000.0)
                })
                .collect();
            (*name, pts)
        })
        .collect();
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(1.0f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("quay latency by percentile", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0f64..X_MAX).log_scale(), 0.0f64..y_max)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 1.0 / x);
            format!("{p:.3}%")
        })
        .draw()
        .map_err(|x| e(&x))?;
    let colors = [&BLUE, &RED, &GREEN, &MAGENTA];
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts, color))
            .map_err(|x| e(&x))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}
