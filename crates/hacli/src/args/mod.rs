//! Argument groups that several commands flatten (how to reach the
//! cluster, the Proxmox API, durations), and small helpers for parsing
//! them. Not commands: a command imports these, never another command.

pub mod cluster;
pub mod disrupt;
pub mod kube;
pub mod live;
pub mod master;
pub mod placement;
pub mod proxmox;
pub mod remediate;
pub mod renamed;
pub mod silence;
pub mod ssh;

pub use cluster::{Backend, ClusterArgs};
pub use kube::KubeArgs;
pub use live::{LiveArgs, hostname, parse_duration, runtime};
pub use proxmox::ProxmoxArgs;
pub use ssh::SshArgs;
