//! `quay`: the demo. `cargo run --release` runs the sign-up scenario: web
//! requests create an account inline, answer, and drop their slow work into
//! quay; a bulk import drops a burst of photo resizes partway. It runs the
//! job kinds in three lanes and then in one shared pool, and reports what
//! the user waited, each lane's throughput and tail latencies, the welcome
//! emails' queue wait under the burst in both, and an accounting of every
//! job (lost, order violations and double successes must all be 0, or it
//! exits non-zero).
//!
//! Ctrl-C once: stop accepting, drain, print the accounting. Twice: stop
//! now, returning (and counting) every job that did not run.
//!
//! Every input is checked before the run starts: a bad flag, an engine
//! setting the builder refuses, or an `--out` that cannot be written exits
//! with code 2 and a message, having run nothing. If the files still cannot
//! be written after the run, the report is printed first, then the error
//! (exit code 2, unless the run itself failed: then 1).

mod args;
mod plot;
mod pool;
mod report;
mod scenario;

use clap::Parser;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

fn main() -> ExitCode {
    let args = args::Args::parse();
    if let Err(e) = args.validate().and_then(|()| scenario::check(&args)) {
        eprintln!("quay: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = report::prepare_out(&args) {
        eprintln!(
            "quay: --out {}: cannot write there: {e}",
            args.out.display()
        );
        return ExitCode::from(2);
    }
    if let Err(e) = ctrlc::set_handler(|| {
        scenario::PRESSES.fetch_add(1, Ordering::Relaxed);
    }) {
        eprintln!("quay: Ctrl-C will stop the demo at once (no handler: {e})");
    }
    let modes: &[bool] = match (args.scenario, args.lanes) {
        (args::Scenario::Signup, args::Lanes::On) => &[true],
        (args::Scenario::Signup, args::Lanes::Compare) => &[true, false],
        _ => &[false],
    };
    let mut outcomes = Vec::new();
    for &lanes in modes {
        match scenario::run(&args, lanes) {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                eprintln!("quay: {e}");
                return ExitCode::from(2);
            }
        }
        if scenario::PRESSES.load(Ordering::Relaxed) > 0 {
            break;
        }
    }
    let written = report::write_files(&args, &outcomes);
    if args.json {
        println!("{}", report::json(&args, &outcomes));
    } else {
        print!("{}", report::text(&args, &outcomes, &written));
    }
    if let Err(e) = &written {
        eprintln!("quay: could not write the latency files: {e}");
    }
    if !outcomes.iter().all(scenario::Outcome::is_clean) {
        ExitCode::FAILURE
    } else if written.is_err() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
