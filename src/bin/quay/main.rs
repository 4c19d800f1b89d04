//! `quay`: the demo. `cargo run --release` runs the sign-up scenario: web
//! requests create an account inline, answer, and drop their slow work into
//! quay; it reports what the user waited, the jobs' tail latencies, and an
//! accounting of every job (lost, order violations and double successes
//! must all be 0, or it exits non-zero).
//!
//! Every input is checked before the run starts: a bad flag, an engine
//! setting the builder refuses, or an `--out` that cannot be written exits
//! with code 2 and a message, having run nothing. If the files still cannot
//! be written after the run, the report is printed first, then the error
//! (exit code 2, unless the run itself failed: then 1).

mod args;
mod plot;
mod report;
mod scenario;

use clap::Parser;
use std::process::ExitCode;

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
    let outcome = match scenario::run(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("quay: {e}");
            return ExitCode::from(2);
        }
    };
    let written = report::write_files(&args, &outcome);
    if args.json {
        println!("{}", report::json(&args, &outcome));
    } else {
        print!("{}", report::text(&args, &outcome, &written));
    }
    if let Err(e) = &written {
        eprintln!("quay: could not write the latency files: {e}");
    }
    if !outcome.is_clean() {
        ExitCode::FAILURE
    } else if written.is_err() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
