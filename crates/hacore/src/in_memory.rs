//! `InMemoryCluster`: an in-memory TEST DOUBLE of a kubeadm cluster, its
//! Proxmox host and its HAProxy, for executor tests and `hacli apply
//! --backend simulated` rehearsals. It is not a cluster: it models just the
//! effects a migration plan has (VMs, etcd members, certificates, the LB pool,
//! kubeconfig servers) and answers observations from that model.
//!
//! It can inject a crash (a panic, before or after the effect of the N-th
//! `apply`) and a failure (an error from a named operation), and advances its
//! own clock by a nominal duration per operation so that long plans outlive
//! a certificate key.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use jiff::{SignedDuration, Timestamp};

use crate::backend::{
    APISERVER_CERT_RELOAD_BOUND, BackendError, Clock, ControlPlane, CpOp, HvOp, Hypervisor, LbOp,
    LoadBalancer, Observer, ServerState,
};
use crate::state::{
    ApiserverState, BackendStatus, ClusterState, EtcdMember, EtcdState, LbBackend, LbState,
    LockState, MemberId, NodeState,
};
use crate::topology::Topology;

/// A simulated VM.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimVm {
    /// Host.
    pub host: String,
    /// Name.
    pub name: String,
    /// Running.
    pub running: bool,
    /// Snapshot names.
    pub snapshots: Vec<String>,
    /// Whether its cloud-init joins it to the cluster as a worker when it
    /// starts (a template that runs `kubeadm join` by itself).
    #[serde(default)]
    pub auto_joins: bool,
}

/// The versions of the Kubernetes packages installed on a node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimVersions {
    /// `kubeadm version -o short`.
    pub kubeadm: String,
    /// `kubelet --version`.
    pub kubelet: String,
    /// `containerd --version`.
    pub containerd: String,
}

impl Default for SimVersions {
    /// The versions every node of a fresh simulated cluster, and its template, have.
    fn default() -> Self {
        SimVersions {
            kubeadm: "v1.31.2".into(),
            kubelet: "v1.31.2".into(),
            containerd: "1.7.22".into(),
        }
    }
}

/// The static pods of a kubeadm control-plane node.
pub const STATIC_PODS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

fn all_static_pods() -> BTreeSet<String> {
    STATIC_PODS.iter().map(|p| p.to_string()).collect()
}

/// Where to crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Crash {
    /// The N-th `apply` call (1-based).
    pub at_apply: usize,
    /// Crash after the effect took place (inside the step) rather than before.
    pub after_effect: bool,
}

/// The simulated cluster's state. Fields are public so tests can compare
/// and inspect them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InMemoryCluster {
    /// Simulated time.
    pub now: Timestamp,
    /// The target topology (node addresses, workers).
    pub topology: Topology,
    /// VMs by id.
    pub vms: BTreeMap<u32, SimVm>,
    /// etcd members by node name: `true` when a learner.
    pub etcd: BTreeMap<String, bool>,
    /// etcd snapshots taken.
    pub etcd_snapshots: usize,
    /// `controlPlaneEndpoint` in kubeadm-config.
    pub cluster_endpoint: String,
    /// `apiServer.certSANs` in kubeadm-config.
    pub cluster_sans: Vec<String>,
    /// The endpoint before any change (for the rollback).
    pub original_endpoint: String,
    /// SANs of each master's apiserver certificate.
    pub apiserver_sans: BTreeMap<String, Vec<String>>,
    /// The previous certificate's SANs, kept aside.
    pub old_apiserver_sans: BTreeMap<String, Vec<String>>,
    /// LB pool: server -> address.
    pub pool: Option<BTreeMap<String, SocketAddr>>,
    /// LB frontend.
    pub frontend: Option<SocketAddr>,
    /// The VIP as an address of the load balancer's host.
    #[serde(default)]
    pub vip: Option<IpAddr>,
    /// DNS records the load balancer's resolver answers: name -> address.
    #[serde(default)]
    pub dns: BTreeMap<String, IpAddr>,
    /// Nodes registered with the API.
    pub joined: BTreeSet<String>,
    /// Masters carrying the control-plane taint.
    pub tainted: BTreeSet<String>,
    /// kubelet.conf server per node.
    pub kubelet_server: BTreeMap<String, String>,
    /// admin.conf server per master.
    pub admin_conf: BTreeMap<String, String>,
    /// kube-proxy ConfigMap server.
    pub kube_proxy: String,
    /// cluster-info ConfigMap server.
    pub cluster_info: String,
    /// When the current certificate key was issued.
    pub key_issued: Option<Timestamp>,
    /// Addresses that answer on the network.
    pub addresses_in_use: BTreeSet<IpAddr>,
    /// Every effect applied, in order (for comparing runs).
    pub effects: Vec<String>,
    /// Whether joins go through learners.
    pub learner_joins: bool,
    /// Simulated duration of a join.
    pub join_duration: SignedDuration,
    /// Crash injection.
    pub crash: Option<Crash>,
    /// Failure injection: operation tag (e.g. `join-control-plane`) -> error.
    pub fail: BTreeMap<String, String>,
    /// `apply` calls so far.
    pub applies: usize,
    /// Whether the kill-switch ConfigMap exists.
    pub kill_switch: bool,
    /// Package versions per node.
    #[serde(default)]
    pub versions: BTreeMap<String, SimVersions>,
    /// The versions a VM cloned from the template comes with.
    #[serde(default)]
    pub template_versions: SimVersions,
    /// Whether the template's cloud-init joins a started clone as a worker
    /// by itself.
    #[serde(default)]
    pub template_auto_joins: bool,
    /// The apiserver's hand-added flags per master (flag -> value, the files
    /// they name included as `file:PATH` entries); per-node flags such as
    /// `--advertise-address` are not modelled.
    #[serde(default)]
    pub apiserver_extras: BTreeMap<String, BTreeMap<String, String>>,
    /// Static pods running per node.
    #[serde(default)]
    pub static_pods: BTreeMap<String, BTreeSet<String>>,
    /// The static pods a join starts (all four unless a test breaks one).
    #[serde(default = "all_static_pods")]
    pub join_static_pods: BTreeSet<String>,
    /// Masters whose apiserver does not answer `/readyz` on their own address.
    #[serde(default)]
    pub apiserver_unready: BTreeSet<String>,
    /// Proxmox HA anti-affinity rules: rule -> the VMs it keeps apart.
    #[serde(default)]
    pub ha_rules: BTreeMap<String, BTreeSet<u32>>,
    /// Jobs and CronJobs pinned to a node by hostname, per node.
    #[serde(default)]
    pub pinned_workloads: BTreeMap<String, Vec<String>>,
    /// Whether an apiserver reloads its serving certificate from disk, as
    /// kube-apiserver does; off, `RenewApiserverCert` waits out
    /// [`APISERVER_CERT_RELOAD_BOUND`] and takes the fallback restart.
    #[serde(default = "yes")]
    pub apiserver_reloads_cert: bool,
    /// Apiserver restarts per master (the retrofit's fallback).
    #[serde(default)]
    pub apiserver_restarts: BTreeMap<String, u32>,
    // Disruptions (issue 14).
    /// Administrative state of pool servers (absent: ready).
    #[serde(default)]
    pub server_state: BTreeMap<String, ServerState>,
    /// Cordoned nodes.
    #[serde(default)]
    pub cordoned: BTreeSet<String>,
    /// Drained nodes (until uncordoned).
    #[serde(default)]
    pub drained: BTreeSet<String>,
    /// Nodes whose act (reboot, command) is done, until they are uncordoned.
    #[serde(default)]
    pub acted: BTreeSet<String>,
    /// The etcd leader; none: the first voter by name.
    #[serde(default)]
    pub leader: Option<String>,
    /// Leadership moves made: (from, to).
    #[serde(default)]
    pub leader_moves: Vec<(String, String)>,
    /// Reboots per node.
    #[serde(default)]
    pub reboots: BTreeMap<String, u32>,
    /// Kubernetes version per node, once upgraded.
    #[serde(default)]
    pub upgraded_to: BTreeMap<String, String>,
    /// Commands run: (node, command).
    #[serde(default)]
    pub commands: Vec<(String, Vec<String>)>,
    /// Who holds the disruption lock.
    #[serde(default)]
    pub lock_holder: Option<String>,
    /// Why the lock is kept after a failed rollback (until a person
    /// releases it).
    #[serde(default)]
    pub lock_kept: Option<String>,
    /// Nodes powered off from outside (not by a step): Node NotReady, etcd
    /// member unhealthy, apiserver not serving.
    #[serde(default)]
    pub down: BTreeSet<String>,
}

fn yes() -> bool {
    true
}

fn url(endpoint: &str) -> String {
    format!("https://{endpoint}")
}

fn tag<T: serde::Serialize>(op: &T) -> String {
    serde_json::to_value(op)
        .ok()
        .and_then(|v| v["op"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The VMs of `from`'s nodes, each running, by VM id.
fn vms_of(from: &Topology) -> BTreeMap<u32, SimVm> {
    let mut vms = BTreeMap::new();
    for n in &from.nodes {
        if let (Some(vmid), Some(host)) = (n.vmid, &n.hypervisor) {
            vms.insert(
                vmid,
                SimVm {
                    host: host.clone(),
                    name: n.name.clone(),
                    running: true,
                    snapshots: Vec::new(),
                    auto_joins: false,
                },
            );
        }
    }
    vms
}

/// The load balancer's pool in front of `from`'s masters.
fn pool_of(from: &Topology) -> BTreeMap<String, SocketAddr> {
    from.control_plane_nodes()
        .map(|n| {
            (
                n.name.clone(),
                SocketAddr::new(n.address, from.control_plane_endpoint.port),
            )
        })
        .collect()
}

impl InMemoryCluster {
    /// The cluster as `from` describes it, with `to` as the plan's target.
    pub fn new(from: &Topology, to: &Topology, now: Timestamp) -> Self {
        let ep = from.control_plane_endpoint.socket().to_string();
        let vms = vms_of(from);
        let masters: Vec<&str> = from
            .control_plane_nodes()
            .map(|n| n.name.as_str())
            .collect();
        InMemoryCluster {
            now,
            topology: to.clone(),
            vms,
            etcd: masters.iter().map(|m| (m.to_string(), false)).collect(),
            etcd_snapshots: 0,
            cluster_endpoint: ep.clone(),
            cluster_sans: Vec::new(),
            original_endpoint: ep.clone(),
            apiserver_sans: from
                .control_plane_nodes()
                .map(|n| (n.name.clone(), vec![n.address.to_string()]))
                .collect(),
            old_apiserver_sans: BTreeMap::new(),
            pool: from.has_load_balancer().then(|| pool_of(from)),
            frontend: from
                .has_load_balancer()
                .then(|| from.control_plane_endpoint.socket()),
            vip: from
                .has_load_balancer()
                .then_some(from.control_plane_endpoint.address),
            dns: BTreeMap::new(),
            joined: from.nodes.iter().map(|n| n.name.clone()).collect(),
            tainted: masters.iter().map(|m| m.to_string()).collect(),
            kubelet_server: from
                .nodes
                .iter()
                .map(|n| (n.name.clone(), url(&ep)))
                .collect(),
            admin_conf: masters.iter().map(|m| (m.to_string(), url(&ep))).collect(),
            kube_proxy: url(&ep),
            cluster_info: url(&ep),
            key_issued: None,
            addresses_in_use: from.nodes.iter().map(|n| n.address).collect(),
            effects: Vec::new(),
            learner_joins: to.etcd.learner_joins,
            join_duration: SignedDuration::from_secs(300),
            crash: None,
            fail: BTreeMap::new(),
            applies: 0,
            kill_switch: false,
            versions: from
                .nodes
                .iter()
                .map(|n| (n.name.clone(), SimVersions::default()))
                .collect(),
            template_versions: SimVersions::default(),
            template_auto_joins: false,
            apiserver_extras: masters
                .iter()
                .map(|m| (m.to_string(), BTreeMap::new()))
                .collect(),
            static_pods: masters
                .iter()
                .map(|m| (m.to_string(), all_static_pods()))
                .collect(),
            join_static_pods: all_static_pods(),
            apiserver_unready: BTreeSet::new(),
            ha_rules: BTreeMap::new(),
            pinned_workloads: BTreeMap::new(),
            apiserver_reloads_cert: true,
            apiserver_restarts: BTreeMap::new(),
            server_state: BTreeMap::new(),
            cordoned: BTreeSet::new(),
            drained: BTreeSet::new(),
            acted: BTreeSet::new(),
            leader: None,
            leader_moves: Vec::new(),
            reboots: BTreeMap::new(),
            upgraded_to: BTreeMap::new(),
            commands: Vec::new(),
            lock_holder: None,
            lock_kept: None,
            down: BTreeSet::new(),
        }
    }

    /// The etcd leader: the one set, while it is a voter, else the first
    /// voter by name.
    pub fn current_leader(&self) -> Option<String> {
        self.leader
            .clone()
            .filter(|l| self.etcd.get(l) == Some(&false))
            .or_else(|| self.etcd.iter().find(|(_, l)| !**l).map(|(n, _)| n.clone()))
    }

    fn admin_state(&self, server: &str) -> ServerState {
        self.server_state
            .get(server)
            .copied()
            .unwrap_or(ServerState::Ready)
    }

    /// An injected failure for operation `tag` on `node` (`fail` key
    /// `TAG/NODE`, e.g. `upgrade/m2`).
    fn fail_on(&self, tag: &str, node: &str) -> Result<(), BackendError> {
        match self.fail.get(&format!("{tag}/{node}")) {
            Some(msg) => Err(BackendError::Failed {
                what: format!("{tag} on {node}"),
                message: msg.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Share it between the backend handles an executor needs.
    pub fn shared(self) -> Rc<RefCell<InMemoryCluster>> {
        Rc::new(RefCell::new(self))
    }

    /// What a test compares between runs: the model without time, counters
    /// and injection settings.
    pub fn model(&self) -> InMemoryCluster {
        let mut m = self.clone();
        m.now = Timestamp::UNIX_EPOCH;
        m.key_issued = None;
        m.effects.clear();
        m.crash = None;
        m.fail.clear();
        m.applies = 0;
        m.etcd_snapshots = m.etcd_snapshots.min(1);
        m
    }

    fn serving(&self, node: &str) -> bool {
        self.joined.contains(node)
            && self.etcd.get(node) == Some(&false)
            && !self.down.contains(node)
    }

    /// `node`'s boot id: new at every reboot.
    pub fn boot_id(&self, node: &str) -> String {
        format!(
            "{node}-boot-{}",
            self.reboots.get(node).copied().unwrap_or(0)
        )
    }

    fn before_apply(&mut self, tag: &str) -> Result<(), BackendError> {
        self.applies += 1;
        if let Some(c) = self.crash
            && c.at_apply == self.applies
            && !c.after_effect
        {
            panic!(
                "injected crash before the effect of apply #{}",
                self.applies
            );
        }
        if let Some(msg) = self.fail.get(tag) {
            return Err(BackendError::Failed {
                what: tag.to_string(),
                message: msg.clone(),
            });
        }
        Ok(())
    }

    fn after_apply(&mut self, effect: String, secs: i64) {
        self.effects.push(effect);
        self.now += SignedDuration::from_secs(secs);
        if let Some(c) = self.crash
            && c.at_apply == self.applies
            && c.after_effect
        {
            panic!("injected crash after the effect of apply #{}", self.applies);
        }
    }

    fn node_address(&self, name: &str) -> Option<IpAddr> {
        self.topology.node(name).map(|n| n.address)
    }

    /// Whether `node` runs the apiserver's hand-added flags of `from`.
    fn has_extras_of(&self, from: &str, node: &str) -> bool {
        let want = self.apiserver_extras.get(from);
        let have = self.apiserver_extras.get(node);
        self.apiserver_sans.contains_key(node)
            && want.is_some_and(|w| {
                w.iter()
                    .all(|(k, v)| have.is_some_and(|h| h.get(k) == Some(v)))
            })
    }

    /// Whether `node`'s apiserver answers `/readyz` on `address` with a
    /// certificate for it.
    fn answers_directly(&self, node: &str, address: IpAddr) -> bool {
        self.serving(node)
            && self
                .static_pods
                .get(node)
                .is_some_and(|p| p.contains("kube-apiserver"))
            && !self.apiserver_unready.contains(node)
            && self
                .apiserver_sans
                .get(node)
                .is_some_and(|s| s.contains(&address.to_string()))
    }
}

impl InMemoryCluster {
    /// Whether `/readyz` answers through the VIP by its name and its
    /// address: the frontend is there, the name (if any) resolves to it,
    /// and a pooled apiserver serves with both as SANs.
    fn answers_through_vip(&self, name: Option<&str>, address: IpAddr, port: u16) -> bool {
        let wanted: Vec<String> = name
            .map(str::to_string)
            .into_iter()
            .chain([address.to_string()])
            .collect();
        self.frontend == Some(SocketAddr::new(address, port))
            && name.is_none_or(|n| self.dns.get(n) == Some(&address))
            && self.pool.as_ref().is_some_and(|pool| {
                pool.keys().any(|n| {
                    self.serving(n)
                        && self
                            .apiserver_sans
                            .get(n)
                            .is_some_and(|s| wanted.iter().all(|w| s.contains(w)))
                })
            })
    }
}

impl Hypervisor for InMemoryCluster {
    fn is_done(&mut self, op: &HvOp) -> Result<bool, BackendError> {
        Ok(match op {
            HvOp::SnapshotVm { vmid, name, .. } => self
                .vms
                .get(vmid)
                .is_some_and(|v| v.snapshots.contains(name)),
            HvOp::CloneVm { vmid, .. } => self.vms.contains_key(vmid),
            HvOp::StartVm { vmid, .. } => self.vms.get(vmid).is_some_and(|v| v.running),
            HvOp::DeleteVm { vmid, .. } => !self.vms.contains_key(vmid),
            HvOp::HaAntiAffinity { rule, vmids } => self
                .ha_rules
                .get(rule)
                .is_some_and(|r| r.iter().eq(vmids.iter().collect::<BTreeSet<_>>())),
        })
    }

    fn apply(&mut self, op: &HvOp) -> Result<(), BackendError> {
        self.before_apply(&tag(op))?;
        let (effect, secs) = match op {
            HvOp::SnapshotVm { vmid, name, .. } => {
                let vm = self.vms.get_mut(vmid).ok_or_else(|| BackendError::Failed {
                    what: "snapshot".into(),
                    message: format!("no VM {vmid}"),
                })?;
                vm.snapshots.push(name.clone());
                (format!("snapshot {vmid}"), 60)
            }
            HvOp::CloneVm {
                host,
                vmid,
                name,
                address,
                ..
            } => {
                if self.vms.contains_key(vmid) {
                    return Err(BackendError::Failed {
                        what: "clone".into(),
                        message: format!("VM {vmid} already exists"),
                    });
                }
                self.vms.insert(
                    *vmid,
                    SimVm {
                        host: host.clone(),
                        name: name.clone(),
                        running: false,
                        snapshots: Vec::new(),
                        auto_joins: self.template_auto_joins,
                    },
                );
                self.versions
                    .insert(name.clone(), self.template_versions.clone());
                if let Ok(a) = address.split('/').next().unwrap_or_default().parse() {
                    self.addresses_in_use.insert(a);
                }
                (format!("clone {vmid}"), 180)
            }
            HvOp::StartVm { vmid, .. } => {
                let vm = self.vms.get_mut(vmid).ok_or_else(|| BackendError::Failed {
                    what: "start".into(),
                    message: format!("no VM {vmid}"),
                })?;
                vm.running = true;
                let (auto_joins, name) = (vm.auto_joins, vm.name.clone());
                if auto_joins && !self.joined.contains(&name) {
                    // cloud-init ran `kubeadm join` as a worker.
                    self.joined.insert(name.clone());
                    self.kubelet_server
                        .insert(name, url(&self.cluster_endpoint));
                }
                (format!("start {vmid}"), 120)
            }
            HvOp::DeleteVm { vmid, name, .. } => {
                // Like the live backend: a VM that is another than the one
                // the plan names is not deleted.
                if let Some(vm) = self.vms.get(vmid)
                    && vm.name != *name
                {
                    return Err(BackendError::Failed {
                        what: "delete".into(),
                        message: format!("VM {vmid} is {}, not {name}: not deleting it", vm.name),
                    });
                }
                if let Some(vm) = self.vms.remove(vmid) {
                    // Its files go with its disk; a Node object it
                    // registered stays in the API.
                    self.kubelet_server.remove(&vm.name);
                    if let Some(a) = self.node_address(&vm.name) {
                        self.addresses_in_use.remove(&a);
                    }
                }
                for r in self.ha_rules.values_mut() {
                    r.remove(vmid);
                }
                (format!("delete {vmid}"), 30)
            }
            HvOp::HaAntiAffinity { rule, vmids } => {
                if let Some(missing) = vmids.iter().find(|v| !self.vms.contains_key(v)) {
                    return Err(BackendError::Failed {
                        what: "ha-anti-affinity".into(),
                        message: format!("no VM {missing} to make an HA resource"),
                    });
                }
                self.ha_rules
                    .insert(rule.clone(), vmids.iter().copied().collect());
                (format!("ha rule {rule}"), 2)
            }
        };
        self.after_apply(effect, secs);
        Ok(())
    }
}

impl LoadBalancer for InMemoryCluster {
    fn is_done(&mut self, op: &LbOp) -> Result<bool, BackendError> {
        Ok(match op {
            LbOp::CreatePool { .. } => self.pool.is_some(),
            LbOp::CreateFrontend { frontend, .. } => self.frontend == Some(*frontend),
            LbOp::AddServer { server, .. } => {
                self.pool.as_ref().is_some_and(|p| p.contains_key(server))
            }
            LbOp::RemoveServer { server, .. } => {
                !self.pool.as_ref().is_some_and(|p| p.contains_key(server))
            }
            LbOp::DeleteFrontend { .. } => self.frontend.is_none(),
            LbOp::DeletePool { .. } => self.pool.is_none(),
            LbOp::CreateVip { address, .. } => self.vip == Some(*address),
            LbOp::DeleteVip { address } => self.vip != Some(*address),
            LbOp::CreateDnsRecord { name, address } => self.dns.get(name) == Some(address),
            LbOp::DeleteDnsRecord { name } => !self.dns.contains_key(name),
            LbOp::VerifyServersUp { servers, .. } => {
                self.frontend.is_some()
                    && servers.iter().all(|s| {
                        self.pool.as_ref().is_some_and(|p| p.contains_key(s))
                            && self.serving(s)
                            && self.admin_state(s) == ServerState::Ready
                    })
            }
            LbOp::SetServerState { server, state, .. } => self.admin_state(server) == *state,
            // Simulated connections end at once.
            LbOp::WaitServerIdle { .. } => true,
        })
    }

    fn apply(&mut self, op: &LbOp) -> Result<(), BackendError> {
        self.before_apply(&tag(op))?;
        let effect = match op {
            LbOp::CreatePool { pool, servers, .. } => {
                self.pool = Some(servers.iter().cloned().collect());
                format!("create pool {pool}")
            }
            LbOp::CreateFrontend { frontend, .. } => {
                self.frontend = Some(*frontend);
                self.addresses_in_use.insert(frontend.ip());
                format!("create frontend {frontend}")
            }
            LbOp::AddServer {
                server, address, ..
            } => {
                self.pool
                    .get_or_insert_with(BTreeMap::new)
                    .insert(server.clone(), *address);
                format!("add server {server}")
            }
            LbOp::RemoveServer { server, .. } => {
                if let Some(p) = self.pool.as_mut() {
                    p.remove(server);
                }
                format!("remove server {server}")
            }
            LbOp::DeleteFrontend { frontend } => {
                self.frontend = None;
                self.addresses_in_use.remove(&frontend.ip());
                "delete frontend".to_string()
            }
            LbOp::DeletePool { .. } => {
                self.pool = None;
                "delete pool".to_string()
            }
            LbOp::VerifyServersUp { .. } => String::new(),
            LbOp::CreateVip { address, .. } => {
                self.vip = Some(*address);
                self.addresses_in_use.insert(*address);
                format!("create VIP {address}")
            }
            LbOp::DeleteVip { address } => {
                self.vip = None;
                if self.frontend.is_none_or(|f| f.ip() != *address) {
                    self.addresses_in_use.remove(address);
                }
                format!("delete VIP {address}")
            }
            LbOp::CreateDnsRecord { name, address } => {
                self.dns.insert(name.clone(), *address);
                format!("create DNS record {name}")
            }
            LbOp::DeleteDnsRecord { name } => {
                self.dns.remove(name);
                format!("delete DNS record {name}")
            }
            LbOp::SetServerState { server, state, .. } => {
                self.fail_on("set-server-state", server)?;
                if !self.pool.as_ref().is_some_and(|p| p.contains_key(server)) {
                    return Err(BackendError::Failed {
                        what: "set server state".into(),
                        message: format!("no server {server} in the pool"),
                    });
                }
                self.server_state.insert(server.clone(), *state);
                format!("server {server} {state}")
            }
            LbOp::WaitServerIdle { server, .. } => format!("{server} idle"),
        };
        self.after_apply(effect, 10);
        Ok(())
    }
}

impl ControlPlane for InMemoryCluster {
    fn is_done(&mut self, op: &CpOp) -> Result<bool, BackendError> {
        Ok(match op {
            CpOp::AddressesFree { addresses } => {
                addresses.iter().all(|a| !self.addresses_in_use.contains(a))
            }
            CpOp::EtcdSnapshot { .. } => self.etcd_snapshots > 0,
            CpOp::SetControlPlaneEndpoint { endpoint, sans } => {
                self.cluster_endpoint == *endpoint
                    && sans.iter().all(|s| self.cluster_sans.contains(s))
            }
            CpOp::RestoreClusterConfiguration => self.cluster_endpoint == self.original_endpoint,
            CpOp::RenewApiserverCert { node, sans } => self
                .apiserver_sans
                .get(node)
                .is_some_and(|have| sans.iter().all(|s| have.contains(s))),
            CpOp::RestoreApiserverCert { node } => !self.old_apiserver_sans.contains_key(node),
            CpOp::UploadCerts => self
                .key_issued
                .is_some_and(|at| self.now.duration_since(at) < SignedDuration::from_hours(2)),
            CpOp::JoinControlPlane { node, .. } => {
                self.joined.contains(node) && self.etcd.contains_key(node)
            }
            CpOp::MemberPromoted { node } => {
                // kubeadm promotes a caught-up learner by itself; the check
                // sees the promotion.
                if let Some(learner) = self.etcd.get_mut(node) {
                    *learner = false;
                }
                self.etcd.get(node) == Some(&false)
            }
            CpOp::EnsureControlPlaneTaint { node } => self.tainted.contains(node),
            CpOp::ResetNode { node } => {
                !self.joined.contains(node) && !self.etcd.contains_key(node)
            }
            CpOp::SetKubeletServer { node, server } => {
                self.kubelet_server.get(node) == Some(server)
            }
            CpOp::SetAdminConf { node, server } => self.admin_conf.get(node) == Some(server),
            CpOp::SetKubeProxyServer { server } => self.kube_proxy == *server,
            CpOp::SetClusterInfoServer { server } => self.cluster_info == *server,
            CpOp::ExternalKubeconfig { .. } => false,
            CpOp::VerifyNodes { nodes } => nodes
                .iter()
                .all(|n| self.joined.contains(n) && self.tainted.contains(n)),
            CpOp::VerifyEtcd { members } => {
                members.iter().all(|m| self.etcd.get(m) == Some(&false))
            }
            CpOp::VerifySans { nodes, sans } => nodes.iter().all(|n| {
                self.apiserver_sans
                    .get(n)
                    .is_some_and(|have| sans.iter().all(|s| have.contains(s)))
            }),
            CpOp::VerifyKubeconfigs { nodes, server } => {
                nodes
                    .iter()
                    .all(|n| self.kubelet_server.get(n) == Some(server))
                    && self.admin_conf.values().all(|s| s == server)
                    && self.kube_proxy == *server
                    && self.cluster_info == *server
            }
            CpOp::CheckVersions { node, like } => {
                self.versions.contains_key(node)
                    && self.versions.get(node) == self.versions.get(like)
            }
            CpOp::SyncApiserverExtras { from, node } => self.has_extras_of(from, node),
            CpOp::ProbeApiserver { node, address, .. } => self.answers_directly(node, *address),
            CpOp::ProbeVip {
                name,
                address,
                port,
            } => self.answers_through_vip(name.as_deref(), *address, *port),
            CpOp::DrillPlannedReboot { node } => self.acted.contains(node),
            CpOp::VerifyStaticPods { node } => self
                .static_pods
                .get(node)
                .is_some_and(|p| STATIC_PODS.iter().all(|s| p.contains(*s))),
            CpOp::VerifyNotJoined { node } => {
                !self.joined.contains(node) && !self.kubelet_server.contains_key(node)
            }
            CpOp::PinnedWorkloads { node } => {
                self.pinned_workloads.get(node).is_none_or(|w| w.is_empty())
            }
            CpOp::MoveLeader { from } => self.current_leader().as_deref() != Some(from.as_str()),
            CpOp::Cordon { node } => self.cordoned.contains(node),
            CpOp::Uncordon { node } => !self.cordoned.contains(node),
            CpOp::Drain { node } => self.drained.contains(node),
            CpOp::Reboot { node } | CpOp::RunCommand { node, .. } => self.acted.contains(node),
            CpOp::Upgrade { node, version, .. } => self.upgraded_to.get(node) == Some(version),
            CpOp::WaitHealthy { node } => {
                self.joined.contains(node)
                    && self
                        .topology
                        .node(node)
                        .is_none_or(|n| !n.is_control_plane() || self.serving(node))
            }
            CpOp::RemoveMember { node } => !self.etcd.contains_key(node),
            CpOp::DeleteNode { node } => !self.joined.contains(node),
        })
    }

    fn boot_id(&mut self, node: &str) -> Result<Option<String>, BackendError> {
        Ok(Some(InMemoryCluster::boot_id(self, node)))
    }

    /// A simulated reboot is instantaneous: one asked and not done never
    /// comes.
    fn await_reboot(&mut self, node: &str, before: &str) -> Result<(), BackendError> {
        if InMemoryCluster::boot_id(self, node) == before {
            return Err(BackendError::Failed {
                what: format!("waiting for {node}'s reboot"),
                message: format!("its boot id is still {before}"),
            });
        }
        Ok(())
    }

    fn apply(&mut self, op: &CpOp) -> Result<(), BackendError> {
        let t = tag(op);
        self.before_apply(&t)?;
        let (effect, secs) = match op {
            CpOp::EtcdSnapshot { .. }
            | CpOp::SetControlPlaneEndpoint { .. }
            | CpOp::RestoreClusterConfiguration
            | CpOp::RenewApiserverCert { .. }
            | CpOp::RestoreApiserverCert { .. }
            | CpOp::UploadCerts
            | CpOp::JoinControlPlane { .. }
            | CpOp::EnsureControlPlaneTaint { .. }
            | CpOp::ResetNode { .. }
            | CpOp::SetKubeletServer { .. }
            | CpOp::SetAdminConf { .. }
            | CpOp::SetKubeProxyServer { .. }
            | CpOp::SetClusterInfoServer { .. }
            | CpOp::SyncApiserverExtras { .. } => self.apply_migration(&t, op)?,
            CpOp::MoveLeader { .. }
            | CpOp::Cordon { .. }
            | CpOp::Uncordon { .. }
            | CpOp::Drain { .. }
            | CpOp::Reboot { .. }
            | CpOp::Upgrade { .. }
            | CpOp::RunCommand { .. }
            | CpOp::WaitHealthy { .. }
            | CpOp::RemoveMember { .. }
            | CpOp::DeleteNode { .. } => self.apply_disruption(&t, op)?,
            CpOp::DrillPlannedReboot { node } => {
                self.apply_disruption(&t, &CpOp::Reboot { node: node.clone() })?
            }
            CpOp::AddressesFree { .. }
            | CpOp::ProbeVip { .. }
            | CpOp::CheckVersions { .. }
            | CpOp::ProbeApiserver { .. }
            | CpOp::VerifyStaticPods { .. }
            | CpOp::VerifyNotJoined { .. }
            | CpOp::PinnedWorkloads { .. }
            | CpOp::MemberPromoted { .. }
            | CpOp::ExternalKubeconfig { .. }
            | CpOp::VerifyNodes { .. }
            | CpOp::VerifyEtcd { .. }
            | CpOp::VerifySans { .. }
            | CpOp::VerifyKubeconfigs { .. } => (String::new(), 1),
        };
        self.after_apply(effect, secs);
        Ok(())
    }
}

impl InMemoryCluster {
    /// A migration's step on the control plane: its effect, and how long
    /// it takes.
    fn apply_migration(&mut self, t: &str, op: &CpOp) -> Result<(String, i64), BackendError> {
        let fail = |m: String| BackendError::Failed {
            what: t.to_string(),
            message: m,
        };
        Ok(match op {
            CpOp::EtcdSnapshot { node } => {
                self.etcd_snapshots += 1;
                (format!("etcd snapshot on {node}"), 60)
            }
            CpOp::SetControlPlaneEndpoint { endpoint, sans } => {
                self.cluster_endpoint = endpoint.clone();
                self.cluster_sans = sans.clone();
                (format!("controlPlaneEndpoint {endpoint}"), 30)
            }
            CpOp::RestoreClusterConfiguration => {
                self.cluster_endpoint = self.original_endpoint.clone();
                self.cluster_sans.clear();
                ("restore kubeadm-config".into(), 30)
            }
            CpOp::RenewApiserverCert { node, sans } => {
                self.renew_apiserver_cert(node, sans, &fail)?
            }
            CpOp::RestoreApiserverCert { node } => {
                if let Some(old) = self.old_apiserver_sans.remove(node) {
                    self.apiserver_sans.insert(node.clone(), old);
                }
                (format!("restore apiserver cert on {node}"), 60)
            }
            CpOp::UploadCerts => {
                self.key_issued = Some(self.now);
                ("upload-certs".into(), 30)
            }
            CpOp::JoinControlPlane { node, .. } => self.join(node, &fail)?,
            CpOp::EnsureControlPlaneTaint { node } => {
                self.tainted.insert(node.clone());
                (format!("taint {node}"), 5)
            }
            CpOp::ResetNode { node } => {
                self.etcd.remove(node);
                self.joined.remove(node);
                self.tainted.remove(node);
                self.kubelet_server.remove(node);
                self.admin_conf.remove(node);
                self.apiserver_sans.remove(node);
                self.static_pods.remove(node);
                self.apiserver_extras.remove(node);
                (format!("reset {node}"), 60)
            }
            CpOp::SetKubeletServer { node, server } => {
                self.kubelet_server.insert(node.clone(), server.clone());
                (format!("kubelet {node} -> {server}"), 30)
            }
            CpOp::SetAdminConf { node, server } => {
                self.admin_conf.insert(node.clone(), server.clone());
                (format!("admin.conf {node} -> {server}"), 5)
            }
            CpOp::SetKubeProxyServer { server } => {
                self.kube_proxy = server.clone();
                (format!("kube-proxy -> {server}"), 30)
            }
            CpOp::SetClusterInfoServer { server } => {
                self.cluster_info = server.clone();
                (format!("cluster-info -> {server}"), 5)
            }
            CpOp::SyncApiserverExtras { from, node } => {
                if !self.apiserver_sans.contains_key(node) {
                    return Err(fail(format!("{node} runs no apiserver")));
                }
                let extras = self.apiserver_extras.get(from).cloned().unwrap_or_default();
                self.apiserver_extras
                    .entry(node.clone())
                    .or_default()
                    .extend(extras);
                (format!("apiserver extras {from} -> {node}"), 30)
            }
            _ => unreachable!("{t}: sorted by apply"),
        })
    }

    /// A disruption's step on the control plane: its effect, and how long
    /// it takes.
    /// `kubeadm join --control-plane`: needs a fresh certificate key, a
    /// reachable endpoint and a running VM.
    fn join(
        &mut self,
        node: &str,
        fail: &dyn Fn(String) -> BackendError,
    ) -> Result<(String, i64), BackendError> {
        let key_ok = self
            .key_issued
            .is_some_and(|at| self.now.duration_since(at) < SignedDuration::from_hours(2));
        if !key_ok {
            return Err(fail(
                "certificate key missing or expired (kubeadm-certs Secret deleted after 2h)".into(),
            ));
        }
        if self.frontend.is_none() && self.cluster_endpoint != self.original_endpoint {
            return Err(fail(format!(
                "cannot reach controlPlaneEndpoint {}",
                self.cluster_endpoint
            )));
        }
        let running = self.vms.values().any(|v| v.name == node && v.running);
        if !running {
            return Err(fail(format!("{node} is not running")));
        }
        self.etcd.insert(node.to_string(), self.learner_joins);
        self.joined.insert(node.to_string());
        let server = url(&self.cluster_endpoint);
        self.kubelet_server.insert(node.to_string(), server.clone());
        self.admin_conf.insert(node.to_string(), server);
        self.static_pods
            .insert(node.to_string(), self.join_static_pods.clone());
        self.apiserver_extras
            .insert(node.to_string(), BTreeMap::new());
        self.apiserver_sans.insert(node.to_string(), {
            let mut s = vec![
                self.node_address(node)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            ];
            s.extend(self.cluster_sans.iter().cloned());
            s
        });
        Ok((format!("join {node}"), self.join_duration.as_secs()))
    }

    /// The apiserver's certificate renewed with `sans` added: reloaded, or
    /// (when the apiserver does not reload it) restarted.
    fn renew_apiserver_cert(
        &mut self,
        node: &str,
        sans: &[String],
        fail: &dyn Fn(String) -> BackendError,
    ) -> Result<(String, i64), BackendError> {
        let old = self
            .apiserver_sans
            .get(node)
            .cloned()
            .ok_or_else(|| fail(format!("{node} has no apiserver")))?;
        let mut new = old.clone();
        new.extend(sans.iter().filter(|s| !old.contains(s)).cloned());
        self.old_apiserver_sans.insert(node.to_string(), old);
        self.apiserver_sans.insert(node.to_string(), new);
        Ok(if self.apiserver_reloads_cert {
            // The handshake presents the new SANs at once.
            (format!("renew apiserver cert on {node}, reloaded"), 30)
        } else {
            *self.apiserver_restarts.entry(node.to_string()).or_default() += 1;
            (
                format!(
                    "renew apiserver cert on {node}, not reloaded within {}: apiserver restarted",
                    APISERVER_CERT_RELOAD_BOUND
                ),
                30 + APISERVER_CERT_RELOAD_BOUND.0.as_secs() + 60,
            )
        })
    }

    fn apply_disruption(&mut self, t: &str, op: &CpOp) -> Result<(String, i64), BackendError> {
        let fail = |m: String| BackendError::Failed {
            what: t.to_string(),
            message: m,
        };
        Ok(match op {
            CpOp::MoveLeader { from } => {
                self.fail_on(t, from)?;
                let topology = self.topology.clone();
                let state = self.observe(&topology);
                match crate::leadership::leader_transfer(&topology, &state, from, self.now)
                    .map_err(fail)?
                {
                    crate::leadership::Leadership::Move { from, to, .. } => {
                        self.leader = Some(to.clone());
                        self.leader_moves.push((from.clone(), to.clone()));
                        (format!("move leader {from} -> {to}"), 2)
                    }
                    crate::leadership::Leadership::NotLeader { .. } => (String::new(), 1),
                }
            }
            CpOp::Cordon { node } => {
                self.fail_on(t, node)?;
                self.cordoned.insert(node.clone());
                (format!("cordon {node}"), 2)
            }
            CpOp::Uncordon { node } => {
                self.fail_on(t, node)?;
                self.cordoned.remove(node);
                self.drained.remove(node);
                self.acted.remove(node);
                (format!("uncordon {node}"), 2)
            }
            CpOp::Drain { node } => {
                self.fail_on(t, node)?;
                self.drained.insert(node.clone());
                (format!("drain {node}"), 60)
            }
            CpOp::Reboot { node } => {
                self.fail_on(t, node)?;
                *self.reboots.entry(node.clone()).or_default() += 1;
                self.acted.insert(node.clone());
                if self.leader.as_deref() == Some(node.as_str()) {
                    // A leader that goes down loses leadership to an election.
                    self.leader = None;
                }
                (format!("reboot {node}"), 120)
            }
            CpOp::Upgrade {
                node,
                version,
                first,
            } => {
                self.fail_on(t, node)?;
                self.upgraded_to.insert(node.clone(), version.clone());
                let how = if *first { "apply" } else { "node" };
                (format!("kubeadm upgrade {how} {version} on {node}"), 300)
            }
            CpOp::RunCommand { node, command } => {
                self.fail_on(t, node)?;
                self.commands.push((node.clone(), command.clone()));
                self.acted.insert(node.clone());
                (format!("run {} on {node}", command.join(" ")), 10)
            }
            CpOp::WaitHealthy { node } => {
                self.fail_on(t, node)?;
                (String::new(), 30)
            }
            CpOp::RemoveMember { node } => {
                self.fail_on(t, node)?;
                if self.etcd.len() == 1 && self.etcd.contains_key(node) {
                    return Err(fail(format!("{node} is the last etcd member")));
                }
                self.etcd.remove(node);
                (format!("member remove {node}"), 10)
            }
            CpOp::DeleteNode { node } => {
                self.fail_on(t, node)?;
                self.joined.remove(node);
                self.tainted.remove(node);
                self.cordoned.remove(node);
                self.kubelet_server.remove(node);
                (format!("delete node {node}"), 5)
            }
            _ => unreachable!("{t}: sorted by apply"),
        })
    }
}

impl Observer for InMemoryCluster {
    fn observe(&mut self, topology: &Topology) -> ClusterState {
        let mut s = ClusterState::empty(self.now);
        let long_ago = self.now - SignedDuration::from_hours(48);
        s.nodes = Some(
            topology
                .nodes
                .iter()
                .filter(|n| self.joined.contains(&n.name))
                .map(|n| NodeState {
                    cordoned: self.cordoned.contains(&n.name),
                    ready: Some(!self.down.contains(&n.name)),
                    ..NodeState::ready(n.name.clone(), long_ago)
                })
                .collect(),
        );
        let leader = self.current_leader();
        s.etcd = Some(EtcdState {
            members: self
                .etcd
                .iter()
                .enumerate()
                .map(|(i, (name, learner))| {
                    let addr = self
                        .node_address(name)
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    EtcdMember {
                        id: MemberId(0x1000 + i as u64),
                        name: name.clone(),
                        peer_urls: vec![format!("https://{addr}:2380")],
                        client_urls: vec![format!("https://{addr}:2379")],
                        is_learner: *learner,
                        healthy: Some(!self.down.contains(name)),
                        leader: leader.as_deref() == Some(name),
                        raft_index: Some(100),
                        alarms: Vec::new(),
                    }
                })
                .collect(),
        });
        s.load_balancer = Some(LbState {
            backends: self
                .pool
                .iter()
                .flatten()
                .map(|(name, addr)| LbBackend {
                    server: name.clone(),
                    address: Some(*addr),
                    status: match (self.admin_state(name), self.serving(name)) {
                        (ServerState::Maint, _) => BackendStatus::Maint,
                        (ServerState::Drain, true) => BackendStatus::Drain,
                        (ServerState::Ready, true) => BackendStatus::Up,
                        (_, false) => BackendStatus::Down,
                    },
                    sessions: Some(0),
                })
                .collect(),
        });
        s.apiservers = Some(ApiserverState {
            per_node: self
                .apiserver_sans
                .keys()
                .map(|n| (n.clone(), self.serving(n)))
                .collect(),
            via_endpoint: Some(self.frontend.is_some()),
        });
        s.alerts = Some(Vec::new());
        s.kill_switch = Some(self.kill_switch);
        s.lock = Some(LockState {
            holder: self.lock_holder.clone(),
            renewed_at: None,
            ttl: None,
        });
        // The simulated masters' files: kubeadm's manifests with nothing
        // added by hand, disks a fifth full, no kubeadm backup.
        s.masters = Some(crate::masters::MastersState::simulated(
            topology
                .nodes
                .iter()
                .filter(|n| n.is_control_plane() && self.joined.contains(&n.name))
                .map(|n| n.name.as_str()),
        ));
        // The simulated members write fast: 2 ms WAL fsyncs, 5 ms commits.
        s.etcd_latency = Some(crate::state::EtcdLatency {
            source: "simulated".into(),
            window: crate::units::Dur::secs(5),
            members: s
                .etcd
                .iter()
                .flat_map(|e| &e.members)
                .filter(|m| m.started())
                .map(|m| crate::state::MemberLatency {
                    name: m.name.clone(),
                    endpoint: m.client_urls.first().cloned().unwrap_or_default(),
                    error: None,
                    wal_fsync_p99_micros: Some(2_000),
                    backend_commit_p99_micros: Some(5_000),
                    wal_fsyncs: Some(100),
                    slow_applies: Some(0),
                    leader_changes: Some(0),
                })
                .collect(),
        });
        s
    }
}

impl Clock for InMemoryCluster {
    fn now(&self) -> Timestamp {
        self.now
    }
}

/// A handle to a shared [`InMemoryCluster`], so one simulated cluster can
/// serve as every backend of an executor at once.
#[derive(Debug, Clone)]
pub struct InMemoryHandle(pub Rc<RefCell<InMemoryCluster>>);

impl Hypervisor for InMemoryHandle {
    fn is_done(&mut self, op: &HvOp) -> Result<bool, BackendError> {
        Hypervisor::is_done(&mut *self.0.borrow_mut(), op)
    }
    fn apply(&mut self, op: &HvOp) -> Result<(), BackendError> {
        Hypervisor::apply(&mut *self.0.borrow_mut(), op)
    }
}

impl LoadBalancer for InMemoryHandle {
    fn is_done(&mut self, op: &LbOp) -> Result<bool, BackendError> {
        LoadBalancer::is_done(&mut *self.0.borrow_mut(), op)
    }
    fn apply(&mut self, op: &LbOp) -> Result<(), BackendError> {
        LoadBalancer::apply(&mut *self.0.borrow_mut(), op)
    }
}

impl ControlPlane for InMemoryHandle {
    fn is_done(&mut self, op: &CpOp) -> Result<bool, BackendError> {
        ControlPlane::is_done(&mut *self.0.borrow_mut(), op)
    }
    fn apply(&mut self, op: &CpOp) -> Result<(), BackendError> {
        ControlPlane::apply(&mut *self.0.borrow_mut(), op)
    }
    fn boot_id(&mut self, node: &str) -> Result<Option<String>, BackendError> {
        ControlPlane::boot_id(&mut *self.0.borrow_mut(), node)
    }
    fn await_reboot(&mut self, node: &str, before: &str) -> Result<(), BackendError> {
        ControlPlane::await_reboot(&mut *self.0.borrow_mut(), node, before)
    }
}

impl crate::backend::Lock for InMemoryHandle {
    fn acquire(&mut self, identity: &str) -> Result<crate::backend::LockAnswer, BackendError> {
        let mut sim = self.0.borrow_mut();
        match &sim.lock_holder {
            Some(h) if h != identity => Ok(crate::backend::LockAnswer::HeldBy(h.clone())),
            _ => {
                sim.lock_holder = Some(identity.to_string());
                Ok(crate::backend::LockAnswer::Acquired)
            }
        }
    }
    fn release(&mut self, identity: &str) -> Result<(), BackendError> {
        let mut sim = self.0.borrow_mut();
        if sim.lock_holder.as_deref() == Some(identity) {
            sim.lock_holder = None;
            sim.lock_kept = None;
        }
        Ok(())
    }
    fn keep(&mut self, identity: &str, reason: &str) -> Result<(), BackendError> {
        let mut sim = self.0.borrow_mut();
        match &sim.lock_holder {
            Some(h) if h != identity => Err(BackendError::Failed {
                what: "keeping the disruption lock".into(),
                message: format!("it is held by {h}"),
            }),
            _ => {
                sim.lock_holder = Some(identity.to_string());
                sim.lock_kept = Some(reason.to_string());
                Ok(())
            }
        }
    }
}

impl Observer for InMemoryHandle {
    fn observe(&mut self, topology: &Topology) -> ClusterState {
        self.0.borrow_mut().observe(topology)
    }
}

impl Clock for InMemoryHandle {
    fn now(&self) -> Timestamp {
        self.0.borrow().now
    }
}

/// Run `f` with backends that all point at `sim`.
pub fn with_backends<R>(
    sim: &Rc<RefCell<InMemoryCluster>>,
    f: impl FnOnce(&mut crate::backend::Backends<'_>) -> R,
) -> R {
    let (mut hv, mut lb, mut cp, mut ob) = (
        InMemoryHandle(sim.clone()),
        InMemoryHandle(sim.clone()),
        InMemoryHandle(sim.clone()),
        InMemoryHandle(sim.clone()),
    );
    let clock = InMemoryHandle(sim.clone());
    let mut b = crate::backend::Backends {
        hypervisor: &mut hv,
        load_balancer: &mut lb,
        control_plane: &mut cp,
        observer: &mut ob,
        clock: &clock,
    };
    f(&mut b)
}
