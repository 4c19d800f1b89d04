//! `quay-nats`: the bridge's command line.
//!
//! - `quay-nats demo` starts a server if none is given, runs the sign-up
//!   scenario across 3 node processes, kills one partway, prints the
//!   accounting, then benchmarks the bridge against a raw consumer.
//! - `quay-nats node` runs one node process (the demo and the chaos test
//!   start these); it drains and exits when its stdin closes.
//! - `quay-nats bench` runs the benchmark alone.

mod bench;
mod demo;
mod node;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "quay-nats", about = "quay on NATS JetStream")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The sign-up scenario on 3 node processes, a kill, the accounting, and the benchmark.
    Demo(demo::Args),
    /// One node process.
    Node(node::Args),
    /// Bridged no-op jobs/s against a raw async-nats consumer.
    Bench(bench::Args),
}

/// The command line's own runtime (publishers, audits, the node's results
/// log): one worker thread; each node's bridge has its own.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn main() {
    // The library's diagnostics, to stderr (stdout carries a node's events).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Node(a) => node::run(a),
        Command::Bench(a) => bench::run(a),
    };
    if let Err(e) = result {
        eprintln!("quay-nats: {e}");
        std::process::exit(1);
    }
}
