//! Placement flags (issue 26): `--proxmox-ha-rule` (keep the masters apart
//! with a Proxmox HA rule) and `--dead` (replace a master that cannot help).

use std::path::PathBuf;

use hacore::{ClusterState, Topology};

/// `--proxmox-ha-rule RULE`: after the plan's last phase, keep the
/// target's masters apart with the Proxmox HA rule RULE.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct HaArgs {
    /// Keep the masters on different Proxmox hosts from now on: make each
    /// master VM an HA resource and RULE a negative resource-affinity HA
    /// rule listing exactly them (Proxmox VE 9; a rule of that id that
    /// hacli did not write is refused).
    #[arg(long = "proxmox-ha-rule", value_name = "RULE")]
    pub rule: Option<String>,
}

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
            None => Ok(haops::observe::observe(topology, &live.reach(), None)?.state),
        }
    }
}
