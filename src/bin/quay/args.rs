//! The demo's command line.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Web requests that create accounts and drop five jobs each, with faults.
    Signup,
    /// No-op jobs with distinct pseudo-random IDs, dedup on: raw throughput.
    Noop,
    /// No-op jobs over `--keys` keys, with the per-key order check.
    Keyed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Idle {
    Spin,
    Park,
    SpinThenPark,
}

/// quay's demo: answer now, work soon; duplicates, order and poison handled.
#[derive(Clone, Debug, Parser)]
#[command(name = "quay", version)]
pub struct Args {
    /// What to run.
    #[arg(long, value_enum, default_value = "signup")]
    pub scenario: Scenario,
    /// Jobs to submit in all (sign-up: five per request).
    #[arg(long, default_value_t = 50_000)]
    pub jobs: u64,
    /// Producer threads (sign-up: concurrent web requests).
    #[arg(long, default_value_t = 2)]
    pub producers: u64,
    /// Worker threads; default: the available cores.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Offered load in jobs per second over all producers; 0: as fast as
    /// possible. Default: 10 000 for sign-up (a service under steady load),
    /// 0 for noop and keyed (throughput).
    #[arg(long)]
    pub rate: Option<u64>,
    /// How long finished job IDs stay duplicates, in seconds.
    #[arg(long, default_value_t = 300.0)]
    pub dedup_window: f64,
    /// Keys for the keyed scenario.
    #[arg(long, default_value_t = 1_000)]
    pub keys: u64,
    /// Pin workers to cores (the default).
    #[arg(long, overrides_with = "no_pin")]
    pub pin: bool,
    /// Do not pin workers.
    #[arg(long = "no-pin")]
    pub no_pin: bool,
    /// What idle workers do.
    #[arg(long, value_enum, default_value = "spin-then-park")]
    pub idle: Idle,
    /// Submit in batches of this many jobs (noop and keyed).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Print one JSON object with every figure instead of the report.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Where latency.hgrm and latency.svg go.
    #[arg(long, default_value = "target/quay-demo")]
    pub out: PathBuf,
}

impl Args {
    pub fn pin(&self) -> bool {
        !self.no_pin
    }

    pub fn idle_strategy(&self) -> quay::IdleStrategy {
        match self.idle {
            Idle::Spin => quay::IdleStrategy::BusySpin,
            Idle::Park => quay::IdleStrategy::Park,
            Idle::SpinThenPark => quay::IdleStrategy::default(),
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate.unwrap_or(match self.scenario {
            Scenario::Signup => 10_000,
            Scenario::Noop | Scenario::Keyed => 0,
        })
    }

    pub fn scenario_name(&self) -> &'static str {
        match self.scenario {
            Scenario::Signup => "signup",
            Scenario::Noop => "noop",
            Scenario::Keyed => "keyed",
        }
    }
}
