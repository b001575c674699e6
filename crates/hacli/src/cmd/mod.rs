//! One module per subcommand: its arguments and its `run`.

pub mod apply;
pub mod check;
pub mod completions;
pub mod disrupt;
pub mod drill;
pub mod gate;
pub mod hypervisor;
pub mod lb;
pub mod lock;
pub mod master;
pub mod observe;
pub mod plan;
pub mod plugin;
pub mod policy;
pub mod reconcile_config;
pub mod recover;
pub mod remediate;
pub mod roll;
pub mod sentinel;
pub mod simulate;
pub mod snapshot;
pub mod status;
pub mod topology;
pub mod topology_init;

use std::path::PathBuf;

pub use crate::offline::{load, parse_at};

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
