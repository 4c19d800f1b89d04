//! `quay`: the demo. `cargo run --release` runs the sign-up scenario: web
//! requests create an account inline, answer, and drop their slow work into
//! quay; it reports what the user waited, the jobs' tail latencies, and an
//! accounting of every job (lost, order violations and double successes
//! must all be 0, or it exits non-zero).

mod args;
mod plot;
mod report;
mod scenario;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = args::Args::parse();
    let outcome = match scenario::run(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("quay: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = report::write_files(&args, &outcome) {
        eprintln!("quay: could not write {}: {e}", args.out.display());
        return ExitCode::from(2);
    }
    if args.json {
        println!("{}", report::json(&args, &outcome));
    } else {
        print!("{}", report::text(&args, &outcome));
    }
    if outcome.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
