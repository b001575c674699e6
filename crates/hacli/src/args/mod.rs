//! Argument groups that several commands flatten (how to reach the
//! cluster, durations), and small helpers for parsing them. Not commands:
//! a command imports these, never another command.

pub mod live;
pub mod proxmox;

pub use live::{LiveArgs, hostname, parse_duration, runtime};
pub use proxmox::ProxmoxArgs;
