//! How to reach the nodes over SSH (`--ssh-identity`, `--known-hosts`,
//! `--accept-new-host-key`), as `haops::reach::SshReach`.

use std::path::PathBuf;

/// SSH to the nodes (and to a load balancer managed over SSH).
#[derive(Debug, Default, clap::Args)]
pub struct SshArgs {
    /// Live: the SSH private key for the nodes (else the topology's
    /// `ssh.identityFile`, ssh-agent, `~/.ssh/id_*`).
    #[arg(long)]
    pub ssh_identity: Option<PathBuf>,
    /// Live: the SSH known_hosts file (else the topology's, `~/.ssh/known_hosts`).
    #[arg(long, alias = "ssh-known-hosts")]
    pub known_hosts: Option<PathBuf>,
    /// Live: record the SSH host key of a node (a new master, say) or load
    /// balancer seen for the first time (said loudly) instead of refusing.
    #[arg(long)]
    pub accept_new_host_key: bool,
}

impl SshArgs {
    /// These flags as the live operations' SSH reach.
    pub fn reach(&self) -> haops::reach::SshReach {
        haops::reach::SshReach {
            identity: self.ssh_identity.clone(),
            known_hosts: self.known_hosts.clone(),
            accept_new_host_key: self.accept_new_host_key,
        }
    }
}
