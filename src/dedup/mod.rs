//! Dedup: the seen-ID set that makes a repeated submission a no-op.
//!
//! - `seen`: [`SeenSet`], the sharded set of live and recently finished
//!   IDs, with its FIFO window and bounded memory.
//! - `idtable`: its open-addressed table, one cache line per lookup.
//! - `seen_tests`: the set's unit tests.

pub(crate) mod idtable;
mod seen;

pub(crate) use seen::Known;
pub use seen::{DedupConfig, SeenSet};
