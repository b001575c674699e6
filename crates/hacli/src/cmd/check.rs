//! `hacli check ACTION TARGET`: a verdict from files.

use hacore::Verdict;

use crate::{Exit, Output, render};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// reboot, drain, upgrade, shutdown, remove-member or join.
    pub action: String,
    /// A node name, or a hypervisor host name (all its VMs).
    pub target: String,
    #[command(flatten)]
    pub files: super::Files,
    /// A built-in policy name or a policy file; the action's built-in by default.
    #[arg(long, short = 'p')]
    pub policy: Option<String>,
    /// Evaluate as of this time (RFC 3339, or `now`); now by default, so a
    /// state older than the policy's `state-fresh` maxAge is unknown. Give the
    /// time a saved state was observed at to replay it.
    #[arg(long)]
    pub at: Option<String>,
    /// Who asks: a lock held by this identity does not block.
    #[arg(long)]
    pub requester: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Run.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    render::print_verdict(&decide(&a)?, a.output)
}

/// The verdict these arguments ask for.
fn decide(a: &Args) -> anyhow::Result<Verdict> {
    crate::offline::check(&crate::offline::Check {
        action: &a.action,
        target: &a.target,
        topology: &a.files.topology,
        state: &a.files.state,
        policy: a.policy.as_deref(),
        at: a.at.as_deref(),
        requester: a.requester.as_deref(),
    })
}
