//! The joins: each new master in turn joins as a control-plane node (an
//! etcd learner first, promoted once caught up), carries the control-plane
//! taint, and only then gets into the load balancer's pool.

use super::{Ctx, Phase, Step, api_socket, gate, join_material, step};
use crate::action::Action;
use crate::backend::{CpOp, LbOp, Op};
use crate::topology::Node;
use crate::units::Dur;

/// How long a join takes, at most, as planned.
const JOIN_TIME: Dur = Dur::secs(300);

/// One phase per new master, one at a time; the certificate key is
/// uploaded again whenever a join could outlive it.
pub(super) fn phases(ctx: &Ctx<'_>) -> Vec<Phase> {
    let mut phases = Vec::new();
    let mut existing = ctx.existing();
    let mut key_age = Dur::secs(0);
    for n in &ctx.new_masters {
        let mut steps = Vec::new();
        if key_age.0 + JOIN_TIME.0 > join_material::budget() {
            steps.push(join_material::upload(&format!(
                "join/{}/upload-certs",
                n.name
            )));
            key_age = Dur::secs(0);
        }
        existing.push(n.name.clone());
        steps.extend(join(ctx, n, &existing));
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
    phases
}

/// Join `n` into a cluster whose nodes will be `with_new`.
fn join(ctx: &Ctx<'_>, n: &Node, with_new: &[String]) -> Vec<Step> {
    let (to, pool) = (ctx.to, &ctx.pool);
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
        JOIN_TIME,
    );
    s.preconditions
        .push(gate("join", Action::Join, &n.name, with_new));
    s.rollback = Some(Op::ControlPlane(CpOp::ResetNode {
        node: n.name.clone(),
    }));
    if !to.etcd.learner_joins {
        s.notes.push(
            "without learner mode the new member votes before it has started: a risk window".into(),
        );
    }
    let mut steps = vec![s];
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
    let address = api_socket(n, ctx.port);
    let mut s = step(
        &format!("join/{}/load-balancer", n.name),
        format!(
            "add {} ({address}) to pool {pool}, leaving the other servers alone",
            n.name
        ),
        Op::LoadBalancer(LbOp::AddServer {
            pool: pool.clone(),
            server: n.name.clone(),
            address,
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
    steps
}
