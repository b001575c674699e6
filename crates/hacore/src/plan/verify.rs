//! Verification: the end state, checked: every master Ready and a caught-up
//! etcd voter, UP in the pool, its certificate carrying the SANs, and every
//! kubeconfig naming the VIP.

use super::{Ctx, Phase, step};
use crate::backend::{CpOp, LbOp, Op};
use crate::units::Dur;

/// The verification phase.
pub(super) fn phase(ctx: &Ctx<'_>) -> Phase {
    let (pool, sans, new_server) = (&ctx.pool, &ctx.sans, &ctx.new_server);
    let masters: Vec<String> = ctx.masters_to.iter().map(|n| n.name.clone()).collect();
    let all: Vec<String> = ctx.to.nodes.iter().map(|n| n.name.clone()).collect();
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
    Phase {
        id: "verify".into(),
        title: "Verify the result".into(),
        steps,
    }
}
