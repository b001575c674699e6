//! `hacli replace-master OLD NEW --dead` (issue 26): the cluster as it is
//! observed decides whether OLD is dead and whether its removal keeps
//! quorum (hacore::replace::replace_dead_master).

use std::path::PathBuf;

use anyhow::Context as _;
use hacore::{ClusterState, Topology};

/// `--dead` and where its observation comes from.
#[derive(Debug, Default, clap::Args)]
pub struct DeadArgs {
    /// OLD is powered off or unreachable: nothing is asked of it (no drain,
    /// no leader move, no reset; each skipped step says why); its etcd
    /// member goes first, by id, only when etcd keeps quorum through the
    /// removal and NEW's join. Refused when OLD answers again.
    #[arg(long)]
    pub dead: bool,
    /// With --dead: the observed cluster from a state file (as `hacli
    /// check --state`) instead of observing the live cluster.
    #[arg(long = "dead-state", requires = "dead", value_name = "FILE")]
    pub state: Option<PathBuf>,
}

impl DeadArgs {
    /// The cluster as observed now (or as the state file says).
    pub fn state(
        &self,
        live: &crate::args::LiveArgs,
        topology: &Topology,
    ) -> anyhow::Result<ClusterState> {
        match &self.state {
            Some(p) => {
                let (state, diags) = ClusterState::load(p, topology)?;
                for d in diags {
                    eprintln!("warning: {}: {d}", p.display());
                }
                Ok(state)
            }
            None => {
                let config = live.config(None)?;
                let mut ob = kubeadm::LiveObserver::new(config)
                    .context("starting the observer's runtime")?;
                Ok(hacore::backend::Observer::observe(&mut ob, topology))
            }
        }
    }
}
