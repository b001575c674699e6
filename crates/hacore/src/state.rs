//! The observed state of a cluster: a plain value that any backend (the live
//! kubeadm observer, a test, a file written by hand) fills in.
//!
//! Every section is optional. A section that is absent, or whose probe is
//! listed in `probeErrors`, was not observed: rules that need it answer
//! "unknown", never "allow".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;
use crate::source::{self, Diagnostic};
use crate::topology::Topology;
use crate::units::Dur;

/// What was observed, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterState {
    /// When the observation was taken.
    pub observed_at: Timestamp,
    /// Probes that failed, with their error. A failed probe's section is not
    /// trusted even if present.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub probe_errors: BTreeMap<Probe, String>,
    /// Nodes as the Kubernetes API reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeState>>,
    /// The etcd cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdState>,
    /// The load balancer's view of its backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LbState>,
    /// `/readyz` of each master's apiserver, and through the VIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apiservers: Option<ApiserverState>,
    /// Alerts firing now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<Alert>>,
    /// Whether the kill-switch ConfigMap exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_switch: Option<bool>,
    /// The disruption lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockState>,
    /// Hypervisor hosts as the hypervisor reports them (capacity and VMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisors: Option<Vec<HostState>>,
    /// Addresses on the node network that answer (ARP/ping), for checking
    /// that a VIP or a new node's address is free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses_in_use: Option<Vec<std::net::IpAddr>>,
}

/// A hypervisor host as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostState {
    /// Host name.
    pub name: String,
    /// Physical memory, GiB.
    #[serde(rename = "memoryGiB")]
    pub memory_gib: u32,
    /// Memory committed to all VMs on the host, GiB.
    #[serde(rename = "committedMemoryGiB")]
    pub committed_memory_gib: u32,
    /// Physical CPU threads.
    pub cpus: u32,
    /// vCPUs committed to all VMs on the host.
    #[serde(default)]
    pub committed_cpus: u32,
    /// VM ids present on the host.
    #[serde(default)]
    pub vmids: Vec<u32>,
}

/// The probes an observer runs; each fills one part of [`ClusterState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Probe {
    /// Node list (readiness, taints, cordon).
    Nodes,
    /// etcd member list, status and health.
    Etcd,
    /// etcd's active alarms (as the members' status reports them). Kept
    /// apart from [`Probe::Etcd`]: when they cannot be read the members'
    /// `alarms` say nothing.
    EtcdAlarms,
    /// Load balancer backend states.
    LoadBalancer,
    /// apiserver `/readyz` per master and through the VIP.
    Apiservers,
    /// Prometheus alerts.
    Alerts,
    /// Kill-switch ConfigMap.
    KillSwitch,
    /// DaemonSet pods per node.
    DaemonSets,
    /// PodDisruptionBudgets and the pods they block.
    Pdbs,
    /// The disruption lock.
    Lock,
    /// The host's reboot-required file.
    RebootRequired,
}

impl Probe {
    /// The name used in files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Probe::Nodes => "nodes",
            Probe::Etcd => "etcd",
            Probe::EtcdAlarms => "etcdAlarms",
            Probe::LoadBalancer => "loadBalancer",
            Probe::Apiservers => "apiservers",
            Probe::Alerts => "alerts",
            Probe::KillSwitch => "killSwitch",
            Probe::DaemonSets => "daemonSets",
            Probe::Pdbs => "pdbs",
            Probe::Lock => "lock",
            Probe::RebootRequired => "rebootRequired",
        }
    }

    /// Every probe.
    pub const ALL: [Probe; 11] = [
        Probe::Nodes,
        Probe::Etcd,
        Probe::EtcdAlarms,
        Probe::LoadBalancer,
        Probe::Apiservers,
        Probe::Alerts,
        Probe::KillSwitch,
        Probe::DaemonSets,
        Probe::Pdbs,
        Probe::Lock,
        Probe::RebootRequired,
    ];
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One node as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeState {
    /// Node name.
    pub name: String,
    /// The Ready condition: true, false, or null/absent for Unknown.
    #[serde(default)]
    pub ready: Option<bool>,
    /// `lastTransitionTime` of the Ready condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<Timestamp>,
    /// `spec.unschedulable`.
    #[serde(default)]
    pub cordoned: bool,
    /// Taints as `key[=value]:Effect`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<String>,
    /// Whether the host asks for a reboot (the kured sentinel file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_required: Option<bool>,
    /// DaemonSets whose pod on this node is missing or not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_set_pods_not_running: Option<Vec<String>>,
    /// Pods on this node (`namespace/name`) whose PodDisruptionBudget allows
    /// no disruption now: a drain would hang on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdb_blocked_pods: Option<Vec<String>>,
}

impl NodeState {
    /// A node that is Ready since `since`, with nothing blocking it: every
    /// DaemonSet pod running, no PDB-blocked pod, no reboot required.
    pub fn ready(name: impl Into<String>, since: Timestamp) -> Self {
        NodeState {
            name: name.into(),
            ready: Some(true),
            ready_since: Some(since),
            cordoned: false,
            taints: Vec::new(),
            reboot_required: Some(false),
            daemon_set_pods_not_running: Some(Vec::new()),
            pdb_blocked_pods: Some(Vec::new()),
        }
    }
}

/// The etcd cluster as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EtcdState {
    /// Members from `member list`, with status and health merged in.
    pub members: Vec<EtcdMember>,
}

/// One etcd member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EtcdMember {
    /// Member id: a JSON number is decimal (as `etcdctl -w json` prints it), a
    /// string is hex with or without `0x` (as `etcdctl --hex` prints it).
    pub id: MemberId,
    /// Member name; empty for a member that was added but never started.
    #[serde(default)]
    pub name: String,
    /// Peer URLs.
    #[serde(default, rename = "peerURLs", alias = "peerUrls")]
    pub peer_urls: Vec<String>,
    /// Client URLs; empty for a member that has not started.
    #[serde(default, rename = "clientURLs", alias = "clientUrls")]
    pub client_urls: Vec<String>,
    /// Non-voting learner.
    #[serde(default)]
    pub is_learner: bool,
    /// Health (a quorum read or committed proposal through this member
    /// answered); null/absent when not known.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Whether this member is the raft leader.
    #[serde(default)]
    pub leader: bool,
    /// Raft applied index from `endpoint status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_index: Option<u64>,
    /// Active alarms on this member (`NOSPACE`, `CORRUPT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
}

/// An etcd member id (uint64).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub u64);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl Serialize for MemberId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MemberId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = MemberId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an etcd member id: a decimal number, or a hex string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MemberId, E> {
                Ok(MemberId(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MemberId, E> {
                u64::try_from(v)
                    .map(MemberId)
                    .map_err(|_| E::custom(format!("member id {v} is negative")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MemberId, E> {
                let hex = v.strip_prefix("0x").unwrap_or(v);
                u64::from_str_radix(hex, 16)
                    .map(MemberId)
                    .map_err(|_| E::custom(format!("member id `{v}` is not a hex number")))
            }
        }
        d.deserialize_any(V)
    }
}

impl EtcdMember {
    /// Host part of the first peer URL, if any.
    pub fn peer_host(&self) -> Option<&str> {
        self.peer_urls.first().and_then(|u| url_host(u))
    }

    /// Whether the member has started (it has a name and client URLs).
    pub fn started(&self) -> bool {
        !self.name.is_empty() && !self.client_urls.is_empty()
    }
}

/// The host of `scheme://host:port/...`, without brackets for IPv6.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(
        authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority),
    )
}

/// The load balancer as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LbState {
    /// One entry per server of the apiserver pool.
    pub backends: Vec<LbBackend>,
}

/// One load balancer backend server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LbBackend {
    /// Server name in the pool (normally the node name).
    pub server: String,
    /// Server address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// HAProxy's status for the server.
    pub status: BackendStatus,
    /// Current sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u64>,
}

/// HAProxy server status, as `show stat` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BackendStatus {
    /// Passing checks, taking traffic.
    Up,
    /// Failing checks.
    Down,
    /// Administratively in maintenance.
    Maint,
    /// Administratively draining: no new connections.
    Drain,
    /// Up but not load-balanced.
    Nolb,
}

impl fmt::Display for BackendStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendStatus::Up => "UP",
            BackendStatus::Down => "DOWN",
            BackendStatus::Maint => "MAINT",
            BackendStatus::Drain => "DRAIN",
            BackendStatus::Nolb => "NOLB",
        })
    }
}

/// apiserver readiness.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiserverState {
    /// `/readyz` per master, by node name.
    #[serde(default)]
    pub per_node: BTreeMap<String, bool>,
    /// `/readyz` through the control-plane endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via_endpoint: Option<bool>,
}

/// A firing alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Alert {
    /// `alertname`.
    pub name: String,
    /// `severity` label.
    #[serde(default)]
    pub severity: String,
}

/// The disruption lock as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockState {
    /// Who holds it; none when free.
    #[serde(default)]
    pub holder: Option<String>,
    /// When it was last renewed (or acquired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_at: Option<Timestamp>,
    /// How long a holder keeps it without renewing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Dur>,
}

impl LockState {
    /// The holder, if the lock is held and not expired at `now`.
    pub fn live_holder(&self, now: Timestamp) -> Option<&str> {
        let holder = self.holder.as_deref().filter(|h| !h.is_empty())?;
        match (self.renewed_at, self.ttl) {
            (Some(at), Some(ttl)) if at + ttl.0 <= now => None,
            _ => Some(holder),
        }
    }
}

impl ClusterState {
    /// An empty observation at `now`: nothing observed yet.
    pub fn empty(now: Timestamp) -> Self {
        ClusterState {
            observed_at: now,
            probe_errors: BTreeMap::new(),
            nodes: None,
            etcd: None,
            load_balancer: None,
            apiservers: None,
            alerts: None,
            kill_switch: None,
            lock: None,
            hypervisors: None,
            addresses_in_use: None,
        }
    }

    /// Load a state file (YAML or JSON) and check it against the topology.
    pub fn load(
        path: &Path,
        topology: &Topology,
    ) -> Result<(ClusterState, Vec<Diagnostic>), Error> {
        let (state, text): (ClusterState, String) = source::read(path)?;
        state.finish(&path.display().to_string(), &text, topology)
    }

    /// Parse a state from a YAML or JSON string.
    pub fn from_yaml(
        name: &str,
        text: &str,
        topology: &Topology,
    ) -> Result<(ClusterState, Vec<Diagnostic>), Error> {
        let state: ClusterState = source::parse(name, text)?;
        state.finish(name, text, topology)
    }

    fn finish(
        self,
        file: &str,
        text: &str,
        topology: &Topology,
    ) -> Result<(ClusterState, Vec<Diagnostic>), Error> {
        let mut diags = self.validate(topology);
        for d in &mut diags {
            d.locate_in(file, text);
        }
        let (errors, warnings): (Vec<_>, Vec<_>) = diags
            .into_iter()
            .partition(|d| d.level == source::Level::Error);
        if errors.is_empty() {
            Ok((self, warnings))
        } else {
            Err(Error::Invalid {
                file: file.to_string(),
                errors,
            })
        }
    }

    /// Check internal consistency, and consistency with the topology.
    pub fn validate(&self, topology: &Topology) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        if let Some(nodes) = &self.nodes {
            let mut seen = BTreeSet::new();
            for (i, n) in nodes.iter().enumerate() {
                if !seen.insert(n.name.as_str()) {
                    out.push(Diagnostic::error(
                        format!("nodes[{i}].name"),
                        format!("node `{}` is listed twice", n.name),
                    ));
                }
                if topology.node(&n.name).is_none() {
                    out.push(Diagnostic::warning(
                        format!("nodes[{i}].name"),
                        format!("node `{}` is not in the topology", n.name),
                    ));
                }
            }
        }
        if let Some(etcd) = &self.etcd {
            let mut ids = BTreeSet::new();
            let mut leaders = 0;
            for (i, m) in etcd.members.iter().enumerate() {
                if !ids.insert(m.id) {
                    out.push(Diagnostic::error(
                        format!("etcd.members[{i}].id"),
                        format!("member id {} is listed twice", m.id),
                    ));
                }
                leaders += usize::from(m.leader);
                if m.leader && m.is_learner {
                    out.push(Diagnostic::error(
                        format!("etcd.members[{i}]"),
                        "a learner cannot be the leader",
                    ));
                }
            }
            if leaders > 1 {
                out.push(Diagnostic::error(
                    "etcd.members",
                    format!("{leaders} members claim to be leader; at most one can be"),
                ));
            }
        }
        out
    }

    /// The data of one probe, or why it is not usable: the probe failed, or
    /// the section was not observed.
    pub fn section<'a, T>(&self, probe: Probe, data: Option<&'a T>) -> Result<&'a T, String> {
        if let Some(e) = self.probe_errors.get(&probe) {
            return Err(format!("probe `{probe}` failed: {e}"));
        }
        data.ok_or_else(|| format!("`{probe}` was not observed"))
    }

    /// A node's observed state by name.
    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.as_ref()?.iter().find(|n| n.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://10.0.20.100:2380"), Some("10.0.20.100"));
        assert_eq!(url_host("https://[fd00::1]:2380"), Some("fd00::1"));
        assert_eq!(url_host("http://m1"), Some("m1"));
    }

    #[test]
    fn member_ids_decimal_and_hex() {
        let a: MemberId = serde_json::from_str("10276657743932975437").unwrap();
        let b: MemberId = serde_json::from_str("\"8e9e05c52164694d\"").unwrap();
        let c: MemberId = serde_json::from_str("\"0x8e9e05c52164694d\"").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"8e9e05c52164694d\"");
        assert!(serde_json::from_str::<MemberId>("\"xyz\"").is_err());
    }

    #[test]
    fn lock_expires_after_ttl() {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let lock = LockState {
            holder: Some("gate@m2".into()),
            renewed_at: Some(at),
            ttl: Some(Dur::secs(60)),
        };
        assert_eq!(lock.live_holder(at + Dur::secs(59).0), Some("gate@m2"));
        assert_eq!(lock.live_holder(at + Dur::secs(60).0), None);
    }
}
