//! Removing a master, and replacing one, the way Cluster API does it: the
//! replacement joins first, then the old master goes (issue 14 point 3).
//!
//! Removal, in order: drain its load-balancer backend, move etcd leadership
//! away, cordon and drain the node (one phase, rolled back on failure);
//! then, with no way back, remove its etcd member by id (gated by the
//! `remove-member` policy right before), `kubeadm reset`, delete the Node,
//! remove its server from the pool, delete its VM (a second phase that only
//! goes forward and resumes).
//!
//! Refused, with the reason: removing a node that is not a master, the last
//! master, or one that would leave an even number of voters for good (one
//! of three leaves two: no failure tolerated, and two must stay up). A
//! replacement passes through four voters only between the join and the
//! removal, which follow each other at once.

use crate::action::Action;
use crate::backend::{CpOp, HvOp, LbOp, Op, ServerState};
use crate::disrupt::DisruptOptions;
use crate::plan::{self, Phase, Plan, Precondition, Refusal, Step};
use crate::quorum::{Membership, Safety};
use crate::state::{ClusterState, EtcdMember};
use crate::topology::{Node, Topology};
use crate::units::Dur;

fn step(id: String, title: String, op: Op, secs: i64) -> Step {
    Step {
        id,
        title,
        op,
        preconditions: Vec::new(),
        rollback: None,
        expected_duration: Dur::secs(secs),
        outage: None,
        notes: Vec::new(),
        command: None,
        rollback_command: None,
    }
}

fn refuse(reason: String) -> Refusal {
    Refusal::unsafe_for(vec![reason])
}

/// The two phases that remove master `node` from `topology` (where it
/// still is); `nodes` are the nodes that exist while they run (for the
/// gate before the member is removed).
fn removal_phases(
    topology: &Topology,
    node: &str,
    nodes: &[String],
    opts: &DisruptOptions,
) -> Vec<Phase> {
    let n = topology.node(node).expect("checked by the caller");
    let pool = topology
        .load_balancer
        .pool
        .clone()
        .filter(|_| topology.has_load_balancer());
    let prepare = prepare_steps(node, pool.as_ref(), opts);
    let remove = remove_steps(n, pool.as_ref(), nodes);
    vec![
        Phase {
            id: format!("remove/{node}/prepare"),
            title: format!("Take {node} out of service (restored on failure)"),
            steps: prepare,
            rollback: Some(format!("uncordon {node} and set its load-balancer backend ready")),
        },
        Phase {
            id: format!("remove/{node}/remove"),
            title: format!("Remove {node} for good"),
            steps: remove,
            rollback: Some(
                "none: a removed member, Node or VM is not put back; the steps before the failure stay done and the run can be resumed".into(),
            ),
        },
    ]
}

/// The steps that take master `node` out of service, each undone on failure:
/// drain its load-balancer backend, move etcd leadership away, cordon, drain.
fn prepare_steps(node: &str, pool: Option<&String>, opts: &DisruptOptions) -> Vec<Step> {
    let id = |s: &str| format!("remove/{node}/{s}");
    let mut prepare = Vec::new();
    if let Some(pool) = pool {
        let mut s = step(
            id("backend-drain"),
            format!("set backend {pool}/{node} to drain: no new connections"),
            Op::LoadBalancer(LbOp::SetServerState {
                pool: pool.clone(),
                server: node.into(),
                state: ServerState::Drain,
            }),
            5,
        );
        s.rollback = Some(Op::LoadBalancer(LbOp::SetServerState {
            pool: pool.clone(),
            server: node.into(),
            state: ServerState::Ready,
        }));
        prepare.push(s);
        prepare.push(step(
            id("backend-idle"),
            format!(
                "wait until {pool}/{node} has no sessions, at most {}",
                opts.idle_bound
            ),
            Op::LoadBalancer(LbOp::WaitServerIdle {
                pool: pool.clone(),
                server: node.into(),
                bound: opts.idle_bound,
            }),
            opts.idle_bound.0.as_secs().max(1),
        ));
    }
    prepare.push(step(
        id("move-leader"),
        format!("if {node} leads etcd, move leadership to the best healthy caught-up voter"),
        Op::ControlPlane(CpOp::MoveLeader { from: node.into() }),
        10,
    ));
    let mut s = step(
        id("cordon"),
        format!("cordon {node}"),
        Op::ControlPlane(CpOp::Cordon { node: node.into() }),
        5,
    );
    s.rollback = Some(Op::ControlPlane(CpOp::Uncordon { node: node.into() }));
    prepare.push(s);
    let mut s = step(
        id("drain"),
        format!("drain {node} through the Eviction API, honouring PodDisruptionBudgets"),
        Op::ControlPlane(CpOp::Drain { node: node.into() }),
        120,
    );
    s.rollback = Some(Op::ControlPlane(CpOp::Uncordon { node: node.into() }));
    prepare.push(s);
    prepare
}

/// The steps that remove master `n` for good: its etcd member (behind the
/// `remove-member` gate, over `nodes`), kubeadm reset, its Node, its
/// load-balancer backend and its VM.
fn remove_steps(n: &Node, pool: Option<&String>, nodes: &[String]) -> Vec<Step> {
    let node = n.name.as_str();
    let id = |s: &str| format!("remove/{node}/{s}");
    let mut remove = Vec::new();
    let mut s = step(
        id("member"),
        format!("remove {node}'s etcd member by its id"),
        Op::ControlPlane(CpOp::RemoveMember { node: node.into() }),
        10,
    );
    s.preconditions.push(Precondition {
        policy: "remove-member".into(),
        action: Action::RemoveMember,
        target: node.into(),
        nodes: nodes.to_vec(),
    });
    s.notes
        .push("no way back from here: the following steps only go forward".into());
    remove.push(s);
    remove.push(step(
        id("reset"),
        format!("kubeadm reset -f on {node}"),
        Op::ControlPlane(CpOp::ResetNode { node: node.into() }),
        60,
    ));
    remove.push(step(
        id("node"),
        format!("delete the Node {node}"),
        Op::ControlPlane(CpOp::DeleteNode { node: node.into() }),
        5,
    ));
    if let Some(pool) = pool {
        remove.push(step(
            id("backend"),
            format!("remove server {node} from pool {pool}"),
            Op::LoadBalancer(LbOp::RemoveServer {
                pool: pool.clone(),
                server: node.into(),
            }),
            30,
        ));
    }
    if let (Some(host), Some(vmid)) = (&n.hypervisor, n.vmid) {
        remove.push(step(
            id("vm"),
            format!("stop and delete VM {vmid} ({node}) on {host}"),
            Op::Hypervisor(HvOp::DeleteVm {
                host: host.clone(),
                vmid,
                name: node.into(),
            }),
            60,
        ));
    }
    remove
}

/// The plan that removes master `node` for good. Refused when it is not a
/// master, or when the masters left would be none or an even number.
pub fn remove_master(
    topology: &Topology,
    node: &str,
    opts: &DisruptOptions,
) -> Result<Plan, Refusal> {
    match topology.node(node) {
        None => return Err(refuse(format!("`{node}` is not a node of the topology"))),
        Some(n) if !n.is_control_plane() => {
            return Err(refuse(format!(
                "`{node}` is a worker: remove-master removes masters (drain and delete a worker instead)"
            )));
        }
        Some(_) => {}
    }
    let masters = topology.control_plane_nodes().count();
    let left = masters - 1;
    if left == 0 {
        return Err(refuse(format!(
            "`{node}` is the only master: removing it removes the cluster"
        )));
    }
    if left % 2 == 0 {
        return Err(refuse(format!(
            "removing {node} leaves {left} etcd voters: an even number tolerates no more failures than {}{}; replace it instead (hacli replace-master {node} NEW), or add a master first",
            left - 1,
            if left == 2 {
                ", and both must stay up"
            } else {
                ""
            }
        )));
    }
    let nodes: Vec<String> = topology.nodes.iter().map(|n| n.name.clone()).collect();
    let mut after = topology.clone();
    after.nodes.retain(|n| n.name != node);
    Ok(Plan {
        cluster: topology.cluster.clone(),
        from: topology.clone(),
        to: topology.clone(),
        learner_joins: topology.etcd.learner_joins,
        phases: removal_phases(topology, node, &nodes, opts),
        warnings: vec![format!(
            "after the removal the cluster has {left} master(s): update the topology file (remove {node})"
        )],
        recovery: None,
    })
}

/// The plan that replaces master `old` by `new`: `target` is the topology
/// after the replacement (with `new`, described as the migration planner
/// wants it: address, hypervisor, VM id, size; without `old`). The new
/// master joins first (the migration planner's provision and join steps),
/// then `old` is removed. Refused when `old` is not a master of `current`,
/// `new` is not a new master in `target`, or the target's other nodes
/// differ from the current ones.
pub fn replace_master(
    current: &Topology,
    target: &Topology,
    old: &str,
    new: &str,
    plan_opts: &plan::Options,
    opts: &DisruptOptions,
) -> Result<Plan, Refusal> {
    let mut reasons = Vec::new();
    if !current.node(old).is_some_and(|n| n.is_control_plane()) {
        reasons.push(format!("`{old}` is not a master of the current topology"));
    }
    if target.node(old).is_some() {
        reasons.push(format!(
            "the target topology still lists `{old}`: describe the cluster after the replacement"
        ));
    }
    match target.node(new) {
        Some(n) if n.is_control_plane() && current.node(new).is_none() => {}
        Some(_) => reasons.push(format!(
            "`{new}` must be a new master: a control-plane node of the target that the current topology does not list"
        )),
        None => reasons.push(format!("the target topology has no node `{new}`")),
    }
    for n in &current.nodes {
        if n.name != old && target.node(&n.name).is_none() {
            reasons.push(format!(
                "the target topology lacks `{}`: a replacement changes only {old} -> {new}",
                n.name
            ));
        }
    }
    if !reasons.is_empty() {
        return Err(Refusal::unsafe_for(reasons));
    }
    // The join, as the migration planner makes it: from the cluster
    // without the old master to the target.
    let mut without = current.clone();
    without.nodes.retain(|n| n.name != old);
    let joined = plan::plan(&without, target, None, plan_opts)?;
    // Gates see every node that exists when they run: the old master too.
    let mut both = target.clone();
    if let Some(o) = current.node(old) {
        both.nodes.push(o.clone());
    }
    let all: Vec<String> = both.nodes.iter().map(|n| n.name.clone()).collect();
    let mut phases: Vec<Phase> = joined
        .phases
        .into_iter()
        .filter(|p| {
            p.id.starts_with("provision/") || p.id == "join-material" || p.id.starts_with("join/")
        })
        .map(|mut p| {
            for s in &mut p.steps {
                for g in &mut s.preconditions {
                    if !g.nodes.iter().any(|n| n == old) {
                        g.nodes.push(old.to_string());
                    }
                }
            }
            p
        })
        .collect();
    let mut warnings = joined.warnings;
    warnings.push(format!(
        "etcd has four voters between {new}'s join and {old}'s removal; the removal follows at once"
    ));
    phases.extend(removal_phases(&both, old, &all, opts));
    Ok(Plan {
        cluster: current.cluster.clone(),
        from: current.clone(),
        to: both,
        learner_joins: target.etcd.learner_joins,
        phases,
        warnings,
        recovery: None,
    })
}

/// Steps of a removal that a dead master cannot take, each with why.
const DEAD_SKIPS: [(&str, &str); 5] = [
    (
        "backend-drain, backend-idle",
        "its apiserver does not answer: the load balancer's health check already marks it DOWN and it carries no sessions",
    ),
    (
        "move-leader",
        "a member that does not answer leads nothing: the others elected a leader among themselves",
    ),
    (
        "cordon",
        "its kubelet does not answer; the Node is deleted instead, which reschedules its pods",
    ),
    (
        "drain",
        "evictions on a dead node never finish (its kubelet cannot stop the pods); the Node's deletion reschedules them",
    ),
    (
        "reset",
        "kubeadm reset runs on the node itself, which is powered off or unreachable; its VM is deleted instead (only if hacli created it)",
    ),
];

/// Why `old`, in `state`, cannot be treated as dead, or its etcd member and
/// why its removal and the new member's join keep quorum.
fn dead_member(
    current: &Topology,
    state: &ClusterState,
    old: &str,
    learner_joins: bool,
) -> Result<(String, Vec<String>), Vec<String>> {
    let mut reasons = Vec::new();
    let Some(etcd) = &state.etcd else {
        return Err(vec![format!(
            "etcd's members were not observed: whether removing `{old}`'s member keeps quorum is unknown"
        )]);
    };
    let address = current.node(old).map(|n| n.address.to_string());
    let is_old = |m: &EtcdMember| {
        m.name == old
            || (m.name.is_empty() && m.peer_host().is_some() && m.peer_host() == address.as_deref())
    };
    let node_ready = state
        .nodes
        .iter()
        .flatten()
        .find(|n| n.name == old)
        .and_then(|n| n.ready);
    let member = etcd.members.iter().find(|m| is_old(m));
    if let Some(m) = member
        && m.healthy == Some(true)
    {
        reasons.push(format!(
            "`{old}` answers again: its etcd member (id {}) is healthy; replace it without --dead (it is drained and reset first)",
            m.id
        ));
    }
    if node_ready == Some(true) {
        reasons.push(format!(
            "`{old}` answers again: its Node is Ready; replace it without --dead (it is drained and reset first)"
        ));
    }
    let voters: Vec<&EtcdMember> = etcd.members.iter().filter(|m| !m.is_learner).collect();
    let membership = Membership {
        voters: voters.len(),
        healthy: voters.iter().filter(|m| m.healthy == Some(true)).count(),
        unknown: voters.iter().filter(|m| m.healthy.is_none()).count(),
        learners: etcd.members.len() - voters.len(),
    };
    let Some(m) = member else {
        if reasons.is_empty() {
            return Ok((
                format!("`{old}` has no etcd member any more: nothing to remove"),
                Vec::new(),
            ));
        }
        return Err(reasons);
    };
    let why = judge_removal(old, m, &membership, learner_joins, &mut reasons);
    if reasons.is_empty() {
        Ok((format!("{}", m.id), why))
    } else {
        Err(reasons)
    }
}

/// Whether removing `old`'s member `m` from `membership`, then the new
/// member's join, keeps quorum: what holds, with each refusal added to
/// `reasons`.
fn judge_removal(
    old: &str,
    m: &EtcdMember,
    membership: &Membership,
    learner_joins: bool,
    reasons: &mut Vec<String>,
) -> Vec<String> {
    let mut why = Vec::new();
    let (unknown, down) = match m.healthy {
        None => (usize::from(!m.is_learner), 0),
        _ => (0, usize::from(!m.is_learner)),
    };
    let removed = membership.remove(0, unknown, down);
    let say = |p: &crate::quorum::Projection| {
        format!(
            "{} voters, quorum {}, {} healthy",
            p.voters, p.quorum, p.healthy_min
        )
    };
    if membership.healthy < membership.quorum() {
        reasons.push(format!(
            "etcd has {} voters and {} healthy, below its quorum of {}: quorum is already lost and no member can be removed; recover from a snapshot (etcd's disaster recovery), then replace",
            membership.voters,
            membership.healthy,
            membership.quorum()
        ));
    } else if removed.safety() != Safety::Safe {
        reasons.push(format!(
            "removing `{old}`'s member (id {}) leaves {}: quorum would not hold",
            m.id,
            say(&removed)
        ));
    } else {
        why.push(format!(
            "removing `{old}`'s member (id {}) leaves {}",
            m.id,
            say(&removed)
        ));
        let after = Membership {
            voters: removed.voters,
            healthy: removed.healthy_min,
            unknown: removed.healthy_max - removed.healthy_min,
            learners: membership.learners,
        };
        let join = if learner_joins {
            after.add_healthy_voter()
        } else {
            after.add_unstarted_voter()
        };
        if join.safety() == Safety::Safe {
            why.push(format!(
                "the new member's join {}: {}",
                if learner_joins {
                    "(a learner, promoted once caught up) ends with"
                } else {
                    "(a voter at once, down until it starts) passes through"
                },
                say(&join)
            ));
        } else {
            reasons.push(format!(
                "the new member's join would pass through {}: quorum would not hold",
                say(&join)
            ));
        }
    }
    why
}

/// The plan that replaces master `old`, powered off or unreachable, by
/// `new`: nothing is asked of `old` (no drain, no reset: each skipped step
/// is listed with why). Its etcd member is removed by id first, only when
/// `state` shows it is not healthy and the remaining voters keep quorum
/// through the removal and the new member's join; then its Node is
/// deleted, its server removed from the pool, its VM stopped and deleted
/// (the backend deletes only a VM hacli created); then `new` is
/// provisioned and joins. Refused, before anything is removed, when `old`
/// answers again, when quorum would not hold, and when `new`'s VM id,
/// address or name is taken (in the topology, on an observed host, on the
/// network, or as a Node or etcd member).
pub fn replace_dead_master(
    current: &Topology,
    target: &Topology,
    old: &str,
    new: &str,
    state: &ClusterState,
    plan_opts: &plan::Options,
) -> Result<Plan, Refusal> {
    let mut reasons = Vec::new();
    if !current.node(old).is_some_and(|n| n.is_control_plane()) {
        reasons.push(format!("`{old}` is not a master of the current topology"));
    }
    if state.nodes.iter().flatten().any(|n| n.name == new) {
        reasons.push(format!(
            "the name `{new}` is taken: the cluster already has a Node `{new}`"
        ));
    }
    if let Some(m) = state
        .etcd
        .iter()
        .flat_map(|e| &e.members)
        .find(|m| m.name == new)
    {
        reasons.push(format!(
            "the name `{new}` is taken: etcd already has a member `{new}` (id {})",
            m.id
        ));
    }
    let member = match dead_member(current, state, old, target.etcd.learner_joins) {
        Ok(m) => Some(m),
        Err(r) => {
            reasons.extend(r);
            None
        }
    };
    // The join, as the migration planner makes it, with what was observed
    // (VM ids on the hosts, addresses that answer): from the cluster
    // without the dead master to the target.
    let mut without = current.clone();
    without.nodes.retain(|n| n.name != old);
    let joined = match replace_master(
        current,
        target,
        old,
        new,
        plan_opts,
        &DisruptOptions::default(),
    ) {
        Err(r) => {
            reasons.extend(r.reasons);
            None
        }
        Ok(_) => match plan::plan(&without, target, Some(state), plan_opts) {
            Ok(p) => Some(p),
            Err(r) => {
                reasons.extend(r.reasons);
                None
            }
        },
    };
    let (Some((_id, why)), Some(joined), true) = (member, joined, reasons.is_empty()) else {
        return Err(Refusal::unsafe_for(reasons));
    };
    let steps = dead_removal_steps(current, old, &why);
    let mut phases = vec![Phase {
        id: format!("remove/{old}/dead"),
        title: format!("Remove the dead master {old} without its help"),
        steps,
        rollback: Some(
            "none: a removed member, Node or VM is not put back; the run can be resumed".into(),
        ),
    }];
    phases.extend(joined.phases.into_iter().filter(|p| {
        p.id.starts_with("provision/") || p.id == "join-material" || p.id.starts_with("join/")
    }));
    let mut warnings: Vec<String> = DEAD_SKIPS
        .iter()
        .map(|(steps, why)| format!("skipped for the dead master {old}: {steps}: {why}"))
        .collect();
    warnings.extend(why);
    warnings.extend(joined.warnings);
    // The backends reach what the steps name: the dead master too (its
    // member and Node are told by its address, which only `current`
    // knows), as the live replacement's plan does; etcd's endpoints stay
    // the target's, so no client waits on the dead member.
    let mut both = target.clone();
    if let Some(o) = current.node(old) {
        both.nodes.push(o.clone());
    }
    Ok(Plan {
        cluster: current.cluster.clone(),
        from: current.clone(),
        to: both,
        learner_joins: target.etcd.learner_joins,
        phases,
        warnings,
        recovery: None,
    })
}

/// The steps that remove the dead master `old` without its help: its etcd
/// member (noting `why` quorum holds), its Node, its load-balancer backend
/// and its VM.
fn dead_removal_steps(current: &Topology, old: &str, why: &[String]) -> Vec<Step> {
    let n = current.node(old).expect("checked");
    let pool = current
        .load_balancer
        .pool
        .clone()
        .filter(|_| current.has_load_balancer());
    let id = |s: &str| format!("remove/{old}/{s}");
    let mut steps = Vec::new();
    let mut s = step(
        id("member"),
        format!("remove {old}'s etcd member by its id"),
        Op::ControlPlane(CpOp::RemoveMember { node: old.into() }),
        10,
    );
    s.notes.extend(why.iter().cloned());
    s.notes
        .push("no way back from here: the following steps only go forward".into());
    steps.push(s);
    steps.push(step(
        id("node"),
        format!("delete the Node {old}"),
        Op::ControlPlane(CpOp::DeleteNode { node: old.into() }),
        5,
    ));
    if let Some(pool) = &pool {
        steps.push(step(
            id("backend"),
            format!("remove server {old} from pool {pool}"),
            Op::LoadBalancer(LbOp::RemoveServer {
                pool: pool.clone(),
                server: old.into(),
            }),
            30,
        ));
    }
    if let (Some(host), Some(vmid)) = (&n.hypervisor, n.vmid) {
        steps.push(step(
            id("vm"),
            format!("stop and delete VM {vmid} ({old}) on {host}, only if hacli created it"),
            Op::Hypervisor(HvOp::DeleteVm {
                host: host.clone(),
                vmid,
                name: old.into(),
            }),
            60,
        ));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{self, MemJournal, Outcome};
    use crate::in_memory::{InMemoryCluster, with_backends};

    fn topo(masters: usize, extra: &str) -> Topology {
        let mut y = String::from(
            "cluster: lab\ncontrolPlaneEndpoint: { address: 10.0.0.10 }\nloadBalancer: { kind: haproxy, pool: k8s-apiserver, frontend: \"10.0.0.10:6443\" }\nhypervisors:\n  - { name: pve1, memoryGiB: 128, cpus: 32 }\nnodes:\n",
        );
        for i in 1..=masters {
            y.push_str(&format!(
                "  - {{ name: m{i}, role: control-plane, address: 10.0.0.1{i}, hypervisor: pve1, vmid: 10{i}, cpus: 2, memoryGiB: 4, diskGiB: 32 }}\n"
            ));
        }
        y.push_str(extra);
        Topology::from_yaml("t.yaml", &y).unwrap().0
    }

    #[test]
    fn removing_one_of_three_is_refused_one_of_five_is_planned_in_order() {
        let e = remove_master(&topo(3, ""), "m2", &DisruptOptions::default()).unwrap_err();
        assert!(e.to_string().contains("leaves 2 etcd voters"), "{e}");
        assert!(e.to_string().contains("replace-master m2"), "{e}");
        let e = remove_master(&topo(1, ""), "m1", &DisruptOptions::default()).unwrap_err();
        assert!(e.to_string().contains("only master"), "{e}");
        let e = remove_master(&topo(5, ""), "m2", &DisruptOptions::default()).unwrap_err();
        assert!(e.to_string().contains("leaves 4 etcd voters"), "{e}");

        // Four to three (after a replacement's join, say) is planned.
        let p = remove_master(&topo(4, ""), "m2", &DisruptOptions::default()).unwrap();
        let ids: Vec<&str> = p.steps().map(|(_, s)| s.id.as_str()).collect();
        let pos = |id: &str| ids.iter().position(|x| *x == id).unwrap();
        assert!(pos("remove/m2/drain") < pos("remove/m2/member"));
        assert!(pos("remove/m2/member") < pos("remove/m2/reset"));
        assert!(pos("remove/m2/reset") < pos("remove/m2/node"));
        assert!(pos("remove/m2/node") < pos("remove/m2/backend"));
        assert!(pos("remove/m2/backend") < pos("remove/m2/vm"));
        // The member's removal is gated right before it.
        let (_, member) = p.steps().find(|(_, s)| s.id == "remove/m2/member").unwrap();
        assert_eq!(member.preconditions[0].policy, "remove-member");
    }

    #[test]
    fn replacing_a_master_joins_first_then_removes_and_ends_with_three_voters() {
        let current = topo(3, "");
        let mut target = topo(
            3,
            "  - { name: m4, role: control-plane, address: 10.0.0.14, hypervisor: pve1, vmid: 104, cpus: 2, memoryGiB: 4, diskGiB: 32 }\n",
        );
        target.nodes.retain(|n| n.name != "m1");
        let p = replace_master(
            &current,
            &target,
            "m1",
            "m4",
            &plan::Options {
                template: Some(9000),
            },
            &DisruptOptions::default(),
        )
        .unwrap();
        let ids: Vec<&str> = p.steps().map(|(_, s)| s.id.as_str()).collect();
        let pos = |id: &str| {
            ids.iter()
                .position(|x| *x == id)
                .unwrap_or_else(|| panic!("{id} in {ids:?}"))
        };
        assert!(pos("join/m4/join") < pos("remove/m1/member"), "{ids:?}");
        assert!(pos("join/m4/load-balancer-up") < pos("remove/m1/backend-drain"));

        let sim =
            InMemoryCluster::new(&current, &p.to, "2026-05-21T12:00:00Z".parse().unwrap()).shared();
        let mut j = MemJournal::default();
        let out = with_backends(&sim, |b| {
            exec::run_as(
                &p,
                b,
                &mut j,
                &exec::Options::default(),
                Some("me"),
                &mut |_| {},
            )
        })
        .unwrap();
        assert_eq!(out, Outcome::Completed, "{:?}", sim.borrow().effects);
        let s = sim.borrow();
        let voters: Vec<&String> = s
            .etcd
            .iter()
            .filter(|(_, l)| !**l)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(voters, ["m2", "m3", "m4"]);
        let pool: Vec<&String> = s.pool.as_ref().unwrap().keys().collect();
        assert_eq!(pool, ["m2", "m3", "m4"]);
        assert!(!s.vms.contains_key(&101), "the old VM is gone");
        assert!(!s.joined.contains("m1"));
        drop(s);

        // Refusals name the reason.
        let e = replace_master(
            &current,
            &current,
            "m1",
            "m4",
            &plan::Options::default(),
            &DisruptOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("still lists `m1`"), "{e}");
    }

    fn dead_state(down: &[&str]) -> ClusterState {
        let now: jiff::Timestamp = "2026-05-21T12:00:00Z".parse().unwrap();
        let mut s = ClusterState::empty(now);
        s.nodes = Some(
            ["m1", "m2", "m3"]
                .iter()
                .map(|n| {
                    let mut st = crate::state::NodeState::ready(*n, now);
                    if down.contains(n) {
                        st.ready = Some(false);
                    }
                    st
                })
                .collect(),
        );
        s.etcd = Some(crate::state::EtcdState {
            members: (1..=3u64)
                .map(|i| EtcdMember {
                    id: crate::state::MemberId(0x1000 + i),
                    name: format!("m{i}"),
                    peer_urls: vec![format!("https://10.0.0.1{i}:2380")],
                    client_urls: vec![format!("https://10.0.0.1{i}:2379")],
                    is_learner: false,
                    healthy: Some(!down.contains(&format!("m{i}").as_str())),
                    leader: i == 2,
                    raft_index: None,
                    alarms: Vec::new(),
                })
                .collect(),
        });
        s
    }

    fn m4_target() -> Topology {
        let mut t = topo(
            3,
            "  - { name: m4, role: control-plane, address: 10.0.0.14, hypervisor: pve1, vmid: 104, cpus: 2, memoryGiB: 4, diskGiB: 32 }\n",
        );
        t.nodes.retain(|n| n.name != "m1");
        t
    }

    fn opts9000() -> plan::Options {
        plan::Options {
            template: Some(9000),
        }
    }

    #[test]
    fn a_dead_master_is_replaced_without_drain_or_reset_and_ends_with_three_voters() {
        let current = topo(3, "");
        let target = m4_target();
        let p = replace_dead_master(
            &current,
            &target,
            "m1",
            "m4",
            &dead_state(&["m1"]),
            &opts9000(),
        )
        .unwrap();
        let ids: Vec<&str> = p.steps().map(|(_, s)| s.id.as_str()).collect();
        for skipped in ["drain", "cordon", "reset", "move-leader", "backend-drain"] {
            assert!(
                !ids.contains(&format!("remove/m1/{skipped}").as_str()),
                "{ids:?}"
            );
            assert!(
                p.warnings.iter().any(
                    |w| w.starts_with("skipped for the dead master m1:") && w.contains(skipped)
                ),
                "{skipped}: {:?}",
                p.warnings
            );
        }
        let pos = |id: &str| {
            ids.iter()
                .position(|x| *x == id)
                .unwrap_or_else(|| panic!("{id} in {ids:?}"))
        };
        // Removed first (the join then grows 2 healthy voters to 3), by id.
        assert!(pos("remove/m1/member") < pos("provision/m4/clone"));
        assert!(pos("remove/m1/member") < pos("remove/m1/node"));
        assert!(pos("remove/m1/backend") < pos("remove/m1/vm"));
        assert!(pos("remove/m1/vm") < pos("join/m4/join"));
        let (_, member) = p.steps().find(|(_, s)| s.id == "remove/m1/member").unwrap();
        assert!(
            member
                .notes
                .iter()
                .any(|n| n.contains("member (id 1001) leaves 2 voters, quorum 2, 2 healthy")),
            "{:?}",
            member.notes
        );

        let sim =
            InMemoryCluster::new(&current, &p.to, "2026-05-21T12:00:00Z".parse().unwrap()).shared();
        let mut j = MemJournal::default();
        let out = with_backends(&sim, |b| {
            exec::run_as(
                &p,
                b,
                &mut j,
                &exec::Options::default(),
                Some("me"),
                &mut |_| {},
            )
        })
        .unwrap();
        assert_eq!(out, Outcome::Completed, "{:?}", sim.borrow().effects);
        let s = sim.borrow();
        let voters: Vec<&String> = s
            .etcd
            .iter()
            .filter(|(_, l)| !**l)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(voters, ["m2", "m3", "m4"]);
        let pool: Vec<&String> = s.pool.as_ref().unwrap().keys().collect();
        assert_eq!(pool, ["m2", "m3", "m4"]);
        assert!(!s.vms.contains_key(&101), "the dead VM is gone");
        assert!(!s.joined.contains("m1"), "no Node m1");
        assert!(
            !s.effects
                .iter()
                .any(|e| e.contains("drain") || e.contains("reset")),
            "{:?}",
            s.effects
        );
    }

    #[test]
    fn two_dead_masters_of_three_are_refused_quorum_is_already_lost() {
        let e = replace_dead_master(
            &topo(3, ""),
            &m4_target(),
            "m1",
            "m4",
            &dead_state(&["m1", "m3"]),
            &opts9000(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(
                "etcd has 3 voters and 1 healthy, below its quorum of 2: quorum is already lost"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_dead_master_that_answers_again_is_refused_and_unknown_etcd_is_not_safe() {
        let e = replace_dead_master(
            &topo(3, ""),
            &m4_target(),
            "m1",
            "m4",
            &dead_state(&[]),
            &opts9000(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`m1` answers again: its etcd member (id 1001) is healthy"),
            "{e}"
        );
        assert!(e.contains("`m1` answers again: its Node is Ready"), "{e}");
        let mut st = dead_state(&["m1"]);
        st.etcd = None;
        let e = replace_dead_master(&topo(3, ""), &m4_target(), "m1", "m4", &st, &opts9000())
            .unwrap_err()
            .to_string();
        assert!(e.contains("etcd's members were not observed"), "{e}");
    }

    #[test]
    fn a_replacement_whose_vm_id_address_or_name_is_taken_is_refused_before_anything_is_removed() {
        let mut st = dead_state(&["m1"]);
        st.hypervisors = Some(vec![crate::state::HostState {
            name: "pve1".into(),
            memory_gib: 128,
            committed_memory_gib: 12,
            cpus: 32,
            committed_cpus: 6,
            vmids: vec![101, 102, 103, 104],
        }]);
        st.addresses_in_use = Some(vec!["10.0.0.14".parse().unwrap()]);
        st.nodes
            .as_mut()
            .unwrap()
            .push(crate::state::NodeState::ready("m4", st.observed_at));
        let e = replace_dead_master(&topo(3, ""), &m4_target(), "m1", "m4", &st, &opts9000())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("VM id 104 for `m4` is already taken on hypervisor `pve1`"),
            "{e}"
        );
        assert!(
            e.contains("node `m4` address 10.0.0.14 already answers on the network"),
            "{e}"
        );
        assert!(
            e.contains("the name `m4` is taken: the cluster already has a Node `m4`"),
            "{e}"
        );
    }
}
