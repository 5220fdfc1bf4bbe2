//! `cargo xtask`: the command line of nn-checklist.
//!
//! `cargo xtask checklist` runs the five-step checklist (check the data, the weights, the
//! timings, the gradients, understand the results) on a dataset and writes one report. This is
//! the only crate that knows about the command line and the report folder; the steps live in
//! their own crates and speak `model-core`'s report types.
//!
//! Exit status: 0 when no step fails, 1 when a check fails, 2 for a usage or input error.

mod baseline;
mod checklist;
mod data_step;
mod gradients_step;
mod html;
mod model;
mod results_step;
mod settings;
mod timings_step;
mod train;
mod training;
mod weights_step;

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

// Burn allocates fresh activation buffers every iteration; glibc's allocator returns large ones
// to the kernel and page-faults them back, which made a LeNet iteration a third slower at best
// (`cargo run --release -p benches --example stat_costs -- lenet`, with and without
// MALLOC_MMAP_THRESHOLD_ raised).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "nn-checklist's tasks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the debugging checklist on a dataset and write report/report.json.
    Checklist(checklist::Args),
    /// Train a reference model on a bundled dataset and report held-out accuracy and wall time
    /// (the trainer's end-to-end check: LeNet, one epoch of MNIST, at least 97%).
    Train(train::Args),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Checklist(args) => {
            let sub = matches.subcommand_matches("checklist");
            // A flag given on the command line wins over `--config`.
            let explicit =
                |id: &str| sub.and_then(|m| m.value_source(id)) == Some(ValueSource::CommandLine);
            match checklist::run(&args, &explicit) {
                Ok(outcome) => ExitCode::from(outcome.exit_code()),
                Err(checklist::RunError::Interrupted) => {
                    eprintln!("interrupted; the previous report is left as it was");
                    ExitCode::from(130)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Train(args) => match train::run(&args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}
