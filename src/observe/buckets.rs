//! [`LogBuckets`]: a worker's private, cheap-to-publish latency histogram
//! with exactly hdrhistogram's bucket layout, so that folding it into an
//! `hdrhistogram::Histogram` loses nothing.
//!
//! A worker records every sample here and publishes them into the shared
//! hdrhistogram histograms now and then (`latency.rs`). Publishing with
//! `Histogram::add` walked every bucket of both histograms and then
//! cleared the local one: about 34 000 counters each, 200–400 µs on this
//! project's 2-core VM, during which the worker's jobs waited (the
//! `publish` pause, `pauses.rs`). Here a bitmap of touched chunks of 64
//! counters lets the fold visit only the chunks that hold samples, and it
//! zeroes them as it goes.
//!
//! # Layout (hdrhistogram's, for lowest 1 and 3 significant digits)
//!
//! hdrhistogram keeps 2 048 sub-buckets (2^⌈log2(2·10^3)⌉) per bucket: bucket
//! 0 counts values 0..2 048 one by one, and bucket `b ≥ 1` counts
//! 1 024·2^b..2 048·2^b in steps of 2^b. Flattened:
//!
//! ```text
//! v < 2048:  index = v
//! v ≥ 2048:  e = ⌊log2 v⌋ (≥ 11), s = e − 10,
//!            index = (s << 10) + (v >> s)      // v >> s ∈ 1024..2048
//! value of index i ≥ 2048: k = i >> 10, s = k − 1,
//!            lowest = ((i & 1023) + 1024) << s
//! ```
//!
//! Recording `lowest` of an index into a histogram of the same precision
//! lands in the very bucket the sample would have, so a fold is exact:
//! percentiles read from the shared histograms are what recording there
//! directly would have given.

use hdrhistogram::Histogram;

/// The largest value kept: one hour in nanoseconds (the shared histograms'
/// bound); larger samples count as it.
const HIGHEST: u64 = 3_600_000_000_000;

/// Counters needed up to `HIGHEST` (⌊log2 HIGHEST⌋ = 41).
const LEN: usize = ((41 - 10 + 1) << 10) + 1024;

/// Counters per touched-bitmap bit.
const CHUNK: usize = 64;

const WORDS: usize = LEN.div_ceil(CHUNK * 64);

/// One histogram's local counts (see the module docs).
pub(crate) struct LogBuckets {
    counts: Box<[u32]>,
    touched: [u64; WORDS],
    samples: u32,
}

impl Default for LogBuckets {
    fn default() -> LogBuckets {
        LogBuckets {
            counts: vec![0; LEN].into_boxed_slice(),
            touched: [0; WORDS],
            samples: 0,
        }
    }
}

/// The flat index of `v` (module docs).
#[inline]
fn index_of(v: u64) -> usize {
    let v = v.min(HIGHEST);
    if v < 2048 {
        return v as usize;
    }
    let s = 63 - v.leading_zeros() - 10;
    ((s as usize) << 10) + (v >> s) as usize
}

/// The lowest value counted at `index` (module docs).
fn lowest_of(index: usize) -> u64 {
    if index < 2048 {
        return index as u64;
    }
    let s = (index >> 10) - 1;
    (((index & 1023) + 1024) as u64) << s
}

impl LogBuckets {
    /// Counts one sample of `v` nanoseconds (at least 1).
    #[inline]
    pub(crate) fn record(&mut self, v: u64) {
        let i = index_of(v.max(1));
        // `i < LEN` since `v <= HIGHEST`; `get_mut` keeps it panic-free.
        if let Some(c) = self.counts.get_mut(i) {
            *c = c.saturating_add(1);
            let chunk = i / CHUNK;
            self.touched[chunk / 64] |= 1 << (chunk % 64);
            self.samples = self.samples.saturating_add(1);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.samples == 0
    }

    /// Adds every sample into each of `into`, then clears, visiting only
    /// the chunks that hold samples.
    pub(crate) fn drain_into(&mut self, into: &mut [&mut WideBuckets]) {
        let touched = std::mem::take(&mut self.touched);
        for_each_chunk(&touched, |start, end| {
            for t in into.iter_mut() {
                let dst = &mut t.counts[start..end];
                for (d, &n) in dst.iter_mut().zip(&self.counts[start..end]) {
                    *d += u64::from(n);
                }
                let chunk = start / CHUNK;
                t.touched[chunk / 64] |= 1 << (chunk % 64);
            }
            self.counts[start..end].fill(0);
        });
        self.samples = 0;
    }
}

/// The published side of [`LogBuckets`]: 64-bit counts in the same
/// layout, which a worker's flush adds into chunk by chunk (no hdrhistogram
/// call, and nothing cold but the chunks it touches), and which a reader
/// turns into a `Histogram` when it asks.
pub(crate) struct WideBuckets {
    counts: Box<[u64]>,
    touched: [u64; WORDS],
}

impl Default for WideBuckets {
    fn default() -> WideBuckets {
        WideBuckets {
            counts: vec![0; LEN].into_boxed_slice(),
            touched: [0; WORDS],
        }
    }
}

impl WideBuckets {
    /// Adds every count into `h` (a histogram of 3 significant digits and
    /// lowest 1, as `latency::histogram` makes: the fold is exact).
    pub(crate) fn add_to(&self, h: &mut Histogram<u64>) {
        for_each_chunk(&self.touched, |start, end| {
            for (i, &n) in self.counts[start..end].iter().enumerate() {
                if n > 0 {
                    // Same bounds as ours: cannot fail.
                    let _ = h.record_n(lowest_of(start + i), n);
                }
            }
        });
    }

    /// Empties it, visiting only the chunks that hold counts.
    pub(crate) fn clear(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        for_each_chunk(&touched, |start, end| self.counts[start..end].fill(0));
    }
}

/// Calls `f(start, end)` for the counter range of each chunk set in
/// `touched`.
fn for_each_chunk(touched: &[u64; WORDS], mut f: impl FnMut(usize, usize)) {
    for (w, &word) in touched.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let chunk = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let start = chunk * CHUNK;
            f(start, (start + CHUNK).min(LEN));
        }
    }
}

#[cfg(all(test, not(quay_loom)))]
mod tests {
    use super::*;

    fn hist() -> Histogram<u64> {
        crate::observe::latency::histogram()
    }

    #[test]
    fn layout_matches_hdrhistogram_bucket_for_bucket() {
        let h = hist();
        // Every boundary region, and a spread of values up to the bound.
        let mut vs: Vec<u64> = (1..5000).collect();
        let mut v = 5000u64;
        while v < HIGHEST {
            vs.extend([v - 1, v, v + 1, v | 1023, v + v / 3]);
            v = v * 9 / 7;
        }
        vs.push(HIGHEST);
        for v in vs.into_iter().filter(|&v| v <= HIGHEST) {
            let i = index_of(v);
            assert!(i < LEN, "{v}");
            assert_eq!(
                lowest_of(i),
                h.lowest_equivalent(v),
                "value {v}: our bucket starts at {}, hdrhistogram's at {}",
                lowest_of(i),
                h.lowest_equivalent(v)
            );
        }
    }

    #[test]
    fn a_fold_equals_recording_directly() {
        let mut direct = hist();
        let mut local = LogBuckets::default();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Log-spread values from 1 ns to about 1 000 s.
            let v = (x % 1_000) << (x >> 58).min(30) | 1;
            direct.record(v.min(HIGHEST)).unwrap();
            local.record(v);
        }
        let (mut wa, mut wb) = (WideBuckets::default(), WideBuckets::default());
        local.drain_into(&mut [&mut wa, &mut wb]);
        let (mut a, mut b) = (hist(), hist());
        wa.add_to(&mut a);
        wb.add_to(&mut b);
        wb.clear();
        assert!(wb.counts.iter().all(|&c| c == 0));
        let mut empty = hist();
        wb.add_to(&mut empty);
        assert!(empty.is_empty());
        assert!(local.is_empty());
        assert!(local.touched.iter().all(|&w| w == 0));
        assert!(local.counts.iter().all(|&c| c == 0));
        for h in [&a, &b] {
            assert_eq!(h.len(), direct.len());
            for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(h.value_at_quantile(q), direct.value_at_quantile(q), "q {q}");
            }
            assert_eq!(h.max(), direct.max());
        }
    }
}
