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
use crate::topology::Topology;
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
    }
}

fn refuse(reason: String) -> Refusal {
    Refusal {
        reasons: vec![reason],
    }
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
    let id = |s: &str| format!("remove/{node}/{s}");
    let mut prepare = Vec::new();
    if let Some(pool) = &pool {
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
    if let Some(pool) = &pool {
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
        return Err(Refusal { reasons });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{self, MemJournal, Outcome};
    use crate::simulated::{SimulatedCluster, with_backends};

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

        let sim = SimulatedCluster::new(&current, &p.to, "2026-05-21T12:00:00Z".parse().unwrap())
            .shared();
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
}
