//! Verification: the end state, checked: every master Ready and a caught-up
//! etcd voter, UP in the pool, its certificate carrying the SANs, and every
//! kubeconfig naming the VIP. After a migration from a single master, a
//! person reviews the Jobs and CronJobs pinned to it by hostname.

use super::{Ctx, Phase, Plan, Step, step};
use crate::backend::{CpOp, LbOp, Op};
use crate::units::Dur;

/// The verification phase.
pub(super) fn phase(ctx: &Ctx<'_>) -> Phase {
    let (pool, sans, new_server) = (&ctx.pool, &ctx.sans, &ctx.new_server);
    let masters: Vec<String> = ctx.masters_to.iter().map(|n| n.name.clone()).collect();
    let all: Vec<String> = ctx.to.nodes.iter().map(|n| n.name.clone()).collect();
    let mut steps = vec![
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
    if ctx.single {
        steps.extend(ctx.masters_from.iter().map(|m| pinned(&m.name)));
    }
    Phase {
        id: "verify".into(),
        title: "Verify the result".into(),
        steps,
        rollback: Some(
            "nothing to undo: checks only; a failed check stops the run and leaves the cluster as it is".into(),
        ),
    }
}

/// Manual: the Jobs and CronJobs pinned to `master` by hostname, re-pinned
/// where they should run on any master.
fn pinned(master: &str) -> Step {
    let mut s = step(
        &format!("verify/pinned-workloads/{master}"),
        format!(
            "review the Jobs and CronJobs pinned to {master} by hostname (nodeSelector kubernetes.io/hostname or nodeName): re-pin those that should run on any master, then confirm"
        ),
        Op::ControlPlane(CpOp::PinnedWorkloads {
            node: master.to_string(),
        }),
        Dur::secs(300),
    );
    s.notes.push(format!(
        "manual: `kubectl get cronjobs,jobs -A -o json | jq -r '.items[] | (.spec.jobTemplate.spec.template.spec // .spec.template.spec) as $p | select($p.nodeName == \"{master}\" or $p.nodeSelector[\"kubernetes.io/hostname\"] == \"{master}\") | .kind + \" \" + .metadata.namespace + \"/\" + .metadata.name'` lists them"
    ));
    s
}

/// The plan with a last phase (`hacli plan --verify-drill`): a planned
/// reboot of the first master with traffic through the VIP, as `hacli
/// drill --planned` does it; the step fails unless every request
/// succeeded. A plan with no master, or already ending with it, is
/// returned as it is.
pub fn with_drill(mut plan: Plan) -> Plan {
    let Some(first) = plan
        .from
        .control_plane_nodes()
        .next()
        .map(|n| n.name.clone())
    else {
        return plan;
    };
    if plan.phases.iter().any(|p| p.id == "drill") {
        return plan;
    }
    let ep = &plan.to.control_plane_endpoint;
    let server = super::url(ep.address, ep.port);
    let op = Op::ControlPlane(CpOp::DrillPlannedReboot {
        node: first.clone(),
    });
    let mut s = step(
        &format!("drill/planned-reboot/{first}"),
        format!(
            "planned reboot of {first} with traffic through {server}: 0 failed requests, else the step fails"
        ),
        op.clone(),
        Dur::secs(300),
    );
    s.command = Some(super::commands::describe(&op, &plan.to));
    s.notes.push(
        "the drill gates the reboot itself (policy `reboot` without its soak: the migration has just changed the nodes' readiness), moves leadership, takes the lock, drains the master from the pool first and puts it back; a refused gate fails the step, and `hacli apply --resume` tries it again".into(),
    );
    plan.phases.push(Phase {
        id: "drill".into(),
        title: format!("Prove it: a planned reboot of {first} with no failed request"),
        steps: vec![s],
        rollback: Some(
            "nothing to undo: the drill puts the master back in the pool and uncordons it itself"
                .into(),
        ),
    });
    plan
}
