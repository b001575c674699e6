//! `hacli disrupt ACTION NODE`: one planned disruption (reboot, upgrade, or
//! a command) of one node, as a small plan run by the executor with a
//! journal, so it resumes: gate and lock, drain the node's backend, move
//! etcd leadership away, cordon and drain, act, wait until healthy, put the
//! backend back, uncordon, release the lock (`haops::disrupt::disrupt`,
//! on the live cluster or the simulated one).

use std::path::PathBuf;

use hacore::disrupt::Report;

use crate::args::disrupt::{Common, Kind, sim_beside, with_spinner};
use crate::{Exit, Output};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// reboot, upgrade or run.
    #[arg(value_enum)]
    pub action: Kind,
    /// The node.
    pub node: String,
    /// For run: the command and its arguments, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
    /// The journal file (JSON lines, appended and synced before each action).
    #[arg(long)]
    pub journal: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

/// Run. Exit 0 done (or dry run), 1 denied or failed (restored), 2 bad input.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let c = &a.common;
    let p = c.prepare(a.action, &a.command, "disrupt", || sim_beside(&a.journal))?;
    let result = with_spinner(|events| {
        haops::disrupt::disrupt(
            &p.topology,
            &p.action,
            &a.node,
            &p.request,
            &a.journal,
            &p.backend,
            events,
        )
        .map_err(anyhow::Error::from)
    });
    let report = result?;
    print_report(&report, c.output)?;
    Ok(if report.ok() { Exit::Ok } else { Exit::Deny })
}

fn print_report(r: &Report, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Text => outln!("{}", r.summary()),
        o => crate::print_doc(o, "DisruptReport", r)?,
    }
    Ok(())
}
