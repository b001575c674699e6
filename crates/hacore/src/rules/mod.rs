//! Safety rules: one small pure rule per module.
//!
//! Each rule reads a [`Context`] (topology, observed state, the requested
//! action and its targets, the time) and its own parameters, and pushes
//! findings. A rule that needs data that was not observed, or whose probe
//! failed, pushes an `unknown` finding: it never passes on missing data.

use std::collections::HashMap;
use std::net::IpAddr;

use jiff::Timestamp;

use crate::action::Action;
use crate::state::{ClusterState, EtcdMember, NodeState};
use crate::topology::{Hypervisor, Node, Topology};
use crate::verdict::{Finding, Severity};

pub mod alerts;
pub mod apiserver_ready;
pub mod control_plane_drift;
pub mod control_plane_ready;
pub mod daemonsets;
pub mod etcd_alarms;
pub mod etcd_backup;
pub mod etcd_latency;
pub mod etcd_leader;
pub mod etcd_learner;
pub mod etcd_odd_size;
pub mod etcd_quorum;
pub mod etcd_two_voters;
pub mod hypervisor_host;
pub mod kill_switch;
pub mod load_balancer;
pub mod lock;
pub mod master_disk;
pub mod node_drift;
pub mod nodes_ready;
pub mod pdb;
pub mod reboot_window;
pub mod single_master;
pub mod soak;
pub mod state_fresh;
/// Not a gate rule (a gate's request names no version): `roll upgrade`'s check before it starts.
pub mod version_skew;

/// Everything a rule may look at.
pub struct Context<'a> {
    /// The declared cluster.
    pub topology: &'a Topology,
    /// What was observed.
    pub state: &'a ClusterState,
    /// The action asked about.
    pub action: Action,
    /// The target as given.
    pub target: &'a str,
    /// The nodes the action affects: the target node, or every node on the
    /// target hypervisor host.
    pub targets: Vec<&'a Node>,
    /// The hypervisor host, when the target is one.
    pub host: Option<&'a Hypervisor>,
    /// The time to evaluate for.
    pub now: Timestamp,
    /// Who asks (lock holder identity), if known.
    pub requester: Option<&'a str>,
    node_states: HashMap<&'a str, &'a NodeState>,
    nodes_by_addr: HashMap<IpAddr, &'a Node>,
}

impl<'a> Context<'a> {
    /// Build a context. `targets` and `host` come from [`crate::gate::resolve_target`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topology: &'a Topology,
        state: &'a ClusterState,
        action: Action,
        target: &'a str,
        targets: Vec<&'a Node>,
        host: Option<&'a Hypervisor>,
        now: Timestamp,
        requester: Option<&'a str>,
    ) -> Self {
        let node_states = state
            .nodes
            .iter()
            .flatten()
            .map(|n| (n.name.as_str(), n))
            .collect();
        let nodes_by_addr = topology.nodes.iter().map(|n| (n.address, n)).collect();
        Context {
            topology,
            state,
            action,
            target,
            targets,
            host,
            now,
            requester,
            node_states,
            nodes_by_addr,
        }
    }

    /// Whether `name` is one of the affected nodes.
    pub fn is_target(&self, name: &str) -> bool {
        self.targets.iter().any(|n| n.name == name)
    }

    /// Whether any affected node is a master.
    pub fn targets_control_plane(&self) -> bool {
        self.targets.iter().any(|n| n.is_control_plane())
    }

    /// Observed state of a node, if the node list was observed and has it.
    pub fn node_state(&self, name: &str) -> Option<&'a NodeState> {
        self.node_states.get(name).copied()
    }

    /// The topology node an etcd member runs on: by name, else by the peer
    /// URL's host. A member with no matching node counts as unhealthy.
    pub fn member_node(&self, m: &EtcdMember) -> Option<&'a Node> {
        if !m.name.is_empty()
            && let Some(n) = self.topology.node(&m.name)
        {
            return Some(n);
        }
        let host: IpAddr = m.peer_host()?.parse().ok()?;
        self.nodes_by_addr.get(&host).copied()
    }

    /// Whether the member runs on an affected node.
    pub fn member_is_target(&self, m: &EtcdMember) -> bool {
        self.member_node(m).is_some_and(|n| self.is_target(&n.name))
    }

    /// Names of the affected nodes as a list in a sentence ("m1, w1 and w2").
    pub fn target_names(&self) -> String {
        let names: Vec<&str> = self.targets.iter().map(|n| n.name.as_str()).collect();
        and_list(&names)
    }

    /// The target as the subject of a sentence: the node, or the hypervisor
    /// host with the nodes it takes along ("hypervisor h1 (m1 and w1)").
    pub fn target_phrase(&self) -> String {
        match self.host {
            Some(h) if self.targets.is_empty() => format!("hypervisor {} (no node)", h.name),
            Some(h) => format!("hypervisor {} ({})", h.name, self.target_names()),
            None => self.target_names(),
        }
    }

    /// The affected masters, in topology order.
    pub fn target_masters(&self) -> Vec<&'a str> {
        self.targets
            .iter()
            .filter(|n| n.is_control_plane())
            .map(|n| n.name.as_str())
            .collect()
    }

    /// When the target is a hypervisor host that takes more than one master
    /// down with it, what to do about that (instead of a fix that assumes
    /// the other masters are elsewhere).
    pub fn host_fix(&self) -> Option<String> {
        let h = self.host?;
        let masters = self.target_masters();
        (masters.len() > 1).then(|| {
            format!(
                "hypervisor {} takes {} down with it: spread the masters over hypervisor hosts, one per host, before taking a host down",
                h.name,
                and_list(&masters)
            )
        })
    }

    /// Whether the member matches no node of the topology (by name or peer
    /// address); such a member counts as down.
    pub fn member_unmatched(&self, m: &EtcdMember) -> bool {
        m.started() && self.member_node(m).is_none()
    }
}

pub use crate::wording::{and_list, count, is_are, or_list};

/// Where a rule's figures come from, when there is a choice (for
/// `hacli policy show`).
pub fn source_of(id: &str) -> Option<&'static str> {
    match id {
        etcd_latency::ID => Some(
            "from Prometheus when one is configured (--prometheus, HACLI_PROMETHEUS, the topology's prometheus.url): the p99 of rate(etcd_disk_*_duration_seconds_bucket[window]) and increase() of the counters, its history holding the window; else each member's /metrics read twice a window apart",
        ),
        master_disk::ID => Some(
            "the file systems of /, etcd's data directory and /etc/kubernetes/tmp from node-exporter through Prometheus when one is configured (node_filesystem_*_bytes), else df over SSH; kubeadm's backup directories over SSH only (node-exporter does not see directories): unknown without SSH",
        ),
        _ => None,
    }
}

/// How an etcd member is named in messages: its name, else its hex id.
pub fn member_label(m: &EtcdMember) -> String {
    if m.name.is_empty() {
        m.id.to_string()
    } else {
        m.name.clone()
    }
}

/// Health of an etcd member for quorum purposes: `Some(true)` healthy,
/// `Some(false)` down, `None` unknown. A member with no matching node, or
/// that never started, is down (Cluster API's rule).
pub fn member_health(ctx: &Context<'_>, m: &EtcdMember) -> Option<bool> {
    if ctx.member_node(m).is_none() || !m.started() {
        return Some(false);
    }
    m.healthy
}

/// Shorthand used by the rules.
pub(crate) fn pass(rule: &str, msg: impl Into<String>) -> Finding {
    Finding::new(rule, Severity::Pass, msg)
}
pub(crate) fn warn(rule: &str, msg: impl Into<String>) -> Finding {
    Finding::new(rule, Severity::Warn, msg)
}
pub(crate) fn deny(rule: &str, msg: impl Into<String>) -> Finding {
    Finding::new(rule, Severity::Deny, msg)
}
pub(crate) fn unknown(rule: &str, msg: impl Into<String>) -> Finding {
    Finding::new(rule, Severity::Unknown, msg)
}

/// Parameters for rules that take none; `{}` in policy files.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}
