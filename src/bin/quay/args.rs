//! The demo's command line, and every check on it that needs no engine:
//! clap's value parsers bound each number, [`parse_window`] reads the dedup
//! window, and [`Args::validate`] checks the rules that join two flags. A
//! bad value is refused before anything runs (exit code 2), never changed.

use clap::builder::RangedU64ValueParser;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// The most producer threads: each is an OS thread, like a worker.
pub const MAX_PRODUCERS: u64 = 1024;
/// The largest submit batch: the demo engine's capacity (a batch larger
/// than the engine holds could never be accepted whole).
pub const MAX_BATCH: u64 = crate::scenario::CAPACITY;
/// Jobs per sign-up request.
pub const JOBS_PER_REQUEST: u64 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Web requests that create accounts and drop five jobs each, with faults.
    Signup,
    /// No-op jobs with distinct pseudo-random IDs, dedup on: raw throughput.
    Noop,
    /// No-op jobs over `--keys` keys, with the per-key order check.
    Keyed,
}

/// How the sign-up scenario's job kinds are run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lanes {
    /// Three lanes: user (profile, email, notification; keyed by user),
    /// resize, analytics, each with its own workers.
    On,
    /// One shared pool of workers for every kind.
    Off,
    /// Both, one after the other in this run, and the email lane's queue
    /// wait under the resize burst side by side.
    Compare,
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
    /// Jobs to submit in all, at least 1 (sign-up: five per request, so a
    /// multiple of 5).
    #[arg(long, default_value_t = 50_000, value_parser = parse_positive)]
    pub jobs: u64,
    /// Producer threads, 1 to 1024 (sign-up: concurrent web requests).
    #[arg(long, default_value_t = 2, value_parser = RangedU64ValueParser::<u64>::new().range(1..=MAX_PRODUCERS))]
    pub producers: u64,
    /// Worker threads, 1 to 1024; default: the available cores.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Offered load in jobs per second over all producers; 0: as fast as
    /// possible. Default: 10 000 for sign-up (a service under steady load),
    /// 0 for noop and keyed (throughput).
    #[arg(long)]
    pub rate: Option<u64>,
    /// How long finished job IDs stay duplicates, in seconds: finite, at
    /// least 0.
    #[arg(long, default_value = "300", value_parser = parse_window, allow_hyphen_values = true)]
    pub dedup_window: Duration,
    /// Keys for the keyed scenario: at least 1, and at least `--producers`
    /// (each producer owns its keys).
    #[arg(long, default_value_t = 1_000, value_parser = parse_positive)]
    pub keys: u64,
    /// Pin workers to cores (the default).
    #[arg(long, overrides_with = "no_pin")]
    pub pin: bool,
    /// Do not pin workers.
    #[arg(long = "no-pin")]
    pub no_pin: bool,
    /// Sign-up only: run the job kinds in lanes, in one shared pool, or
    /// both for comparison.
    #[arg(long, value_enum, default_value = "compare")]
    pub lanes: Lanes,
    /// Sign-up only: resize jobs a bulk import drops at once, a quarter of
    /// the way through the run (0: none).
    #[arg(long, default_value_t = 2_000, value_parser = RangedU64ValueParser::<u64>::new().range(0..=1_000_000))]
    pub burst: u64,
    /// What idle workers do.
    #[arg(long, value_enum, default_value = "spin-then-park")]
    pub idle: Idle,
    /// Submit in batches of this many jobs, 1 to 65 536 (noop and keyed).
    #[arg(long, default_value_t = 1, value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_BATCH))]
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

/// Reads a count that must be at least 1 (`--jobs`, `--keys`).
pub fn parse_positive(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "'{s}' is not a whole number from 1 to {}",
            u64::MAX
        )),
    }
}

/// Reads `--dedup-window`: seconds, finite, at least 0, and small enough
/// for a `Duration`.
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !secs.is_finite() {
        return Err(format!("{s} is not a finite number of seconds"));
    }
    if secs < 0.0 {
        return Err(format!("{s} is negative; the window is at least 0 seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s} seconds is too large"))
}

impl Args {
    /// The rules that join two flags; clap has checked each flag alone.
    pub fn validate(&self) -> Result<(), String> {
        match self.scenario {
            Scenario::Signup => {
                if self.jobs % JOBS_PER_REQUEST != 0 {
                    return Err(format!(
                        "--jobs: sign-up submits {JOBS_PER_REQUEST} jobs per request, so --jobs \
                         must be a positive multiple of {JOBS_PER_REQUEST} (got {})",
                        self.jobs
                    ));
                }
                if self.batch != 1 {
                    return Err(format!(
                        "--batch: sign-up submits one job at a time; --batch applies to the \
                         noop and keyed scenarios only (got {})",
                        self.batch
                    ));
                }
            }
            Scenario::Keyed => {
                if self.keys < self.producers {
                    return Err(format!(
                        "--keys: each producer owns its own keys, so --keys must be at least \
                         --producers (got {} keys for {} producers)",
                        self.keys, self.producers
                    ));
                }
            }
            Scenario::Noop => {}
        }
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::try_parse_from(std::iter::once("quay").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    /// The message `args` are refused with: by clap, by `validate`, or by
    /// the engine builder (`scenario::check`).
    fn refusal(args: &[&str]) -> String {
        match parse(args).and_then(|a| a.validate().and_then(|()| crate::scenario::check(&a))) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(msg) => msg,
        }
    }

    fn accepted(args: &[&str]) -> Args {
        let a = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        a.validate().unwrap_or_else(|e| panic!("{args:?}: {e}"));
        a
    }

    #[test]
    fn defaults_and_the_ci_run_are_accepted_unchanged() {
        let a = accepted(&[]);
        assert_eq!(a.scenario, Scenario::Signup);
        assert_eq!(
            (a.jobs, a.producers, a.keys, a.batch),
            (50_000, 2, 1_000, 1)
        );
        assert_eq!(a.dedup_window, Duration::from_secs(300));
        assert_eq!(a.workers, None);
        assert_eq!(a.out, PathBuf::from("target/quay-demo"));
        let ci = [
            "--jobs",
            "20000",
            "--json",
            "--quiet",
            "--out",
            "target/quay-demo-ci",
        ];
        let a = accepted(&ci);
        assert_eq!(a.jobs, 20_000);
        assert!(a.json && a.quiet);
        for ok in [
            &["--dedup-window", "0"][..],
            &["--dedup-window", "1.5"],
            &["--scenario", "noop", "--jobs", "3", "--batch", "64"],
            &["--scenario", "keyed", "--keys", "3", "--producers", "2"],
            &[
                "--producers",
                "1024",
                "--keys",
                "1024",
                "--scenario",
                "keyed",
            ],
        ] {
            accepted(ok);
        }
        assert_eq!(
            accepted(&["--dedup-window", "1.5"]).dedup_window,
            Duration::from_millis(1_500)
        );
    }

    #[test]
    fn a_bad_dedup_window_is_refused() {
        for bad in ["inf", "-inf", "nan", "NaN", "1e400"] {
            let msg = refusal(&["--dedup-window", bad]);
            assert!(msg.contains("finite"), "{bad}: {msg}");
        }
        for bad in [
            &["--dedup-window", "-1"][..],
            &["--dedup-window=-1"],
            &["--dedup-window", "-0.5"],
        ] {
            let msg = refusal(bad);
            assert!(msg.contains("negative"), "{bad:?}: {msg}");
        }
        let msg = refusal(&["--dedup-window", "1e300"]);
        assert!(msg.contains("too large"), "{msg}");
        let msg = refusal(&["--dedup-window", "soon"]);
        assert!(msg.contains("not a number"), "{msg}");
    }

    #[test]
    fn counts_out_of_range_are_refused() {
        for (flag, bad) in [
            ("--jobs", "0"),
            ("--producers", "0"),
            ("--producers", "1025"),
            ("--keys", "0"),
            ("--batch", "0"),
            ("--batch", "65537"),
        ] {
            let msg = refusal(&["--scenario", "noop", flag, bad]);
            assert!(msg.contains(flag), "{flag} {bad}: {msg}");
        }
    }

    #[test]
    fn signup_jobs_must_be_a_multiple_of_five() {
        for bad in ["3", "4", "50001"] {
            let msg = refusal(&["--jobs", bad]);
            assert!(msg.contains("multiple of 5"), "{bad}: {msg}");
        }
        accepted(&["--jobs", "5"]);
    }

    #[test]
    fn flags_another_scenario_would_ignore_or_change_are_refused() {
        let msg = refusal(&["--batch", "8"]);
        assert!(msg.contains("--batch"), "{msg}");
        let msg = refusal(&["--scenario", "keyed", "--keys", "2", "--producers", "3"]);
        assert!(msg.contains("--keys"), "{msg}");
    }

    #[test]
    fn too_many_workers_is_the_builders_error() {
        let msg = refusal(&["--workers", "100000"]);
        assert!(msg.starts_with("workers:"), "{msg}");
        let msg = refusal(&["--workers", "0"]);
        assert!(msg.starts_with("workers:"), "{msg}");
    }
}
