//! One module per subcommand: its arguments and its `run`.

pub mod apply;
pub mod check;
pub mod completions;
pub mod disrupt;
pub mod drill;
pub mod drill_html;
pub mod gate;
pub mod hypervisor;
pub mod lb;
pub mod lock;
pub mod master;
pub mod measure;
pub mod observe;
pub mod plan;
pub mod plugin;
pub mod policy;
pub mod reconcile_config;
pub mod roll;
pub mod sentinel;
pub mod sentinel_metrics;
pub mod silence;
pub mod simulate;
pub mod snapshot;
pub mod status;
pub mod topology;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hacore::{ClusterState, Topology};

/// Load topology and state, printing their warnings.
pub fn load(topology: &Path, state: &Path) -> anyhow::Result<(Topology, ClusterState)> {
    let (topo, warnings) = Topology::load(topology)?;
    crate::print_warnings(&warnings.warnings);
    let (state, warnings) = ClusterState::load(state, &topo)?;
    crate::print_warnings(&warnings);
    Ok((topo, state))
}

/// Parse `--at`: RFC 3339, or `now`.
pub fn parse_at(at: Option<&str>) -> anyhow::Result<Option<jiff::Timestamp>> {
    match at {
        None => Ok(None),
        Some("now") => Ok(Some(jiff::Timestamp::now())),
        Some(s) => s.parse().map(Some).with_context(|| {
            format!("--at `{s}`: expected an RFC 3339 time such as 2026-05-21T12:00:00Z, or `now`")
        }),
    }
}

/// Files given on the command line.
#[derive(Debug, clap::Args)]
pub struct Files {
    /// Topology file (YAML or JSON).
    #[arg(long, short = 't', env = "HACLI_TOPOLOGY")]
    pub topology: PathBuf,
    /// Observed state file (YAML or JSON).
    #[arg(long, short = 's', env = "HACLI_STATE")]
    pub state: PathBuf,
}
