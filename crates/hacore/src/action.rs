//! What the caller wants to do to a node (or a whole hypervisor host).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A disruptive (or, for `join`, constructive) operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Reboot the node: it goes down and comes back (kured drains first).
    Reboot,
    /// Evict the node's pods; static pods (etcd, apiserver) keep running.
    Drain,
    /// `kubeadm upgrade` on the node: drain, then static pods restart one by one.
    Upgrade,
    /// Power the node off for an unknown time.
    Shutdown,
    /// Remove the node for good: drain, `kubeadm reset`, etcd `member remove`.
    RemoveMember,
    /// Join the node as a new control-plane member.
    Join,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 6] = [
        Action::Reboot,
        Action::Drain,
        Action::Upgrade,
        Action::Shutdown,
        Action::RemoveMember,
        Action::Join,
    ];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Action::Reboot => "reboot",
            Action::Drain => "drain",
            Action::Upgrade => "upgrade",
            Action::Shutdown => "shutdown",
            Action::RemoveMember => "remove-member",
            Action::Join => "join",
        }
    }

    /// Whether the target's etcd member and apiserver stop during the action.
    pub fn stops_control_plane(self) -> bool {
        matches!(
            self,
            Action::Reboot | Action::Upgrade | Action::Shutdown | Action::RemoveMember
        )
    }

    /// Whether the target's pods are evicted (PodDisruptionBudgets apply).
    pub fn evicts_pods(self) -> bool {
        !matches!(self, Action::Join)
    }

    /// Whether the target's node goes NotReady during the action.
    pub fn takes_node_down(self) -> bool {
        self.stops_control_plane()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Action {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Action::ALL
            .into_iter()
            .find(|a| a.name() == s || (s == "remove" && *a == Action::RemoveMember))
            .ok_or_else(|| Error::UnknownAction(s.to_string()))
    }
}
