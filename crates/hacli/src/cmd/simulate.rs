//! `hacli simulate PLAN`: every step under every failure set up to k.

use std::path::PathBuf;

use hacore::simulate::Report;

use crate::{Exit, Output};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A plan written by `hacli plan -o json`.
    pub plan: PathBuf,
    /// Largest number of simultaneous failures to try.
    #[arg(long, short = 'k', default_value_t = 1)]
    pub failures: usize,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Run. Exit 1 when a step breaks the control plane with no failure at all
/// and the plan does not declare it as an outage.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let report = compute(&a)?;
    match a.output {
        Output::Text => out!("{}", report.to_text()),
        o => crate::print_doc(o, "SimulationReport", &report)?,
    }
    Ok(exit(&report))
}

/// Exit 0 when no step is critical without a failure, else 1.
pub fn exit(report: &Report) -> Exit {
    if report.critical.is_empty() {
        Exit::Ok
    } else {
        Exit::Deny
    }
}

/// The simulation report.
fn compute(a: &Args) -> anyhow::Result<Report> {
    crate::offline::simulate(&a.plan, a.failures)
}
