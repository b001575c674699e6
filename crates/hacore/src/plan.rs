//! The migration planner: from the current topology (a single master, or
//! fewer masters) to the target (an odd number of masters behind a load
//! balancer VIP), an ordered plan of phases and steps.
//!
//! Each step carries its operation, the gate that must allow it, how it is
//! verified (the operation's own `is_done`), its rollback, its expected
//! duration and the client-visible outage it causes. The plan is refused,
//! with every reason, when it cannot be safe: an even target size, an
//! over-committed hypervisor, a VM id or address already in use, a missing
//! load balancer.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::backend::{CpOp, HvOp, LbOp, Op};
use crate::state::ClusterState;
use crate::topology::{LbKind, Node, Topology};
use crate::units::Dur;

/// How long a `kubeadm init phase upload-certs` key (and the `kubeadm-certs`
/// Secret) lives.
pub const CERTIFICATE_KEY_TTL: Dur = Dur::hours(2);

/// Margin kept before the key expires: a join must finish this long before it.
pub const CERTIFICATE_KEY_MARGIN: Dur = Dur::secs(15 * 60);

/// A reviewed, ordered migration plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Cluster name.
    pub cluster: String,
    /// The topology now.
    pub from: Topology,
    /// The topology wanted.
    pub to: Topology,
    /// Whether joins go through etcd learners.
    pub learner_joins: bool,
    /// Phases, in order; a failure rolls back the current phase.
    pub phases: Vec<Phase>,
    /// Things the reviewer should know (accepted risks).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// A unit of rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    /// Stable id.
    pub id: String,
    /// What the phase achieves.
    pub title: String,
    /// Steps, in order.
    pub steps: Vec<Step>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Stable id, unique in the plan (journal key).
    pub id: String,
    /// What it does, for people.
    pub title: String,
    /// The operation.
    pub op: Op,
    /// Gates that must allow the step right before it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preconditions: Vec<Precondition>,
    /// The operation that undoes it, if it has an effect to undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Op>,
    /// How long it should take.
    pub expected_duration: Dur,
    /// What clients see while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage: Option<Outage>,
    /// Notes for the reviewer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A gate evaluated before a step: `policy` must allow `action` on `target`
/// in the topology made of `nodes` (the nodes that exist at that point).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Precondition {
    /// Built-in policy name.
    pub policy: String,
    /// Action the gate is asked about.
    pub action: Action,
    /// Target node.
    pub target: String,
    /// Nodes that exist when the step runs.
    pub nodes: Vec<String>,
}

/// A client-visible outage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// Worst-case length.
    pub up_to: Dur,
    /// What is unavailable.
    pub what: String,
}

/// Options that are not part of either topology.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// VM id of the template new masters are cloned from.
    pub template: Option<u32>,
}

/// Why a plan was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("the migration cannot be made safe:\n{}", reasons.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n"))]
pub struct Refusal {
    /// Every reason.
    pub reasons: Vec<String>,
}

fn api_socket(n: &Node, port: u16) -> SocketAddr {
    SocketAddr::new(n.address, port)
}

fn url(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V6(a) => format!("https://[{a}]:{port}"),
        IpAddr::V4(a) => format!("https://{a}:{port}"),
    }
}

/// Plan the migration from `from` to `to`. `state`, when given, supplies the
/// hypervisors' observed capacity and VM ids and the addresses in use.
pub fn plan(
    from: &Topology,
    to: &Topology,
    state: Option<&ClusterState>,
    opts: &Options,
) -> Result<Plan, Refusal> {
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();

    let report = to.validate();
    for e in &report.errors {
        reasons.push(format!("target topology: {e}"));
    }
    let masters_from: Vec<&Node> = from.control_plane_nodes().collect();
    let masters_to: Vec<&Node> = to.control_plane_nodes().collect();
    if masters_to.len() % 2 == 0 {
        reasons.push(format!(
            "the target has {} control-plane nodes: an even etcd size tolerates no more failures than one fewer; use {} or {}",
            masters_to.len(),
            masters_to.len() - 1,
            masters_to.len() + 1
        ));
    }
    if masters_to.len() < masters_from.len() {
        reasons.push(
            "the target has fewer masters than the cluster: removal is not planned here".into(),
        );
    }
    for m in &masters_from {
        match to.node(&m.name) {
            Some(t) if t.is_control_plane() && t.address == m.address => {}
            Some(_) => reasons.push(format!(
                "master `{}` changes role or address in the target; that is not a migration step",
                m.name
            )),
            None => reasons.push(format!("master `{}` is missing from the target", m.name)),
        }
    }
    if to.load_balancer.kind == LbKind::None && masters_to.len() > 1 {
        reasons.push(format!(
            "the target has {} masters but no load balancer: clients would still depend on one master",
            masters_to.len()
        ));
    }
    let new_masters: Vec<&Node> = masters_to
        .iter()
        .copied()
        .filter(|n| from.node(&n.name).is_none())
        .collect();
    for n in &new_masters {
        let mut missing = Vec::new();
        if n.hypervisor.is_none() {
            missing.push("hypervisor");
        }
        if n.vmid.is_none() {
            missing.push("vmid");
        }
        if n.cpus.is_none() {
            missing.push("cpus");
        }
        if n.memory_gib.is_none() {
            missing.push("memoryGiB");
        }
        if n.disk_gib.is_none() {
            missing.push("diskGiB");
        }
        if !missing.is_empty() {
            reasons.push(format!(
                "new master `{}` needs {} to be provisioned",
                n.name,
                missing.join(", ")
            ));
        }
    }
    if !new_masters.is_empty() && opts.template.is_none() {
        reasons.push("new masters are cloned from a template VM: give its id (--template)".into());
    }

    // Addresses: the VIP and new nodes must be free.
    let vip = to.control_plane_endpoint.address;
    let mut wanted: Vec<(String, IpAddr)> = new_masters
        .iter()
        .map(|n| (format!("node `{}`", n.name), n.address))
        .collect();
    if to.has_load_balancer() && !from.has_load_balancer() {
        wanted.push(("the VIP".into(), vip));
    }
    for (what, addr) in &wanted {
        if let Some(n) = from.nodes.iter().find(|n| n.address == *addr) {
            reasons.push(format!(
                "{what} address {addr} is already node `{}`",
                n.name
            ));
        } else if let Some(in_use) = state.and_then(|s| s.addresses_in_use.as_ref())
            && in_use.contains(addr)
        {
            reasons.push(format!(
                "{what} address {addr} already answers on the network"
            ));
        }
    }

    // VM ids.
    for n in &new_masters {
        let Some(vmid) = n.vmid else { continue };
        if let Some(o) = from.nodes.iter().find(|o| o.vmid == Some(vmid)) {
            reasons.push(format!(
                "VM id {vmid} for `{}` is already VM `{}`",
                n.name, o.name
            ));
        }
        for h in state
            .and_then(|s| s.hypervisors.as_ref())
            .into_iter()
            .flatten()
        {
            if h.vmids.contains(&vmid) {
                reasons.push(format!(
                    "VM id {vmid} for `{}` is already taken on hypervisor `{}`",
                    n.name, h.name
                ));
            }
        }
    }

    // Capacity per host, from observation when there is one.
    for h in &to.hypervisors {
        let adding: Vec<&&Node> = new_masters
            .iter()
            .filter(|n| n.hypervisor.as_deref() == Some(h.name.as_str()))
            .collect();
        if adding.is_empty() {
            continue;
        }
        let observed = state
            .and_then(|s| s.hypervisors.as_ref())
            .and_then(|hs| hs.iter().find(|o| o.name == h.name));
        let (mem, mem_used, cpus, cpus_used) = match observed {
            Some(o) => (
                o.memory_gib,
                o.committed_memory_gib,
                o.cpus,
                o.committed_cpus,
            ),
            None => {
                let (m, c) = from.committed_on(&h.name);
                (
                    h.memory_gib,
                    m + h.other_committed_memory_gib,
                    h.cpus,
                    c + h.other_committed_cpus,
                )
            }
        };
        let add_mem: u32 = adding.iter().filter_map(|n| n.memory_gib).sum();
        let add_cpu: u32 = adding.iter().filter_map(|n| n.cpus).sum();
        if mem_used + add_mem > mem {
            let free = mem.saturating_sub(mem_used);
            let each = free / adding.len() as u32;
            let fit = if each >= 2 {
                format!(
                    "{} new master(s) of at most {each} GiB each would fit",
                    adding.len()
                )
            } else {
                "no useful size fits: free memory on the host or add a host".to_string()
            };
            reasons.push(format!(
                "hypervisor `{}`: {mem_used} of {mem} GiB already committed ({}%), the new masters need {add_mem} GiB more; {fit}",
                h.name,
                mem_used * 100 / mem.max(1)
            ));
        }
        if cpus_used + add_cpu > cpus * 4 {
            reasons.push(format!(
                "hypervisor `{}`: {cpus_used} vCPUs committed on {cpus} threads, {add_cpu} more would exceed 4:1",
                h.name
            ));
        }
    }
    let hosts: BTreeSet<Option<&str>> =
        masters_to.iter().map(|n| n.hypervisor.as_deref()).collect();
    if masters_to.len() > 1 && hosts.len() == 1 {
        warnings.push(format!(
            "all {} masters share one hypervisor: a host failure still takes the control plane down",
            masters_to.len()
        ));
    }
    if !to.etcd.learner_joins {
        warnings.push(
            "joins without etcd learner mode: growing 1 -> 2 voters loses quorum until the new member starts".into(),
        );
    }
    if !reasons.is_empty() {
        return Err(Refusal { reasons });
    }

    let port = to.control_plane_endpoint.port;
    let old_server = url(
        from.control_plane_endpoint.address,
        from.control_plane_endpoint.port,
    );
    let new_server = url(vip, port);
    let pool = to.load_balancer.pool.clone().unwrap_or_default();
    let frontend = to
        .load_balancer
        .frontend
        .unwrap_or_else(|| to.control_plane_endpoint.socket());
    let mut sans = vec![vip.to_string()];
    sans.extend(to.control_plane_endpoint.dns_name.clone());
    let single = masters_from.len() == 1;
    let mut existing: Vec<String> = from.nodes.iter().map(|n| n.name.clone()).collect();
    let first = masters_from
        .first()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let gate = |policy: &str, action: Action, target: &str, nodes: &[String]| Precondition {
        policy: policy.into(),
        action,
        target: target.into(),
        nodes: nodes.to_vec(),
    };
    let mut phases = Vec::new();

    // Preflight.
    let mut steps = Vec::new();
    if !wanted.is_empty() {
        steps.push(step(
            "preflight/addresses-free",
            format!(
                "check that {} answer nowhere",
                wanted
                    .iter()
                    .map(|(_, a)| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Op::ControlPlane(CpOp::AddressesFree {
                addresses: wanted.iter().map(|(_, a)| *a).collect(),
            }),
            Dur::secs(10),
        ));
    }
    let mut s = step(
        "preflight/etcd-snapshot",
        format!("etcd snapshot on {first}"),
        Op::ControlPlane(CpOp::EtcdSnapshot {
            node: first.clone(),
        }),
        Dur::secs(60),
    );
    s.preconditions
        .push(gate("preflight", Action::Drain, &first, &existing));
    steps.push(s);
    for m in &masters_from {
        if let (Some(host), Some(vmid)) = (&m.hypervisor, m.vmid) {
            steps.push(step(
                &format!("preflight/vm-snapshot/{}", m.name),
                format!("VM snapshot of {} ({vmid} on {host})", m.name),
                Op::Hypervisor(HvOp::SnapshotVm {
                    host: host.clone(),
                    vmid,
                    name: "pre-ha-migration".into(),
                }),
                Dur::secs(120),
            ));
        }
    }
    phases.push(Phase {
        id: "preflight".into(),
        title: "Preflight: the cluster is healthy and can be restored".into(),
        steps,
    });

    // Endpoint and SAN retrofit (DOMAIN.md section 3).
    if from.control_plane_endpoint.socket() != to.control_plane_endpoint.socket()
        || !from.has_load_balancer()
    {
        let mut steps = Vec::new();
        let mut s = step(
            "endpoint/cluster-configuration",
            format!(
                "set controlPlaneEndpoint {} and certSANs {} in kubeadm-config (kubeadm init phase upload-config)",
                to.control_plane_endpoint.socket(),
                sans.join(", ")
            ),
            Op::ControlPlane(CpOp::SetControlPlaneEndpoint {
                endpoint: to.control_plane_endpoint.socket().to_string(),
                sans: sans.clone(),
            }),
            Dur::secs(30),
        );
        s.rollback = Some(Op::ControlPlane(CpOp::RestoreClusterConfiguration));
        s.preconditions
            .push(gate("preflight", Action::Drain, &first, &existing));
        s.notes.push(
            "kubeadm join --control-plane refuses a cluster without a stable controlPlaneEndpoint"
                .into(),
        );
        steps.push(s);
        for m in &masters_from {
            let mut s = step(
                &format!("endpoint/apiserver-cert/{}", m.name),
                format!(
                    "renew {}'s apiserver certificate with SANs {} (old pair kept for rollback), restart the apiserver",
                    m.name,
                    sans.join(", ")
                ),
                Op::ControlPlane(CpOp::RenewApiserverCert {
                    node: m.name.clone(),
                    sans: sans.clone(),
                }),
                Dur::secs(120),
            );
            s.rollback = Some(Op::ControlPlane(CpOp::RestoreApiserverCert {
                node: m.name.clone(),
            }));
            s.preconditions
                .push(gate("preflight", Action::Drain, &m.name, &existing));
            s.outage = Some(if single {
                Outage {
                    up_to: Dur::secs(60),
                    what: format!(
                        "the whole API: {} is the only apiserver; schedule this restart",
                        m.name
                    ),
                }
            } else {
                Outage {
                    up_to: Dur::secs(0),
                    what: format!(
                        "none through the VIP; direct clients of {} for up to 60s",
                        m.name
                    ),
                }
            });
            steps.push(s);
        }
        phases.push(Phase {
            id: "endpoint".into(),
            title: "Retrofit controlPlaneEndpoint and apiserver SANs".into(),
            steps,
        });
    }

    // Load balancer.
    if !from.has_load_balancer() {
        let hc = &to.load_balancer.health_check;
        let servers: Vec<(String, SocketAddr)> = masters_from
            .iter()
            .map(|m| (m.name.clone(), api_socket(m, port)))
            .collect();
        let mut steps = Vec::new();
        // The VIP and the API name come first: HAProxy cannot bind an
        // address the box does not have, while `haproxy -c` still passes.
        let prefix = to
            .network
            .as_ref()
            .map_or(if vip.is_ipv4() { 32 } else { 128 }, |n| {
                n.cidr.prefix_len()
            });
        let interface = to
            .load_balancer
            .manage
            .as_ref()
            .map_or("lan", |m| m.vip_interface())
            .to_string();
        let mut s = step(
            "load-balancer/vip",
            format!("add the VIP {vip}/{prefix} to the load balancer's {interface} interface"),
            Op::LoadBalancer(LbOp::CreateVip {
                address: vip,
                prefix,
                interface,
                description: format!("{} Kubernetes API VIP (hacli)", to.cluster),
            }),
            Dur::secs(30),
        );
        s.rollback = Some(Op::LoadBalancer(LbOp::DeleteVip { address: vip }));
        steps.push(s);
        if let (Some(name), LbKind::PfsenseHaproxy) =
            (&to.control_plane_endpoint.dns_name, to.load_balancer.kind)
        {
            let mut s = step(
                "load-balancer/dns",
                format!("DNS record {name} -> {vip} in the load balancer's resolver"),
                Op::LoadBalancer(LbOp::CreateDnsRecord {
                    name: name.clone(),
                    address: vip,
                }),
                Dur::secs(30),
            );
            s.rollback = Some(Op::LoadBalancer(LbOp::DeleteDnsRecord {
                name: name.clone(),
            }));
            steps.push(s);
        }
        let mut s = step(
            "load-balancer/pool",
            format!(
                "create pool {pool} with {} and health check {:?} {} every {}",
                servers
                    .iter()
                    .map(|s| s.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                hc.kind,
                hc.path.as_deref().unwrap_or(""),
                hc.interval
            ),
            Op::LoadBalancer(LbOp::CreatePool {
                pool: pool.clone(),
                check: hc.kind,
                path: hc.path.clone(),
                interval: hc.interval,
                fall: hc.fall,
                rise: hc.rise,
                servers: servers.clone(),
            }),
            Dur::secs(30),
        );
        s.rollback = Some(Op::LoadBalancer(LbOp::DeletePool { pool: pool.clone() }));
        steps.push(s);
        let mut s = step(
            "load-balancer/frontend",
            format!("create TCP frontend {frontend} -> {pool}"),
            Op::LoadBalancer(LbOp::CreateFrontend {
                frontend,
                pool: pool.clone(),
            }),
            Dur::secs(30),
        );
        s.rollback = Some(Op::LoadBalancer(LbOp::DeleteFrontend { frontend }));
        steps.push(s);
        steps.push(step(
            "load-balancer/verify",
            format!(
                "the pool reports {} UP through the VIP",
                servers
                    .iter()
                    .map(|s| s.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Op::LoadBalancer(LbOp::VerifyServersUp {
                pool: pool.clone(),
                servers: servers.iter().map(|s| s.0.clone()).collect(),
            }),
            Dur::secs(30),
        ));
        phases.push(Phase {
            id: "load-balancer".into(),
            title: format!("Load balancer frontend {frontend} and pool {pool}"),
            steps,
        });
    }

    // Provision each new master.
    for n in &new_masters {
        let (Some(host), Some(vmid)) = (n.hypervisor.clone(), n.vmid) else {
            continue;
        };
        let prefix = to
            .network
            .as_ref()
            .map(|net| net.cidr.prefix_len())
            .unwrap_or(24);
        let mut clone = step(
            &format!("provision/{}/clone", n.name),
            format!(
                "clone template {} to VM {vmid} `{}` on {host}: {} vCPU, {} GiB, {} GiB disk, {}/{prefix}",
                opts.template.unwrap_or(0),
                n.name,
                n.cpus.unwrap_or(0),
                n.memory_gib.unwrap_or(0),
                n.disk_gib.unwrap_or(0),
                n.address
            ),
            Op::Hypervisor(HvOp::CloneVm {
                host: host.clone(),
                template: opts.template.unwrap_or(0),
                vmid,
                name: n.name.clone(),
                cpus: n.cpus.unwrap_or(0),
                memory_gib: n.memory_gib.unwrap_or(0),
                disk_gib: n.disk_gib.unwrap_or(0),
                address: format!("{}/{prefix}", n.address),
                gateway: to.network.as_ref().and_then(|net| net.gateway),
                ciuser: None,
                sshkeys: Vec::new(),
                nameservers: Vec::new(),
                storage: None,
            }),
            Dur::secs(180),
        );
        clone.rollback = Some(Op::Hypervisor(HvOp::DeleteVm {
            host: host.clone(),
            vmid,
        }));
        let start = step(
            &format!("provision/{}/start", n.name),
            format!("start VM {vmid} and wait until it runs"),
            Op::Hypervisor(HvOp::StartVm { host, vmid }),
            Dur::secs(120),
        );
        phases.push(Phase {
            id: format!("provision/{}", n.name),
            title: format!("Provision VM for {}", n.name),
            steps: vec![clone, start],
        });
    }

    // Join material, then joins one at a time; the certificate key is
    // re-uploaded whenever a join could outlive it.
    let upload = |id: &str| {
        let mut s = step(
            id,
            "upload control-plane certificates: a fresh certificate key, valid 2h".to_string(),
            Op::ControlPlane(CpOp::UploadCerts),
            Dur::secs(30),
        );
        s.notes
            .push("the kubeadm-certs Secret and its key expire 2 hours after upload".into());
        s
    };
    if !new_masters.is_empty() {
        phases.push(Phase {
            id: "join-material".into(),
            title: "Join material".into(),
            steps: vec![upload("join-material/upload-certs")],
        });
    }
    let mut key_age = Dur::secs(0);
    let budget = CERTIFICATE_KEY_TTL.0 - CERTIFICATE_KEY_MARGIN.0;
    for n in &new_masters {
        let mut steps = Vec::new();
        let join_time = Dur::secs(300);
        if key_age.0 + join_time.0 > budget {
            steps.push(upload(&format!("join/{}/upload-certs", n.name)));
            key_age = Dur::secs(0);
        }
        let mut with_new = existing.clone();
        with_new.push(n.name.clone());
        let mut s = step(
            &format!("join/{}/join", n.name),
            format!(
                "kubeadm join {} --control-plane on {} ({})",
                to.control_plane_endpoint.socket(),
                n.name,
                if to.etcd.learner_joins {
                    "etcd learner first, promoted once caught up"
                } else {
                    "etcd voter at once"
                }
            ),
            Op::ControlPlane(CpOp::JoinControlPlane {
                node: n.name.clone(),
                address: n.address,
            }),
            join_time,
        );
        s.preconditions
            .push(gate("join", Action::Join, &n.name, &with_new));
        s.rollback = Some(Op::ControlPlane(CpOp::ResetNode {
            node: n.name.clone(),
        }));
        if !to.etcd.learner_joins {
            s.notes.push(
                "without learner mode the new member votes before it has started: a risk window"
                    .into(),
            );
        }
        steps.push(s);
        existing = with_new;
        steps.push(step(
            &format!("join/{}/promoted", n.name),
            format!("{}'s etcd member is a caught-up voter", n.name),
            Op::ControlPlane(CpOp::MemberPromoted {
                node: n.name.clone(),
            }),
            Dur::secs(120),
        ));
        steps.push(step(
            &format!("join/{}/taint", n.name),
            format!(
                "{} carries node-role.kubernetes.io/control-plane:NoSchedule",
                n.name
            ),
            Op::ControlPlane(CpOp::EnsureControlPlaneTaint {
                node: n.name.clone(),
            }),
            Dur::secs(10),
        ));
        let mut s = step(
            &format!("join/{}/load-balancer", n.name),
            format!(
                "add {} ({}) to pool {pool}, leaving the other servers alone",
                n.name,
                api_socket(n, port)
            ),
            Op::LoadBalancer(LbOp::AddServer {
                pool: pool.clone(),
                server: n.name.clone(),
                address: api_socket(n, port),
            }),
            Dur::secs(30),
        );
        s.rollback = Some(Op::LoadBalancer(LbOp::RemoveServer {
            pool: pool.clone(),
            server: n.name.clone(),
        }));
        steps.push(s);
        steps.push(step(
            &format!("join/{}/load-balancer-up", n.name),
            format!("{} is UP in pool {pool}", n.name),
            Op::LoadBalancer(LbOp::VerifyServersUp {
                pool: pool.clone(),
                servers: vec![n.name.clone()],
            }),
            Dur::secs(30),
        ));
        key_age = Dur(key_age.0
            + steps
                .iter()
                .map(|s| s.expected_duration.0)
                .sum::<jiff::SignedDuration>());
        phases.push(Phase {
            id: format!("join/{}", n.name),
            title: format!("Join {} as a control-plane node", n.name),
            steps,
        });
    }

    // Cut-over to the VIP.
    if old_server != new_server {
        let mut steps = Vec::new();
        for n in &from.nodes {
            let mut s = step(
                &format!("cutover/kubelet/{}", n.name),
                format!(
                    "{}: kubelet.conf server {new_server}, restart kubelet",
                    n.name
                ),
                Op::ControlPlane(CpOp::SetKubeletServer {
                    node: n.name.clone(),
                    server: new_server.clone(),
                }),
                Dur::secs(30),
            );
            s.rollback = Some(Op::ControlPlane(CpOp::SetKubeletServer {
                node: n.name.clone(),
                server: old_server.clone(),
            }));
            s.preconditions
                .push(gate("preflight", Action::Drain, &n.name, &existing));
            s.notes
                .push("the node is NotReady for a few seconds; its pods keep running".into());
            steps.push(s);
        }
        for m in &masters_from {
            let mut s = step(
                &format!("cutover/admin-conf/{}", m.name),
                format!(
                    "{}: admin.conf and super-admin.conf server {new_server}",
                    m.name
                ),
                Op::ControlPlane(CpOp::SetAdminConf {
                    node: m.name.clone(),
                    server: new_server.clone(),
                }),
                Dur::secs(10),
            );
            s.rollback = Some(Op::ControlPlane(CpOp::SetAdminConf {
                node: m.name.clone(),
                server: old_server.clone(),
            }));
            steps.push(s);
        }
        let mut s = step(
            "cutover/kube-proxy",
            format!(
                "ConfigMap kube-system/kube-proxy kubeconfig.conf server {new_server}, restart kube-proxy pods"
            ),
            Op::ControlPlane(CpOp::SetKubeProxyServer {
                server: new_server.clone(),
            }),
            Dur::secs(60),
        );
        s.rollback = Some(Op::ControlPlane(CpOp::SetKubeProxyServer {
            server: old_server.clone(),
        }));
        steps.push(s);
        let mut s = step(
            "cutover/cluster-info",
            format!(
                "ConfigMap kube-public/cluster-info kubeconfig server {new_server} (join discovery)"
            ),
            Op::ControlPlane(CpOp::SetClusterInfoServer {
                server: new_server.clone(),
            }),
            Dur::secs(10),
        );
        s.rollback = Some(Op::ControlPlane(CpOp::SetClusterInfoServer {
            server: old_server.clone(),
        }));
        steps.push(s);
        for k in &to.external_kubeconfigs {
            let mut s = step(
                &format!("cutover/external/{}", k.name),
                format!(
                    "update {} ({}) to server {new_server}, then confirm",
                    k.name, k.location
                ),
                Op::ControlPlane(CpOp::ExternalKubeconfig {
                    name: k.name.clone(),
                    location: k.location.clone(),
                    server: new_server.clone(),
                }),
                Dur::secs(300),
            );
            s.notes.push(
                "manual: keep a kubeconfig pointing straight at one master as a fallback".into(),
            );
            steps.push(s);
        }
        phases.push(Phase {
            id: "cutover".into(),
            title: format!("Cut every client over to {new_server}"),
            steps,
        });
    }

    // Verification.
    let masters: Vec<String> = masters_to.iter().map(|n| n.name.clone()).collect();
    let all: Vec<String> = to.nodes.iter().map(|n| n.name.clone()).collect();
    let steps = vec![
        step(
            "verify/nodes",
            format!("{} Ready with the control-plane role", masters.join(", ")),
            Op::ControlPlane(CpOp::VerifyNodes {
                nodes: masters.clone(),
            }),
            Dur::secs(10),
        ),
        step(
            "verify/etcd",
            "etcdctl endpoint health through every member".to_string(),
            Op::ControlPlane(CpOp::VerifyEtcd {
                members: masters.clone(),
            }),
            Dur::secs(10),
        ),
        step(
            "verify/load-balancer",
            format!("every master UP in pool {pool}"),
            Op::LoadBalancer(LbOp::VerifyServersUp {
                pool: pool.clone(),
                servers: masters.clone(),
            }),
            Dur::secs(10),
        ),
        step(
            "verify/sans",
            format!("every apiserver certificate carries {}", sans.join(", ")),
            Op::ControlPlane(CpOp::VerifySans {
                nodes: masters.clone(),
                sans: sans.clone(),
            }),
            Dur::secs(10),
        ),
        step(
            "verify/kubeconfigs",
            format!("kubelet.conf, admin.conf, kube-proxy and cluster-info name {new_server}"),
            Op::ControlPlane(CpOp::VerifyKubeconfigs {
                nodes: all,
                server: new_server.clone(),
            }),
            Dur::secs(10),
        ),
    ];
    phases.push(Phase {
        id: "verify".into(),
        title: "Verify the result".into(),
        steps,
    });

    Ok(Plan {
        cluster: to.cluster.clone(),
        from: from.clone(),
        to: to.clone(),
        learner_joins: to.etcd.learner_joins,
        phases,
        warnings,
    })
}

fn step(id: &str, title: String, op: Op, expected_duration: Dur) -> Step {
    Step {
        id: id.to_string(),
        title,
        op,
        preconditions: Vec::new(),
        rollback: None,
        expected_duration,
        outage: None,
        notes: Vec::new(),
    }
}

impl Plan {
    /// Every step, in order, with its phase.
    pub fn steps(&self) -> impl Iterator<Item = (&Phase, &Step)> {
        self.phases
            .iter()
            .flat_map(|p| p.steps.iter().map(move |s| (p, s)))
    }

    /// Expected total duration.
    pub fn expected_duration(&self) -> Dur {
        Dur(self.steps().map(|(_, s)| s.expected_duration.0).sum())
    }

    /// The target topology restricted to `nodes` (what exists at a step).
    pub fn topology_with(&self, nodes: &[String]) -> Topology {
        let mut t = self.to.clone();
        t.nodes.retain(|n| nodes.contains(&n.name));
        t
    }

    /// A stable digest of the plan, so a journal is only resumed with the
    /// plan it was written for.
    pub fn digest(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        // FNV-1a, 64 bit: stable across builds and platforms.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in json.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// Markdown a person can review and check off.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Migration plan: {}\n", self.cluster);
        let _ = writeln!(
            s,
            "From {} master(s) at `{}` to {} masters behind `{}`. Expected duration {}; etcd joins {}.\n",
            self.from.control_plane_nodes().count(),
            self.from.control_plane_endpoint.socket(),
            self.to.control_plane_nodes().count(),
            self.to.control_plane_endpoint.socket(),
            self.expected_duration(),
            if self.learner_joins {
                "as learners first"
            } else {
                "as voters at once"
            }
        );
        if !self.warnings.is_empty() {
            let _ = writeln!(s, "Accepted risks:\n");
            for w in &self.warnings {
                let _ = writeln!(s, "- {w}");
            }
            let _ = writeln!(s);
        }
        for p in &self.phases {
            let _ = writeln!(s, "## {}\n", p.title);
            for st in &p.steps {
                let _ = writeln!(
                    s,
                    "- [ ] **{}**: {} ({})",
                    st.id, st.title, st.expected_duration
                );
                let _ = writeln!(s, "  - do: `{}`", st.op);
                for g in &st.preconditions {
                    let _ = writeln!(
                        s,
                        "  - only if policy `{}` allows {} of {}",
                        g.policy, g.action, g.target
                    );
                }
                if let Some(r) = &st.rollback {
                    let _ = writeln!(s, "  - rollback: `{r}`");
                }
                if let Some(o) = &st.outage {
                    let _ = writeln!(s, "  - outage: up to {}: {}", o.up_to, o.what);
                }
                for n in &st.notes {
                    let _ = writeln!(s, "  - note: {n}");
                }
            }
            let _ = writeln!(s);
        }
        s
    }

    /// Plain text, one line per step.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "plan for {}: {} phases, {} steps, about {}",
            self.cluster,
            self.phases.len(),
            self.steps().count(),
            self.expected_duration()
        );
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        let mut i = 0;
        for p in &self.phases {
            let _ = writeln!(s, "\n{}", p.title);
            for st in &p.steps {
                i += 1;
                let outage = st
                    .outage
                    .as_ref()
                    .map(|o| format!("  [outage up to {}: {}]", o.up_to, o.what))
                    .unwrap_or_default();
                let _ = writeln!(s, "  {i:>3}. {:<40} {}{outage}", st.id, st.title);
            }
        }
        s
    }
}
