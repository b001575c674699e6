//! A summary of the cluster for people and scripts: etcd membership and
//! quorum, node readiness, load balancer backends, and which nodes may be
//! taken down right now.

use jiff::Timestamp;
use serde::Serialize;

use crate::action::Action;
use crate::gate::{Policy, Request, evaluate};
use crate::quorum::{Membership, quorum, tolerance};
use crate::rules::{Context, member_health};
use crate::state::{ApiserverState, ClusterState, EtcdState, LbBackend, Probe};
use crate::topology::{Role, Topology};
use crate::verdict::Decision;

/// The summary.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Cluster name.
    pub cluster: String,
    /// `address:port` of the control-plane endpoint.
    pub endpoint: String,
    /// When the state was observed.
    pub observed_at: Timestamp,
    /// etcd, or why it is not known.
    pub etcd: Section<EtcdSummary>,
    /// Nodes from the topology with their observed readiness.
    pub nodes: Vec<NodeRow>,
    /// Why node readiness is not known, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes_error: Option<String>,
    /// Load balancer backends, or why they are not known.
    pub load_balancer: Section<Vec<LbBackend>>,
    /// apiserver readiness, or why it is not known.
    pub apiservers: Section<ApiserverState>,
    /// For each node: may it be taken down (the `reboot` policy) now?
    pub disruptions: Vec<Disruption>,
}

/// Observed data, or the reason it is missing.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section<T> {
    /// Observed.
    Ok(T),
    /// Not observed, with why.
    Unknown(String),
}

/// etcd at a glance.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSummary {
    /// Voting members.
    pub voters: usize,
    /// Learners.
    pub learners: usize,
    /// Voters known healthy.
    pub healthy: usize,
    /// Quorum size.
    pub quorum: usize,
    /// Voter failures tolerated now (healthy voters beyond quorum).
    pub tolerance_now: usize,
    /// Failures the membership tolerates when all are healthy.
    pub tolerance: usize,
    /// The leader's name, if observed.
    pub leader: Option<String>,
    /// Every member.
    pub members: Vec<MemberRow>,
}

/// One etcd member.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRow {
    /// Hex id.
    pub id: String,
    /// Name (empty if never started).
    pub name: String,
    /// Matching node, if any.
    pub node: Option<String>,
    /// Learner.
    pub learner: bool,
    /// Health for quorum purposes.
    pub healthy: Option<bool>,
    /// Leader.
    pub leader: bool,
    /// Raft index behind the leader's.
    pub lag: Option<u64>,
}

/// One node.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Hypervisor host.
    pub hypervisor: Option<String>,
    /// Its address, as the topology names it.
    pub address: std::net::IpAddr,
    /// Its VM id on the hypervisor, as the topology names it.
    pub vmid: Option<u32>,
    /// Ready condition; None when unknown or not reported.
    pub ready: Option<bool>,
    /// Last Ready transition.
    pub ready_since: Option<Timestamp>,
    /// Cordoned.
    pub cordoned: bool,
    /// Its taints (`key=value:Effect`), as observed.
    pub taints: Vec<String>,
    /// Whether the node says it needs a reboot (kured's sentinel); None
    /// when not observed.
    pub reboot_required: Option<bool>,
}

/// Whether a node may be taken down now.
#[derive(Debug, Clone, Serialize)]
pub struct Disruption {
    /// Node.
    pub node: String,
    /// The `reboot` policy's decision.
    pub decision: Decision,
    /// Why not, when not allowed.
    pub reasons: Vec<String>,
}

/// Summarise. `now` is the time the disruption verdicts are evaluated for.
pub fn status(topology: &Topology, state: &ClusterState, now: Timestamp) -> Status {
    let ctx = Context::new(
        topology,
        state,
        Action::Reboot,
        "",
        Vec::new(),
        None,
        now,
        None,
    );
    let etcd = match state.section(Probe::Etcd, state.etcd.as_ref()) {
        Err(e) => Section::Unknown(e),
        Ok(etcd) => Section::Ok(etcd_summary(&ctx, etcd)),
    };
    let nodes_error = state.section(Probe::Nodes, state.nodes.as_ref()).err();
    let nodes = topology
        .nodes
        .iter()
        .map(|n| {
            let s = if nodes_error.is_none() {
                ctx.node_state(&n.name)
            } else {
                None
            };
            NodeRow {
                name: n.name.clone(),
                role: n.role,
                hypervisor: n.hypervisor.clone(),
                address: n.address,
                vmid: n.vmid,
                ready: s.and_then(|s| s.ready),
                ready_since: s.and_then(|s| s.ready_since),
                cordoned: s.is_some_and(|s| s.cordoned),
                taints: s.map(|s| s.taints.clone()).unwrap_or_default(),
                reboot_required: s.and_then(|s| s.reboot_required),
            }
        })
        .collect();
    let load_balancer = match state.section(Probe::LoadBalancer, state.load_balancer.as_ref()) {
        Ok(lb) => Section::Ok(lb.backends.clone()),
        Err(e) => Section::Unknown(e),
    };
    let apiservers = match state.section(Probe::Apiservers, state.apiservers.as_ref()) {
        Ok(a) => Section::Ok(a.clone()),
        Err(e) => Section::Unknown(e),
    };
    let disruptions = disruptions(topology, state, now);
    Status {
        cluster: topology.cluster.clone(),
        endpoint: topology.control_plane_endpoint.socket().to_string(),
        observed_at: state.observed_at,
        etcd,
        nodes,
        nodes_error,
        load_balancer,
        apiservers,
        disruptions,
    }
}

/// The etcd members as rows, and the quorum they make.
fn etcd_summary(ctx: &Context<'_>, etcd: &EtcdState) -> EtcdSummary {
    let leader_index = etcd
        .members
        .iter()
        .find(|m| m.leader)
        .and_then(|m| m.raft_index);
    let mut m = Membership::default();
    let members = etcd
        .members
        .iter()
        .map(|mb| {
            let healthy = member_health(ctx, mb);
            if mb.is_learner {
                m.learners += 1;
            } else {
                m.voters += 1;
                m.healthy += usize::from(healthy == Some(true));
            }
            MemberRow {
                id: mb.id.to_string(),
                name: mb.name.clone(),
                node: ctx.member_node(mb).map(|n| n.name.clone()),
                learner: mb.is_learner,
                healthy,
                leader: mb.leader,
                lag: leader_index
                    .zip(mb.raft_index)
                    .map(|(l, i)| l.saturating_sub(i)),
            }
        })
        .collect();
    EtcdSummary {
        voters: m.voters,
        learners: m.learners,
        healthy: m.healthy,
        quorum: quorum(m.voters),
        tolerance_now: m.healthy.saturating_sub(quorum(m.voters)),
        tolerance: tolerance(m.voters),
        leader: etcd
            .members
            .iter()
            .find(|m| m.leader)
            .map(|m| m.name.clone()),
        members,
    }
}

/// Whether each node may be rebooted now, masters first.
fn disruptions(topology: &Topology, state: &ClusterState, now: Timestamp) -> Vec<Disruption> {
    let policy = Policy::for_action(Action::Reboot);
    topology
        .nodes
        .iter()
        .filter(|n| n.is_control_plane())
        .chain(topology.nodes.iter().filter(|n| !n.is_control_plane()))
        .map(|n| {
            let req = Request {
                action: Action::Reboot,
                target: &n.name,
                requester: None,
            };
            match evaluate(topology, state, &policy, &req, now) {
                Ok(v) => Disruption {
                    node: n.name.clone(),
                    decision: v.decision,
                    reasons: v
                        .blocking()
                        .map(|f| format!("{}: {}", f.rule, f.message))
                        .collect(),
                },
                Err(e) => Disruption {
                    node: n.name.clone(),
                    decision: Decision::Unknown,
                    reasons: vec![e.to_string()],
                },
            }
        })
        .collect()
}
