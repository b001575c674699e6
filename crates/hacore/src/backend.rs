//! What a plan asks the outside world to do, and the traits backends
//! implement to do it.
//!
//! Operations are plain data ([`HvOp`], [`LbOp`], [`CpOp`]) so that a plan can
//! be printed, reviewed, stored and simulated. A backend implements, for each
//! operation of its system, `is_done` (is the effect already in place? used
//! before acting, so a resumed plan never doubles a half-done step, and after
//! acting, as the verification) and `apply`. Rollbacks are operations too.
//!
//! The traits are synchronous: the core has no async runtime. Live backends
//! wrap their async clients and give every call a deadline.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::state::ClusterState;
use crate::topology::{CheckKind, Topology};
use crate::units::Dur;

/// How long `RenewApiserverCert` waits for the apiserver to present the
/// new certificate (it reloads its serving pair from disk) before it falls
/// back to restarting the static pod.
pub const APISERVER_CERT_RELOAD_BOUND: Dur = Dur::secs(60);

/// A hypervisor operation (Proxmox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum HvOp {
    /// Snapshot a VM (before touching it).
    SnapshotVm {
        /// Host.
        host: String,
        /// VM id.
        vmid: u32,
        /// Snapshot name.
        name: String,
    },
    /// Create a VM by cloning a template, sized and addressed (cloud-init).
    CloneVm {
        /// Host.
        host: String,
        /// Template VM id.
        template: u32,
        /// New VM id.
        vmid: u32,
        /// VM and node name.
        name: String,
        /// vCPUs.
        cpus: u32,
        /// Memory, GiB.
        #[serde(rename = "memoryGiB", alias = "memory_gib")]
        memory_gib: u32,
        /// Disk, GiB.
        #[serde(rename = "diskGiB", alias = "disk_gib")]
        disk_gib: u32,
        /// Address with prefix, e.g. `10.0.20.105/24`.
        address: String,
        /// Gateway.
        gateway: Option<IpAddr>,
        /// Cloud-init user (`ciuser`); none: the template's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ciuser: Option<String>,
        /// Cloud-init SSH public keys (`sshkeys`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sshkeys: Vec<String>,
        /// DNS servers (`nameserver`); none: the template's.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nameservers: Vec<IpAddr>,
        /// Storage of the full clone; none: the template's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        storage: Option<String>,
    },
    /// Start a VM and wait until it runs.
    StartVm {
        /// Host.
        host: String,
        /// VM id.
        vmid: u32,
    },
    /// Stop and delete a VM (rollback of a clone). Only a VM this tool
    /// created is deleted: a backend checks its mark and that it is `name`,
    /// and refuses otherwise, naming what it found.
    DeleteVm {
        /// Host.
        host: String,
        /// VM id.
        vmid: u32,
        /// The VM's (and node's) name; a plan written without it names no
        /// VM, and a backend refuses to delete by id alone.
        #[serde(default)]
        name: String,
    },
    /// Keep VMs on different hosts (Proxmox VE 9 HA): each of `vmids` an
    /// HA resource (`vm:ID`), and the HA rule `rule` a negative
    /// resource-affinity rule listing exactly them. Idempotent; a rule of
    /// that name that this tool did not write (its comment lacks the mark)
    /// is refused, naming what was found, and left alone.
    HaAntiAffinity {
        /// The HA rule's id.
        rule: String,
        /// The VMs kept apart (the masters).
        vmids: Vec<u32>,
    },
}

/// A load balancer operation (HAProxy / pfSense HAProxy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum LbOp {
    /// Put the VIP on the load balancer's host before a frontend binds it
    /// (pfSense: an IP alias virtual IP on `interface`; HAProxy cannot bind
    /// an address the box does not have, while `haproxy -c` still passes).
    CreateVip {
        /// The VIP.
        address: IpAddr,
        /// Prefix length of the network it is on.
        prefix: u8,
        /// The interface it goes on (pfSense: `lan`, `opt1`, ...).
        interface: String,
        /// Description recorded with it.
        description: String,
    },
    /// Remove the VIP (rollback of `CreateVip`).
    DeleteVip {
        /// The VIP.
        address: IpAddr,
    },
    /// A DNS record for the API name (pfSense: an unbound host override),
    /// so clients and certificates can use the name.
    CreateDnsRecord {
        /// Fully qualified name, e.g. `k8s-api.example.lan`.
        name: String,
        /// The address it answers.
        address: IpAddr,
    },
    /// Remove the DNS record (rollback of `CreateDnsRecord`).
    DeleteDnsRecord {
        /// Fully qualified name.
        name: String,
    },
    /// Create the backend pool with its health check and first servers.
    CreatePool {
        /// Pool name.
        pool: String,
        /// Check type.
        check: CheckKind,
        /// Check path.
        path: Option<String>,
        /// Check interval.
        interval: Dur,
        /// Fall.
        fall: u32,
        /// Rise.
        rise: u32,
        /// Initial servers (name, address).
        servers: Vec<(String, SocketAddr)>,
    },
    /// Create the TCP frontend on the VIP pointing at the pool.
    CreateFrontend {
        /// VIP:port.
        frontend: SocketAddr,
        /// Pool name.
        pool: String,
    },
    /// Add one server to the pool, leaving the others alone.
    AddServer {
        /// Pool name.
        pool: String,
        /// Server name.
        server: String,
        /// Server address.
        address: SocketAddr,
    },
    /// Remove one server from the pool.
    RemoveServer {
        /// Pool name.
        pool: String,
        /// Server name.
        server: String,
    },
    /// Delete the frontend.
    DeleteFrontend {
        /// VIP:port.
        frontend: SocketAddr,
    },
    /// Delete the pool.
    DeletePool {
        /// Pool name.
        pool: String,
    },
    /// Check: every listed server is UP.
    VerifyServersUp {
        /// Pool name.
        pool: String,
        /// Servers.
        servers: Vec<String>,
    },

    // Disruptions (issue 14).
    /// Set a pool server's administrative state (HAProxy runtime API
    /// `set server POOL/SERVER state ready|drain|maint`).
    SetServerState {
        /// Pool name.
        pool: String,
        /// Server name.
        server: String,
        /// The state wanted.
        state: ServerState,
    },
    /// Wait until the server has no current sessions, or `bound` passes
    /// (then go on, saying so). Not a check: `is_done` answers at once
    /// (no sessions, or the bound already passed), `apply` waits.
    WaitServerIdle {
        /// Pool name.
        pool: String,
        /// Server name.
        server: String,
        /// How long to wait at most.
        bound: Dur,
    },
}

/// A pool server's administrative state (HAProxy `set server ... state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerState {
    /// Takes traffic when its checks pass.
    Ready,
    /// No new connections; existing ones finish.
    Drain,
    /// Out of the pool; checks stop.
    Maint,
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerState::Ready => "ready",
            ServerState::Drain => "drain",
            ServerState::Maint => "maint",
        })
    }
}

/// A control-plane operation (kubeadm over SSH, the Kubernetes API, etcd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum CpOp {
    /// Check: no host answers on these addresses.
    AddressesFree {
        /// Addresses.
        addresses: Vec<IpAddr>,
    },
    /// Take an etcd snapshot on a master (`etcdctl snapshot save`).
    EtcdSnapshot {
        /// Master.
        node: String,
    },
    /// Set `controlPlaneEndpoint` and `apiServer.certSANs` in the
    /// `kube-system/kubeadm-config` ClusterConfiguration and store it back with
    /// `kubeadm init phase upload-config kubeadm --config F`.
    SetControlPlaneEndpoint {
        /// `host:port`.
        endpoint: String,
        /// Extra SANs.
        sans: Vec<String>,
    },
    /// Put back the previous `controlPlaneEndpoint` (rollback).
    RestoreClusterConfiguration,
    /// Move `apiserver.{crt,key}` aside, `kubeadm init phase certs apiserver`
    /// (certificate and key consistent at every instant: both written aside,
    /// then renamed into place), check the SANs with openssl, then wait until
    /// a TLS handshake with the apiserver presents them: it reloads its
    /// serving certificate from disk. Only if it has not within
    /// [`APISERVER_CERT_RELOAD_BOUND`], restart the apiserver static pod
    /// (the fallback: an outage on a single master).
    RenewApiserverCert {
        /// Master.
        node: String,
        /// SANs the new certificate must carry.
        sans: Vec<String>,
    },
    /// Put the previous apiserver certificate pair back (rollback).
    RestoreApiserverCert {
        /// Master.
        node: String,
    },
    /// `kubeadm init phase upload-certs --upload-certs`: a fresh certificate
    /// key; the `kubeadm-certs` Secret expires after 2 hours.
    UploadCerts,
    /// `kubeadm join ENDPOINT --control-plane --certificate-key K` on the node:
    /// a learner first (with learner mode), promoted by kubeadm once caught up.
    JoinControlPlane {
        /// New master.
        node: String,
        /// Its address.
        address: IpAddr,
    },
    /// Check: the node's etcd member is a voter, caught up.
    MemberPromoted {
        /// Master.
        node: String,
    },
    /// Ensure `node-role.kubernetes.io/control-plane:NoSchedule` is on the node.
    EnsureControlPlaneTaint {
        /// Master.
        node: String,
    },
    /// Undo a join: drain, `kubeadm reset -f`, `etcdctl member remove` by
    /// id, `kubectl delete node`.
    ResetNode {
        /// Master.
        node: String,
    },
    /// Point `/etc/kubernetes/kubelet.conf` at `server` and restart kubelet.
    SetKubeletServer {
        /// Node.
        node: String,
        /// `https://host:port`.
        server: String,
    },
    /// Point a master's `admin.conf` and `super-admin.conf` at `server`.
    SetAdminConf {
        /// Master.
        node: String,
        /// `https://host:port`.
        server: String,
    },
    /// Point ConfigMap `kube-system/kube-proxy` key `kubeconfig.conf` at
    /// `server` and restart the kube-proxy pods.
    SetKubeProxyServer {
        /// `https://host:port`.
        server: String,
    },
    /// Point ConfigMap `kube-public/cluster-info` key `kubeconfig` at `server`.
    SetClusterInfoServer {
        /// `https://host:port`.
        server: String,
    },
    /// An external kubeconfig the tool cannot reach: a person updates it and
    /// confirms.
    ExternalKubeconfig {
        /// Who uses it.
        name: String,
        /// Where it is.
        location: String,
        /// `https://host:port`.
        server: String,
    },
    /// Check: every listed master is Ready and labelled control-plane.
    VerifyNodes {
        /// Masters.
        nodes: Vec<String>,
    },
    /// Check: `etcdctl endpoint health` through every listed member.
    VerifyEtcd {
        /// Members (node names).
        members: Vec<String>,
    },
    /// Check: each master's apiserver certificate carries the SANs.
    VerifySans {
        /// Masters.
        nodes: Vec<String>,
        /// SANs.
        sans: Vec<String>,
    },
    /// Check: kubelet.conf, admin.conf, kube-proxy and cluster-info all name `server`.
    VerifyKubeconfigs {
        /// Nodes.
        nodes: Vec<String>,
        /// `https://host:port`.
        server: String,
    },
    /// Check: kubeadm, kubelet and containerd on `node` have the same
    /// versions as on master `like`.
    CheckVersions {
        /// The new master.
        node: String,
        /// The existing master it must match.
        like: String,
    },
    /// Copy the apiserver's hand-added flags (those in `from`'s
    /// `kube-apiserver.yaml` that the new master's lacks or differs in,
    /// except per-node ones like `--advertise-address`) and the files they
    /// name (OIDC CA, audit policy, encryption config; the audit log
    /// directory created) from master `from` to `node`; then compare: both
    /// serve the same API.
    SyncApiserverExtras {
        /// The existing master copied from.
        from: String,
        /// The new master.
        node: String,
    },
    /// Check: `node`'s apiserver answers `/readyz` on its own address,
    /// verified with the cluster CA.
    ProbeApiserver {
        /// Master.
        node: String,
        /// Its own address (not the VIP).
        address: IpAddr,
        /// The apiserver's port.
        port: u16,
    },
    /// Check, before any client is moved to the VIP: an HTTPS `GET
    /// /readyz` through the VIP answers 200, verified with the cluster CA,
    /// once by the API's DNS name (pinned to the VIP, so the name must be a
    /// SAN) and once by the VIP's address (so the address must be a SAN).
    /// Within the backend's check deadline.
    ProbeVip {
        /// The API's DNS name; none: only the address is checked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The VIP.
        address: IpAddr,
        /// The port behind the VIP.
        port: u16,
    },
    /// A planned reboot of `node` with traffic through the VIP, as `hacli
    /// drill --planned` does it: the step fails unless every request
    /// succeeded. Run by the drill (`haops::drill`), not by a control-plane
    /// backend; the in-memory double reboots the node.
    DrillPlannedReboot {
        /// The master rebooted.
        node: String,
    },
    /// Check: etcd, kube-apiserver, kube-controller-manager and
    /// kube-scheduler run on `node`.
    VerifyStaticPods {
        /// Master.
        node: String,
    },
    /// Check: a freshly started VM has not joined the cluster by itself
    /// (cloud-init in the template running `kubeadm join`): no Node object
    /// of that name, no `/etc/kubernetes/kubelet.conf`.
    VerifyNotJoined {
        /// The new VM's node name.
        node: String,
    },
    /// Manual: Jobs and CronJobs pinned to master `node` by hostname
    /// (nodeSelector `kubernetes.io/hostname` or `nodeName`) are listed; a
    /// person re-pins them and confirms.
    PinnedWorkloads {
        /// The master they are pinned to.
        node: String,
    },

    // Disruptions (issue 14).
    /// If `from` leads etcd, move leadership to the best healthy, caught-up
    /// voter (etcd `MoveLeader`); done when `from` does not lead.
    MoveLeader {
        /// The node that must not lead.
        from: String,
    },
    /// Mark the node unschedulable.
    Cordon {
        /// Node.
        node: String,
    },
    /// Mark the node schedulable again.
    Uncordon {
        /// Node.
        node: String,
    },
    /// Evict the node's pods through the Eviction API, honouring
    /// PodDisruptionBudgets; gives up naming the pods that block.
    Drain {
        /// Node.
        node: String,
    },
    /// Reboot the node (over SSH, or through the hypervisor) and wait until
    /// it is back.
    Reboot {
        /// Node.
        node: String,
    },
    /// `kubeadm upgrade apply VERSION -y` on the first master (`first`),
    /// `kubeadm upgrade node` on the others.
    Upgrade {
        /// Node.
        node: String,
        /// Target version, e.g. `v1.33.2`.
        version: String,
        /// Whether this is the first master upgraded.
        first: bool,
    },
    /// Run a person's command on the node over SSH (arguments quoted).
    RunCommand {
        /// Node.
        node: String,
        /// The command and its arguments.
        command: Vec<String>,
    },
    /// Wait until the node is Ready, its etcd member (for a master) is
    /// healthy and caught up, and its apiserver answers `/readyz` directly.
    /// `is_done` answers at once; `apply` waits, within its deadline.
    WaitHealthy {
        /// Node.
        node: String,
    },
    /// `etcdctl member remove` by the member's id (replacing or removing a
    /// master); done when no member of that node is listed.
    RemoveMember {
        /// Master.
        node: String,
    },
    /// Delete the Node object.
    DeleteNode {
        /// Node.
        node: String,
    },
}

/// Any operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "system", content = "do")]
pub enum Op {
    /// Hypervisor.
    Hypervisor(HvOp),
    /// Load balancer.
    LoadBalancer(LbOp),
    /// Control plane.
    ControlPlane(CpOp),
}

impl Op {
    /// Whether the operation only checks (no side effect).
    pub fn is_check(&self) -> bool {
        matches!(
            self,
            Op::LoadBalancer(LbOp::VerifyServersUp { .. })
                | Op::ControlPlane(
                    CpOp::AddressesFree { .. }
                        | CpOp::MemberPromoted { .. }
                        | CpOp::VerifyNodes { .. }
                        | CpOp::VerifyEtcd { .. }
                        | CpOp::VerifySans { .. }
                        | CpOp::VerifyKubeconfigs { .. }
                        | CpOp::CheckVersions { .. }
                        | CpOp::ProbeApiserver { .. }
                        | CpOp::ProbeVip { .. }
                        | CpOp::VerifyStaticPods { .. }
                        | CpOp::VerifyNotJoined { .. }
                )
        )
    }

    /// Whether it takes something down: a node (reboot, upgrade, a
    /// person's command, `kubeadm reset`), an etcd member, or a VM's power.
    /// A run resumed from its journal gates these again.
    pub fn takes_down(&self) -> bool {
        matches!(
            self,
            Op::Hypervisor(HvOp::DeleteVm { .. })
                | Op::ControlPlane(
                    CpOp::Reboot { .. }
                        | CpOp::DrillPlannedReboot { .. }
                        | CpOp::Upgrade { .. }
                        | CpOp::RunCommand { .. }
                        | CpOp::ResetNode { .. }
                        | CpOp::RemoveMember { .. }
                )
        )
    }

    /// Whether a person must do it and confirm.
    pub fn is_manual(&self) -> bool {
        matches!(
            self,
            Op::ControlPlane(CpOp::ExternalKubeconfig { .. } | CpOp::PinnedWorkloads { .. })
        )
    }

    /// Whether it needs a certificate key from `UploadCerts` that has not expired.
    pub fn needs_certificate_key(&self) -> bool {
        matches!(self, Op::ControlPlane(CpOp::JoinControlPlane { .. }))
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = serde_json::to_value(self).map_err(|_| fmt::Error)?;
        let sys = json["system"].as_str().unwrap_or("?");
        let body = &json["do"];
        let op = body["op"].as_str().unwrap_or("?");
        let args: Vec<String> = body
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != "op")
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        write!(f, "{sys}:{op}")?;
        if !args.is_empty() {
            write!(f, " {}", args.join(" "))?;
        }
        Ok(())
    }
}

/// Why a backend call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The call did not finish within its deadline.
    #[error("{what}: no answer within {deadline}")]
    Timeout {
        /// What was called.
        what: String,
        /// The deadline.
        deadline: Dur,
    },
    /// The system refused or failed the operation.
    #[error("{what}: {message}")]
    Failed {
        /// What was called.
        what: String,
        /// What it said.
        message: String,
    },
    /// This backend does not support the operation.
    #[error("{0}: not supported by this backend")]
    Unsupported(String),
}

/// The hypervisor (Proxmox VE).
pub trait Hypervisor {
    /// Whether the effect of `op` is in place.
    fn is_done(&mut self, op: &HvOp) -> Result<bool, BackendError>;
    /// Carry `op` out, waiting for it to finish.
    fn apply(&mut self, op: &HvOp) -> Result<(), BackendError>;
}

/// The apiserver load balancer.
pub trait LoadBalancer {
    /// Whether the effect of `op` is in place.
    fn is_done(&mut self, op: &LbOp) -> Result<bool, BackendError>;
    /// Carry `op` out.
    fn apply(&mut self, op: &LbOp) -> Result<(), BackendError>;
}

/// The kubeadm control plane.
pub trait ControlPlane {
    /// Whether the effect of `op` is in place.
    fn is_done(&mut self, op: &CpOp) -> Result<bool, BackendError>;
    /// Carry `op` out. `UploadCerts` returns when the key was issued.
    fn apply(&mut self, op: &CpOp) -> Result<(), BackendError>;
    /// `node`'s boot id now (new at every boot), which the executor records
    /// in the journal before a reboot so that a resumed run knows whether
    /// the reboot happened. None: this backend has no boot ids.
    fn boot_id(&mut self, node: &str) -> Result<Option<String>, BackendError> {
        let _ = node;
        Ok(None)
    }
    /// Wait, within the reboot's deadline, until `node` reports a boot id
    /// other than `before`: a reboot an earlier run asked for, which is
    /// not asked again.
    fn await_reboot(&mut self, node: &str, before: &str) -> Result<(), BackendError> {
        let _ = before;
        Err(BackendError::Unsupported(format!(
            "waiting for {node}'s reboot asked by an earlier run"
        )))
    }
}

/// Observes the cluster for step preconditions.
pub trait Observer {
    /// A fresh observation. Probe failures go into `probeErrors`.
    fn observe(&mut self, topology: &Topology) -> ClusterState;

    /// Forget what earlier observations kept to judge change over a window
    /// (etcd's metrics), so the next observation judges a window of its
    /// own. A roll calls it between nodes: what it did to the node before
    /// (moving etcd's leader off it, restarting its member) is not the
    /// cluster's churn. Nothing is kept by default.
    fn start_new_window(&mut self) {}
}

/// The time, from outside (the core never reads the clock itself).
pub trait Clock {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The set of backends an executor drives.
pub struct Backends<'a> {
    /// Hypervisor.
    pub hypervisor: &'a mut dyn Hypervisor,
    /// Load balancer.
    pub load_balancer: &'a mut dyn LoadBalancer,
    /// Control plane.
    pub control_plane: &'a mut dyn ControlPlane,
    /// Observer.
    pub observer: &'a mut dyn Observer,
    /// Clock.
    pub clock: &'a dyn Clock,
}

impl Backends<'_> {
    /// Route `is_done`.
    pub fn is_done(&mut self, op: &Op) -> Result<bool, BackendError> {
        match op {
            Op::Hypervisor(o) => self.hypervisor.is_done(o),
            Op::LoadBalancer(o) => self.load_balancer.is_done(o),
            Op::ControlPlane(o) => self.control_plane.is_done(o),
        }
    }

    /// Route `apply`.
    pub fn apply(&mut self, op: &Op) -> Result<(), BackendError> {
        match op {
            Op::Hypervisor(o) => self.hypervisor.apply(o),
            Op::LoadBalancer(o) => self.load_balancer.apply(o),
            Op::ControlPlane(o) => self.control_plane.apply(o),
        }
    }
}

/// The disruption lock, as the executor's caller holds it.
pub trait Lock {
    /// Take (or renew) the lock for `identity`.
    fn acquire(&mut self, identity: &str) -> Result<LockAnswer, BackendError>;
    /// Release it if `identity` holds it.
    fn release(&mut self, identity: &str) -> Result<(), BackendError>;
    /// While the run acts, right before each step acts: whether
    /// `identity` still holds the lock (renewed in time, no other holder).
    /// `Err(why)` stops the run there and restores what the phase changed.
    /// By default the lock is taken again (a renewal) and must be ours.
    fn held(&mut self, identity: &str) -> Result<(), String> {
        match self.acquire(identity) {
            Ok(LockAnswer::Acquired) => Ok(()),
            Ok(LockAnswer::HeldBy(h)) => Err(format!("the disruption lock is now held by {h}")),
            Err(e) => Err(format!("the disruption lock could not be renewed: {e}")),
        }
    }
    /// After a rollback that failed: keep the lock for `identity`, with
    /// `reason` where people see it (`hacli lock show`), instead of freeing
    /// it for the next disruption; it stays held until a person releases it.
    fn keep(&mut self, identity: &str, reason: &str) -> Result<(), BackendError>;
}

/// The answer to [`Lock::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAnswer {
    /// We hold it.
    Acquired,
    /// Someone else does.
    HeldBy(String),
}
