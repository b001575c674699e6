//! How a plan's live backends reach the cluster (`--kubeconfig`,
//! `--etcd-*`, `--ssh-*`, ...: the flags of `apply`), and which backends
//! carry a plan out (`--backend`).

use std::path::PathBuf;
use std::time::Duration;

use super::parse_duration;

/// Which backends carry the plan out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The in-memory InMemoryCluster test double, persisted next to the
    /// journal (`JOURNAL.sim.json`, or `--sim-state`): a rehearsal,
    /// nothing real is touched.
    Simulated,
    /// The real systems: Proxmox (the target topology's `proxmox:` section,
    /// the `--proxmox*` flags and the environment), the load balancer
    /// (`loadBalancer.manage`, else its runtime API), kubeadm over SSH, the
    /// Kubernetes API and etcd (`ssh:`, the kubeconfig, the etcd client
    /// certificates); gates observe the live cluster.
    Live,
}

impl From<Backend> for haops::apply::Backend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Simulated => haops::apply::Backend::Simulated,
            Backend::Live => haops::apply::Backend::Live,
        }
    }
}

/// How the live backends reach the cluster (`--backend live`).
#[derive(Debug, Default, clap::Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub kube: super::KubeArgs,
    /// SSH known_hosts file for the nodes (over the topology's `ssh.knownHosts`).
    #[arg(long, alias = "ssh-known-hosts")]
    pub known_hosts: Option<PathBuf>,
    /// SSH private key for the nodes (over the topology's `ssh.identityFile`).
    #[arg(long)]
    pub ssh_identity: Option<PathBuf>,
    /// Where etcd snapshots taken by the plan are written (mode 0600).
    #[arg(long, default_value = "etcd-snapshots")]
    pub snapshot_dir: PathBuf,
    /// Deadline of one gate observation.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub observe_deadline: Duration,
    /// How long a VM just started may take until its sshd answers
    /// (cloud-init's first boot); then its provisioning phase fails and is
    /// rolled back (the VM deleted).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub boot_wait: Duration,
}

impl ClusterArgs {
    /// These flags as the live operations' reach settings; one etcd
    /// member may take at most 2 s of a gate's observation.
    pub fn reach(&self, accept_new_host_key: bool) -> haops::Reach {
        haops::Reach {
            deadline: self.observe_deadline,
            member_timeout: self.observe_deadline.min(Duration::from_secs(2)),
            snapshot_dir: Some(self.snapshot_dir.clone()),
            boot_wait: self.boot_wait,
            ssh: haops::reach::SshReach {
                identity: self.ssh_identity.clone(),
                known_hosts: self.known_hosts.clone(),
                accept_new_host_key,
            },
            ..self.kube.reach(haops::Reach::default())
        }
    }
}
