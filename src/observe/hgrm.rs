//! Standard HdrHistogram outputs: the percentile-distribution text format
//! (`.hgrm`, as written by HdrHistogram's `outputPercentileDistribution` and
//! loaded by its online plotter), and the V2 interval log that
//! HistogramLogAnalyzer reads.
//!
//! Values are recorded in nanoseconds and written in microseconds (a
//! scaling ratio of 1000), the unit HdrHistogram's plotter labels best.

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Output values are nanoseconds divided by this: microseconds.
pub const HGRM_SCALE: f64 = 1_000.0;

/// Percentile ticks per half distance, as in HdrHistogram's default output.
const TICKS: u32 = 5;

/// Writes `h` (nanoseconds) in HdrHistogram's percentile-distribution
/// format, in microseconds:
///
/// ```text
///        Value     Percentile TotalCount 1/(1-Percentile)
///
///        0.250 0.000000000000          1           1.00
/// ...
/// #[Mean    =        1.234, StdDeviation   =        0.567]
/// #[Max     =       12.345, Total count    =         1000]
/// #[Buckets =           22, SubBuckets     =         2048]
/// ```
pub fn write_hgrm<W: Write>(h: &Histogram<u64>, mut w: W) -> io::Result<()> {
    writeln!(
        w,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / HGRM_SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                writeln!(
                    w,
                    "{value:>12.3} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(w, "{value:>12.3} {q:>2.12} {total:>10}")?;
            }
        }
    }
    let (mean, sd, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / HGRM_SCALE,
            h.stdev() / HGRM_SCALE,
            h.max() as f64 / HGRM_SCALE,
        )
    };
    writeln!(w, "#[Mean    = {mean:>12.3}, StdDeviation   = {sd:>12.3}]")?;
    writeln!(
        w,
        "#[Max     = {max:>12.3}, Total count    = {:>12}]",
        h.len()
    )?;
    writeln!(
        w,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    )?;
    Ok(())
}

/// HdrHistogram's sub-bucket count for a precision: the power of two at or
/// above `2 · 10^sigfig`.
fn sub_buckets(sigfig: u8) -> u64 {
    (2 * 10u64.pow(sigfig as u32)).next_power_of_two()
}

/// Writes interval histograms as a V2 HdrHistogram interval log, one tagged
/// line per histogram, for HistogramLogAnalyzer and `HistogramLogProcessor`.
pub struct IntervalLog<W: Write> {
    out: W,
    serializer: V2DeflateSerializer,
    start: SystemTime,
}

impl<W: Write> IntervalLog<W> {
    /// Starts a log on `out`, writing its header; interval timestamps are
    /// relative to now.
    pub fn new(mut out: W) -> io::Result<IntervalLog<W>> {
        let start = SystemTime::now();
        let secs = start
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        writeln!(out, "#[Written by quay: latencies in nanoseconds]")?;
        writeln!(out, "#[Histogram log format version 1.3]")?;
        writeln!(out, "#[StartTime: {secs:.3} (seconds since epoch)]")?;
        writeln!(
            out,
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        )?;
        Ok(IntervalLog {
            out,
            serializer: V2DeflateSerializer::new(),
            start,
        })
    }

    /// The time since the log started, for interval timestamps.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed().unwrap_or_default()
    }

    /// Appends one histogram (nanoseconds) for the interval that began at
    /// `start` (relative to the log's start) and lasted `length`. Values,
    /// and the max column, are in nanoseconds.
    pub fn write(
        &mut self,
        tag: &str,
        h: &Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> io::Result<()> {
        // A builder with no comments or times writes no header lines: ours
        // was written once in `new`.
        let mut writer =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        writer
            .write_histogram(h, start, length, Tag::new(tag))
            .map_err(|e| io::Error::other(format!("{e:?}")))
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}
