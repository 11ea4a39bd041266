//! Conformance scenario runner.
//!
//! `cargo run --release -p cnet-examples --example conformance -- FILE.json
//!  [--oracle evaluator|kernel] [--mode bridge|transparent] [--attach route|plugin]
//!  [--include-api-invalid] [--explain]`
//!
//! Prints one line per record, one line per failing probe
//! (`from -> to:port/proto expected X got Y`) and finally
//! `conformance: N passed, N failed, N skipped`. Exit status 0 only when nothing failed.

use clap::{Parser, ValueEnum};
use cnet_examples::lab::{LabMode, run_records_parallel};
use cnet_examples::runner::{EvaluatorOracle, RunOptions, run_records};
use cnet_examples::scenario::read_records;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OracleKind {
    /// Answer probes with the policy evaluator (no kernel).
    Evaluator,
    /// Real packets through a virtual node (needs root).
    Kernel,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Attach {
    /// Pods attached with cnet-route, policies programmed by the cnet-policy engine.
    Route,
    /// Pods attached through the `cnet` CNI plugin binary, policies applied with `cnetctl`.
    Plugin,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Bridge,
    Transparent,
}

/// Run conformance scenario files against cnet.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Scenario file(s) in the format of shared/conformance/README.md.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Who answers the probes.
    #[arg(long, value_enum, default_value = "evaluator")]
    oracle: OracleKind,
    /// Routing mode of the virtual node (kernel oracle).
    #[arg(long, value_enum, default_value = "transparent")]
    mode: Mode,
    /// How the virtual node's pods are attached (kernel oracle).
    #[arg(long, value_enum, default_value = "route")]
    attach: Attach,
    /// Run records flagged apiInvalid instead of skipping them.
    #[arg(long)]
    include_api_invalid: bool,
    /// Print the reason behind each failing probe, and per-record notes.
    #[arg(long)]
    explain: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = RunOptions {
        include_api_invalid: args.include_api_invalid,
    };
    let mut records = Vec::new();
    for f in &args.files {
        match read_records(f) {
            Ok(r) => records.extend(r),
            Err(e) => {
                eprintln!("conformance: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let report = match args.oracle {
        OracleKind::Evaluator => run_records(&records, &mut EvaluatorOracle, &opts),
        OracleKind::Kernel => {
            let mode = match args.mode {
                Mode::Bridge => LabMode::Bridge,
                Mode::Transparent => LabMode::Transparent,
            };
            match args.attach {
                Attach::Route => run_records_parallel(&records, mode, &opts),
                Attach::Plugin => {
                    cnet_examples::lab_plugin::run_records_parallel(&records, mode, &opts)
                }
            }
        }
    };
    print!("{}", report.render(args.explain));
    if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
