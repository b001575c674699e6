//! `hacli simulate PLAN`: every step under every failure set up to k.

use std::path::PathBuf;

use anyhow::Context as _;
use hacore::plan::Plan;
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

/// Read a plan file.
pub fn read_plan(path: &PathBuf) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: not a plan: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// Run. Exit 1 when a step breaks the control plane with no failure at all
/// and the plan does not declare it as an outage.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let report = compute(&a)?;
    match a.output {
        Output::Json => crate::print_json(&report)?,
        Output::Text => out!("{}", report.to_text()),
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

/// The simulation report (shared with `hacli plugin`).
pub fn compute(a: &Args) -> anyhow::Result<Report> {
    if a.failures > 3 {
        anyhow::bail!(
            "--failures {}: at most 3 simultaneous failures are simulated",
            a.failures
        );
    }
    let plan = read_plan(&a.plan)?;
    Ok(hacore::simulate::simulate(&plan, a.failures))
}
