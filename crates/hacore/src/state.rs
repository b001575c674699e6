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

pub use crate::topology::url_host;

/// What was observed, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterState {
    /// `hacli/v1` in the files `hacli observe` writes; optional in a file
    /// written by hand, refused when it names another version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `ClusterState` in the files `hacli observe` writes; optional, refused
    /// when it names another kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The cluster observed: the topology's `cluster` name, which `observe`
    /// writes. A state naming another cluster than its topology is refused;
    /// a state without it (files written before it existed, or by hand) is
    /// accepted with a warning, its nodes and etcd members still checked
    /// against the topology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
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
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict::opt_bool"
    )]
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
    /// etcd snapshots (`hacli snapshot`): where they were looked for and the
    /// newest verified one. Absent: not observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_backup: Option<EtcdBackup>,
    /// The masters' own files (static-pod manifests, kubeadm-config, disks,
    /// kubeadm's backups), read over SSH. Absent: not observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masters: Option<crate::masters::MastersState>,
    /// How fast each etcd member writes (its `/metrics` read twice over a
    /// window, or Prometheus). Absent: not observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_latency: Option<EtcdLatency>,
}

/// The etcd members' disk latency and churn, as their metrics show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EtcdLatency {
    /// Where the figures come from: `metrics` (each member's `/metrics`)
    /// or `prometheus`.
    pub source: String,
    /// The window the figures cover: the histograms' and counters'
    /// increase between two reads this far apart. `0s`: one read, the
    /// histograms since each member started (the counters then say
    /// nothing).
    pub window: Dur,
    /// One entry per member endpoint read.
    #[serde(default)]
    pub members: Vec<MemberLatency>,
}

/// One etcd member's latency figures; a figure absent was not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberLatency {
    /// The member's name (as `member list` gives it), or its endpoint.
    pub name: String,
    /// The client URL read.
    pub endpoint: String,
    /// Why its metrics could not be read: every figure is then unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `etcd_disk_wal_fsync_duration_seconds` p99, microseconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict::opt_num"
    )]
    pub wal_fsync_p99_micros: Option<u64>,
    /// `etcd_disk_backend_commit_duration_seconds` p99, microseconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict::opt_num"
    )]
    pub backend_commit_p99_micros: Option<u64>,
    /// How many WAL fsyncs the p99 rests on (none in the window: no p99).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict::opt_num"
    )]
    pub wal_fsyncs: Option<u64>,
    /// `etcd_server_slow_apply_total`'s increase over the window.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict::opt_num"
    )]
    pub slow_applies: Option<u64>,
    /// `etcd_server_leader_changes_seen_total`'s increase over the window.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict::opt_num"
    )]
    pub leader_changes: Option<u64>,
}

/// The etcd snapshots as observed in a snapshot directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EtcdBackup {
    /// Where the snapshots were looked for (a directory).
    pub place: String,
    /// Why the place could not be read: the newest snapshot is then unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The newest snapshot there whose integrity was verified; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<SnapshotSeen>,
}

/// One verified etcd snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotSeen {
    /// The snapshot file.
    pub path: String,
    /// When it was taken.
    pub taken_at: Timestamp,
    /// The etcd revision it holds.
    #[serde(deserialize_with = "strict::num")]
    pub revision: u64,
    /// Whether its integrity check passed (only verified snapshots count).
    #[serde(deserialize_with = "strict::bool")]
    pub verified: bool,
}

/// A hypervisor host as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostState {
    /// Host name.
    pub name: String,
    /// Physical memory, GiB.
    #[serde(rename = "memoryGiB", deserialize_with = "strict::num")]
    pub memory_gib: u32,
    /// Memory committed to all VMs on the host, GiB.
    #[serde(rename = "committedMemoryGiB", deserialize_with = "strict::num")]
    pub committed_memory_gib: u32,
    /// Physical CPU threads.
    #[serde(deserialize_with = "strict::num")]
    pub cpus: u32,
    /// vCPUs committed to all VMs on the host.
    #[serde(default, deserialize_with = "strict::num")]
    pub committed_cpus: u32,
    /// VM ids present on the host.
    #[serde(default, deserialize_with = "strict::nums")]
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
    #[serde(default, deserialize_with = "strict::opt_bool")]
    pub ready: Option<bool>,
    /// `lastTransitionTime` of the Ready condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<Timestamp>,
    /// `spec.unschedulable`.
    #[serde(default, deserialize_with = "strict::bool")]
    pub cordoned: bool,
    /// Taints as `key[=value]:Effect`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<String>,
    /// Whether the host asks for a reboot (the kured sentinel file).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict::opt_bool"
    )]
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
    #[serde(default, deserialize_with = "strict::bool")]
    pub is_learner: bool,
    /// Health (a quorum read or committed proposal through this member
    /// answered); null/absent when not known.
    #[serde(default, deserialize_with = "strict::opt_bool")]
    pub healthy: Option<bool>,
    /// Whether this member is the raft leader.
    #[serde(default, deserialize_with = "strict::bool")]
    pub leader: bool,
    /// Raft applied index from `endpoint status`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict::opt_num"
    )]
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

/// What a member id may look like, said whenever one does not.
pub const MEMBER_ID_FORMS: &str = "a member id is a decimal number, as `etcdctl member list -w json` prints it, or a string of up to 16 hexadecimal digits, as `etcdctl member list -w json --hex` prints it (\"8e9e05c52164694d\")";

impl MemberId {
    /// Parse the hexadecimal form `etcdctl --hex` prints: 1 to 16 hex
    /// digits, no `0x`.
    pub fn from_hex(s: &str) -> Result<MemberId, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{s}` is not a member id: {MEMBER_ID_FORMS}"));
        }
        let digits = s.trim_start_matches('0');
        if digits.len() > 16 {
            return Err(format!(
                "member id `{s}` is out of range: it has {} significant hexadecimal digits, and a member id has at most 16 (64 bits)",
                digits.len()
            ));
        }
        u64::from_str_radix(s, 16)
            .map(MemberId)
            .map_err(|e| format!("`{s}` is not a member id ({e}): {MEMBER_ID_FORMS}"))
    }
}

impl<'de> Deserialize<'de> for MemberId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = MemberId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an etcd member id (a decimal number, or a string of up to 16 hexadecimal digits as `etcdctl --hex` prints it)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MemberId, E> {
                Ok(MemberId(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MemberId, E> {
                u64::try_from(v)
                    .map(MemberId)
                    .map_err(|_| E::custom(format!("{v} is not a member id: {MEMBER_ID_FORMS}")))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<MemberId, E> {
                u64::try_from(v).map(MemberId).map_err(|_| {
                    E::custom(format!(
                        "member id {v} is out of range: a member id is at most {} (64 bits)",
                        u64::MAX
                    ))
                })
            }
            fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<MemberId, E> {
                match u128::try_from(v) {
                    Ok(u) => self.visit_u128(u),
                    Err(_) => Err(E::custom(format!(
                        "{v} is not a member id: {MEMBER_ID_FORMS}"
                    ))),
                }
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<MemberId, E> {
                // A YAML or JSON integer too large for 64 bits arrives as a
                // float: say what is wrong with it, not how it was converted.
                if v.is_finite() && v.fract() == 0.0 && v >= 18_446_744_073_709_551_616.0 {
                    Err(E::custom(format!(
                        "member id is out of range: a member id is at most {} (64 bits)",
                        u64::MAX
                    )))
                } else {
                    Err(E::custom(format!(
                        "{v} is not a member id: {MEMBER_ID_FORMS}"
                    )))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MemberId, E> {
                MemberId::from_hex(v).map_err(E::custom)
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
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict::opt_num"
    )]
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
    #[serde(default, deserialize_with = "strict::bool_map")]
    pub per_node: BTreeMap<String, bool>,
    /// `/readyz` through the control-plane endpoint.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict::opt_bool"
    )]
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
            api_version: None,
            kind: None,
            cluster: None,
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
            etcd_backup: None,
            masters: None,
            etcd_latency: None,
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
        let mut out = self.mismatches(topology);
        for (field, got, want) in [
            ("apiVersion", &self.api_version, "hacli/v1"),
            ("kind", &self.kind, "ClusterState"),
        ] {
            if got.as_deref().is_some_and(|g| g != want) {
                out.push(Diagnostic::error(
                    field,
                    format!(
                        "`{}` is not a state file's {field} (`{want}`)",
                        got.as_deref().unwrap_or_default()
                    ),
                ));
            }
        }
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
            let mut names: BTreeMap<&str, (usize, MemberId)> = BTreeMap::new();
            for (i, m) in etcd.members.iter().enumerate() {
                if !ids.insert(m.id) {
                    out.push(Diagnostic::error(
                        format!("etcd.members[{i}].id"),
                        format!("member id {} is listed twice", m.id),
                    ));
                }
                if !m.name.is_empty() {
                    if let Some(&(first, id)) = names.get(m.name.as_str()) {
                        out.push(Diagnostic::error(
                            format!("etcd.members[{i}].name"),
                            format!(
                                "member name `{}` is used by two members, ids {id} (etcd.members[{first}]) and {}: etcd names each member after its node, so one of them is stale or misnamed; check `etcdctl member list` and each member's peer URL against the node first",
                                m.name, m.id
                            ),
                        ));
                    } else {
                        names.insert(&m.name, (i, m.id));
                    }
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

    /// Finish a live observation of `topology`'s cluster: name the cluster,
    /// and when nothing answered at all, say so (see
    /// [`ClusterState::nothing_answered`]) by recording the apiservers'
    /// probe as failed, so that a gate that reached nothing is unknown, not
    /// a deny for apiservers that "are not ready".
    pub fn finish_observation(&mut self, topology: &Topology) {
        self.cluster = Some(topology.cluster.clone());
        if self.nothing_answered() && !self.probe_errors.contains_key(&Probe::Apiservers) {
            self.probe_errors.insert(
                Probe::Apiservers,
                "no apiserver answered /readyz, and every other probe failed too: the cluster could not be reached from here, which says nothing about whether its apiservers are ready".into(),
            );
        }
    }

    /// Whether nothing of the cluster answered: the probes every live
    /// observation runs (nodes, etcd, the kill switch, the lock) all failed,
    /// the load balancer and Prometheus gave nothing (failed or not asked),
    /// and no apiserver answered `/readyz` as ready.
    pub fn nothing_answered(&self) -> bool {
        let always = [Probe::Nodes, Probe::Etcd, Probe::KillSwitch, Probe::Lock];
        let usable = |p: Probe, present: bool| present && !self.probe_errors.contains_key(&p);
        always.iter().all(|p| self.probe_errors.contains_key(p))
            && !usable(Probe::LoadBalancer, self.load_balancer.is_some())
            && !usable(Probe::Alerts, self.alerts.is_some())
            && self
                .apiservers
                .as_ref()
                .is_none_or(|a| !a.per_node.values().any(|r| *r) && a.via_endpoint != Some(true))
    }

    /// The errors of [`ClusterState::mismatches`], if any, as bad input
    /// ([`Error::Invalid`], `what` standing for the file): for a state that
    /// was observed live rather than loaded (loading checks it already).
    pub fn check_topology(&self, topology: &Topology, what: &str) -> Result<(), Error> {
        let errors: Vec<Diagnostic> = self
            .mismatches(topology)
            .into_iter()
            .filter(|d| d.level == source::Level::Error)
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid {
                file: what.to_string(),
                errors,
            })
        }
    }

    /// Where this state contradicts the topology, as errors: a state of
    /// another cluster must not be judged against this topology (its
    /// members would count as down, and the advice would be to remove
    /// members that are healthy on their own cluster). Errors:
    ///
    /// - `cluster` names another cluster than the topology's;
    /// - an etcd member matches no node of the topology, by name or by the
    ///   address of its peer URL (a member with neither is not compared: it
    ///   counts as down in the rules);
    /// - an etcd member is named after a node of the topology, but its peer
    ///   URL is at another address than that node's;
    /// - no observed node is in the topology;
    /// - an observed node carries the control-plane taint but the topology
    ///   does not list it as a control-plane node.
    ///
    /// A state without `cluster` gets a warning. A worker the topology does
    /// not list is not an error: that is drift, which the `node-drift` rule
    /// names (issue 16).
    pub fn mismatches(&self, topology: &Topology) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let check_first = CHECK_FIRST;
        match &self.cluster {
            Some(c) if c != &topology.cluster => out.push(Diagnostic::error(
                "cluster",
                format!(
                    "the state was observed on cluster `{c}`, but the topology is of cluster `{}`: {check_first}",
                    topology.cluster
                ),
            )),
            Some(_) => {}
            None => out.push(Diagnostic::warning(
                "observedAt",
                format!(
                    "the state names no cluster (no `cluster:`, as states written before it was recorded): it is taken to be of cluster `{}` because its nodes and etcd members match that topology; `hacli observe` writes it",
                    topology.cluster
                ),
            )),
        }
        if let Some(nodes) = &self.nodes {
            node_mismatches(nodes, topology, &mut out);
        }
        if let Some(etcd) = &self.etcd {
            member_mismatches(etcd, topology, &mut out);
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

/// What to check first when the state and the topology disagree.
const CHECK_FIRST: &str = "check which cluster the state was observed on (the kubeconfig, the etcd endpoints) and that the topology is that cluster's, before acting on anything it says";

/// Observed nodes the topology does not know, or knows as workers while
/// they carry the control-plane taint.
fn node_mismatches(nodes: &[NodeState], topology: &Topology, out: &mut Vec<Diagnostic>) {
    let check_first = CHECK_FIRST;
    if !nodes.is_empty() && nodes.iter().all(|n| topology.node(&n.name).is_none()) {
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        out.push(Diagnostic::error(
            "nodes",
            format!(
                "no observed node is in the topology of cluster `{}` (observed: {}): {check_first}",
                topology.cluster,
                crate::wording::and_list(&names)
            ),
        ));
    }
    for (i, n) in nodes.iter().enumerate() {
        let tainted = n.taints.iter().any(|t| {
            t.starts_with("node-role.kubernetes.io/control-plane")
                || t.starts_with("node-role.kubernetes.io/master")
        });
        if !tainted {
            continue;
        }
        match topology.node(&n.name) {
                Some(t) if t.is_control_plane() => {}
                Some(_) => out.push(Diagnostic::error(
                    format!("nodes[{i}].taints"),
                    format!(
                        "node `{}` carries the control-plane taint, but the topology lists it as a worker: {check_first}",
                        n.name
                    ),
                )),
                None => out.push(Diagnostic::error(
                    format!("nodes[{i}].name"),
                    format!(
                        "node `{}` carries the control-plane taint, but the topology has no such node: a master the topology does not know makes every quorum rule wrong; {check_first}",
                        n.name
                    ),
                )),
            }
    }
}

/// etcd members that match no node of the topology, or whose peer address
/// is not their node's.
fn member_mismatches(etcd: &EtcdState, topology: &Topology, out: &mut Vec<Diagnostic>) {
    let check_first = CHECK_FIRST;
    for (i, m) in etcd.members.iter().enumerate() {
        // Nothing to compare: such a member counts as down in the
        // rules (it matches no node).
        if m.name.is_empty() && m.peer_urls.is_empty() {
            continue;
        }
        let peer = m
            .peer_host()
            .and_then(|h| h.parse::<std::net::IpAddr>().ok());
        let by_name = (!m.name.is_empty())
            .then(|| topology.node(&m.name))
            .flatten();
        let by_addr = peer.and_then(|a| topology.nodes.iter().find(|n| n.address == a));
        let label = if m.name.is_empty() {
            format!("id {}", m.id)
        } else {
            format!("`{}` (id {})", m.name, m.id)
        };
        let peer_url = m.peer_urls.first().map(String::as_str).unwrap_or("none");
        match (by_name, peer) {
                (Some(n), Some(a)) if n.address != a => out.push(Diagnostic::error(
                    format!("etcd.members[{i}].peerURLs"),
                    format!(
                        "etcd member {label} is named after node `{}`, which the topology puts at {}, but its peer URL is {peer_url}: {check_first}",
                        n.name, n.address
                    ),
                )),
                (Some(_), _) => {}
                (None, _) if by_addr.is_some() => {}
                (None, _) => out.push(Diagnostic::error(
                    format!("etcd.members[{i}]"),
                    format!(
                        "etcd member {label}, peer {peer_url}, matches no node of the topology of cluster `{}` by name or peer address: {check_first}; if the topology is out of date, add the node; do not remove the member on this evidence",
                        topology.cluster
                    ),
                )),
            }
    }
}

/// Strict scalars for observed-state files: a boolean is `true` or
/// `false`, never a quoted string or `yes`/`no`, and a number is written as
/// a number, never as a quoted string. Each reads through
/// `deserialize_any`, where the YAML reader keeps quoted scalars strings.
mod strict {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{self, Deserialize, Deserializer, Visitor};

    /// A boolean written as one.
    struct B(bool);

    impl<'de> Deserialize<'de> for B {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = B;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("`true` or `false` (unquoted; not yes/no)")
                }
                fn visit_bool<E: de::Error>(self, v: bool) -> Result<B, E> {
                    Ok(B(v))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// An unsigned integer written as a number.
    struct N<T>(T);

    impl<'de, T: TryFrom<u64>> Deserialize<'de> for N<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(PhantomData<T>);
            impl<T: TryFrom<u64>> Visitor<'_> for V<T> {
                type Value = N<T>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a whole number written as a number (unquoted)")
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<N<T>, E> {
                    T::try_from(v).map(N).map_err(|_| {
                        E::custom(format!(
                            "{v} is out of range (at most {} bits)",
                            std::mem::size_of::<T>() * 8
                        ))
                    })
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<N<T>, E> {
                    match u64::try_from(v) {
                        Ok(u) => self.visit_u64(u),
                        Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                    }
                }
            }
            d.deserialize_any(V(PhantomData))
        }
    }

    pub(super) fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        B::deserialize(d).map(|b| b.0)
    }

    pub(super) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Option::<B>::deserialize(d).map(|o| o.map(|b| b.0))
    }

    pub(super) fn bool_map<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, bool>, D::Error> {
        BTreeMap::<String, B>::deserialize(d)
            .map(|m| m.into_iter().map(|(k, b)| (k, b.0)).collect())
    }

    pub(super) fn num<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
        N::<T>::deserialize(d).map(|n| n.0)
    }

    pub(super) fn opt_num<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Option::<N<T>>::deserialize(d).map(|o| o.map(|n| n.0))
    }

    pub(super) fn nums<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        Vec::<N<T>>::deserialize(d).map(|v| v.into_iter().map(|n| n.0).collect())
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
        assert_eq!(a, b);
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"8e9e05c52164694d\"");
        // What we write reads back.
        let c: MemberId =
            serde_json::from_str(&serde_json::to_string(&MemberId(0x3e9)).unwrap()).unwrap();
        assert_eq!(c, MemberId(0x3e9));
        for bad in [
            "\"xyz\"",
            "\"0x8e9e05c52164694d\"",
            "\"\"",
            "-1",
            "1.5",
            "true",
        ] {
            let e = serde_json::from_str::<MemberId>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("member id"), "{bad}: {e}");
        }
    }

    const LAB3: &str = "cluster: lab3\ncontrolPlaneEndpoint: { address: 10.1.0.10 }\nnodes:\n  - { name: m1, role: control-plane, address: 10.1.0.10 }\n  - { name: m2, role: control-plane, address: 10.1.0.12 }\n";

    fn load(doc: &str) -> Result<ClusterState, String> {
        let (t, _) = Topology::from_yaml("t.yaml", LAB3).unwrap();
        let text = format!("observedAt: 2026-03-04T02:00:00Z\n{doc}");
        ClusterState::from_yaml("s.yaml", &text, &t)
            .map(|(s, _)| s)
            .map_err(|e| e.to_string())
    }

    /// The error names `s.yaml:LINE:COLUMN: FIELD: ` once each, with no
    /// second location and no repeated cause.
    fn rejected(doc: &str, line: usize, field: &str, says: &str) {
        let e = load(doc).expect_err(doc);
        let (pos, rest) = e
            .strip_prefix(&format!("s.yaml:{line}:"))
            .and_then(|r| r.split_once(": "))
            .unwrap_or_else(|| panic!("{doc}: no s.yaml:{line}:COLUMN: in {e}"));
        assert!(pos.parse::<usize>().is_ok_and(|c| c > 0), "{e}");
        assert!(rest.starts_with(&format!("{field}: ")), "{doc}: {e}");
        assert_eq!(e.matches("s.yaml").count(), 1, "{e}");
        assert_eq!(e.matches(field).count(), 1, "{e}");
        assert!(!e.contains(" at line "), "{e}");
        assert!(!e.to_lowercase().contains("floating"), "{e}");
        assert!(e.contains(says), "{doc}: expected {says:?} in {e}");
    }

    #[test]
    fn booleans_are_true_or_false_unquoted() {
        let s = load("nodes:\n  - { name: m1, ready: true, cordoned: false }\n  - { name: m2, ready: null }\nkillSwitch: false\n").unwrap();
        let nodes = s.nodes.unwrap();
        assert_eq!(
            (nodes[0].ready, nodes[0].cordoned, nodes[1].ready),
            (Some(true), false, None)
        );
        assert_eq!(s.kill_switch, Some(false));
        let expected = "expected `true` or `false`";
        rejected(
            "nodes:\n  - { name: m1, ready: yes }\n",
            3,
            "nodes[0].ready",
            expected,
        );
        rejected(
            "nodes:\n  - { name: m1, ready: \"true\" }\n",
            3,
            "nodes[0].ready",
            expected,
        );
        rejected(
            "nodes:\n  - { name: m1, cordoned: no }\n",
            3,
            "nodes[0].cordoned",
            expected,
        );
        rejected("killSwitch: \"false\"\n", 2, "killSwitch", expected);
        rejected("killSwitch: off\n", 2, "killSwitch", expected);
        rejected(
            "apiservers: { perNode: { m1: \"yes\" } }\n",
            2,
            "apiservers.perNode.m1",
            expected,
        );
        rejected(
            "etcd:\n  members:\n    - { id: 1, leader: \"true\" }\n",
            4,
            "etcd.members[0].leader",
            expected,
        );
        // JSON is read the same way.
        let (t, _) = Topology::from_yaml("t.yaml", LAB3).unwrap();
        let e = ClusterState::from_yaml(
            "s.json",
            "{\"observedAt\": \"2026-03-04T02:00:00Z\", \"killSwitch\": \"no\"}",
            &t,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("s.json:1:") && e.contains(": killSwitch: invalid type: string \"no\""),
            "{e}"
        );
    }

    #[test]
    fn numbers_are_not_quoted() {
        let s = load("etcd:\n  members:\n    - { id: 1, raftIndex: 5000 }\n").unwrap();
        assert_eq!(s.etcd.unwrap().members[0].raft_index, Some(5000));
        let expected = "expected a whole number written as a number";
        rejected(
            "etcd:\n  members:\n    - { id: 1, raftIndex: \"5000\" }\n",
            4,
            "etcd.members[0].raftIndex",
            expected,
        );
        rejected(
            "loadBalancer:\n  backends:\n    - { server: m1, status: UP, sessions: \"3\" }\n",
            4,
            "loadBalancer.backends[0].sessions",
            expected,
        );
        rejected(
            "hypervisors:\n  - { name: h1, memoryGiB: \"64\", committedMemoryGiB: 1, cpus: 1 }\n",
            3,
            "hypervisors[0].memoryGiB",
            expected,
        );
        rejected(
            "hypervisors:\n  - { name: h1, memoryGiB: 64, committedMemoryGiB: 1, cpus: 1, vmids: [\"100\"] }\n",
            3,
            "hypervisors[0].vmids[0]",
            expected,
        );
        rejected(
            "hypervisors:\n  - { name: h1, memoryGiB: 4294967296, committedMemoryGiB: 1, cpus: 1 }\n",
            3,
            "hypervisors[0].memoryGiB",
            "4294967296 is out of range (at most 32 bits)",
        );
    }

    #[test]
    fn member_ids_are_decimal_numbers_or_hex_strings() {
        let ids = |doc: &str| -> Vec<u64> {
            load(doc)
                .unwrap()
                .etcd
                .unwrap()
                .members
                .iter()
                .map(|m| m.id.0)
                .collect()
        };
        assert_eq!(
            ids(
                "etcd:\n  members:\n    - { id: 10276657743932975437 }\n    - { id: \"91bc3c398fb3c146\" }\n    - { id: \"3e9\" }\n    - { id: 1002 }\n"
            ),
            [10276657743932975437, 0x91bc3c398fb3c146, 0x3e9, 1002]
        );
        for bad in ["\"0x3e9\"", "\"xyz\"", "-1", "1.5", "\"\"", "1e3"] {
            rejected(
                &format!("etcd:\n  members:\n    - {{ id: {bad} }}\n"),
                4,
                "etcd.members[0].id",
                MEMBER_ID_FORMS,
            );
        }
        rejected(
            "etcd:\n  members:\n    - { id: 18446744073709551616 }\n",
            4,
            "etcd.members[0].id",
            "member id is out of range: a member id is at most 18446744073709551615 (64 bits)",
        );
        rejected(
            "etcd:\n  members:\n    - { id: \"1ffffffffffffffff\" }\n",
            4,
            "etcd.members[0].id",
            "member id `1ffffffffffffffff` is out of range",
        );
    }

    #[test]
    fn two_members_with_one_name_are_an_error_naming_both_ids() {
        let e = load("etcd:\n  members:\n    - { id: 1001, name: m1 }\n    - { id: \"3ea\", name: m1 }\n    - { id: 1003 }\n    - { id: 1004 }\n")
            .unwrap_err();
        assert!(
            e.contains("s.yaml:5:20: error: etcd.members[1].name: member name `m1` is used by two members, ids 3e9 (etcd.members[0]) and 3ea"),
            "{e}"
        );
        // Members that never started have no name: not a duplicate.
        assert!(load("etcd:\n  members:\n    - { id: 1003 }\n    - { id: 1004 }\n").is_ok());
    }

    #[test]
    fn syntax_errors_name_the_position_once() {
        let (t, _) = Topology::from_yaml("t.yaml", LAB3).unwrap();
        let e = ClusterState::from_yaml("s.yaml", "", &t)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "s.yaml:1:1: unexpected end of input");
        let e = ClusterState::from_yaml(
            "s.yaml",
            "observedAt: 2026-03-04T02:00:00Z\nprobeErrors: { bogus: x }\n",
            &t,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("s.yaml:2:16: probeErrors: unknown variant `bogus`"),
            "{e}"
        );
    }

    #[test]
    fn an_unreadable_file_names_its_cause_once() {
        let (t, _) = Topology::from_yaml("t.yaml", LAB3).unwrap();
        let e = ClusterState::load(Path::new("/nonexistent/s.yaml"), &t).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.starts_with("/nonexistent/s.yaml: cannot read: "),
            "{shown}"
        );
        // The cause is in the message, so it is not a source() too: a chain
        // of causes prints it once.
        assert!(std::error::Error::source(&e).is_none());
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
